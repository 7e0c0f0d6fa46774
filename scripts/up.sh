#!/usr/bin/env bash
# Brings the whole system up: RabbitMQ and Redis, the orchestrator (API, WebSockets, dashboard)
# and one worker per built-in service.
#   bash scripts/up.sh            in the foreground; Ctrl-C stops everything it started
#   bash scripts/up.sh --detach   in the background; `bash scripts/down.sh` stops it
# With a running Docker engine it runs the services of docker-compose.yml instead (and Prometheus and Grafana).
#   ORCHESTRATOR_PROCESSES=2 bash scripts/up.sh   the orchestrator as 2 processes sharing its port (README: Settings)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

detach=0
[ "${1:-}" = "--detach" ] && detach=1

port="${ORCHESTRATOR_PORT:-8000}"
export ORCHESTRATOR_PROCESSES="${ORCHESTRATOR_PROCESSES:-1}"
health="http://127.0.0.1:$port/health"
mkdir -p "$RUN_DIR"
if [ -z "${BATON_API_KEYS:-}" ]; then
  [ -s "$RUN_DIR/dev-key" ] || python3 -c 'import secrets; print("dev-" + secrets.token_urlsafe(24))' >"$RUN_DIR/dev-key"
  export BATON_API_KEYS="dev:$(cat "$RUN_DIR/dev-key")"
fi
export ORCHESTRATOR_PORT="$port"
key="${BATON_API_KEYS#*:}"; key="${key%%,*}"

healthy() { python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$health', timeout=2).status != 200)" 2>/dev/null; }

welcome() {  # what runs where, and the key
  cat <<MSG
Baton is up.
  dashboard   http://127.0.0.1:$port/?token=$key
  API         http://127.0.0.1:$port/openapi.json
  health      $health
  metrics     http://127.0.0.1:$port/metrics$([ "$ORCHESTRATOR_PROCESSES" = 1 ] || echo "   (one of $ORCHESTRATOR_PROCESSES orchestrator processes per request)")
  API key     $key            (tenant ${BATON_API_KEYS%%:*})
MSG
  if [ "${1:-}" = docker ]; then
    cat <<MSG
  Grafana     http://127.0.0.1:${BATON_GRAFANA_PORT:-13000}/            (dashboards in the Baton folder; admin/admin)
  Prometheus  http://127.0.0.1:${BATON_PROMETHEUS_PORT:-19090}/alerts
  RabbitMQ    http://127.0.0.1:${BATON_RABBITMQ_MANAGEMENT_PORT:-15673}/  (guest/guest)
  logs        docker compose logs -f
MSG
  else
    cat <<MSG
  logs        $RUN_DIR/*.log
MSG
    [ -z "$worker_metrics" ] || printf '  worker metrics\n%s' "$worker_metrics"
  fi
  cat <<MSG
Try: curl -s -X POST http://127.0.0.1:$port/jobs -H "Authorization: Bearer $key" \\
       -H 'Content-Type: application/json' -d '{"type": "llm_request", "payload": {"prompt": "hello"}, "wait": 10}'
MSG
}

if docker_engine && [ "${BATON_NO_DOCKER:-}" != 1 ]; then
  command -v docker >/dev/null && docker compose version >/dev/null 2>&1 \
    || die "a Docker engine runs but 'docker compose' is missing: install the compose plugin, or set BATON_NO_DOCKER=1"
  port_open 127.0.0.1 "$port" && die "port $port is taken (is Baton already up? bash scripts/down.sh), or set ORCHESTRATOR_PORT"
  say "Docker engine found: docker compose up (the API key is passed in BATON_API_KEYS)"
  touch "$RUN_DIR/compose"  # down.sh: stop the compose project, not local processes
  docker compose up -d --build
  deadline=$((SECONDS + 180))  # a first run builds the image and pulls the others
  until healthy; do
    if [ $SECONDS -ge $deadline ]; then
      docker compose logs --tail 30 orchestrator >&2 || true
      die "the orchestrator did not become healthy within 180 s (docker compose logs orchestrator; bash scripts/down.sh)"
    fi
    sleep 1
  done
  welcome docker
  if [ $detach = 1 ]; then
    say "running in the background; stop with: bash scripts/down.sh"
    exit 0
  fi
  trap 'bash "$ROOT/scripts/down.sh"; exit 0' INT TERM
  say "Ctrl-C stops everything"
  docker compose logs -f --since 1s &
  wait $!
  exit 0
fi
say "no Docker engine: running local processes (set BATON_NO_DOCKER=1 to force this)"

ensure_venv ""
ensure_services

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
# Each worker's /metrics on a port of its own: BATON_WORKER_METRICS_PORT is the first one's (9101, as in
# deploy/prometheus/prometheus.yml), the others take the next ones; 0 turns them off.
metrics_port="${BATON_WORKER_METRICS_PORT:-9101}"
worker_metrics=""
for service in query embedding ingestion agent; do
  BATON_WORKER_METRICS_PORT="$metrics_port" start "worker-$service" "$VENV/bin/python" -m workers "$service"
  if [ "$metrics_port" != 0 ]; then
    worker_metrics+="    $service  http://127.0.0.1:$metrics_port/metrics"$'\n'
    metrics_port=$((metrics_port + 1))
  fi
done

deadline=$((SECONDS + 60))
until healthy; do
  if [ $SECONDS -ge $deadline ]; then
    tail -n 30 "$RUN_DIR/orchestrator.log" >&2 || true
    bash "$ROOT/scripts/down.sh"
    die "the orchestrator did not become healthy within 60 s (logs in $RUN_DIR/)"
  fi
  sleep 0.5
done

welcome local

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
