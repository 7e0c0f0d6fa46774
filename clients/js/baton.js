// Baton's browser client: a dependency-free ES module (no build step), served by the orchestrator at
// /static/baton.js. Types: baton.d.ts next to it; the JSDoc here says the same.
//
//   import { Baton, BatonError } from "/static/baton.js";
//   const baton = new Baton({ token });
//   const { job_id } = await baton.submit("echo", { text: "hi" });
//   const watch = baton.watch(job_id, (msg) => console.log(msg));
//   const record = await watch.done;
//
// Live updates share one WebSocket per Baton (/ws/task_updates?batch=1: messages that wait together on the
// server come as one {type: "events", events: [...]} frame, unpacked here in order). The client keeps the
// last seq of every job it has seen and drops anything not newer, so a message is never delivered twice. When the socket
// drops it reconnects with exponential backoff and jitter and subscribes again with `since` (the server
// replays what was missed from its per-job history). When the socket keeps failing, or the browser has no
// WebSocket, it polls GET /jobs/{id}/events for watched jobs and GET /jobs for watchAll, while it keeps
// trying the socket at the longest backoff, and goes back to it as soon as it opens.

const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
// Events that may end a job: a task's end ends the job only when it is the root task's (job_status says).
const ENDING_EVENTS = new Set(["task_completed", "task_failed", "task_cancelled", "workflow_completed", "workflow_failed"]);
const DEFAULT_RECONNECT = { initialMs: 500, maxMs: 15000, failuresBeforePolling: 3 };
const DEFAULT_POLL_INTERVAL_MS = 2000;
const DEFAULT_PING_INTERVAL_MS = 20000;
const CONNECT_TIMEOUT_MS = 10000; // a socket not established by then (a black-holed link) counts as failed
const GET_RETRIES = 3; // idempotent GETs only: after a 429/503 (honouring Retry-After) or a network failure
const MAX_RETRY_AFTER_MS = 30000;
const MAX_KNOWN_JOBS = 10000; // last seqs kept (oldest forgotten first)
const MAX_JOBS_PER_MESSAGE = 1000; // the server's cap on the job ids (and `since` entries) of one message
const WATCH_ALL_PAGE = 100; // jobs per GET /jobs poll in polling mode

/** @typedef {"connecting" | "open" | "reconnecting" | "polling" | "closed"} ConnectionState */

/**
 * An HTTP error answer of the orchestrator (or a network failure: status 0).
 * `error` is the API's machine-readable code, `detail` its explanation (422: pydantic's error list),
 * `retryAfter` the Retry-After header in seconds when there was one, `body` the whole JSON answer.
 */
