"""D2 "clipart": Openclipart SVGs (Debian ``openclipart-svg``, public domain); the category
folder is the label. Few drawings per class, so each is rendered several times with an
affine jitter and a random background tint."""

from __future__ import annotations

import random
import re
from pathlib import Path

from PIL import Image

from hf_l3rs.tasks.domains.kanji import DomainSourceError
from hf_l3rs.tasks.domains.render import rasterize

OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
_VIEWBOX = re.compile(r"viewBox=\"\s*([-0-9.eE]+)[ ,]+([-0-9.eE]+)[ ,]+([-0-9.eE]+)[ ,]+([-0-9.eE]+)\s*\"")


def categories(root: Path = OPENCLIPART_DIR, min_images: int = 10) -> dict[str, list[Path]]:
    """Leaf category folders (relative path → SVGs) with at least ``min_images`` drawings."""
    if not root.is_dir():
        raise DomainSourceError(
            f"{root} not found: install Debian's openclipart-svg (apt-get install openclipart-svg, or `make install`)"
        )
    found: dict[str, list[Path]] = {}
    for svg in sorted(root.rglob("*.svg")):
        found.setdefault(str(svg.parent.relative_to(root)), []).append(svg)
    return {k: v for k, v in sorted(found.items()) if len(v) >= min_images}


def render_clipart(svg_text: str, rng: random.Random, size: int) -> Image.Image | None:
    """A jittered rendering, or ``None`` when the drawing cannot be rendered (~1 %)."""
    from PIL import ImageOps

    try:
        img = rasterize(svg_text, size * 2, background="white")
    except Exception:
        return None
    angle = rng.uniform(-15, 15)
    scale = rng.uniform(0.75, 1.05)
    img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255))
    inner = max(4, int(size * 2 * scale))
    img = img.resize((inner, inner), Image.BILINEAR)
    canvas = Image.new("RGB", (size * 2, size * 2), tuple(int(255 - rng.uniform(0, 40)) for _ in range(3)))
    off = size * 2 - inner
    canvas.paste(img, (rng.randint(0, max(off, 0)), rng.randint(0, max(off, 0))))
    if rng.random() < 0.5:
        canvas = ImageOps.mirror(canvas)
    return canvas.resize((size, size), Image.BILINEAR)
