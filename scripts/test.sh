#!/usr/bin/env bash
# Runs the whole test suite against the real RabbitMQ and Redis (started here when they are down).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/protocol -x`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_venv test
ensure_promtool
ensure_services
ensure_chromium

say "ruff"
"$VENV/bin/ruff" check protocol orchestrator workers tests plumbing clients
say "mypy"
"$VENV/bin/mypy" protocol orchestrator workers plumbing clients
say "pytest"
exec "$VENV/bin/pytest" -p no:cacheprovider "$@"
