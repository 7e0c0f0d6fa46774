"""What the contract tests share besides their fixtures: a pair of replicas' buses, and the message cap."""

from __future__ import annotations

from orchestrator.jobs.ports import UpdateBus

# Small enough that a test payload crosses it cheaply.
CONTRACT_MAX_MESSAGE_BYTES = 64 * 1024

BusPair = tuple[UpdateBus, UpdateBus]  # two replicas' buses on one channel
