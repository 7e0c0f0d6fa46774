"""The Lua scripts that make every registry change atomic.

Each script takes the job hash as KEYS[1]; the per-tenant indexes follow, the seven status
indexes always in `keys.STATUS_ORDER`, so every key a script touches is declared. Scripts
answer with a status word first: Python maps it, the scripts never raise on a normal outcome.

The ones that run for every job (CREATE, APPLY_EVENT, and APPLY_EVENTS: APPLY_EVENT for each event of
a delivery window, in one call) take their arguments as one msgpack array of strings in ARGV[1]
(`registry_codec.packed_args`; APPLY_EVENTS an array of those), read into a local ARGV: redis-py packs a
command in Python, argument by argument: one argument instead of thirty saves the orchestrator
about 40 % of a call's CPU, and Redis none (tests/bench/redis_client.py).

One exception to declared keys: a cache-enabled job's result-cache keys (its entry, its tenant and
type's index and its in-flight marker) are named in its hash when it is created, and the scripts that
end a job read them from there: the caller of APPLY_EVENT has only the event, and ending the job,
releasing the marker and storing the result must be one step (no window where an identical request
attaches to a finished job, none where a failed job's marker outlives it). Baton runs on one Redis
(every script already spans one tenant's several keys), so the undeclared keys are always local.

Every script that gives a job a new seq (CREATE, APPLY_EVENT, REOPEN, FINISH_JOB) appends the client event
of that seq to the job's history list in the same step, so the history has every seq once and in order.
The caller renders the event as compact JSON without `seq` and `job_status` (the "tail"), which only the
script knows; the script puts them first. A history entry therefore always starts with `{"seq":N,`.
"""

from __future__ import annotations

from typing import Final

from orchestrator.store.keys import STATUS_ORDER
from protocol.events import ATTEMPT_SEQ_STRIDE, TERMINAL_STATUSES

# A task's events may skip attempts the registry never heard of (runs that crashed before their
# first event), but never this many: a seq beyond it is forged or corrupt, and accepting it would
# make every event of the attempt that really runs "stale" (up to 2^53 seqs stay exact in Lua).
MAX_ATTEMPT_LEAP: Final[int] = 1000
MAX_SEQ: Final[int] = 2**53 - 1

_TERMINAL_TABLE = "{" + ", ".join(f"['{status}'] = true" for status in sorted(TERMINAL_STATUSES)) + "}"
# Position of a status's index in KEYS, given the status indexes start at KEYS[3].
_STATUS_KEY_TABLE = "{" + ", ".join(f"['{status}'] = {i + 3}" for i, status in enumerate(STATUS_ORDER)) + "}"

# Shadows the global ARGV with the unpacked array (evaluated before the local exists).
_PACKED_ARGV = """
local ARGV = cmsgpack.unpack(ARGV[1])
"""

_COMMON = f"""
local TERMINAL = {_TERMINAL_TABLE}
local STRIDE = {ATTEMPT_SEQ_STRIDE}
local STATUS_KEY = {_STATUS_KEY_TABLE}

-- Keep a job's entry in exactly one status index, scored by its creation time (K: the script's keys).
local function move_status(K, job_id, from, to, ttl)
  if from == to then return end
  local score = redis.call('ZSCORE', K[STATUS_KEY[from]], job_id)
  if not score then score = redis.call('ZSCORE', K[2], job_id) or 0 end
  redis.call('ZREM', K[STATUS_KEY[from]], job_id)
  redis.call('ZADD', K[STATUS_KEY[to]], score, job_id)
  redis.call('EXPIRE', K[STATUS_KEY[to]], ttl)
end
"""

# A job's history (KEYS given by the caller): the last `max_len` client events, oldest first, kept as long as the job.
_HISTORY = """
local function client_event(job_seq, job_status, head, tail)
  return '{"seq":' .. string.format('%d', job_seq) .. ',"job_status":"' .. job_status .. '"' .. head .. ','
         .. string.sub(tail, 2)
end

local function record_event(key, max_len, ttl, entry)
  if redis.call('RPUSH', key, entry) > max_len then redis.call('LTRIM', key, -max_len, -1) end
  redis.call('EXPIRE', key, ttl)
end
"""

