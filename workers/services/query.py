"""The `query` service: `llm_request` -> a chat completion.

With `LLM_BASE_URL` set, the request goes to `{LLM_BASE_URL}/chat/completions` (any
OpenAI-compatible server) through `ctx.http`, so it carries the task's context headers and passes
the endpoint's circuit breaker. A chat completion has no side effect, so the call is marked
idempotent: a 5xx or a lost connection is retried like a 429 (after Retry-After, else a backoff).
An endpoint still answering 429/5xx after those retries fails the task retryably (UpstreamError);
any other refusal fails it for good (LlmError).
Without it the answer is a deterministic local one, labelled as such (`model: baton-local`
and a `note`), so a fresh install works end to end without pretending to be a model.

With a model configured, tasks start at most at `LLM_RATE_LIMIT` (default: the query profile's
100/m) over every query process: one task asks for one completion (its retries after a 429 or 5xx
are spaced by the endpoint's own Retry-After). Local answers are not limited.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.config import LlmSettings, WorkerSettings
from workers.context import TaskContext
from workers.errors import HttpStatusError, PermanentError
from workers.http import HttpResponse
from workers.rate_limit import RateLimit
from workers.sdk import Worker
from workers.services import builtin_worker, profile_rate_limit
from workers.upstream_retry import is_upstream_failure

LOCAL_MODEL: Final[str] = "baton-local"
LOCAL_NOTE: Final[str] = "no model configured: set LLM_BASE_URL (and LLM_API_KEY, LLM_MODEL) to use a real one"
_QUOTE_CHARS: Final[int] = 200


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class LlmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    system: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=128_000)

    @model_validator(mode="after")
    def _one_input(self) -> LlmRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        return self

    def chat(self) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        if self.messages is not None:
            messages.extend(m.model_dump() for m in self.messages)
        else:
            messages.append({"role": "user", "content": self.prompt or ""})
        return messages


class LlmError(PermanentError):
    """The model endpoint refused the request or answered something that is not a completion."""


class UpstreamError(HttpStatusError):
    """The model endpoint was overloaded or failing (429/5xx) on every attempt: another task attempt may do."""


def local_answer(request: LlmRequest) -> dict[str, Any]:
    question = next((m["content"] for m in reversed(request.chat()) if m["role"] == "user"), "")
    quoted = question if len(question) <= _QUOTE_CHARS else question[: _QUOTE_CHARS - 1] + "…"
    return {
        "answer": f"[baton-local] No language model is configured, so this is a placeholder answer to: {quoted}",
        "model": LOCAL_MODEL,
        "note": LOCAL_NOTE,
        "usage": None,
    }


async def remote_answer(request: LlmRequest, llm: LlmSettings, ctx: TaskContext) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model or llm.model, "messages": request.chat()}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    headers = {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}
    response = await ctx.http.post(
        f"{llm.base_url}/chat/completions", json=body, headers=headers, timeout=llm.timeout_seconds, idempotent=True
    )
    return parse_completion(response)


def parse_completion(response: HttpResponse) -> dict[str, Any]:
    if is_upstream_failure(response.status):
        excerpt = response.text()[:_QUOTE_CHARS]
        raise UpstreamError(response.method, response.url, response.status, excerpt, response.attempts)
    if not response.ok:
        raise LlmError(f"the model endpoint answered {response.status}: {response.text()[:_QUOTE_CHARS]}")
    try:
        data = response.json()
        choice = data["choices"][0]
        answer = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        excerpt = response.text()[:_QUOTE_CHARS]
        raise LlmError(f"the model endpoint's answer is not a chat completion: {excerpt}") from exc
    return {
        "answer": answer,
        "model": data.get("model"),
        "finish_reason": choice.get("finish_reason"),
        "usage": data.get("usage"),
    }


async def answer_query(payload: LlmRequest, ctx: TaskContext) -> dict[str, Any]:
    llm = ctx.settings.llm
    if llm.base_url is None:
        return local_answer(payload)
    await ctx.progress(10, "asking the model", current_task="llm")
    return await remote_answer(payload, llm, ctx)


def llm_rate_limit(settings: WorkerSettings) -> RateLimit | None:
    if settings.llm.base_url is None:
        return None  # local answers call nothing that needs protecting
    return settings.llm.rate_limit or profile_rate_limit("query")


def register(worker: Worker) -> None:
    worker.handler("llm_request")(answer_query)


worker = builtin_worker("query", rate_limit=llm_rate_limit)
register(worker)
