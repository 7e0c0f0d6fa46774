"""Plumbing shared by the orchestrator and the workers:
it imports protocol and the transports, never orchestrator or workers."""
