"""The shape of the house (issue 38): no import cycles, research kept out of the wheel, the
optimizer core small enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: folders of the repository and the import name they have once installed
PACKAGES = {"hf_l3rs": "hf_l3rs", "trainer_plugins": "hf_l3rs.trainer_plugins", "hub_cards": "hf_l3rs.hub_cards"}


def _modules(roots: dict[str, str], base: Path = ROOT) -> dict[str, Path]:
    out = {}
    for folder, name in roots.items():
        for path in (base / folder).rglob("*.py"):
            parts = path.relative_to(base / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((name, *parts))] = path
    return out


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules ``module`` imports at any depth (functions, TYPE_CHECKING blocks);
    ``from package import name`` counts the package, and the submodule when ``name`` is one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != module}


def import_cycles(roots: dict[str, str], base: Path = ROOT) -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph."""
    known = _modules(roots, base)
    edges = {m: _imports(m, p, known) for m, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles_in_the_package_or_the_experiments() -> None:
    assert import_cycles(PACKAGES) == []
    assert import_cycles({**PACKAGES, "experiments": "experiments"}) == []


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path) -> None:
    """The checker itself: a cycle closed by an import inside a function, and one through a
    relative import, are found; a package without one is clean."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text("def g():\n    from .c import x\n")
    (pkg / "e.py").write_text("import pkg.a\n")
    cycles = import_cycles({"pkg": "pkg"}, base=tmp_path)
    assert sorted(cycles) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]


#: modules outside ``hf_l3rs.optim`` that it may import: leaves that import nothing of hf_l3rs
OPTIM_MAY_IMPORT = {"hf_l3rs.verbosity", "hf_l3rs._version", "hf_l3rs.hub_cards"}


def test_optim_imports_nothing_above_it() -> None:
    """docs/design.md "Layers": the optimizer (with its Hub I/O) is usable without the
    meta-trainer, tasks or evaluation; the leaves it may use import nothing of the package."""
    known = _modules(PACKAGES)
    optim = {m: p for m, p in known.items() if m.startswith("hf_l3rs.optim")}
    assert len(optim) >= 10
    offending = {
        f"{m} imports {i}"
        for m, p in optim.items()
        for i in _imports(m, p, known)
        if not (i.startswith("hf_l3rs.optim") or i in OPTIM_MAY_IMPORT)
    }
    assert not offending, sorted(offending)
    for leaf in OPTIM_MAY_IMPORT:
        assert not _imports(leaf, known[leaf], known), leaf


def test_the_product_never_imports_the_experiments() -> None:
    known = {**_modules(PACKAGES), **_modules({"experiments": "experiments"})}
    product = {m: p for m, p in known.items() if not m.startswith("experiments")}
    offending = {m for m, p in product.items() if any(i.startswith("experiments") for i in _imports(m, p, known))}
    assert not offending


def test_the_wheel_holds_no_research(tmp_path) -> None:
    pytest.importorskip("setuptools")  # the build backend, present in the project's venv
    source = tmp_path / "src"  # a copy: a stale build/ folder in the checkout cannot leak into the wheel
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("hf_l3rs", "trainer_plugins", "hub_cards"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("hf_l3rs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hf_l3rs/optim/l3rs.py" in names and "hf_l3rs/meta/trainer.py" in names
    assert not [n for n in names if n.startswith("experiments/") or "/velo" in n or "/analysis/" in n]
    bundled = {n.split("/")[2] for n in names if n.startswith("hf_l3rs/pretrained/")}
    assert bundled == {"l3rs-general", "l3rs-kanji-whiten"}  # one default and the demo's comparison


def _class_lines(path: Path, name: str) -> int:
    node = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == name)
    return node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", sorted((ROOT / "hf_l3rs" / "optim").rglob("*.py")), ids=lambda p: p.name)
def test_optim_files_stay_readable(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


def test_the_optimizer_class_stays_thin() -> None:
    assert _class_lines(ROOT / "hf_l3rs" / "optim" / "l3rs.py", "L3RS") <= 300
