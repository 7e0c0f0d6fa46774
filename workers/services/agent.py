"""The `agent` service: `agent_execution` -> a plan, a model call through the `query` service, an answer.

Each step is reported as progress and listed in the result with its duration, so a client
watching the job sees the agent move.
"""

from __future__ import annotations

import time
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.context import TaskContext
from workers.sdk import Worker
from workers.services import builtin_worker

QUERY_TIMEOUT_SECONDS: Final[float] = 120.0
DEFAULT_INSTRUCTIONS: Final[str] = "You are a helpful assistant. Answer concisely."


class AgentRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # agents take their own extra parameters

    agent_id: str | None = None
    input: str | None = Field(default=None, min_length=1)
    message: str | None = Field(default=None, min_length=1)
    instructions: str | None = None
    history: list[dict[str, str]] = Field(default_factory=list)
    model: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> AgentRequest:
        if (self.input is None) == (self.message is None):
            raise ValueError("give exactly one of `input` or `message`")
        return self

    @property
    def text(self) -> str:
        return self.input if self.input is not None else self.message or ""


class _Steps:
    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []
        self._started = time.monotonic()

    def finish(self, name: str, **details: Any) -> None:
        now = time.monotonic()
        self.done.append(
            {"name": name, "status": "completed", "duration_ms": round((now - self._started) * 1000, 1), **details}
        )
        self._started = now


def make_handler(query_service: str) -> Any:
    async def execute_agent(payload: AgentRequest, ctx: TaskContext) -> dict[str, Any]:
        agent_id = payload.agent_id or ctx.context.agent_id or "default"
        steps = _Steps()

        await ctx.progress(10, "planning", current_task="plan")
        system = f"Agent {agent_id}. {payload.instructions or DEFAULT_INSTRUCTIONS}"
        messages = [*payload.history, {"role": "user", "content": payload.text}]
        steps.finish("plan", messages=len(messages) + 1)

        await ctx.progress(30, "consulting the model", current_task="llm")
        request: dict[str, Any] = {"system": system, "messages": messages}
        if payload.model:
            request["model"] = payload.model
        reply = await ctx.call_service(query_service, "llm_request", request, timeout=QUERY_TIMEOUT_SECONDS)
        steps.finish("llm", model=reply.get("model"))

        await ctx.progress(90, "composing the answer", current_task="respond")
        answer = str(reply.get("answer", ""))
        steps.finish("respond")
        return {
            "agent_id": agent_id,
            "answer": answer,
            "model": reply.get("model"),
            "note": reply.get("note"),
            "conversation_id": ctx.context.conversation_id,
            "steps": steps.done,
        }

    return execute_agent


def register(worker: Worker, *, query_service: str = "query") -> None:
    worker.handler("agent_execution")(make_handler(query_service))


worker = builtin_worker("agent")
register(worker)
