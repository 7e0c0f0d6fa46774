"""`baton retry ID`: a failed job runs again as a new job (contract B's POST /jobs/{job_id}/retry); on an
orchestrator without that route, the CLI says so."""

from __future__ import annotations

from orchestrator.http.routes import ROUTES
from tests.api_server import Api
from tests.cli.helpers import Baton

RETRY_ROUTE = "/jobs/{job_id}/retry"


def served() -> bool:
    return any(route.operation.path == RETRY_ROUTE for route in ROUTES)


async def test_retry_a_failed_job(api: Api, baton: Baton, worker: None) -> None:
    failed = await baton("submit", api.job_type, "--payload", '{"fail": "once"}', "--follow", "--json")
    assert failed.code == 1, failed
    old = failed.json_lines()[-1]
    assert old["status"] == "failed"

    ran = await baton("retry", old["job_id"])
    unknown = await baton("retry", "f00dfeed-0000-4000-8000-000000000000")

    assert unknown.code == 4, unknown
    if served():
        assert ran.code == 0, ran
        new_id = ran.out.strip()
        record = await (await api.client.get(f"/jobs/{new_id}", headers=api.headers_a)).json()
        assert new_id != old["job_id"] and record["retry_of"] == old["job_id"], record
        assert record["type"] == api.job_type
    else:
        assert ran.code == 4, ran
        assert ran.err == (
            "baton: error: 404 not_found: this orchestrator has no POST /jobs/{job_id}/retry (older than the CLI)\n"
        )
