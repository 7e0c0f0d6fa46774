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

docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

start_rabbitmq() {
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

start_redis() {
  port_open 127.0.0.1 6379 && return 0
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || die "Redis is not running and not installed: apt-get install redis-server (or run Docker and use docker compose)"
  fi
  say "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_port 127.0.0.1 6379 30 || die "Redis did not open 127.0.0.1:6379 within 30 s"
}

# Uses RABBITMQ_URL / REDIS_URL when they point at a reachable server, else starts local ones.
ensure_services() {
  if [ -z "${RABBITMQ_URL:-}" ] || ! url_reachable "$RABBITMQ_URL" 5672; then start_rabbitmq; fi
  if [ -z "${REDIS_URL:-}" ] || ! url_reachable "$REDIS_URL" 6379; then start_redis; fi
}

url_reachable() {  # url default_port
  local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"
  local host="${rest%%:*}" port="${rest##*:}"
  [ "$port" = "$rest" ] && port="$2"
  port_open "${host:-127.0.0.1}" "$port"
}
