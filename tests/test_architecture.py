"""The dependency direction of DESIGN.md, checked on the source and on what a process loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "protocol": {"aio_pika", "aiormq", "aiohttp", "redis", "prometheus_client", "orchestrator", "workers"},
    "orchestrator": {"workers"},
    "workers": {"orchestrator"},
}


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_dependency_direction(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_names(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize(
    ("entry", "must_not_load"),
    [("workers.__main__", "orchestrator"), ("orchestrator.__main__", "workers"), ("protocol", "aio_pika")],
)
def test_a_process_never_loads_the_other_side(entry: str, must_not_load: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({entry!r}); "
        f"loaded = [m for m in sys.modules if m == {must_not_load!r} or m.startswith({must_not_load!r} + '.')]; "
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
