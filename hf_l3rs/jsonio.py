"""Strict JSON for everything the project writes: JSON has no inf or NaN, so a non-finite
float (a diverged run, a fitness of −inf) is written as ``null``, never as the
``Infinity``/``NaN`` tokens that strict parsers reject."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively; tuples → lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``strict(value)``; refuses anything else non-standard."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def write(path: str | Path, value: Any, indent: int = 1) -> Path:
    """Write ``value`` as strict JSON (atomically: a crash leaves the old file or the new one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(value, indent=indent) + "\n")
    tmp.replace(path)
    return path
