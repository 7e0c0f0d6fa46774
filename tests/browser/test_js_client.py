"""The JS client (clients/js/baton.js) in Debian's chromium against a real orchestrator and a real worker.

Each test imports /static/baton.js into a page of the orchestrator's origin (conftest's `origin_page`) and
drives it with page scripts; the worker runs the test service's stepping handler (harness.stepping_worker).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, WebSocketRoute

from tests.api_server import Api
from tests.browser.harness import ErrorLog, load_client, open_blank
from tests.polling import poll
from tests.tcp_proxy import TcpProxy

# The browser's loop: conftest.
pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.asyncio(loop_scope="session")]

WITHIN = 60.0  # seconds a page script may take


async def run(page: Page, script: str, arg: Any = None) -> Any:
    return await asyncio.wait_for(page.evaluate(script, arg), WITHIN)


def assert_no_gap_and_no_duplicate(seen: list[dict[str, Any]]) -> None:
    """The messages of one job: a snapshot first, then every seq after it exactly once, in order."""
    assert seen and seen[0].get("type") == "job_snapshot", seen[:1]
    seqs = [message["seq"] for message in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def progress_of(seen: list[dict[str, Any]]) -> list[float]:
    return [
        message["data"]["progress"]["percentage"]
        for message in seen
        if message.get("event") == "task_status_update" and (message.get("data") or {}).get("progress")
    ]


async def test_http_calls_submit_batch_get_list_cancel(origin_page: Page, orchestrator: Api, api_key: str) -> None:
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (type) => {
            const quick = await baton.submit(type, { steps: 1 }, { priority: 7, sessionId: "s-1",
                                                               context: { request_id: "r-1" } });
            const waited = await baton.submit(type, { steps: 1 }, { wait: 10 });
            const batch = await baton.batch([{ type, payload: { steps: 1 } }, { type: "Not A Type!" },
                                             { type, payload: { steps: 1 }, sessionId: "s-batch" }]);
            const slow = await baton.submit(type, { steps: 100, delay: 0.2 });
            const cancelled = await baton.cancel(slow.job_id);
            const record = await baton.get(quick.job_id);
            const detailed = await baton.get(quick.job_id, { includePayload: true });
            const listed = await baton.list({ sessionId: "s-1", limit: 10 });
            const health = await baton.request("GET", "/health");
            const me = await baton.whoami();
            return { quick, waited, batch, cancelled, record, detailed, listed, health, slow, me };
        }""",
        orchestrator.job_type,
    )
    assert out["quick"]["status"] in ("queued", "running", "completed") and out["quick"]["created"] is True
    assert out["waited"]["status"] == "completed" and out["waited"]["result"] == {"steps": 1}
    batch = out["batch"]
    assert (batch["accepted"], batch["rejected"]) == (2, 1)
    assert [item.get("error") for item in batch["jobs"]] == [None, "validation_error", None]
    assert out["cancelled"] == {"job_id": out["slow"]["job_id"], "status": "cancelled"}
    record = out["record"]
    assert (record["job_id"], record["priority"], record["session_id"]) == (out["quick"]["job_id"], 7, "s-1")
    assert record["context"]["request_id"] == "r-1"
    assert "payload" not in record and out["detailed"]["payload"] == {"steps": 1}
    assert out["me"] == {"role": "tenant", "tenant_id": orchestrator.tenant_a}
    assert [job["job_id"] for job in out["listed"]["jobs"]] == [out["quick"]["job_id"]]
    assert out["health"]["status"] in ("ok", "degraded", "down")


