"""Errors of the workflow engine's pure core.

    WorkflowError
    └── DefinitionError    a definition that cannot run: `problems` lists each reason as {loc, msg, type}

The HTTP layer answers a DefinitionError with 422 and `problems` as the detail, in the same shape as
pydantic's validation errors (`orchestrator.http.request.validation_details`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DefinitionProblem:
    """One reason a definition is refused; `loc` points into the definition's JSON."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class WorkflowError(Exception):
    """Base of the workflow engine's errors."""


class DefinitionError(WorkflowError):
    def __init__(self, problems: Sequence[DefinitionProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in self.problems))

    def details(self) -> list[dict[str, Any]]:
        """The problems as a 422 body's `detail`."""
        return [problem.as_dict() for problem in self.problems]
