"""The layout rules of docs/DESIGN.md, checked on the source tree (ast; nothing is imported).

* Dependency direction: ``umask.runtime`` imports nothing of ``umask.train`` / ``umask.export`` /
  ``umask.bench`` (nor torch); ``umask.train`` and ``umask.export`` import nothing of
  ``umask.bench``; ``umask.train`` imports nothing of ``umask.export``. Imports inside functions
  count: a lazy import is still a dependency.
* Every folder with an ``__init__.py`` under the mapped folders is a package listed in pyproject.toml
  ``[tool.setuptools] packages``, and every listed package has its folder and ``__init__.py``.
* No library module is longer than :data:`MAX_LINES` lines unless :data:`LONG_MODULES` names it with
  a reason; an entry whose file is short again (or gone) fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 700

# path -> why it is still long. Remove the line when the file is split (the test says so).
LONG_MODULES: dict[str, str] = {
    "benchmarks/plots/masks.py": "mask figures: several independent figures in one module; to split per figure",
    "runtime/core/featurize.py": "the ONE featurization (DESIGN rule 2: training, evaluation and the device share "
                                 "it); the absent-channel path (app-only logs) took it to ~720 lines; the "
                                 "profile statistics are the part to move out next",
    "benchmarks/accuracy/user_umask.py": "U-MASK checkpoints as PROTOCOL B predictors plus evaluation on a "
                                         "user's own trace (population, --context-slots); the evidence "
                                         "diagnostics (~150 lines) are the part to move out next",
}

# (file, imported module) -> why this breach of the direction is still here. Shrink-only, like LONG_MODULES.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
}

# namespace prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "umask.runtime": ("umask.train", "umask.export", "umask.bench", "torch"),
    "umask.train": ("umask.bench", "umask.export"),
    "umask.export": ("umask.bench",),
}


def _package_dirs() -> dict[str, Path]:
    """Namespace -> folder, from pyproject.toml ``package-dir``."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {ns: ROOT / folder for ns, folder in cfg["package-dir"].items()}


def _listed_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the mapped folders (the folders are disjoint)."""
    out: dict[str, Path] = {}
    for ns, d in _package_dirs().items():
        for f in d.rglob("*.py"):
            if "__pycache__" in f.parts:
                continue
            parts = list(f.relative_to(d).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([ns, *parts])] = f
    return out


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported dotted name) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if a.name != "*"]
    return found


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def violations(modules: dict[str, Path], known: dict[tuple[str, str], str] | None = None) -> list[str]:
    """``file:line: module imports name`` for every forbidden import not excused by ``known``."""
    bad: dict[tuple[str, int], str] = {}   # one message per import statement
    for module, path in sorted(modules.items()):
        rules = [p for layer, ps in FORBIDDEN.items() if _is_under(module, layer) for p in ps]
        for line, name in imports_of(module, path):
            if any(_rel(path) == f and _is_under(name, m) for f, m in (known or {})):
                continue
            for p in rules:
                if _is_under(name, p):
                    bad.setdefault((_rel(path), line), f"{_rel(path)}:{line}: {module} imports {name} ({p} is not allowed)")
    return sorted(bad.values())


def test_dependency_direction() -> None:
    mods = _modules()
    assert any(_is_under(m, "umask.runtime") for m in mods) and any(_is_under(m, "umask.bench") for m in mods)
    bad = violations(mods, KNOWN_VIOLATIONS)
    assert not bad, "dependency direction broken (docs/DESIGN.md):\n" + "\n".join(bad)


def test_known_violations_only_shrink() -> None:
    mods = {_rel(p): (m, p) for m, p in _modules().items()}
    stale = [(f, m) for (f, m) in KNOWN_VIOLATIONS
             if f not in mods or not any(_is_under(n, m) for _, n in imports_of(*mods[f]))]
    assert not stale, f"remove from KNOWN_VIOLATIONS in tests/test_layout.py (fixed): {stale}"


def test_violation_is_detected(tmp_path: Path) -> None:
    """The checker itself finds a forbidden import, a lazy one and a relative one."""
    f = tmp_path / "bad.py"
    f.write_text("import os\n\ndef g():\n    from umask.bench.reports import scoreboard\n")
    rel = tmp_path / "rel.py"
    rel.write_text("from ...export import cli\n")
    mods = {"umask.runtime.core.bad": f, "umask.train.data.rel": rel}
    bad = violations(mods)
    assert len(bad) == 2 and "umask.bench.reports" in bad[0] and "umask.export" in bad[1], bad


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(_listed_packages())
    dirs = _package_dirs()
    on_disk = set()
    for ns, d in dirs.items():
        for init in d.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            on_disk.add(".".join([ns, *init.parent.relative_to(d).parts]))
    assert sorted(on_disk - listed) == [], "package folders missing from pyproject.toml packages"
    missing = [p for p in listed if not any((dirs[ns] / Path(*p[len(ns):].strip(".").split(".")) / "__init__.py").exists()
                                            for ns in dirs if _is_under(p, ns))]
    assert missing == [], "pyproject.toml lists packages without a folder + __init__.py"


def _line_counts() -> dict[str, int]:
    return {str(f.relative_to(ROOT)): len(f.read_text().splitlines()) for f in _modules().values()}


def test_no_module_over_the_line_limit() -> None:
    counts = _line_counts()
    over = {p: n for p, n in counts.items() if n > MAX_LINES and p not in LONG_MODULES}
    assert not over, f"modules over {MAX_LINES} lines (split them, or add them to LONG_MODULES with a reason): {over}"


def test_long_module_list_only_shrinks() -> None:
    counts = _line_counts()
    stale = [p for p in LONG_MODULES if counts.get(p, 0) <= MAX_LINES]
    assert not stale, f"remove from LONG_MODULES in tests/test_layout.py (now <= {MAX_LINES} lines or gone): {stale}"
    assert all(reason.strip() for reason in LONG_MODULES.values())


@pytest.mark.parametrize("name", ["umask.runtime", "umask.train", "umask.export", "umask.bench"])
def test_namespaces_map_onto_folders(name: str) -> None:
    dirs = _package_dirs()
    assert (dirs[name] / "__init__.py").exists()
