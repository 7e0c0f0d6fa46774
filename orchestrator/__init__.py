"""Baton's orchestrator: HTTP API, WebSocket hub, Redis registry, task publisher, event consumer."""