async def test_watch_delivers_progress_in_order_and_done_resolves_with_the_record(
    origin_page: Page, orchestrator: Api, api_key: str
) -> None:
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (type) => {
            const accepted = await baton.submit(type, { steps: 5, delay: 0.15 });
            const seen = [];
            const watch = baton.watch(accepted.job_id, (msg) => seen.push(msg));
            const record = await watch.done;
            watch.close();
            return { accepted, seen, record, states: window.states };
        }""",
        orchestrator.job_type,
    )
    record, seen = out["record"], out["seen"]
    assert record["status"] == "completed" and record["result"] == {"steps": 5}
    assert record["job_id"] == out["accepted"]["job_id"]
    assert_no_gap_and_no_duplicate(seen)
    progress = progress_of(seen)
    assert progress == sorted(set(progress)) and progress[-1] == 100 and len(progress) >= 3, progress
    assert seen[-1]["job_status"] == "completed"
    assert out["states"][:2] == ["connecting", "open"]


async def test_a_second_watch_of_a_followed_job_gets_its_state_and_its_end(
    origin_page: Page, orchestrator: Api, api_key: str
) -> None:
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (type) => {
            const accepted = await baton.submit(type, { steps: 4, delay: 0.15 });
            const first = [], second = [];
            const one = baton.watch(accepted.job_id, (msg) => first.push(msg));
            await waitFor(() => first.length >= 2);
            const two = baton.watch(accepted.job_id, (msg) => second.push(msg));
            const [a, b] = await Promise.all([one.done, two.done]);
            const ended = baton.watch(accepted.job_id, () => {});  // a watch of a job that has ended
            const c = await ended.done;
            return { first, second, statuses: [a.status, b.status, c.status] };
        }""",
        orchestrator.job_type,
    )
    assert out["statuses"] == ["completed"] * 3
    for seen in (out["first"], out["second"]):
        seqs = [message["seq"] for message in seen]
        assert seqs == sorted(set(seqs)), seqs
    assert out["second"][0]["type"] == "job_snapshot"


async def test_watch_all_sees_every_job_of_the_tenant_and_no_other(
    origin_page: Page, orchestrator: Api, api_key: str
) -> None:
    await load_client(origin_page, api_key)
    await run(
        origin_page,
        """async () => {
            window.everything = [];
            window.all = baton.watchAll((msg) => everything.push(msg));
            await waitFor(() => baton.state === "open");
        }""",
    )
    others = await orchestrator.client.post(
        "/jobs", json={"type": orchestrator.job_type, "payload": {"steps": 2}}, headers=orchestrator.headers_b
    )
    assert others.status == 202
    other_id = (await others.json())["job_id"]
    ours = await orchestrator.client.post(
        "/jobs", json={"type": orchestrator.job_type, "payload": {"steps": 3}}, headers=orchestrator.headers_a
    )
    our_id = (await ours.json())["job_id"]

    async def other_status() -> str:
        answer = await orchestrator.client.get(f"/jobs/{other_id}", headers=orchestrator.headers_b)
        return str((await answer.json())["status"])

    await poll(other_status, lambda status: status == "completed", what="the other tenant's job completing")
    everything = await run(
        origin_page,
        """async (jobId) => {
            await waitFor(() => everything.some((m) => m.global_task_id === jobId && m.event === "task_completed"));
            all.close();
            return everything;
        }""",
        our_id,
    )
    jobs = {message.get("global_task_id") or message.get("job_id") for message in everything}
    assert jobs == {our_id}, jobs
    ours_seen = [message for message in everything if message.get("global_task_id") == our_id]
    seqs = [message["seq"] for message in ours_seen]
    assert seqs == sorted(set(seqs)) and len(progress_of(ours_seen)) == 3, seqs