# The result cache's side of a job that ends (see the module docstring): its in-flight marker goes if it
# still names the job, and a completed job's result becomes the entry, in the tenant and type's index and
# the all-entries set (both scored by expiry in ms, pruned of expired entries as they grow).
_CACHE = """
local function store_entry(entry, index, entries, ttl, job_id, result, created_at)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('HSET', entry, 'job_id', job_id, 'result', result, 'created_at', created_at)
  redis.call('EXPIRE', entry, ttl)
  for _, key in ipairs({index, entries}) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    redis.call('ZADD', key, now_ms + ttl * 1000, entry)
  end
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
end

local function release_marker(marker, job_id)
  if marker and redis.call('HGET', marker, 'job_id') == job_id then redis.call('DEL', marker) end
end

-- entries: the all-entries set's key, nil where the job cannot complete (FINISH_JOB)
local function settle_cache(job_key, job_id, status, result, created_at, entries)
  local c = redis.call('HMGET', job_key, 'cache_marker', 'cache_entry', 'cache_index', 'cache_ttl')
  if not c[4] then return end
  release_marker(c[1], job_id)
  if status == 'completed' and entries then
    if result == '' then result = 'null' end
    store_entry(c[2], c[3], entries, tonumber(c[4]), job_id, result, created_at)
  end
end
"""

# KEYS: job, all-jobs index, 7 status indexes, type index, history, [session index], [idempotency hash],
# [in-flight marker, cache entry]
# ARGV (packed): ttl, score, job_id, status, has_session, has_idempotency, fingerprint, has_marker, marker ttl,
# history max, the creation's client event (whole), field, value, ...
# The in-flight marker is held like an idempotency key: an open job identical to this one (same tenant,
# type and payload) holding it answers 'coalesced' with its id, and a stored result 'cached' with the
# entry (it may have been stored since the caller looked: an end releases the marker and stores the
# entry in one step, so one of the two is always seen), unless the request has an idempotency key (its
# key decides alone); otherwise the new job takes the marker if free.
CREATE: Final[str] = (
    _PACKED_ARGV
    + _COMMON
    + _HISTORY
    + """
local ttl, score, job_id, status = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local next_key = 12
local session_key, idem_key, marker_key
if ARGV[5] == '1' then session_key = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[6] == '1' then idem_key = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[8] == '1' then marker_key = KEYS[next_key] end
local entry_key = KEYS[next_key + 1]
local fingerprint = ARGV[7]

if idem_key then
  local held = redis.call('HMGET', idem_key, 'job_id', 'fingerprint')
  if held[1] then
    if held[2] == fingerprint then return {'existing', held[1]} end
    return {'conflict', held[1]}
  end
elseif marker_key then
  local held = redis.call('HGET', marker_key, 'job_id')
  if held then return {'coalesced', held} end
  local entry = redis.call('HMGET', entry_key, 'job_id', 'result', 'created_at')
  if entry[1] then return {'cached', entry[1], entry[2], entry[3]} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate', job_id} end

redis.call('HSET', KEYS[1], unpack(ARGV, 12))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('DEL', KEYS[11])  -- a job id used again after its record expired: not its predecessor's events
record_event(KEYS[11], tonumber(ARGV[10]), ttl, ARGV[11])
for _, key in ipairs({KEYS[2], KEYS[STATUS_KEY[status]], KEYS[10], session_key}) do
  redis.call('ZADD', key, score, job_id)
  redis.call('EXPIRE', key, ttl)
end
if idem_key then
  redis.call('HSET', idem_key, 'job_id', job_id, 'fingerprint', fingerprint)
  redis.call('EXPIRE', idem_key, ttl)
end
if marker_key and redis.call('HSETNX', marker_key, 'job_id', job_id) == 1 then
  redis.call('EXPIRE', marker_key, tonumber(ARGV[9]))
end
return {'created', job_id}
"""
)

