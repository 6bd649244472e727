"""Dev runs of config variants of l3rs-general, paired with the default, as an ablation-style
table: ``python experiments/scripts/dev_variants.py NAME,key=value,... [--results FILE]``
(the variant's config fields set in a copy of the weights folder; runs stored beside the dev
suite's in outputs/suite-dev-quick, so a rerun only renders). ``HD_MODE=snr`` runs the rows
with the rate adaptation patched by hd_variants.py (set at import, so in the spawned workers too)."""

import json
import os
import shutil
import sys

if os.environ.get("HD_MODE"):
    import hd_variants  # beside this script, on sys.path when it runs

    hd_variants.MODE["mode"] = os.environ["HD_MODE"]

from dev_compare import OUT, compare

from hf_l3rs.optim.hub import resolve


def main():
    variants = {}
    args = sys.argv[1:]
    results = None
    if "--results" in args:
        i = args.index("--results")
        results = args[i + 1]
        del args[i : i + 2]
    for spec in args:
        name, *kv = spec.split(",")
        folder = OUT / "weights" / name
        if not folder.exists():
            shutil.copytree(resolve("l3rs-general"), folder)
            cfg = json.loads((folder / "config.json").read_text())
            for item in kv:
                k, v = item.split("=")
                cfg["l3rs"][k] = json.loads(v)
            (folder / "config.json").write_text(json.dumps(cfg, indent=1))
        variants[name] = folder
    mode = os.environ.get("HD_MODE")
    prefix = f"HD_MODE={mode} " if mode else ""
    command = f"`{prefix}python experiments/scripts/dev_variants.py {' '.join(sys.argv[1:])}`"
    if mode:
        command += f" (the rows' runs patch the rate adaptation: {hd_variants.MODES[mode]})"
    print(compare(variants, command, "variant", results, patched=bool(mode)))


if __name__ == "__main__":
    main()
