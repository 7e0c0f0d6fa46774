"""The dependency direction of DESIGN.md, checked on the source and on what a process loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# clients/ is what users run on their side: the orchestrator serves its JS as package data, never imports it.
FORBIDDEN = {
    "protocol": {
        "aio_pika",
        "aiormq",
        "aiohttp",
        "redis",
        "prometheus_client",
        "plumbing",
        "orchestrator",
        "workers",
        "clients",
    },
    "plumbing": {"orchestrator", "workers", "clients"},
    "orchestrator": {"workers", "clients"},
    "workers": {"orchestrator", "clients"},
    # The CLI talks to the orchestrator over HTTP and WebSockets only.
    "clients": {"protocol", "plumbing", "orchestrator", "workers", "aio_pika", "aiormq", "redis"},
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


# Inside the orchestrator: http -> jobs -> {store, broker}; live serves sockets from the store and
# never reaches back into http or jobs; only app.py (the one assembler) imports everything.
ORCHESTRATOR_LAYERS = {
    "store": {"http", "jobs", "live", "broker", "workflows", "app"},
    "broker": {"http", "jobs", "live", "workflows", "app"},
    "live": {"http", "jobs", "workflows", "app"},
    "jobs": {"http", "workflows", "app"},  # the workflow engine hears step events through an injected listener
    "workflows": {"http", "app"},
    "http": {"app"},
}


def imported_orchestrator_parts(path: Path) -> set[str]:
    """The first component under `orchestrator.` of every absolute import of the orchestrator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
            if node.module == "orchestrator":
                modules += [f"orchestrator.{alias.name}" for alias in node.names]
    return {m.split(".")[1] for m in modules if m.startswith("orchestrator.")}


@pytest.mark.parametrize("layer", sorted(ORCHESTRATOR_LAYERS))
def test_orchestrator_layers_respect_their_direction(layer: str) -> None:
    package = ROOT / "orchestrator" / layer
    assert package.is_dir(), package
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_orchestrator_parts(path) & ORCHESTRATOR_LAYERS[layer])
        for path in package.rglob("*.py")
    }
    assert {path: parts for path, parts in offenders.items() if parts} == {}


def test_top_level_orchestrator_modules_are_shared_leaves() -> None:
    """models, errors, metrics, auth ... are used by every layer, so they import none of them; app,
    __main__ and settings (which gathers each layer's settings) are the process's assembly."""
    layers = set(ORCHESTRATOR_LAYERS) | {"app"}
    offenders = {
        path.name: sorted(imported_orchestrator_parts(path) & layers)
        for path in (ROOT / "orchestrator").glob("*.py")
        if path.name not in {"app.py", "__main__.py", "settings.py"}
    }
    assert {name: parts for name, parts in offenders.items() if parts} == {}


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
