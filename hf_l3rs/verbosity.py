"""The ``hf_l3rs`` logger and its verbosity (transformers' ``set_verbosity`` convention).

Every module logs under ``hf_l3rs.<module>``. Routine events (the embedding mapping of an
unseen architecture, a horizon taken from a scheduler, building the fused kernels) are INFO;
anything that changes results or needs action is WARNING. The default level is WARNING (as
transformers), set with ``HF_L3RS_VERBOSITY`` (debug, info, warning, error) or
:func:`set_verbosity`. Messages print once: through this library's handler, or, when the
application configured logging itself (a handler on the root logger, e.g.
``logging.basicConfig``), only through the root logger.
"""

from __future__ import annotations

import logging
import os

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ROOT = "hf_l3rs"


class _LibraryHandler(logging.StreamHandler):
    """Prints a record unless the root logger has handlers, which then print it (propagation)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def _configure() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if not getattr(root, "_hf_l3rs_configured", False):
        handler = _LibraryHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(_LEVELS.get(os.environ.get("HF_L3RS_VERBOSITY", "warning").lower(), logging.WARNING))
        root._hf_l3rs_configured = True  # type: ignore[attr-defined]
    return root


def get_logger(name: str) -> logging.Logger:
    """The logger of a module of this library (``name`` is its ``__name__``)."""
    _configure()
    return logging.getLogger(name)


def set_verbosity(level: int | str) -> None:
    """Show hf_l3rs messages from ``level`` up: a ``logging`` level or one of
    debug/info/warning/error."""
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(f"set_verbosity: level must be one of {sorted(_LEVELS)} or a logging level")
        level = _LEVELS[level.lower()]
    _configure().setLevel(level)


def get_verbosity() -> int:
    return _configure().getEffectiveLevel()
