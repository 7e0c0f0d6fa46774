"""In-memory twins of the job side's ports (orchestrator.jobs.ports), for unit tests without services.

Each keeps state and enforces the rules its contract suite (tests/contracts) checks on both it and
the real implementation; none is a mock.
"""
