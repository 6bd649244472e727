"""Just-in-time build of the fused CPU kernels (``csrc/fused_l3rs.cpp``).

The foreach path of L3RS makes ~10 memory passes per step; the fused kernels make two
(docs/design.md §1, "State and cost"). The build needs a C++ compiler and ``ninja``; it runs once
per machine (cached by torch under ``TORCH_EXTENSIONS_DIR``). Any failure falls back to
the foreach path with one warning, never an error.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)

_SOURCE = Path(__file__).parent / "csrc" / "fused_l3rs.cpp"
_lock = threading.Lock()
_module: ModuleType | None = None
_failed: str | None = None

#: The base directions the fused kernels implement.
FUSED_DIRECTIONS = frozenset({"sgd", "adam", "weight_decay"})


def load_fused(verbose: bool = False) -> ModuleType | None:
    """Return the compiled kernel module, or ``None`` if it cannot be built here."""
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    if os.environ.get("HF_L3RS_DISABLE_FUSED", "0") == "1":
        _failed = "disabled by HF_L3RS_DISABLE_FUSED=1"
        return None
    with _lock:
        if _module is not None or _failed is not None:
            return _module
        try:
            load = _quiet_cpp_extension_load()
            source = _stable_source()
            name = f"hf_l3rs_fused_{source.parent.name}"
            built = _built(name)
            (logger.info if built else logger.warning)(
                "hf_l3rs: %s the fused CPU kernels (%s; HF_L3RS_DISABLE_FUSED=1 uses the slower foreach path)",
                "loading" if built else "building",
                "cached for this environment" if built else "once per environment, ~30-60 s, with the system compiler",
            )
            _module = load(
                name=name,
                sources=[str(source)],
                extra_cflags=list(CFLAGS),
                extra_ldflags=list(LDFLAGS),
                verbose=verbose,
            )
        except Exception as exc:
            _failed = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "hf_l3rs: fused CPU kernels unavailable (%s); using the foreach path.",
                _failed.splitlines()[0][:300],
            )
    return _module


def _quiet_cpp_extension_load():
    """torch's extension loader, imported without its "No CUDA runtime is found" warning on
    machines that have no GPU (it concerns CUDA extensions; ours is CPU-only)."""
    import logging

    import torch

    if torch.cuda.is_available():
        from torch.utils.cpp_extension import load

        return load
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        quiet.setLevel(level)
    return load


#: compiler and linker flags of the kernels (part of the build's cache key)
CFLAGS = ("-O3", "-fopenmp", "-fno-math-errno", "-fopenmp-simd", "-march=native")
LDFLAGS = ("-fopenmp",)


def kernel_key(source: bytes) -> str:
    """The build's identity: the kernel source, torch's version, the Python ABI and the
    compiler flags. Two environments on one machine (a venv and a Docker image, two torch
    versions) get two builds side by side instead of overwriting each other's."""
    import sysconfig

    import torch

    abi = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag
    blob = b"\0".join([source, torch.__version__.encode(), str(abi).encode(), " ".join(CFLAGS + LDFLAGS).encode()])
    return hashlib.sha1(blob).hexdigest()[:12]


def _built(name: str) -> bool:
    """Whether torch's extensions cache already holds this build."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:
        return False


def _stable_source() -> Path:
    """The kernel source copied to a folder named by :func:`kernel_key`, so every checkout of
    the same code in one environment shares one build (torch's build cache keys on the name)."""
    text = _SOURCE.read_bytes()
    digest = kernel_key(text)
    root = Path(os.environ.get("HF_L3RS_CACHE", Path.home() / ".cache" / "hf_l3rs")) / "csrc" / digest
    target = root / _SOURCE.name
    if not target.is_file() or target.read_bytes() != text:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{_SOURCE.name}.{os.getpid()}"
        tmp.write_bytes(text)
        os.replace(tmp, target)
    return target


def fused_unavailable_reason() -> str | None:
    """Why :func:`load_fused` returned ``None`` (``None`` if it has not failed)."""
    return _failed
