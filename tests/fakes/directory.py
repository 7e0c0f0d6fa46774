"""FakeServiceLookup: job types routed to services, and live workers, as plain dicts."""

from __future__ import annotations

from protocol.control import WorkerHeartbeat
from protocol.services import BUILTIN_JOB_TYPES


class FakeServiceLookup:
    def __init__(self, routes: dict[str, str] | None = None) -> None:
        self.routes = dict(routes or {})  # announced job type -> service
        self.workers: dict[str, list[WorkerHeartbeat]] = {}

    async def service_for(self, job_type: str) -> str | None:
        return BUILTIN_JOB_TYPES.get(job_type) or self.routes.get(job_type)

    async def known_job_types(self) -> dict[str, str]:
        return {**self.routes, **BUILTIN_JOB_TYPES}

    async def live_workers(self, service: str) -> list[WorkerHeartbeat]:
        return sorted(self.workers.get(service, []), key=lambda hb: hb.worker_id)