export class BatonError extends Error {
  /**
   * @param {number} status
   * @param {string} error
   * @param {unknown} detail
   * @param {{ retryAfter?: number | null, body?: unknown }} [extra]
   */
  constructor(status, error, detail, extra = {}) {
    super(`${status ? status + " " : ""}${error}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.name = "BatonError";
    /** @type {number} */ this.status = status;
    /** @type {string} */ this.error = error;
    /** @type {unknown} */ this.detail = detail;
    /** @type {number | null} */ this.retryAfter = extra.retryAfter ?? null;
    /** @type {unknown} */ this.body = extra.body ?? null;
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Delivers to user code without letting its exceptions break the client: they surface as uncaught errors. */
function deliver(callback, value) {
  try {
    callback(value);
  } catch (err) {
    setTimeout(() => {
      throw err;
    }, 0);
  }
}

/** @param {Record<string, unknown>} fields */
function withoutUndefined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** @param {unknown} value */
function isoTime(value) {
  return value instanceof Date ? value.toISOString() : value;
}

/** A job spec in the API's words from the client's (camelCase options); other keys pass through. */
function jobSpec({ type, payload, priority, sessionId, context, timeoutMs, idempotencyKey, cache, wait, ...rest }) {
  return withoutUndefined({
    ...rest,
    type,
    payload: payload ?? {},
    priority,
    session_id: sessionId,
    context,
    timeout_ms: timeoutMs,
    idempotency_key: idempotencyKey,
    cache,
    wait,
  });
}

/** @param {string | null} header seconds or an HTTP date */
function parseRetryAfter(header) {
  if (header === null || header === "") return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const when = Date.parse(header);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

/** The job a live message is about: snapshots say job_id, events global_task_id. */
function jobOf(msg) {
  return msg.job_id ?? msg.global_task_id ?? null;
}

/** The job status a message leaves the job in. */
function statusOf(msg) {
  if (msg.type === "job_snapshot") return msg.job?.status ?? null;
  return msg.job_status ?? null;
}

/**
 * A watch of one job: `done` resolves with the job's final record once it ends (rejects with a BatonError
 * when the job does not exist or the watch is closed first); `close()` stops it.
 */
class Watch {
  /**
   * @param {LiveUpdates} live
   * @param {string} jobId
   * @param {(msg: object) => void} onMessage
   */
  constructor(live, jobId, onMessage) {
    this.jobId = jobId;
    this._live = live;
    this._onMessage = onMessage;
    this._settled = false;
    this._lastSeq = -1; // what this watch was given last: a snapshot fetched for it alone may run ahead
    /** @type {Promise<object>} */
    this.done = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.done.catch(() => {}); // a caller that never awaits `done` must not see an unhandled rejection
  }

  close() {
    this._live.removeWatch(this);
    this._fail(new BatonError(0, "closed", "the watch was closed before the job ended"));
  }

  _receive(msg) {
    if (msg.seq <= this._lastSeq) return;
    this._lastSeq = msg.seq;
    deliver(this._onMessage, msg);
  }

  _finish(record) {
    if (this._settled) return;
    this._settled = true;
    this._resolve(record);
  }

  _fail(error) {
    if (this._settled) return;
    this._settled = true;
    this._reject(error);
  }
}

/** Every job of the tenant: `close()` stops it. */
class WatchAll {
  /** @param {LiveUpdates} live @param {(msg: object) => void} onMessage */
  constructor(live, onMessage) {
    this._live = live;
    this._onMessage = onMessage;
  }

  close() {
    this._live.removeWatchAll(this);
  }

  _receive(msg) {
    deliver(this._onMessage, msg);
  }
}

/** The one socket of a Baton, its watches, the last seq per job, and the polling fallback. */
class LiveUpdates {
  /** @param {Baton} baton @param {object} options */
  constructor(baton, options) {
    this._baton = baton;
    this._reconnect = { ...DEFAULT_RECONNECT, ...(options.reconnect ?? {}) };
    this._pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this._pingIntervalMs = options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this._WebSocket = options.WebSocket !== undefined ? options.WebSocket : globalThis.WebSocket;
    /** @type {Map<string, Set<Watch>>} */ this._watches = new Map();
    /** @type {Set<WatchAll>} */ this._watchAlls = new Set();
    /** @type {Map<string, number>} */ this._lastSeq = new Map();
    /** @type {Map<string, string>} */ this._status = new Map();
    /** @type {Map<string, object[]>} */ this._filling = new Map(); // jobs whose gap is being filled: held messages
    /** @type {Set<(state: ConnectionState) => void>} */ this._stateListeners = new Set();
    /** @type {ConnectionState} */ this.state = "closed";
    this._socket = null;
    this._established = false;
    this._failures = 0; // consecutive attempts that never reached connection_established
    this._retryTimer = null;
    this._pingTimer = null;
    this._connectTimer = null;
    this._heardAt = 0;
    this._polling = false;
    this._pollTimer = null;
    this._pollRunning = false;
    this._started = false;
    this._everOpened = false;
    this._closed = false;
  }

  // --- watches ---------------------------------------------------------------------------------------

  addWatch(watch) {
    let watchers = this._watches.get(watch.jobId);
    const first = watchers === undefined;
    if (first) {
      watchers = new Set();
      this._watches.set(watch.jobId, watchers);
    }
    watchers.add(watch);
    const known = this._lastSeq.has(watch.jobId);
    this._ensureStarted();
    if (first) {
      this._send(this._subscription([watch.jobId]));
      if (this._polling && !known) this._pollJob(watch.jobId);
    }
    if (!first || known) {
      // The job was followed already (by another watch, or watchAll): the server will only send what is newer
      // than what the client holds, so this watch learns the job's state from a fresh record.
      this._baton.get(watch.jobId).then(
        (job) => {
          watch._receive({ type: "job_snapshot", job_id: watch.jobId, seq: job.seq, job });
          if (TERMINAL.has(job.status)) watch._finish(job);
        },
        (err) => this._failWatchers(watch.jobId, err, [watch]),
      );
    }
  }

  removeWatch(watch) {
    const watchers = this._watches.get(watch.jobId);
    if (!watchers || !watchers.delete(watch)) return;
    if (watchers.size === 0) {
      this._watches.delete(watch.jobId);
      this._send({ type: "unsubscribe", job_ids: [watch.jobId] });
    }
  }

  addWatchAll(watchAll) {
    const first = this._watchAlls.size === 0;
    this._watchAlls.add(watchAll);
    this._ensureStarted();
    if (first) this._send({ type: "subscribe", all: true });
  }

  removeWatchAll(watchAll) {
    if (this._watchAlls.delete(watchAll) && this._watchAlls.size === 0) {
      this._send({ type: "unsubscribe", all: true });
    }
  }

  get closed() {
    return this._closed;
  }

  /** @param {(state: ConnectionState) => void} listener */
  onState(listener) {
    this._stateListeners.add(listener);
    return () => this._stateListeners.delete(listener);
  }

  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._connectTimer);
    this._stopPolling();
    this._stopPinging();
    if (this._socket) {
      const socket = this._socket;
      this._socket = null;
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(1000, "client closed");
    }
    for (const watchers of this._watches.values()) {
      for (const watch of watchers) watch._fail(new BatonError(0, "closed", "the client was closed"));
    }
    this._watches.clear();
    this._watchAlls.clear();
    this._setState("closed");
  }

  // --- the one path of every message: drop what is not newer, then deliver ------------------------------

  _dispatch(msg) {
    const jobId = jobOf(msg);
    if (typeof jobId !== "string" || typeof msg.seq !== "number") return;
    const filling = this._filling.get(jobId);
    if (filling) {
      filling.push(msg); // delivered in seq order once the history has filled the gap
      return;
    }
    const last = this._lastSeq.get(jobId);
    if (last !== undefined && msg.seq <= last) return;
    if (last !== undefined && msg.seq > last + 1 && msg.type !== "job_snapshot") {
      this._fillGap(jobId, last, msg);
      return;
    }
    this._deliver(jobId, msg);
  }

  /**
   * An event came with seqs missing before it (the socket dropped or reordered some): the job's history on the
   * server has them; fetch them, then deliver everything in seq order. What the history no longer holds is
   * skipped (the messages after it still carry the job's state).
   */
  async _fillGap(jobId, last, msg) {
    const waiting = [msg];
    this._filling.set(jobId, waiting);
    try {
      const page = await this._baton.events(jobId, last);
      waiting.push(...(page.events ?? []));
    } catch {
      // No history to be had (an older server, the network): deliver what there is.
    } finally {
      this._filling.delete(jobId);
    }
    waiting.sort((a, b) => a.seq - b.seq);
    for (const held of waiting) {
      const known = this._lastSeq.get(jobId);
      if (known === undefined || held.seq > known) this._deliver(jobId, held);
    }
  }

  _deliver(jobId, msg) {
    this._remember(jobId, msg.seq, statusOf(msg));
    const watchers = this._watches.get(jobId);
    if (watchers) for (const watch of watchers) watch._receive(msg);
    for (const watchAll of this._watchAlls) watchAll._receive(msg);
    if (!watchers) return;
    const status = statusOf(msg);
    if (TERMINAL.has(status)) {
      this._finishWatchers(jobId, msg);
    } else if (status === null && ENDING_EVENTS.has(msg.event)) {
      // A server that does not say the job's status after the event: the record does.
      this._baton.get(jobId).then(
        (job) => {
          if (!TERMINAL.has(job.status)) return;
          this._status.set(jobId, job.status);
          this._finishWatchers(jobId, { type: "job_snapshot", job });
        },
        () => {},
      );
    }
  }

  _remember(jobId, seq, status) {
    this._lastSeq.delete(jobId); // re-inserted last: the Map's order is the eviction order
    this._lastSeq.set(jobId, seq);
    if (status) this._status.set(jobId, status);
    if (this._lastSeq.size > MAX_KNOWN_JOBS) {
      const oldest = this._lastSeq.keys().next().value;
      if (!this._watches.has(oldest)) {
        this._lastSeq.delete(oldest);
        this._status.delete(oldest);
      }
    }
  }

  _finishWatchers(jobId, msg) {
    const settle = (job) => {
      for (const watch of this._watches.get(jobId) ?? []) watch._finish(job);
    };
    if (msg.type === "job_snapshot" && msg.job) {
      settle(msg.job);
      return;
    }
    // An event says how the job ended but is not its record: fetch the record (result, error, times).
    this._baton.get(jobId).then(settle, (err) => this._failWatchers(jobId, err));
  }

  _failWatchers(jobId, err, only) {
    for (const watch of only ?? this._watches.get(jobId) ?? []) {
      watch._fail(err);
      this.removeWatch(watch);
    }
  }

  // --- the socket -----------------------------------------------------------------------------------------

  _ensureStarted() {
    if (this._started || this._closed) return;
    this._started = true;
    if (typeof this._WebSocket !== "function") {
      this._startPolling(); // no WebSocket in this environment: polling is all there is
      return;
    }
    this._connect();
  }

  _socketUrl() {
    const url = new URL(`${this._baton.baseUrl}/ws/task_updates`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this._baton.token) url.searchParams.set("token", this._baton.token);
    url.searchParams.set("batch", "1"); // what waits together comes as one {type: "events"} frame
    return url.toString();
  }

  _connect() {
    if (this._closed) return;
    if (!this._polling) this._setState(this._failures === 0 && !this._everOpened ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new this._WebSocket(this._socketUrl());
    } catch {
      this._onSocketGone(null);
      return;
    }
    this._socket = socket;
    this._established = false;
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (socket !== this._socket || this._established) return;
      socket.close();
      this._onSocketGone(socket);
    }, CONNECT_TIMEOUT_MS);
    socket.onmessage = (event) => this._onSocketMessage(socket, event);
    socket.onclose = () => this._onSocketGone(socket);
    socket.onerror = () => {}; // onclose follows; the browser logs the failure itself
  }

  _onSocketMessage(socket, event) {
    if (socket !== this._socket) return;
    this._heardAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return; // not ours to understand
    }
    if (msg === null || typeof msg !== "object") return;
    if (msg.type !== "events") {
      this._onServerMessage(msg);
      return;
    }
    // A batched frame: the messages it carries, in order, each as it would have come alone.
    for (const carried of Array.isArray(msg.events) ? msg.events : []) {
      if (socket !== this._socket) return; // a callback closed the client or the socket
      if (carried !== null && typeof carried === "object") this._onServerMessage(carried);
    }
  }

  _onServerMessage(msg) {
    if (msg.type === "connection_established") {
      this._onEstablished();
    } else if (msg.type === "job_snapshot" || msg.type === undefined) {
      this._dispatch(msg);
    } else if (msg.type === "error") {
      this._onServerError(msg);
    }
    // pong, cancel_result: nothing to do
  }

  _onEstablished() {
    const resumed = this._everOpened;
    clearTimeout(this._connectTimer);
    this._established = true;
    this._everOpened = true;
    this._failures = 0;
    this._stopPolling();
    this._setState("open");
    this._startPinging();
    const watched = [...this._watches.keys()];
    for (let start = 0; start < watched.length; start += MAX_JOBS_PER_MESSAGE) {
      this._send(this._subscription(watched.slice(start, start + MAX_JOBS_PER_MESSAGE)));
    }
    if (this._watchAlls.size > 0) {
      this._send(this._allSubscription());
      // `since` resumes the jobs the client knew; the newest jobs' records show those made while it was away.
      if (resumed) this._pollAll({ onlyNew: true });
    }
  }

  _onServerError(msg) {
    // A subscription to a job that does not exist (or is another tenant's) answers not_found naming the job.
    if (msg.error === "not_found" && typeof msg.detail === "string") {
      for (const jobId of this._watches.keys()) {
        if (msg.detail === `job ${jobId} not found`) {
          this._failWatchers(jobId, new BatonError(404, "job_not_found", msg.detail, { body: msg }));
        }
      }
    }
  }

  _onSocketGone(socket) {
    if (socket !== null && socket !== this._socket) return;
    this._socket = null;
    this._stopPinging();
    clearTimeout(this._connectTimer);
    if (this._closed) return;
    if (!this._established) this._failures += 1;
    this._established = false;
    if (this._failures >= this._reconnect.failuresBeforePolling && !this._polling) this._startPolling();
    const delay = this._backoff();
    if (!this._polling) this._setState("reconnecting");
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  /** Exponential in the consecutive failures, capped at maxMs, with jitter (between half and all of it). */
  _backoff() {
    const { initialMs, maxMs } = this._reconnect;
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, this._failures - 1));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  _startPinging() {
    this._stopPinging();
    this._heardAt = Date.now();
    this._pingTimer = setInterval(() => {
      const socket = this._socket;
      if (!socket) return;
      if (Date.now() - this._heardAt > 2 * this._pingIntervalMs) {
        socket.close(4000, "no answer to pings"); // a dead link that TCP has not noticed: start again
        this._onSocketGone(socket);
        return;
      }
      this._send({ type: "ping" });
    }, this._pingIntervalMs);
  }

  _stopPinging() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _send(msg) {
    const socket = this._socket;
    if (!socket || !this._established || socket.readyState !== 1) return; // sent again on connection_established
    socket.send(JSON.stringify(msg));
  }

  _subscription(jobIds) {
    const since = {};
    for (const jobId of jobIds) {
      const seq = this._lastSeq.get(jobId);
      if (seq !== undefined) since[jobId] = seq;
    }
    return withoutUndefined({ type: "subscribe", job_ids: jobIds, since: Object.keys(since).length ? since : undefined });
  }

  _allSubscription() {
    // Resume the jobs seen most recently that had not ended; ended ones have nothing more to say.
    const since = {};
    const known = [...this._lastSeq.entries()].reverse();
    for (const [jobId, seq] of known) {
      if (Object.keys(since).length >= MAX_JOBS_PER_MESSAGE) break;
      if (!TERMINAL.has(this._status.get(jobId))) since[jobId] = seq;
    }
    return withoutUndefined({ type: "subscribe", all: true, since: Object.keys(since).length ? since : undefined });
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this._stateListeners) deliver(listener, state);
  }

  // --- polling fallback ------------------------------------------------------------------------------------

  _startPolling() {
    if (this._polling || this._closed) return;
    this._polling = true;
    this._setState("polling");
    const tick = async () => {
      if (!this._polling) return;
      await this._pollOnce();
      if (this._polling) this._pollTimer = setTimeout(tick, this._pollIntervalMs);
    };
    tick();
  }

  _stopPolling() {
    this._polling = false;
    clearTimeout(this._pollTimer);
    this._pollTimer = null;
  }

  async _pollOnce() {
    if (this._pollRunning) return;
    this._pollRunning = true;
    try {
      const jobs = [...this._watches.keys()].filter((jobId) => !TERMINAL.has(this._status.get(jobId)));
      await Promise.all(jobs.map((jobId) => this._pollJob(jobId)));
      if (this._watchAlls.size > 0 && this._polling) await this._pollAll();
    } finally {
      this._pollRunning = false;
    }
  }

  async _pollJob(jobId) {
    try {
      const since = this._lastSeq.get(jobId);
      if (since === undefined) {
        // First sight of the job, as the socket would give it: its current state.
        await this._pollRecord(jobId);
        return;
      }
      const page = await this._baton.events(jobId, since);
      for (const msg of page.events ?? []) this._dispatch(msg);
      // The history no longer reaches back to since+1: the record says where the job is now.
      if (page.complete === false) await this._pollRecord(jobId);
    } catch (err) {
      if (err instanceof BatonError && (err.status === 401 || err.status === 403)) {
        this._failWatchers(jobId, err); // the key is refused: polling again will not change that
      } else if (err instanceof BatonError && err.status === 404) {
        if (err.error === "job_not_found") {
          this._failWatchers(jobId, err);
        } else {
          await this._pollRecord(jobId).catch((missing) => this._failWatchers(jobId, missing)); // no events route
        }
      }
      // Anything else (the server is restarting, the network is down): try again next round.
    }
  }

  async _pollRecord(jobId) {
    const job = await this._baton.get(jobId);
    this._dispatch({ type: "job_snapshot", job_id: jobId, seq: job.seq, job });
  }

  /**
   * watchAll's view from the newest jobs' records. A job watched on its own is left out: its events come (by
   * socket or by polling its history) and a record running ahead of them would make the older ones look stale.
   * With `onlyNew`, so are the jobs the client knows: the socket's `since` replays their events.
   */
  async _pollAll({ onlyNew = false } = {}) {
    try {
      const page = await this._baton.list({ limit: WATCH_ALL_PAGE });
      // Oldest first, so listeners see the jobs in the order they were made.
      for (const job of [...(page.jobs ?? [])].reverse()) {
        if (this._watches.has(job.job_id) || (onlyNew && this._lastSeq.has(job.job_id))) continue;
        this._dispatch({ type: "job_snapshot", job_id: job.job_id, seq: job.seq, job });
      }
    } catch {
      // Try again next round.
    }
  }
}

/** The client: HTTP calls, and live updates over one shared WebSocket with a polling fallback. */
export class Baton {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] the orchestrator's origin; default: the page's (location.origin)
   * @param {string} [options.token] the API key (Bearer on HTTP, ?token= on the socket)
   * @param {{initialMs?: number, maxMs?: number, failuresBeforePolling?: number}} [options.reconnect]
   * @param {number} [options.pollIntervalMs] between polls when the socket is down (2000)
   * @param {number} [options.pingIntervalMs] between pings on an open socket (20000): silence for two of
   *   them means a dead link
   * @param {typeof fetch} [options.fetch] what makes HTTP requests (default: the global fetch)
   * @param {typeof WebSocket | null} [options.WebSocket] the WebSocket class; null: polling only
   */
  constructor(options = {}) {
    const base = options.baseUrl ?? globalThis.location?.origin;
    if (!base) throw new BatonError(0, "bad_option", "baseUrl is required outside a browser page");
    /** @type {string} */ this.baseUrl = String(base).replace(/\/+$/, "");
    /** @type {string | undefined} */ this.token = options.token;
    const fetcher = options.fetch ?? globalThis.fetch;
    if (typeof fetcher !== "function") throw new BatonError(0, "bad_option", "no fetch: pass options.fetch");
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._live = new LiveUpdates(this, options);
  }

  /** @returns {ConnectionState} */
  get state() {
    return this._live.state;
  }

  // --- HTTP ------------------------------------------------------------------------------------------------

  /**
   * Any route: `body` is sent as JSON; a JSON answer is parsed (204: null). Idempotent GETs are retried a
   * few times after a 429 or 503 (waiting Retry-After) or a network failure; other methods never are.
   * @param {string} method
   * @param {string} path e.g. "/queues"; may carry a query
   * @param {unknown} [body]
   * @param {Record<string, unknown>} [query] added to the path; undefined and null values are left out
   * @returns {Promise<any>}
   */
  async request(method, path, body, query) {
    const verb = String(method).toUpperCase();
    const url = new URL(String(path).startsWith("/") ? this.baseUrl + path : path, `${this.baseUrl}/`);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(isoTime(value)));
    }
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const init = { method: verb, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    const retries = verb === "GET" ? GET_RETRIES : 0;
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await this._fetch(url.toString(), init);
      } catch (err) {
        if (attempt < retries) {
          await sleep(this._retryDelay(attempt, null));
          continue;
        }
        throw new BatonError(0, "network_error", String(err?.message ?? err));
      }
      if (response.ok) return this._answer(response);
      const error = await this._error(response);
      if (attempt < retries && (response.status === 429 || response.status === 503)) {
        await sleep(this._retryDelay(attempt, error.retryAfter));
        continue;
      }
      throw error;
    }
  }

  _retryDelay(attempt, retryAfter) {
    if (retryAfter !== null && retryAfter !== undefined) return Math.min(MAX_RETRY_AFTER_MS, retryAfter * 1000);
    return Math.min(MAX_RETRY_AFTER_MS, 250 * 2 ** attempt * (0.5 + Math.random() / 2));
  }

  async _answer(response) {
    if (response.status === 204) return null;
    const text = await response.text();
    if (text === "") return null;
    const type = response.headers.get("Content-Type") ?? "";
    if (!type.includes("json")) return text;
    try {
      return JSON.parse(text);
    } catch {
      throw new BatonError(response.status, "bad_response", `the answer is not the JSON it says it is: ${text.slice(0, 200)}`);
    }
  }

  async _error(response) {
    const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
    let body = null;
    try {
      body = JSON.parse(await response.text());
    } catch {
      // not JSON: a proxy's page
    }
    const error = body && typeof body.error === "string" ? body.error : `http_${response.status}`;
    const detail = body && "detail" in body ? body.detail : response.statusText;
    return new BatonError(response.status, error, detail, { retryAfter, body });
  }

  /**
   * Create a job (POST /jobs): the options are the body's fields in camelCase.
   * @param {string} type
   * @param {Record<string, unknown>} [payload]
   * @param {object} [options] priority, sessionId, context, timeoutMs, idempotencyKey, cache, wait
   */
  submit(type, payload = {}, options = {}) {
    return this.request("POST", "/jobs", jobSpec({ ...options, type, payload }));
  }

  /** Create many jobs at once (POST /jobs/batch): each item is {type, payload, ...submit's options}. */
  batch(jobs) {
    if (!Array.isArray(jobs)) throw new BatonError(0, "bad_argument", "batch takes an array of jobs");
    return this.request("POST", "/jobs/batch", { jobs: jobs.map((job) => jobSpec(job)) });
  }

  /**
   * A job's record (GET /jobs/{id}); with `{ includePayload: true }` also its `payload` (null when the
   * server no longer keeps the job's task).
   * @param {string} jobId @param {{includePayload?: boolean}} [options]
   */
  get(jobId, options = {}) {
    const include = options.includePayload ? "payload" : undefined;
    return this.request("GET", `/jobs/${this._id(jobId)}`, undefined, { include });
  }

  /** What kind of key this client holds (GET /whoami): {role: "tenant" | "admin" | "service", tenant_id}. */
  whoami() {
    return this.request("GET", "/whoami");
  }

  /**
   * The tenant's jobs, newest first (GET /jobs).
   * @param {object} [filters] status, type, sessionId, createdAfter, createdBefore (Date or ISO-8601), offset, limit
   */
  list(filters = {}) {
    const { status, type, sessionId, createdAfter, createdBefore, offset, limit } = filters;
    return this.request("GET", "/jobs", undefined, {
      status,
      type,
      session_id: sessionId,
      created_after: createdAfter,
      created_before: createdBefore,
      offset,
      limit,
    });
  }

  /** Cancel a queued or running job. @param {string} jobId */
  cancel(jobId) {
    return this.request("POST", `/jobs/${this._id(jobId)}/cancel`);
  }

  /** Run an ended (failed, timed out, cancelled) job again as a new job. @param {string} jobId */
  retry(jobId) {
    return this.request("POST", `/jobs/${this._id(jobId)}/retry`);
  }

  /**
   * A job's kept events newer than `since` (GET /jobs/{id}/events): {job_id, seq, events, complete}.
   * @param {string} jobId @param {number} [since] @param {number} [limit]
   */
  events(jobId, since = 0, limit) {
    return this.request("GET", `/jobs/${this._id(jobId)}/events`, undefined, { since, limit });
  }

  /**
   * Start an execution of a stored workflow: the accepted body (execution_id, ...).
   * @param {string} workflowId
   * @param {Record<string, unknown>} [data]
   * @param {{mode?: "automatic" | "manual", priority?: number, idempotencyKey?: string}} [options]
   */
  startWorkflow(workflowId, data = {}, options = {}) {
    const { mode, priority, idempotencyKey } = options;
    return this.request(
      "POST",
      `/workflows/${this._id(workflowId)}/execute-async`,
      withoutUndefined({ data, mode, priority, idempotency_key: idempotencyKey }),
    );
  }

  _open() {
    if (this._live.closed) throw new BatonError(0, "closed", "this Baton was closed: make a new one");
  }

  _id(value) {
    if (typeof value !== "string" || value === "") {
      throw new BatonError(0, "bad_argument", `an id must be a non-empty string, not ${JSON.stringify(value)}`);
    }
    return encodeURIComponent(value);
  }

  // --- live ------------------------------------------------------------------------------------------------

  /**
   * Follow one job: `onMessage` gets its current state ({type: "job_snapshot", job_id, seq, job}) and then
   * each event (.event, .seq, .job_status, .data), never twice and never an older one after a newer.
   * @param {string} jobId
   * @param {(msg: object) => void} onMessage
   * @returns {Watch} `.done` resolves with the job's final record; `.close()` stops following
   */
  watch(jobId, onMessage) {
    this._id(jobId);
    this._open();
    if (typeof onMessage !== "function") throw new BatonError(0, "bad_argument", "watch needs a callback");
    const watch = new Watch(this._live, jobId, onMessage);
    this._live.addWatch(watch);
    return watch;
  }

  /**
   * Follow every job of the tenant (events as they happen; snapshots of the newest jobs while polling).
   * @param {(msg: object) => void} onMessage
   * @returns {WatchAll}
   */
  watchAll(onMessage) {
    this._open();
    if (typeof onMessage !== "function") throw new BatonError(0, "bad_argument", "watchAll needs a callback");
    const watchAll = new WatchAll(this._live, onMessage);
    this._live.addWatchAll(watchAll);
    return watchAll;
  }

  /** Follow a workflow execution: a watch of its job (its snapshot carries .execution). */
  followWorkflow(executionId, onMessage) {
    return this.watch(executionId, onMessage);
  }

  /**
   * Hear the connection's state: "connecting" | "open" | "reconnecting" | "polling" | "closed".
   * @param {(state: ConnectionState) => void} listener
   * @returns {() => void} stops listening
   */
  onState(listener) {
    return this._live.onState(listener);
  }

  /** Close the socket, stop polling and end every watch (their `done` rejects with error "closed"). */
  close() {
    this._live.close();
  }
}