# KEYS: job, all-jobs index, 7 status indexes, the result cache's all-entries set, history
# ARGV (packed): job_id, task_id, seq, task status, service, ttl, updated_at, progress, result, error, attempt,
# max tasks per job, history max, the event's tail (its client JSON without seq and job_status)
# (progress, result and error are JSON text, '' when the event carries none; attempt 0 when unknown)
# Refuses, with the reason as the answer, what no producer of the job's tasks could have sent: an event
# whose service is not the one that runs the task (the job's service for the root task, the one its
# first event named for a child), a seq more than MAX_ATTEMPT_LEAP attempts beyond the task's, and a task
# new to a job that has max tasks already (children are learnt from their first event, so new task ids are
# bounded, not refused).
# The rules live in one Lua function, apply_event(KEYS, ARGV): its parameters shadow the globals, so the
# body reads as a script of its own; APPLY_EVENT calls it once, APPLY_EVENTS once per event of a window.
_APPLY_FUNCTION: Final[str] = (
    _COMMON
    + _CACHE
    + _HISTORY
    + f"""
local MAX_ATTEMPT_LEAP, MAX_SEQ = {MAX_ATTEMPT_LEAP}, {MAX_SEQ}
"""
    + """
local function apply_event(KEYS, ARGV)
  local job_id, task_id, seq, task_status, service = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
  local ttl = tonumber(ARGV[6])
  local cur = redis.call('HMGET', KEYS[1], 'status', 'root_task_id', 'seq', 'delegated_services', 'type', 'created_at',
                        'attempt', 'service')
  if not cur[1] then return {'unknown_job'} end
  if TERMINAL[cur[1]] then
    -- The root task's end again (a copy, or a redelivery) while the job's cache marker still names it: an
    -- older replica, which knew no cache, applied the end first. Settle the cache now, from the record.
    if task_id == cur[2] and task_status == cur[1] and service == cur[8] then
      local marker = redis.call('HGET', KEYS[1], 'cache_marker')
      if marker and redis.call('HGET', marker, 'job_id') == job_id then
        settle_cache(KEYS[1], job_id, cur[1], redis.call('HGET', KEYS[1], 'result') or '', cur[6] or '', KEYS[10])
      end
    end
    return {'job_terminal'}
  end
  if task_id == cur[2] and cur[8] and service ~= cur[8] then return {'wrong_service'} end

  -- The producer's seq, per task: later attempts start higher, so a retry is never "stale".
  local seq_field = 'task_seq:' .. task_id
  local last = tonumber(redis.call('HGET', KEYS[1], seq_field) or '-1')
  local seq_attempt, last_attempt = math.floor(seq / STRIDE), math.floor(last / STRIDE)
  if seq > MAX_SEQ or seq_attempt > math.max(last_attempt, 1) + MAX_ATTEMPT_LEAP then return {'seq_out_of_range'} end
  -- Anything from an attempt older than the latest one seen (or reopened) is history, its
  -- outcome included: it must not end the job under the attempt that runs now.
  if seq_attempt < last_attempt then return {'stale'} end
  -- A task's outcome is applied even when a later-numbered event of the same attempt (a progress
  -- report that overtook it) got here first: only a task that already ended drops it.
  if seq <= last and not TERMINAL[task_status] then return {'stale'} end

  local delegated = cjson.decode(cur[4] or '[]')
  local found = nil
  for _, entry in ipairs(delegated) do
    if entry['task_id'] == task_id then
      found = entry
      break
    end
  end
  if found and found['service'] ~= service then return {'wrong_service'} end
  if found and TERMINAL[found['status']] and seq_attempt == last_attempt then return {'task_terminal'} end
  if found then
    found['status'] = task_status
  elseif #delegated >= tonumber(ARGV[12]) then
    return {'too_many_tasks'}
  else
    table.insert(delegated, {service = service, task_id = task_id, status = task_status})
  end
  if seq < last then seq = last end

  local job_status = cur[1]
  local job_seq = tonumber(cur[3] or '0') + 1
  local fields = {seq_field, string.format('%d', seq), 'delegated_services', cjson.encode(delegated),
                  'seq', tostring(job_seq), 'updated_at', ARGV[7]}
  -- Only the root task moves the job; child tasks are tracked in delegated_services.
  if task_id == cur[2] then
    move_status(KEYS, job_id, job_status, task_status, ttl)
    job_status = task_status
    table.insert(fields, 'status'); table.insert(fields, task_status)
    if ARGV[8] ~= '' then table.insert(fields, 'progress'); table.insert(fields, ARGV[8]) end
    if ARGV[9] ~= '' then table.insert(fields, 'result'); table.insert(fields, ARGV[9]) end
    if ARGV[10] ~= '' then table.insert(fields, 'error'); table.insert(fields, ARGV[10]) end
    -- An attempt the seq does not vouch for is not recorded (the data's word alone could be anything).
    local attempt = tonumber(ARGV[11] or '0')
    if attempt > tonumber(cur[7] or '1') and attempt <= math.max(seq_attempt, 1) then
      table.insert(fields, 'attempt'); table.insert(fields, string.format('%d', attempt))
    end
    if TERMINAL[task_status] then settle_cache(KEYS[1], job_id, task_status, ARGV[9], cur[6] or '', KEYS[10]) end
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  record_event(KEYS[11], tonumber(ARGV[13]), ttl, client_event(job_seq, job_status, '', ARGV[14]))
  return {'applied', job_seq, job_status, cur[5] or '', cur[6] or ''}
end
"""
)

