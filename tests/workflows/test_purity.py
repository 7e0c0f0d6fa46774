"""The workflow core stays pure: the standard library, pydantic and protocol only, so it runs in a unit
test without Redis, RabbitMQ, aiohttp or an event loop. The engine, its storage, the execution's job,
and the cancel and start of such a job from the jobs side are the impure shell around it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator" / "workflows"
ALLOWED = {"pydantic", "protocol"}
SHELL = {
    "engine.py",
    "storage.py",
    "execution_jobs.py",
    "job_cancel.py",
    "job_starter.py",
    "running_gauge.py",
    "snapshots.py",
    "declared.py",
}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_the_workflow_core_imports_only_the_standard_library_pydantic_and_protocol() -> None:
    offenders = {
        path.name: sorted(
            module
            for module in imported_modules(path)
            if module.split(".")[0] not in sys.stdlib_module_names | ALLOWED
            and not module.startswith("orchestrator.workflows")
        )
        for path in PACKAGE.glob("*.py")
        if path.name not in SHELL
    }
    assert {name: modules for name, modules in offenders.items() if modules} == {}
