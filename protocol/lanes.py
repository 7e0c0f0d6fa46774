"""The Redis set that lists a service's tenant lanes, shared by the orchestrator and the workers.

`baton:lanes:{service}` holds the tenant ids whose lane (`protocol.topology.lane_queue`) the
orchestrator declared. It writes a member before it first publishes to that lane and never removes
one; a worker reads the set when it starts and every so often, besides the `lane_opened` broadcast
(`protocol.control.LaneOpened`), so no lane goes unconsumed while a worker of its service runs.
"""

from __future__ import annotations

from typing import Final

from protocol.names import check_service_name

LANES_PREFIX: Final[str] = "baton:lanes"


def lanes_key(service: str) -> str:
    return f"{LANES_PREFIX}:{check_service_name(service)}"
