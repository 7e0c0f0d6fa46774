#!/usr/bin/env bash
# Brings the whole system up: RabbitMQ and Redis, the orchestrator (API, WebSockets, dashboard)
# and one worker per built-in service.
#   bash scripts/up.sh            in the foreground; Ctrl-C stops everything it started
#   bash scripts/up.sh --detach   in the background; `bash scripts/down.sh` stops it
# With a running Docker engine it runs `docker compose up` instead.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

detach=0
[ "${1:-}" = "--detach" ] && detach=1

if docker_engine && [ "${BATON_NO_DOCKER:-}" != 1 ]; then
  say "Docker engine found: docker compose up"
  if [ $detach = 1 ]; then exec docker compose up -d --build; else exec docker compose up --build; fi
fi
say "no Docker engine: running local processes (set BATON_NO_DOCKER=1 to force this)"

ensure_venv ""
ensure_services
mkdir -p "$RUN_DIR"

port="${ORCHESTRATOR_PORT:-8000}"
if [ -z "${BATON_API_KEYS:-}" ]; then
  [ -s "$RUN_DIR/dev-key" ] || "$VENV/bin/python" -c 'import secrets; print("dev-" + secrets.token_urlsafe(24))' >"$RUN_DIR/dev-key"
  export BATON_API_KEYS="dev:$(cat "$RUN_DIR/dev-key")"
fi
export ORCHESTRATOR_PORT="$port"

if port_open 127.0.0.1 "$port"; then
  die "port $port is taken (is Baton already up? bash scripts/down.sh), or set ORCHESTRATOR_PORT"
fi

pids=()
start() {  # name, command...
  local name="$1"; shift
  nohup "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  pids+=("$!")
}

start orchestrator "$VENV/bin/python" -m orchestrator
for service in query embedding ingestion agent; do
  start "worker-$service" "$VENV/bin/python" -m workers "$service"
done

health="http://127.0.0.1:$port/health"
deadline=$((SECONDS + 60))
until "$VENV/bin/python" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$health', timeout=2).status != 200)" 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    tail -n 30 "$RUN_DIR/orchestrator.log" >&2 || true
    bash "$ROOT/scripts/down.sh"
    die "the orchestrator did not become healthy within 60 s (logs in $RUN_DIR/)"
  fi
  sleep 0.5
done

key="${BATON_API_KEYS#*:}"; key="${key%%,*}"
cat <<MSG
Baton is up.
  dashboard   http://127.0.0.1:$port/            (paste the API key)
  API         http://127.0.0.1:$port/openapi.json
  health      $health
  metrics     http://127.0.0.1:$port/metrics
  API key     $key            (tenant ${BATON_API_KEYS%%:*})
  logs        $RUN_DIR/*.log
Try: curl -s -X POST http://127.0.0.1:$port/jobs -H "Authorization: Bearer $key" \\
       -H 'Content-Type: application/json' -d '{"type": "llm_request", "payload": {"prompt": "hello"}, "wait": 10}'
MSG

if [ $detach = 1 ]; then
  say "running in the background; stop with: bash scripts/down.sh"
  exit 0
fi
trap 'bash "$ROOT/scripts/down.sh"; exit 0' INT TERM
say "Ctrl-C stops everything"
wait -n "${pids[@]}" || true
say "a process exited; stopping the rest"
bash "$ROOT/scripts/down.sh"
exit 1