async def test_a_workflow_is_started_and_followed_to_its_end(
    origin_page: Page, orchestrator: Api, api_key: str, unique: str
) -> None:
    workflow_id = f"wf-{unique}"
    steps = [
        {"name": "first", "type": orchestrator.job_type, "payload": {"steps": 2, "delay": 0.1}},
        {"name": "second", "type": orchestrator.job_type, "payload": {"steps": 2, "delay": 0.1}},
    ]
    stored = await orchestrator.client.put(
        f"/workflows/{workflow_id}", json={"name": "two steps", "steps": steps}, headers=orchestrator.headers_a
    )
    assert stored.status == 201, await stored.text()
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (workflowId) => {
            const accepted = await baton.startWorkflow(workflowId, { n: 1 }, { idempotencyKey: "once" });
            const again = await baton.startWorkflow(workflowId, { n: 1 }, { idempotencyKey: "once" });
            const seen = [];
            const follow = baton.followWorkflow(accepted.execution_id, (msg) => seen.push(msg));
            const record = await follow.done;
            return { accepted, again, seen, record };
        }""",
        workflow_id,
    )
    accepted, seen = out["accepted"], out["seen"]
    assert accepted["workflow_id"] == workflow_id and out["again"]["execution_id"] == accepted["execution_id"]
    assert out["record"]["status"] == "completed" and out["record"]["job_id"] == accepted["execution_id"]
    assert seen[0]["type"] == "job_snapshot" and "execution" in seen[0], seen[0]
    seqs = [message["seq"] for message in seen]
    assert seqs == sorted(set(seqs)), seqs
    # The execution's job ends with workflow_completed; its steps' task events leave it running.
    assert (seen[-1]["event"], seen[-1]["job_status"]) == ("workflow_completed", "completed"), seen[-1]
    step_ends = [message for message in seen if message.get("event") == "task_completed"]
    assert len(step_ends) == 2 and {message["job_status"] for message in step_ends} == {"running"}, step_ends


async def test_http_errors_are_baton_errors(
    origin_page: Page, orchestrator: Api, api_key: str, page_errors: ErrorLog
) -> None:
    page_errors.allow(r"status of (401|404|422) ")  # chromium logs every 4xx fetch; these are the test's
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async () => {
            const caught = async (call) => {
                try {
                    await call();
                    return null;
                } catch (e) {
                    return { baton: e instanceof BatonError, name: e.name, status: e.status, error: e.error,
                             detail: e.detail, retryAfter: e.retryAfter, message: e.message };
                }
            };
            const stranger = new Baton({ token: "not-a-key" });
            const missing = baton.watch("no-such-job", () => {});
            return {
                invalid: await caught(() => baton.submit("Not A Type!", {})),
                badPriority: await caught(() => baton.submit("some_type", {}, { priority: 99 })),
                unauthorized: await caught(() => stranger.get("anything")),
                notFound: await caught(() => baton.get("no-such-job")),
                watchMissing: await caught(() => missing.done),
                badId: await caught(() => baton.get("")),
                badCallback: await caught(async () => baton.watch("x")),
            };
        }""",
    )
    invalid = out["invalid"]
    assert (invalid["baton"], invalid["name"], invalid["status"], invalid["error"]) == (
        True,
        "BatonError",
        422,
        "validation_error",
    )
    assert isinstance(invalid["detail"], list) and invalid["detail"][0]["loc"][-1] == "type", invalid["detail"]
    assert (out["badPriority"]["status"], out["badPriority"]["error"]) == (422, "validation_error")
    assert (out["unauthorized"]["baton"], out["unauthorized"]["status"]) == (True, 401)
    assert out["unauthorized"]["error"] and out["unauthorized"]["retryAfter"] is None
    assert (out["notFound"]["status"], out["notFound"]["error"]) == (404, "job_not_found")
    assert (out["watchMissing"]["baton"], out["watchMissing"]["status"]) == (True, 404)
    assert (out["badId"]["status"], out["badId"]["error"]) == (0, "bad_argument")
    assert (out["badCallback"]["status"], out["badCallback"]["error"]) == (0, "bad_argument")


