#!/usr/bin/env bash
# The side-by-side benchmark: Baton vs a raw aio-pika round trip (the limit) vs Celery 5, one table.
#
#   bash tests/bench/run.sh [--json results.json] [--quick] [--backlog-large 100000] [--profile 10] ...
#
# Makes (once) its own virtualenv, tests/bench/.venv, with Baton and the `bench` extra (Celery,
# py-spy, uvloop), so the peers never enter the project's runtime environment. Needs RabbitMQ and
# Redis already running (RABBITMQ_URL / REDIS_URL, default 127.0.0.1); starts nothing else but its
# own processes. `python -m tests.bench --help` lists every option.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT"

VENV="${BATON_BENCH_VENV:-$ROOT/tests/bench/.venv}"
ensure_venv bench

: "${RABBITMQ_URL:=amqp://guest:guest@127.0.0.1:5672/}"
: "${REDIS_URL:=redis://127.0.0.1:6379/0}"
url_reachable "$RABBITMQ_URL" 5672 || die "RabbitMQ is not reachable at $RABBITMQ_URL (bash scripts/up.sh starts it)"
url_reachable "$REDIS_URL" 6379 || die "Redis is not reachable at $REDIS_URL (bash scripts/up.sh starts it)"
export RABBITMQ_URL REDIS_URL PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

exec "$VENV/bin/python" -m tests.bench "$@"
