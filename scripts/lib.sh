# Shared by the scripts: the project's virtualenv and the local RabbitMQ and Redis.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BATON_VENV:-$ROOT/.venv}"
RUN_DIR="${BATON_RUN_DIR:-$ROOT/.run}"

say() { printf '[baton] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing Debian packages: $*"
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

# Creates or refreshes the virtualenv; $1 is the pip extra ("" or "test").
ensure_venv() {
  local extra="${1:-}" python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || die "$python not found: install Python 3.11+ (apt-get install python3 python3-venv)"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is needed, $python is $("$python" --version)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv || die "python3 -m venv failed: install the venv module (apt-get install python3-venv)"
      "$python" -m venv "$VENV" || die "python3 -m venv failed"
    fi
  fi
  local spec="$ROOT" stamp="$VENV/.baton-installed-${extra:-base}"
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing Baton into $VENV ${extra:+with extra [$extra]}"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e "$spec" || die "pip install failed"
    touch "$stamp"
  fi
}

# The browser tests drive Debian's chromium (never playwright's downloaded browsers).
ensure_chromium() {
  command -v chromium >/dev/null && return 0
  apt_install chromium || die "the browser tests need chromium: apt-get install chromium (as root or with sudo)"
  command -v chromium >/dev/null || die "chromium installed but not on PATH"
}

docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

start_rabbitmq() {  # url
  local host port
  host="$(url_host "$1")"; port="$(url_port "$1" 5672)"
  if ! is_local "$host" || [ "$port" != 5672 ]; then
    die "RabbitMQ is not reachable at $host:$port (RABBITMQ_URL): start it there, or unset RABBITMQ_URL to use a local one on 5672"
  fi
  port_open 127.0.0.1 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null; then
    apt_install rabbitmq-server || die "RabbitMQ is not running and not installed: apt-get install rabbitmq-server (or run Docker and use docker compose)"
  fi
  say "starting rabbitmq-server"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 127.0.0.1 5672 90 || die "RabbitMQ did not open 127.0.0.1:5672 within 90 s (see /var/log/rabbitmq/)"
  # The port opens before the broker takes connections; wait until it answers.
  local deadline=$((SECONDS + 60))
  until as_root rabbitmqctl -q await_startup >/dev/null 2>&1 || rabbitmqctl -q await_startup >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || break
    sleep 1
  done
}

# Starts a Redis on the port of the URL (local only), with its data and pid file in $RUN_DIR so that
# down.sh stops it again and a restart keeps the registry.
start_redis() {  # url
  local host port
  host="$(url_host "$1")"; port="$(url_port "$1" 6379)"
  is_local "$host" || die "Redis is not reachable at $host:$port (REDIS_URL): start it there, or unset REDIS_URL to use a local one"
  port_open 127.0.0.1 "$port" && return 0
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || die "Redis is not running and not installed: apt-get install redis-server (or run Docker and use docker compose)"
  fi
  say "starting redis-server on 127.0.0.1:$port (data in $RUN_DIR/redis, stopped by scripts/down.sh)"
  mkdir -p "$RUN_DIR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$RUN_DIR/redis" \
    --pidfile "$RUN_DIR/redis-server.pid" --appendonly yes --save "" >/dev/null
  wait_port 127.0.0.1 "$port" 30 || die "Redis did not open 127.0.0.1:$port within 30 s"
}

# Uses RABBITMQ_URL / REDIS_URL (default: the local servers) when reachable, else starts local ones.
ensure_services() {
  local rabbitmq_url="${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/}" redis_url="${REDIS_URL:-redis://localhost:6379/0}"
  url_reachable "$rabbitmq_url" 5672 || start_rabbitmq "$rabbitmq_url"
  url_reachable "$redis_url" 6379 || start_redis "$redis_url"
}

url_authority() { local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"; printf '%s' "${rest%%\?*}"; }
url_host() { local authority; authority="$(url_authority "$1")"; authority="${authority%:*}"; printf '%s' "${authority:-127.0.0.1}"; }
url_port() {  # url default_port
  local authority; authority="$(url_authority "$1")"
  if [[ "$authority" == *:* ]]; then printf '%s' "${authority##*:}"; else printf '%s' "$2"; fi
}
is_local() { [ "$1" = 127.0.0.1 ] || [ "$1" = localhost ]; }
url_reachable() { port_open "$(url_host "$1")" "$(url_port "$1" "$2")"; }  # url default_port

# The suite checks deploy/prometheus with promtool, from Debian's prometheus package.
ensure_promtool() {
  command -v promtool >/dev/null && return 0
  apt_install prometheus || die "the suite checks the alert rules with promtool: apt-get install prometheus (as root or with sudo)"
  command -v promtool >/dev/null || die "prometheus installed but promtool is not on PATH"
}