async def test_idempotent_gets_honour_retry_after_and_other_calls_are_never_retried(
    origin_page: Page, api_key: str, page_errors: ErrorLog
) -> None:
    """The orchestrator's quotas answer 429 on job creation only, so the 429s here are the page's own (routed)."""
    page_errors.allow(r"status of 429 ")
    answered: list[str] = []

    async def busy_then_fine(route: Any) -> None:
        answered.append(route.request.method)
        if len(answered) == 1 or route.request.method == "POST":
            await route.fulfill(
                status=429,
                headers={"Retry-After": "1"},
                content_type="application/json",
                body='{"error": "quota_exceeded", "detail": "slow down"}',
            )
        else:
            await route.fulfill(status=200, content_type="application/json", body='{"ok": true}')

    await origin_page.route("**/busy", busy_then_fine)
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async () => {
            const started = performance.now();
            const answer = await baton.request("GET", "/busy");
            const waited = performance.now() - started;
            let refused = null;
            try {
                await baton.request("POST", "/busy", { a: 1 });
            } catch (e) {
                refused = { status: e.status, error: e.error, detail: e.detail, retryAfter: e.retryAfter };
            }
            return { answer, waited, refused };
        }""",
    )
    assert out["answer"] == {"ok": True} and out["waited"] >= 950, out
    assert out["refused"] == {"status": 429, "error": "quota_exceeded", "detail": "slow down", "retryAfter": 1}
    assert answered == ["GET", "GET", "POST"]


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(orchestrator_url: str) -> AsyncIterator[TcpProxy]:
    host, port = orchestrator_url.removeprefix("http://").split(":")
    link = TcpProxy(host, int(port))
    await link.start()
    yield link
    await link.close()


async def test_a_cut_socket_resumes_with_every_seq_once(
    page: Page, orchestrator: Api, api_key: str, proxy: TcpProxy, page_errors: ErrorLog
) -> None:
    page_errors.allow(r"WebSocket connection to .* failed|ERR_CONNECTION|ERR_EMPTY_RESPONSE|Failed to fetch")
    await open_blank(page, f"http://127.0.0.1:{proxy.port}")  # the page, its requests and its socket: through it
    await load_client(page, api_key, reconnect={"initialMs": 100, "maxMs": 1000})
    await run(
        page,
        """async (type) => {
            const accepted = await baton.submit(type, { steps: 40, delay: 0.1 });
            window.seen = [];
            window.watched = baton.watch(accepted.job_id, (msg) => seen.push(msg));
            window.ended = watched.done.then((record) => record);
            await waitFor(() => seen.length >= 4);
        }""",
        orchestrator.job_type,
    )
    for cut in range(3):
        proxy.cut()
        await asyncio.sleep(0.4)  # the job goes on emitting while the client is away
        opened = cut + 2
        await run(page, "async (n) => waitFor(() => states.filter((s) => s === 'open').length >= n)", opened)
    out = await run(page, "async () => ({ record: await ended, seen, states })")
    assert out["record"]["status"] == "completed"
    seen = out["seen"]
    assert_no_gap_and_no_duplicate(seen)
    assert progress_of(seen)[-1] == 100
    assert [state for state in out["states"] if state != "connecting"][:2] == ["open", "reconnecting"]
    assert out["states"].count("reconnecting") >= 3 and out["states"][-1] == "open", out["states"]


async def test_without_websockets_events_arrive_by_polling(origin_page: Page, orchestrator: Api, api_key: str) -> None:
    await origin_page.evaluate("delete window.WebSocket")
    await load_client(origin_page, api_key, pollIntervalMs=200)
    out = await run(
        origin_page,
        """async (type) => {
            const everything = [];
            const all = baton.watchAll((msg) => everything.push(msg));
            const accepted = await baton.submit(type, { steps: 6, delay: 0.2 });
            const seen = [];
            const record = await baton.watch(accepted.job_id, (msg) => seen.push(msg)).done;
            const ended = (m) => m.job?.status === "completed" || m.job_status === "completed";
            await waitFor(() => everything.some((m) => (m.job_id ?? m.global_task_id) === accepted.job_id && ended(m)));
            all.close();
            return { record, seen, everything, states };
        }""",
        orchestrator.job_type,
    )
    assert out["record"]["status"] == "completed"
    assert out["states"] == ["polling"]
    assert_no_gap_and_no_duplicate(out["seen"])
    assert len([message for message in out["seen"] if "event" in message]) >= 4  # events, not only snapshots
    assert progress_of(out["seen"])[-1] == 100
    listed = [message["seq"] for message in out["everything"]]
    assert listed == sorted(set(listed)), listed  # one job: watchAll's snapshots and the watch's events, in order


async def test_a_refused_key_ends_watches_with_a_401(origin_page: Page, page_errors: ErrorLog) -> None:
    page_errors.allow(r"WebSocket connection to .* failed|status of 401 ")
    await load_client(origin_page, "not-a-key", pollIntervalMs=100, reconnect={"initialMs": 50, "maxMs": 200})
    out = await run(
        origin_page,
        """async () => {
            try {
                await baton.watch("some-job", () => {}).done;
                return null;
            } catch (e) {
                return { baton: e instanceof BatonError, status: e.status, states };
            }
        }""",
    )
    assert out is not None and out["baton"] and out["status"] == 401, out
    assert "polling" in out["states"], out


async def test_refused_sockets_fall_back_to_polling_and_switch_back(
    origin_page: Page, orchestrator: Api, api_key: str
) -> None:
    refusing = True

    async def gatekeeper(ws: WebSocketRoute) -> None:
        if refusing:
            await ws.close(code=1011, reason="refused by the test")
        else:
            ws.connect_to_server()

    await origin_page.route_web_socket("**/ws/task_updates*", gatekeeper)
    await load_client(
        origin_page, api_key, pollIntervalMs=200, reconnect={"initialMs": 50, "maxMs": 400, "failuresBeforePolling": 3}
    )
    await run(
        origin_page,
        """async (type) => {
            const accepted = await baton.submit(type, { steps: 30, delay: 0.1 });
            window.seen = [];
            window.ended = baton.watch(accepted.job_id, (msg) => seen.push(msg)).done;
            await waitFor(() => baton.state === "polling" && seen.some((m) => m.event));
        }""",
        orchestrator.job_type,
    )
    refusing = False
    out = await run(
        origin_page,
        """async () => {
            await waitFor(() => baton.state === "open");
            const record = await ended;
            return { record, seen, states };
        }""",
    )
    assert out["record"]["status"] == "completed"
    assert_no_gap_and_no_duplicate(out["seen"])
    states = out["states"]
    assert states[:2] == ["connecting", "reconnecting"] and "polling" in states, states
    assert states.index("open") > states.index("polling"), states


@pytest.mark.timeout(240)
async def test_a_thousand_jobs_watched_all_lose_no_event(origin_page: Page, orchestrator: Api, api_key: str) -> None:
    """The issue's figure: 1,000 jobs made in one batch and watched in the browser, events dropped: 0.

    The page's WebSocket is wrapped to count the seqs missing on the wire (the client fetches them from the
    job's history): that figure is printed, the client's must be none."""
    await origin_page.evaluate(
        """() => {
            window.wire = new Map();
            window.wireGaps = 0;
            window.wireFrames = 0;
            window.wireBatched = 0; // messages that came in {type: "events"} frames
            const Native = window.WebSocket;
            window.WebSocket = class extends Native {
                constructor(...args) {
                    super(...args);
                    this.addEventListener("message", (event) => {
                        const frame = JSON.parse(event.data);
                        wireFrames += 1;
                        const carried = frame.type === "events" ? frame.events : [frame];
                        if (frame.type === "events") wireBatched += carried.length;
                        for (const msg of carried) {
                            const jobId = msg.job_id ?? msg.global_task_id;
                            if (typeof msg.seq !== "number" || !jobId) continue;
                            const last = wire.get(jobId);
                            if (last !== undefined && msg.seq !== last + 1) wireGaps += 1;
                            wire.set(jobId, Math.max(last ?? 0, msg.seq));
                        }
                    });
                }
            };
        }"""
    )
    await load_client(origin_page, api_key)
    out = await asyncio.wait_for(
        origin_page.evaluate(
            """async (type) => {
                const byJob = new Map();
                const ended = new Set();
                const all = baton.watchAll((msg) => {
                    const jobId = msg.job_id ?? msg.global_task_id;
                    if (!byJob.has(jobId)) byJob.set(jobId, []);
                    byJob.get(jobId).push(msg.seq);
                    if (msg.job_status === "completed") ended.add(jobId);
                });
                await waitFor(() => baton.state === "open");
                const started = performance.now();
                const jobs = Array.from({ length: 1000 }, () => ({ type, payload: { steps: 1 } }));
                const batch = await baton.batch(jobs);
                const ids = batch.jobs.map((item) => item.job_id);
                const allEnded = () => ids.every((id) => ended.has(id));
                const finished = await waitFor(allEnded, 200000).then(() => true, () => false);
                const seconds = (performance.now() - started) / 1000;
                all.close();
                const seqs = ids.map((id) => byJob.get(id) ?? []);
                return {
                    accepted: batch.accepted, finished, ended: ended.size, seconds, wireGaps, wireFrames, wireBatched,
                    seqs, states,
                };
            }""",
            orchestrator.job_type,
        ),
        220,
    )
    assert out["accepted"] == 1000
    seen_ending = f"{out['ended']} of 1,000 jobs seen ending in {out['seconds']:.0f} s"
    assert out["finished"], f"{seen_ending}; the client's states: {out['states']}"
    gaps = [seqs for seqs in out["seqs"] if seqs != list(range(1, len(seqs) + 1))]
    assert not gaps, gaps[:3]
    events = sum(len(seqs) for seqs in out["seqs"])
    print(
        f"1,000 jobs watched in the browser: {events} events in {out['seconds']:.1f} s, dropped: 0 "
        f"({out['wireGaps']} seq gaps on the socket filled from the jobs' history; {out['wireFrames']} frames, "
        f"{out['wireBatched']} messages in batched ones)"
    )
    assert out["wireBatched"] > 0, "the client asks for batched frames: some of 1,000 jobs' events share one"


async def test_an_event_lost_on_the_socket_is_fetched_from_the_history(
    origin_page: Page, orchestrator: Api, api_key: str
) -> None:
    # The page's WebSocket loses the progress event of step 2 on its way to the client.
    await origin_page.evaluate(
        """() => {
            window.lost = [];
            const Native = window.WebSocket;
            window.WebSocket = class extends Native {
                set onmessage(handler) {
                    super.onmessage = (event) => {
                        const frame = JSON.parse(event.data);
                        const batched = frame.type === "events";
                        const kept = (batched ? frame.events : [frame]).filter((msg) => {
                            if (lost.length > 0 || msg.data?.progress?.message !== "step 2") return true;
                            lost.push(msg.seq);
                            return false;
                        });
                        if (kept.length === 0) return;
                        const data = batched ? JSON.stringify({ type: "events", events: kept }) : event.data;
                        handler(new MessageEvent("message", { data }));
                    };
                }
            };
        }"""
    )
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (type) => {
            const accepted = await baton.submit(type, { steps: 5, delay: 0.15 });
            const seen = [];
            const record = await baton.watch(accepted.job_id, (msg) => seen.push(msg)).done;
            return { record, seen, lost };
        }""",
        orchestrator.job_type,
    )
    assert out["record"]["status"] == "completed"
    assert len(out["lost"]) == 1
    assert_no_gap_and_no_duplicate(out["seen"])
    assert out["lost"][0] in [message["seq"] for message in out["seen"]]
    assert progress_of(out["seen"]) == [20, 40, 60, 80, 100]


