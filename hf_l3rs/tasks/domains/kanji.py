"""D1 "kanji": KanjiVG stroke SVGs (PyPI ``kanjivg``, CC BY-SA 3.0) rendered with per-stroke
jitter, so every class has unlimited distinct samples."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hf_l3rs.tasks.domains.render import affine, rasterize

_NUMBERS = re.compile(r'<g id="kvg:StrokeNumbers.*?</g>', re.S)
_DOCTYPE = re.compile(r"<!DOCTYPE.*?]>", re.S)
_PATH = re.compile(r"<path ")
_WIDTH = re.compile(r"stroke-width:[0-9.]+")


class DomainSourceError(RuntimeError):
    """The raw material of an embedded domain is not installed."""


def kanjivg_dir() -> Path:
    """The bare ``kanji/`` folder the kanjivg wheel installs into site-packages."""
    from importlib import metadata

    try:
        files = metadata.files("kanjivg") or []
    except metadata.PackageNotFoundError:
        raise DomainSourceError("KanjiVG is not installed: pip install kanjivg (or `make install`)") from None
    for f in files:
        if str(f).endswith(".svg"):
            return Path(f.locate()).parent
    raise DomainSourceError("the kanjivg package has no SVG files")


def base_characters(folder: Path | None = None) -> list[Path]:
    """One SVG per character (variant forms such as ``04e00-Kaisho.svg`` left out)."""
    folder = folder or kanjivg_dir()
    return sorted(p for p in folder.glob("*.svg") if "-" not in p.stem)


@dataclass(frozen=True)
class StrokeJitter:
    shift: float = 2.5  # stroke shift, viewBox units (of 109)
    angle: float = 6.0  # stroke rotation, degrees
    width: tuple[float, float] = (2.2, 4.5)
    global_shift: float = 0.06  # fraction of the image
    global_angle: float = 10.0
    global_scale: float = 0.12


def render_kanji(svg_text: str, rng: random.Random, size: int, jitter: StrokeJitter = StrokeJitter()) -> Image.Image:
    """One sample of a character: every stroke moved and turned on its own, random width,
    then the whole glyph moved, turned and scaled."""
    body = _NUMBERS.sub("", _DOCTYPE.sub("", svg_text))

    def stroke(_: re.Match) -> str:
        dx, dy = rng.uniform(-jitter.shift, jitter.shift), rng.uniform(-jitter.shift, jitter.shift)
        a = rng.uniform(-jitter.angle, jitter.angle)
        return f'<path transform="translate({dx:.2f} {dy:.2f}) rotate({a:.2f} 54.5 54.5)" '

    body = _PATH.sub(stroke, body)
    body = _WIDTH.sub(f"stroke-width:{rng.uniform(*jitter.width):.2f}", body)
    start = body.index(">", body.index("<svg")) + 1
    end = body.rindex("</svg>")
    t = affine(rng, 109.0, jitter.global_shift, jitter.global_angle, jitter.global_scale)
    svg = body[:start] + f'<g transform="{t}">' + body[start:end] + "</g>" + body[end:]
    return rasterize(svg, size)
