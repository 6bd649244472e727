"""Render an embedded domain once into an HF ``datasets`` folder (versioned cache).

The folder is what ``datasets.load_from_disk`` reads, so tasks and pretraining use the same
code path as a Hub dataset. Rendering is deterministic: sample j of class c is drawn from a
generator seeded by (seed, c, j), whatever the number of worker processes.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from hf_l3rs.tasks.domains.spec import VERSION, DomainSpec


def cache_root() -> Path:
    return Path(os.environ.get("HF_L3RS_CACHE", Path.home() / ".cache" / "hf_l3rs")) / "domains"


def _classes(spec: DomainSpec) -> list[tuple[str, list[str]]]:
    """(class name, source SVG paths) in label order."""
    if spec.name == "kanji":
        from hf_l3rs.tasks.domains.kanji import base_characters

        chars = base_characters()
        order = random.Random(spec.seed).sample(range(len(chars)), len(chars))
        n = len(chars) if spec.num_classes is None else spec.num_classes
        if n > len(chars):
            raise ValueError(f"kanji: num_classes={n} but KanjiVG has {len(chars)} characters")
        picked = sorted(order[:n])
        return [(chr(int(chars[i].stem, 16)), [str(chars[i])]) for i in picked]
    if spec.name == "clipart":
        from hf_l3rs.tasks.domains.clipart import categories

        cats = categories(min_images=spec.min_images)
        names = list(cats)
        if spec.num_classes is not None:
            if spec.num_classes > len(names):
                raise ValueError(
                    f"clipart: num_classes={spec.num_classes} but only {len(names)} categories "
                    f"have >= {spec.min_images} drawings"
                )
            names = sorted(random.Random(spec.seed).sample(names, spec.num_classes))
        return [(n, [str(p) for p in cats[n]]) for n in names]
    if spec.name == "fashion":
        from hf_l3rs.tasks.domains.fashion import CLASS_NAMES

        return [(name, []) for name in CLASS_NAMES[: spec.num_classes]]
    raise ValueError(f"unknown embedded domain {spec.name!r}; known: kanji, clipart, fashion")


def _render_class(args: tuple[DomainSpec, int, list[str]]) -> list[bytes]:
    """PNG bytes of every sample of one class (runs in a worker process)."""
    from hf_l3rs.seeding import hash_seed

    spec, label, sources = args
    if spec.name == "fashion":  # photographs: decoded, not rendered
        from hf_l3rs.tasks.domains.fashion import class_images

        return class_images(label, spec.samples_per_class)
    texts = [Path(s).read_text(errors="ignore") for s in sources]
    out: list[bytes] = []
    attempt = 0
    while len(out) < spec.samples_per_class:
        j = len(out)
        rng = random.Random(hash_seed(spec.seed, label, j, attempt))
        if spec.name == "kanji":
            from hf_l3rs.tasks.domains.kanji import render_kanji

            img = render_kanji(texts[0], rng, spec.image_size)
        else:
            from hf_l3rs.tasks.domains.clipart import render_clipart

            # Cycle through the drawings so each appears equally often.
            img = render_clipart(texts[(j + attempt) % len(texts)], rng, spec.image_size)
        if img is None:
            attempt += 1
            if attempt > 10 * spec.samples_per_class:
                raise RuntimeError(f"{spec.name}: class {label} has no renderable drawing")
            continue
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def prepare_domain(name: str, root: str | Path | None = None, workers: int | None = None, **overrides) -> Path:
    """Build (once) and return the dataset folder of an embedded domain."""
    from hf_l3rs.tasks.datasets import EMBEDDED, dataset_entry

    entry = dataset_entry(name)
    if entry is None or not entry.embedded:
        raise ValueError(f"unknown embedded domain {name!r}; known: {EMBEDDED}")
    import datasets
    from tqdm.auto import tqdm

    spec = DomainSpec(**{**asdict(entry.render), **overrides})
    folder = Path(root or cache_root()) / f"{name}-v{VERSION}-{spec.key()}"
    if (folder / "spec.json").is_file():
        return folder
    classes = _classes(spec)
    jobs = [(spec, i, src) for i, (_, src) in enumerate(classes)]
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    images, labels = [], []
    desc = f"rendering {name} ({len(classes)} classes x {spec.samples_per_class})"
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for label, pngs in enumerate(tqdm(pool.map(_render_class, jobs, chunksize=4), total=len(jobs), desc=desc)):
            images += [{"bytes": b, "path": None} for b in pngs]
            labels += [label] * len(pngs)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[c for c, _ in classes])}
    )
    ds = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    # one scratch folder per process: benchmark workers may build the same domain at once
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.save_to_disk(str(tmp))
    (tmp / "spec.json").write_text(json.dumps({**asdict(spec), "version": VERSION}, indent=1))
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "spec.json").is_file():
            raise
        shutil.rmtree(tmp)  # another process finished first; the rendering is deterministic, so its copy is ours
    return folder