async def test_reconnect_delays_grow_exponentially_with_jitter_up_to_the_cap(origin_page: Page, api_key: str) -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def refuse(ws: WebSocketRoute) -> None:
        attempts.append(loop.time())
        await ws.close(code=1011, reason="refused by the test")

    await origin_page.route_web_socket("**/ws/task_updates*", refuse)
    backoff = {"initialMs": 200, "maxMs": 800, "failuresBeforePolling": 2}
    await load_client(origin_page, api_key, pollIntervalMs=60000, reconnect=backoff)
    await run(origin_page, "async () => { baton.watchAll(() => {}); }")
    await poll(lambda: asyncio.sleep(0, len(attempts)), lambda count: count >= 7, within=20, what="7 socket attempts")
    delays = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    ceilings = [0.2, 0.4, 0.8, 0.8, 0.8, 0.8]  # initialMs doubled per failure, capped at maxMs
    for delay, ceiling in zip(delays, ceilings, strict=False):
        assert ceiling / 2 - 0.05 <= delay <= ceiling + 0.25, (delays, ceilings)
    assert len({round(delay, 2) for delay in delays[2:6]}) > 1, delays  # jitter: the capped delays differ
    states = await origin_page.evaluate("states")
    assert states[:3] == ["connecting", "reconnecting", "polling"], states
    await origin_page.evaluate("baton.close()")
    assert (await origin_page.evaluate("[baton.state, states.at(-1)]")) == ["closed", "closed"]


