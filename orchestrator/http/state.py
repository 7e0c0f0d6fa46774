"""Typed keys of what the orchestrator keeps on its aiohttp application."""

from __future__ import annotations

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.broker.publisher import TaskPublisher
from orchestrator.http.health import HealthChecker
from orchestrator.jobs.dead_letter_replay import DeadLetterService
from orchestrator.jobs.service import JobService
from orchestrator.metrics import OrchestratorMetrics

METRICS = web.AppKey("baton_metrics", OrchestratorMetrics)
AUTHENTICATOR = web.AppKey("baton_authenticator", Authenticator)
PUBLISHER = web.AppKey("baton_publisher", TaskPublisher)
JOBS = web.AppKey("baton_jobs", JobService)
HEALTH = web.AppKey("baton_health", HealthChecker)
DEAD_LETTERS = web.AppKey("baton_dead_letters", DeadLetterService)
