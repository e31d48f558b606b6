"""Imports point one way (docs/ARCHITECTURE.md): every import of the code, at the top of a module or
inside a function, read from the source, against the layer order. A new upward import fails here
with the file and line, unless it is one of the few named below with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; packages on one line are siblings and do not import each other
LAYERS: list[tuple[str, ...]] = [
    ("common",),
    ("station", "protocol"),
    ("records",),
    ("run", "analysis", "store"),
    ("report",),
    ("analyses",),
    ("finishing", "export"),
    ("recovery",),
    ("unattended", "board"),
    ("facility",),
    ("cli",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
ALLOWED = {
    # a protocol's acceptance names a metric: checked against the registered analyses' specs (plain
    # data, no numpy), imported when a protocol with acceptance limits is read
    ("harness/protocol/protocol_file.py", "harness.analyses.registry"),
}

pytestmark = pytest.mark.fast


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def _files(top: str) -> list[Path]:
    return sorted((ROOT / top).rglob("*.py"))


def test_every_harness_package_has_a_layer() -> None:
    packages = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(RANK), f"add {sorted(packages - set(RANK))} to LAYERS (and docs/ARCHITECTURE.md); remove {sorted(set(RANK) - packages)}"


def test_harness_imports_point_down() -> None:
    wrong = []
    for path in _files("harness"):
        rel = path.relative_to(ROOT).as_posix()
        parts = path.relative_to(ROOT / "harness").parts
        if len(parts) == 1:
            continue  # harness/__init__.py, __main__.py: the entry point
        own = parts[0]
        for line, module in _imports(path):
            if module.startswith("."):
                wrong.append(f"{rel}:{line}: relative import {module} (the code imports absolutely)")
                continue
            bits = module.split(".")
            if bits[0] != "harness" or len(bits) < 2 or bits[1] not in RANK or bits[1] == own:
                continue
            if RANK[bits[1]] >= RANK[own] and (rel, ".".join(bits[:3])) not in ALLOWED:
                wrong.append(f"{rel}:{line}: {own} (layer {RANK[own]}) imports {module} (layer {RANK[bits[1]]})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("top,forbidden", [("devices", ("harness", "simulators")), ("simulators", ("harness", "devices"))])
def test_drivers_and_simulators_know_nothing_above_them(top: str, forbidden: tuple[str, ...]) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {module}" for path in _files(top) for line, module in _imports(path)
             if module.split(".")[0] in forbidden]
    assert not wrong, "\n".join(wrong)


def test_the_runner_does_not_import_analysis_or_report() -> None:
    """Acquisition is done before anything is analysed: the finisher is handed in by the caller."""
    for path in _files("harness/run"):
        for line, module in _imports(path):
            assert not module.startswith(("harness.analysis", "harness.analyses", "harness.report", "harness.finishing")), (
                f"{path.relative_to(ROOT)}:{line}: imports {module}")