APPLY_EVENT: Final[str] = (
    _PACKED_ARGV
    + _APPLY_FUNCTION
    + """
return apply_event(KEYS, ARGV)
"""
)

# KEYS: every distinct key of the window's events (those APPLY_EVENT takes, per event)
# ARGV[1]: a msgpack array with one entry per event, in the order they are applied: {its keys' positions in
# KEYS, in APPLY_EVENT's order; its arguments, as APPLY_EVENT's packed ARGV}
# Applies a delivery window's events in one call, each exactly as APPLY_EVENT would have, one after the
# other (a job's later event sees what its earlier one wrote); answers APPLY_EVENT's reply per event.
APPLY_EVENTS: Final[str] = (
    _APPLY_FUNCTION
    + """
local events = cmsgpack.unpack(ARGV[1])
local replies = {}
for i, event in ipairs(events) do
  local event_keys = {}
  for j, position in ipairs(event[1]) do event_keys[j] = KEYS[position] end
  replies[i] = apply_event(event_keys, event[2])
end
return replies
"""
)

# KEYS: job, all-jobs index, 7 status indexes, the task's done ledger key, the job's cancelled ledger key, history
# ARGV: job_id, task_id, attempt, attempt seq stride, ttl, updated_at, envelope JSON, expected job seq ('' = a replay),
# history max, the announcement's tail
# A new attempt of a task, about to be published. Only a task that is provably not running may get one:
# - a replayed dead letter (no expected seq): a root task's job only from failed or timed_out; a child
#   task only while its job is open and its own entry says failed or timed_out;
# - a lost message published again (the sweeper, with the job seq it saw): a root task's job still queued.
# Anything else is 'refused' with the job's status (and the child's). Answers 'retry' with the lowest
# usable attempt when the one given would number its events at or below ones already seen (they would
# be dropped as stale). The task's seq floor moves to the new attempt, so events of older attempts
# (a late outcome, a redelivered one) are dropped from now on instead of ending the new attempt's job.
REOPEN: Final[str] = (
    _COMMON
    + _HISTORY
    + """
local job_id, task_id, attempt, stride = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local REPLAYABLE = {['failed'] = true, ['timed_out'] = true}
local cur = redis.call('HMGET', KEYS[1], 'status', 'root_task_id', 'seq', 'delegated_services', 'service')
if not cur[1] then return {'not_found', ''} end
local is_root = task_id == cur[2]
local delegated = cjson.decode(cur[4] or '[]')
local found = nil
for _, entry in ipairs(delegated) do
  if entry['task_id'] == task_id then found = entry; break end
end
if ARGV[8] ~= '' then
  if cur[3] ~= ARGV[8] then return {'changed', cur[1]} end
  if not is_root or cur[1] ~= 'queued' then return {'refused', cur[1]} end
elseif is_root then
  if not REPLAYABLE[cur[1]] then return {'refused', cur[1]} end
else
  if TERMINAL[cur[1]] then return {'refused', cur[1]} end
  if not found or not REPLAYABLE[found['status']] then
    return {'refused', cur[1], found and found['status'] or 'unknown'}
  end
end
local seq_field = 'task_seq:' .. task_id
local last = tonumber(redis.call('HGET', KEYS[1], seq_field) or '-1')
if attempt * stride <= last then return {'retry', tostring(math.floor(last / stride) + 1)} end

if found then
  found['status'] = 'queued'
else
  table.insert(delegated, {service = cur[5] or 'unknown', task_id = task_id, status = 'queued'})
end
local job_seq = tonumber(cur[3] or '0') + 1
local fields = {'seq', tostring(job_seq), 'updated_at', ARGV[6], 'delegated_services', cjson.encode(delegated),
                seq_field, string.format('%d', attempt * stride)}
local job_status = cur[1]
if is_root then
  job_status = 'queued'
  move_status(KEYS, job_id, cur[1], 'queued', ttl)
  for _, f in ipairs({'status', 'queued', 'attempt', tostring(attempt), 'envelope', ARGV[7]}) do
    table.insert(fields, f)
  end
  redis.call('HDEL', KEYS[1], 'error', 'result', 'progress')
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
-- The earlier attempt's outcome and a sweeper's "never run" must not stop the new attempt.
redis.call('DEL', KEYS[10], KEYS[11])
record_event(KEYS[12], tonumber(ARGV[9]), ttl, client_event(job_seq, job_status, '', ARGV[10]))
return {'reopened', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: job, all-jobs index, 7 status indexes, the job's cancelled ledger key, history
# ARGV: job_id, final status, expected job seq ('' = any), ttl, updated_at, error JSON, ledger ttl, ledger value,
# history max, the announcement's tail (without service and task_id too: the root task's, read here)
# Ends an open job from outside its tasks: a client's cancel (cancelled) or the sweeper's verdict on a
# stuck job (failed, only if no event moved the job since the sweeper looked). Its open tasks get the
# same status, and the job's cancelled ledger key is set in the same step as the status, so no worker
# can see the job ended in one place and not the other, nor start a delivery of its tasks later.
# Answers 'finished' or 'terminal' with the job's hash, 'not_found', or 'changed'.
FINISH_JOB: Final[str] = (
    _COMMON
    + _CACHE
    + _HISTORY
    + """
local job_id, final, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
local cur = redis.call('HMGET', KEYS[1], 'status', 'seq', 'delegated_services', 'service', 'root_task_id')
if not cur[1] then return {'not_found'} end
if TERMINAL[cur[1]] then return {'terminal', redis.call('HGETALL', KEYS[1])} end
if ARGV[3] ~= '' and cur[2] ~= ARGV[3] then return {'changed'} end
local delegated = cjson.decode(cur[3] or '[]')
for _, entry in ipairs(delegated) do
  if not TERMINAL[entry['status']] then entry['status'] = final end
end
local job_seq = tonumber(cur[2] or '0') + 1
move_status(KEYS, job_id, cur[1], final, ttl)
local fields = {'status', final, 'seq', tostring(job_seq), 'updated_at', ARGV[5], 'error', ARGV[6]}
if #delegated > 0 then
  table.insert(fields, 'delegated_services'); table.insert(fields, cjson.encode(delegated))
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[10], ARGV[8], 'EX', tonumber(ARGV[7]))
settle_cache(KEYS[1], job_id, final, '', '', nil)
local head = ',"service":' .. cjson.encode(cur[4] or '') .. ',"task_id":' .. cjson.encode(cur[5] or job_id)
record_event(KEYS[11], tonumber(ARGV[9]), ttl, client_event(job_seq, final, head, ARGV[10]))
return {'finished', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: job, all-jobs index, 7 status indexes, type index, history, [session index], [idempotency hash],
# [in-flight marker]
# ARGV: job_id, has_session, has_idempotency, has_marker
DISCARD: Final[str] = """
local job_id = ARGV[1]
redis.call('DEL', KEYS[1], KEYS[11])
for i = 2, 10 do redis.call('ZREM', KEYS[i], job_id) end
local next_key = 12
if ARGV[2] == '1' then redis.call('ZREM', KEYS[next_key], job_id); next_key = next_key + 1 end
-- Free the idempotency key and the in-flight marker only if they still name this job.
for _, flag in ipairs({ARGV[3], ARGV[4]}) do
  if flag == '1' then
    if redis.call('HGET', KEYS[next_key], 'job_id') == job_id then redis.call('DEL', KEYS[next_key]) end
    next_key = next_key + 1
  end
end
return 1
"""

# KEYS: idempotency hash or in-flight marker; ARGV: job_id. Frees a key whose job expired, was discarded
# or (a marker) ended under a replica of an older release, which knew no markers.
RELEASE_IDEMPOTENCY: Final[str] = """
if redis.call('HGET', KEYS[1], 'job_id') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: cache entry, the tenant and type's index, the all-entries set, in-flight marker
# ARGV: job_id, ttl, result JSON, created_at
# A completed job's result stored after the fact: its end was applied by a replica of an older release,
# which left the marker and stored nothing (found when an identical request meets the marker).
FILL_CACHE: Final[str] = (
    _CACHE
    + """
store_entry(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]), ARGV[1], ARGV[3], ARGV[4])
release_marker(KEYS[4], ARGV[1])
return 1
"""
)

# KEYS: the tenant and type's index, the all-entries set. Removes every entry of the index; answers how
# many still existed (expired ones are not counted).
CLEAR_CACHE: Final[str] = """
local removed = 0
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  removed = removed + redis.call('DEL', entry)
  redis.call('ZREM', KEYS[2], entry)