async def test_retry_runs_an_ended_job_again_and_list_filters_by_creation_time(
    origin_page: Page, orchestrator: Api, api_key: str, page_errors: ErrorLog
) -> None:
    page_errors.allow(r"status of 409 ")
    await load_client(origin_page, api_key)
    out = await run(
        origin_page,
        """async (type) => {
            const before = new Date(Date.now() - 1000);
            const slow = await baton.submit(type, { steps: 100, delay: 0.2 }, { sessionId: "s-retry" });
            await baton.cancel(slow.job_id);
            const again = await baton.retry(slow.job_id);
            const record = await baton.get(again.job_id);
            await baton.cancel(again.job_id);
            let refused = null;
            try {
                await baton.retry((await baton.submit(type, { steps: 0 }, { wait: 10 })).job_id);
            } catch (e) {
                refused = { status: e.status, error: e.error };
            }
            const recent = await baton.list({ sessionId: "s-retry", createdAfter: before });
            const none = await baton.list({ sessionId: "s-retry", createdBefore: before });
            return { slow, again, record, refused, recent, none };
        }""",
        orchestrator.job_type,
    )
    assert out["again"]["job_id"] != out["slow"]["job_id"]
    assert out["record"]["retry_of"] == out["slow"]["job_id"] and out["record"]["session_id"] == "s-retry"
    assert out["refused"] == {"status": 409, "error": "not_retryable"}
    assert [job["job_id"] for job in out["recent"]["jobs"]] == [out["again"]["job_id"], out["slow"]["job_id"]]
    assert out["recent"]["total"] == 2 and out["none"]["jobs"] == []
