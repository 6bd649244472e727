"""Register L3RS in timm's optimizer registry as soon as both are imported, in either order,
without importing timm (or torch) before the user does: a one-shot import hook wraps the
execution of ``timm.optim`` and registers right after it."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)
_TARGET = "timm.optim"


def _register() -> None:
    try:
        from hf_l3rs.trainer_plugins.timm_optim import register

        register()
    except Exception as exc:  # an incompatible timm must not break importing it
        logger.warning(
            "could not register L3RS with timm (%s: %s); call register_timm() to retry", type(exc).__name__, exc
        )


class _AfterTimmOptim(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for ``timm.optim`` it asks the other finders and wraps the
    loader so that registration follows the module's execution."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)  # one shot, and no recursion through ourselves
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            _register()

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register now if ``timm.optim`` is already imported, else when it is."""
    if _TARGET in sys.modules:
        _register()
    elif importlib.util.find_spec("timm") is not None and not any(
        isinstance(f, _AfterTimmOptim) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _AfterTimmOptim())