end
redis.call('DEL', KEYS[1])
return removed
"""

# KEYS: job, history; ARGV: since, limit
# Up to `limit` of the job's kept events after seq `since`, oldest first. Answers 'not_found'; 'beyond' with the
# job's seq when `since` is past it; or 'events', the job's seq, 1 when the kept events are every one from
# since + 1 to the job's seq (0 when the history no longer reaches back that far, or has a gap: seqs given by a
# replica of an older release, which kept none), and the entries. A history's seqs only grow, so the last
# `seq - since` entries are those events exactly when the first is since + 1 and the last the job's seq.
READ_HISTORY: Final[str] = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {'not_found'} end
seq = tonumber(seq)
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if since > seq then return {'beyond', seq} end
local wanted = seq - since
if wanted == 0 then return {'events', seq, 1, {}} end
local function seq_of(entry) return entry and tonumber(string.match(entry, '^{"seq":(%d+)')) end
local length = redis.call('LLEN', KEYS[2])
local first = math.max(length - wanted, 0)
local entries = {}
if limit > 0 then entries = redis.call('LRANGE', KEYS[2], first, first + limit - 1) end
local complete = 0
if length >= wanted and seq_of(redis.call('LINDEX', KEYS[2], first)) == since + 1
   and seq_of(redis.call('LINDEX', KEYS[2], -1)) == seq then
  complete = 1
end
return {'events', seq, complete, entries}
"""
