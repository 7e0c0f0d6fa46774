// Types of baton.js, Baton's browser client (served at /static/baton.js, these at /static/baton.d.ts).

export type ConnectionState = "connecting" | "open" | "reconnecting" | "polling" | "closed";

export type JobStatus = "queued" | "running" | "retrying" | "completed" | "failed" | "cancelled" | "timed_out";

export interface BatonOptions {
  /** The orchestrator's origin (default: location.origin). */
  baseUrl?: string;
  /** The API key: Bearer on HTTP, ?token= on the WebSocket. */
  token?: string;
  reconnect?: {
    /** First reconnect delay (500); doubles per failed attempt, with jitter. */
    initialMs?: number;
    /** Longest reconnect delay (15000). */
    maxMs?: number;
    /** Consecutive failed socket attempts before polling starts (3). */
    failuresBeforePolling?: number;
  };
  /** Between polls while the socket is down (2000). */
  pollIntervalMs?: number;
  /** Between pings on an open socket (20000); silence for two intervals means a dead link. */
  pingIntervalMs?: number;
  /** What makes HTTP requests (default: the global fetch). */
  fetch?: typeof fetch;
  /** The WebSocket class (default: the global one); null: polling only. */
  WebSocket?: typeof WebSocket | null;
}

export interface SubmitOptions {
  priority?: number;
  sessionId?: string;
  context?: { request_id?: string; user_id?: string; conversation_id?: string; [key: string]: unknown };
  timeoutMs?: number;
  idempotencyKey?: string;
  /** {ttl_seconds} to use the result cache, false to skip it; left out: the job type's default. */
  cache?: false | { ttl_seconds: number };
  /** Seconds the call may hold on until the job ends. */
  wait?: number;
}

export interface JobSpec extends SubmitOptions {
  type: string;
  payload?: Record<string, unknown>;
}

export interface JobAccepted {
  job_id: string;
  status: JobStatus;
  tracking_url: string;
  websocket_url: string;
  created_at: string;
  created: boolean;
  result?: unknown;
  error?: Record<string, unknown> | null;
  from_cache?: boolean;
  coalesced?: boolean;
  [key: string]: unknown;
}

export interface Job {
  job_id: string;
  global_task_id: string;
  tenant_id: string;
  session_id: string | null;
  type: string;
  service: string;
  root_task_id: string;
  priority: number;
  status: JobStatus;
  created_at: string;
  updated_at: string;
  seq: number;
  delegated_services: Record<string, unknown>[];
  progress: Progress | null;
  result: unknown;
  error: Record<string, unknown> | null;
  context: Record<string, unknown>;
  attempt: number;
  parent?: { job_id: string; task_id: string; service: string } | null;
  retry_of?: string | null;
  /** Only when asked for (get's includePayload): the job's payload; null when no longer kept. */
  payload?: Record<string, unknown> | null;
  [key: string]: unknown;
}

/** What kind of key a client holds (GET /whoami). */
export interface Identity {
  role: "tenant" | "admin" | "service";
  /** The key's tenant; null for the admin key and service tokens. */
  tenant_id: string | null;
}

export interface Progress {
  percentage: number;
  message?: string | null;
  current_task?: string | null;
  estimated_remaining_seconds?: number | null;
  custom_data?: Record<string, unknown> | null;
}

export interface JobList {
  jobs: Job[];
  total: number;
  offset: number;
  limit: number;
}

export interface ListFilters {
  status?: JobStatus;
  type?: string;
  sessionId?: string;
  createdAfter?: Date | string;
  createdBefore?: Date | string;
  offset?: number;
  limit?: number;
}

/** A task event with the job's seq and the job's status after it. */
export interface JobEvent {
  type?: undefined;
  event: string;
  service: string;
  task_id: string;
  global_task_id: string;
  tenant_id: string;
  timestamp: string;
  seq: number;
  job_status: JobStatus;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  v: number;
}

/** A job's current state: what a watch gets first (and after a gap the server's history cannot fill). */
export interface JobSnapshot {
  type: "job_snapshot";
  job_id: string;
  seq: number;
  job: Job;
  /** A workflow execution's status view. */
  execution?: Record<string, unknown>;
}

/**
 * What watch and watchAll callbacks get, one message per call. On the wire the client asks for batched frames
 * (?batch=1): a {type: "events", events: LiveMessage[]} frame is unpacked into one call per message, in order.
 */
export type LiveMessage = JobEvent | JobSnapshot;

export interface EventPage {
  job_id: string;
  seq: number;
  events: JobEvent[];
  /** False when the history no longer reaches back to since+1: GET the job's record. */
  complete: boolean;
}

export interface BatchItem {
  index: number;
  job_id?: string | null;
  status?: JobStatus | null;
  created?: boolean | null;
  from_cache?: boolean | null;
  coalesced?: boolean | null;
  result?: unknown;
  /** The item's error code (validation_error, unknown_job_type, ...); the others were still created. */
  error?: string | null;
  [key: string]: unknown;
}

export interface BatchAnswer {
  jobs: BatchItem[];
  accepted: number;
  rejected: number;
}

export interface WorkflowOptions {
  mode?: "automatic" | "manual";
  priority?: number;
  idempotencyKey?: string;
}

export declare class BatonError extends Error {
  constructor(status: number, error: string, detail: unknown, extra?: { retryAfter?: number | null; body?: unknown });
  /** The HTTP status; 0 for a network failure or a misuse of the client. */
  status: number;
  /** The API's machine-readable code, e.g. "validation_error", "unauthorized", "job_not_found", "closed". */
  error: string;
  detail: unknown;
  /** Retry-After in seconds, when the answer had one. */
  retryAfter: number | null;
  /** The whole JSON answer, when there was one. */
  body: unknown;
}

export interface Watch {
  readonly jobId: string;
  /** The job's final record once it ends; rejects with a BatonError if the job does not exist or on close. */
  readonly done: Promise<Job>;
  close(): void;
}

export interface WatchAll {
  close(): void;
}

export declare class Baton {
  constructor(options?: BatonOptions);
  readonly baseUrl: string;
  token: string | undefined;
  readonly state: ConnectionState;
  request<T = any>(method: string, path: string, body?: unknown, query?: Record<string, unknown>): Promise<T>;
  submit(type: string, payload?: Record<string, unknown>, options?: SubmitOptions): Promise<JobAccepted>;
  batch(jobs: JobSpec[]): Promise<BatchAnswer>;
  /** With includePayload, the record also has `payload` (null once the server no longer keeps the job's task). */
  get(jobId: string, options?: { includePayload?: boolean }): Promise<Job>;
  whoami(): Promise<Identity>;
  list(filters?: ListFilters): Promise<JobList>;
  cancel(jobId: string): Promise<{ job_id: string; status: JobStatus; [key: string]: unknown }>;
  retry(jobId: string): Promise<JobAccepted & { retry_of?: string }>;
  events(jobId: string, since?: number, limit?: number): Promise<EventPage>;
  startWorkflow(
    workflowId: string,
    data?: Record<string, unknown>,
    options?: WorkflowOptions,
  ): Promise<{
    execution_id: string;
    workflow_id: string;
    status: string;
    tracking_url: string;
    websocket_url: string;
    created_at: string;
  }>;
  watch(jobId: string, onMessage: (msg: LiveMessage) => void): Watch;
  watchAll(onMessage: (msg: LiveMessage) => void): WatchAll;
  followWorkflow(executionId: string, onMessage: (msg: LiveMessage) => void): Watch;
  onState(listener: (state: ConnectionState) => void): () => void;
  close(): void;
}
