"""Typed keys of what the orchestrator keeps on its aiohttp application."""

from __future__ import annotations

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.dead_letter_service import DeadLetterService
from orchestrator.health import HealthChecker
from orchestrator.jobs import JobService
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.publisher import TaskPublisher

METRICS = web.AppKey("baton_metrics", OrchestratorMetrics)
AUTHENTICATOR = web.AppKey("baton_authenticator", Authenticator)
PUBLISHER = web.AppKey("baton_publisher", TaskPublisher)
JOBS = web.AppKey("baton_jobs", JobService)
HEALTH = web.AppKey("baton_health", HealthChecker)
DEAD_LETTERS = web.AppKey("baton_dead_letters", DeadLetterService)
