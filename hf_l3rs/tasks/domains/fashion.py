"""D3 "fashion": Fashion-MNIST photographs (Debian ``dataset-fashion-mnist``, MIT), an
evaluation-only domain: real greyscale product photos, unlike the two rendered ones, and never
part of any meta-training or pretraining run here, so it tests transfer to a dataset that
neither the meta-weights nor the checkpoints have seen (docs/adr/0006 "A held-out vision
domain")."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

from hf_l3rs.tasks.domains.kanji import DomainSourceError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# The test half of Fashion-MNIST (10,000 images): enough for an evaluation domain.
_IMAGES, _LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _read_idx(path: Path, header: str) -> tuple[tuple[int, ...], bytes]:
    """(shape, raw bytes) of an IDX file (big-endian header, unsigned bytes)."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    count = header.count("I")
    magic, *shape = struct.unpack(">" + header, raw[: 4 * count])
    if magic not in (2049, 2051):
        raise DomainSourceError(f"{path}: not an IDX file (magic {magic})")
    return tuple(shape), raw[4 * count :]


def class_images(label: int, count: int, root: Path = FASHION_DIR) -> list[bytes]:
    """PNG bytes of the first ``count`` images of class ``label`` (file order, deterministic)."""
    from PIL import Image

    if not (root / _IMAGES).is_file():
        raise DomainSourceError(
            f"{root / _IMAGES} not found: install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist, or `make install`)"
        )
    (n, rows, cols), pixels = _read_idx(root / _IMAGES, "IIII")
    (_,), labels = _read_idx(root / _LABELS, "II")
    picked = [i for i in range(n) if labels[i] == label][:count]
    if len(picked) < count:
        raise DomainSourceError(f"fashion: class {label} has {len(picked)} images, fewer than {count}")
    out = []
    for i in picked:
        img = Image.frombytes("L", (cols, rows), pixels[i * rows * cols : (i + 1) * rows * cols])
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out
