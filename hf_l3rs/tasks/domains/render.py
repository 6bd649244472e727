"""SVG → jittered raster image (cairosvg), shared by the embedded domains."""

from __future__ import annotations

import io
import math
import random

from PIL import Image


def affine(rng: random.Random, size: float, shift: float, angle: float, scale: float) -> str:
    """An SVG transform: random rotation and scale about the centre, then a shift."""
    c = size / 2
    a = rng.uniform(-angle, angle)
    s = math.exp(rng.uniform(-scale, scale))
    dx, dy = rng.uniform(-shift, shift) * size, rng.uniform(-shift, shift) * size
    return f"translate({c + dx:.3f} {c + dy:.3f}) rotate({a:.3f}) scale({s:.4f}) translate({-c:.3f} {-c:.3f})"


def rasterize(svg: str | bytes, size: int, background: str = "white") -> Image.Image:
    """Render SVG text to an RGB image of ``size``×``size``."""
    import cairosvg

    data = svg.encode() if isinstance(svg, str) else svg
    png = cairosvg.svg2png(bytestring=data, output_width=size, output_height=size, background_color=background)
    return Image.open(io.BytesIO(png)).convert("RGB")
