#!/usr/bin/env bash
# Stops what `scripts/up.sh` started (workers first, so they finish in-flight tasks, then the orchestrator,
# then the Redis it started if it did). A RabbitMQ it started keeps running.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
# up.sh leaves $RUN_DIR/compose when it ran the compose project.
if docker_engine && [ "${BATON_NO_DOCKER:-}" != 1 ] && { [ -f "$RUN_DIR/compose" ] || [ ! -d "$RUN_DIR" ]; }; then
  rm -f "$RUN_DIR/compose"
  exec docker compose -f "$ROOT/docker-compose.yml" down
fi
# Signals a pid only while it still runs what the scripts started (a stale pid file may name a reused pid).
stop() {  # pidfile, what its command line contains
  local pidfile="$1" pid command
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  command="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  if kill -0 "$pid" 2>/dev/null && [[ "$command" == *"$2"* ]]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
for f in "$RUN_DIR"/worker-*.pid; do [ -e "$f" ] && stop "$f" "-m workers" & done
wait
stop "$RUN_DIR/orchestrator.pid" "-m orchestrator"
stop "$RUN_DIR/redis-server.pid" "redis-server"  # only a Redis that up.sh (or test.sh) started
say "stopped"
