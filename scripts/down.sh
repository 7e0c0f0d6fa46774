#!/usr/bin/env bash
# Stops what `scripts/up.sh` started (workers first, so they finish in-flight tasks, then the orchestrator).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
if docker_engine && [ "${BATON_NO_DOCKER:-}" != 1 ] && [ ! -d "$RUN_DIR" ]; then
  exec docker compose -f "$ROOT/docker-compose.yml" down
fi
stop() {
  local pidfile="$1" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
for f in "$RUN_DIR"/worker-*.pid; do [ -e "$f" ] && stop "$f" & done
wait
stop "$RUN_DIR/orchestrator.pid"
say "stopped"
