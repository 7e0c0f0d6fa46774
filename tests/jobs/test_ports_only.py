"""jobs/ reaches the registry, the bus, the publisher and the rest through orchestrator.jobs.ports only."""

from __future__ import annotations

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "orchestrator" / "jobs"

# The classes behind the ports: jobs/ may import their modules' errors and value types, never them.
CONCRETE = {
    "orchestrator.store.registry": {"RedisTaskRegistry"},
    "orchestrator.broker.publisher": {"TaskPublisher"},
    "orchestrator.store.directory": {"ServiceDirectory"},
    "orchestrator.broker.dead_letter_queues": {"DeadLetterQueues", "DeadLetterBrowse"},
    "orchestrator.store.task_owners": {"TaskOwners"},
}


def test_jobs_imports_no_live_module_and_no_class_behind_a_port() -> None:
    offenders: list[str] = []
    for path in sorted(p for p in JOBS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                if node.module.startswith("orchestrator.live") or names & CONCRETE.get(node.module, set()):
                    offenders.append(f"{path.name}: from {node.module} import {', '.join(sorted(names))}")
            elif isinstance(node, ast.Import):
                offenders.extend(
                    f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("orchestrator.live")
                )
    assert offenders == []
