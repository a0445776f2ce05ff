#!/usr/bin/env bash
# A private ClickHouse server from Debian (clickhouse-server, 18.16.1 on
# bookworm) on loopback, for herald's tests (tests/integration/test_clickhouse.py)
# and for trying the clickhouse backend by hand.
#
# Usage:
#   scripts/clickhouse-server.sh install        install clickhouse-server with apt-get
#                                               if missing (needs root), nothing else
#   scripts/clickhouse-server.sh start [DIR]    install if needed, write a private config
#                                               into DIR (default: a new mktemp dir), start
#                                               the server, wait for /ping, then print:
#       HERALD_CLICKHOUSE_URL=http://127.0.0.1:PORT
#       HERALD_CLICKHOUSE_HTTP_PORT=PORT
#       HERALD_CLICKHOUSE_TCP_PORT=PORT
#       HERALD_CLICKHOUSE_USER=herald
#       HERALD_CLICKHOUSE_PASSWORD=<password>
#       HERALD_CLICKHOUSE_STATE=DIR
#     (shell assignments: eval "$(scripts/clickhouse-server.sh start)"; the same
#     lines are kept in DIR/server.env)
#   scripts/clickhouse-server.sh stop [DIR]     stop the server of DIR (default
#                                               $HERALD_CLICKHOUSE_STATE); DIR is kept
#                                               unless HERALD_CLICKHOUSE_CLEAN=1
#
# The server listens on 127.0.0.1 only, on free ports (HTTP and native TCP; no
# interserver, HTTPS or other listeners), never the system instance's 8123/9000,
# and keeps its data, temporary files and logs under DIR. Users:
#   default  password $HERALD_CLICKHOUSE_PASSWORD (random when unset), loopback only
#   herald   the same password, loopback only (the user herald's tests insert as)
# The time zone is UTC. Progress goes to stderr.
set -euo pipefail

log() { echo "clickhouse-server: $*" >&2; }
die() { log "$*"; exit 1; }

server_bin() {
  local b
  for b in "$(command -v clickhouse-server 2>/dev/null || true)" /usr/sbin/clickhouse-server \
           /usr/bin/clickhouse-server; do
    [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

ensure_installed() {
  server_bin >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || die "clickhouse-server is missing: apt-get install clickhouse-server (as root)"
  log "installing clickhouse-server from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # The package's postinst tries to start the system service: harmless where
  # there is no init system (policy-rc.d or no systemd), and that instance
  # would use 8123/9000, never ours.
  apt-get install -y -qq --no-install-recommends clickhouse-server >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends clickhouse-server >/dev/null
  }
  server_bin >/dev/null || die "clickhouse-server not found after install"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# XML text: & < > escaped (the password is ours, but stay safe).
xml() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

write_config() {
  local dir=$1 http=$2 tcp=$3 password=$4
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>30</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>500</flush_interval_milliseconds>
    </query_log>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
  local pw
  pw=$(xml "$password")
  cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
            <log_queries>1</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password>$pw</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <herald>
            <password>$pw</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </herald>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  chmod 600 "$dir/users.xml"
}

ping_ok() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/ping" % sys.argv[1], timeout=1) as r:
        sys.exit(0 if r.read().strip() == b"Ok." else 1)
except Exception:
    sys.exit(1)
EOF
}

start() {
  local dir=${1:-}
  ensure_installed
  local bin
  bin=$(server_bin)
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-clickhouse.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
    die "a server of $dir is already running (pid $(cat "$dir/server.pid")): stop it first"
  fi
  local password=${HERALD_CLICKHOUSE_PASSWORD:-}
  if [ -z "$password" ]; then
    password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  fi
  local http tcp tries=0
  while :; do
    http=$(free_port)
    tcp=$(free_port)
    [ "$http" != "$tcp" ] && break
  done
  write_config "$dir" "$http" "$tcp" "$password"
  # 18.16 runs as root without complaint (it only warns); the data directory
  # is then root's. Running as the package's clickhouse user would need DIR to
  # be reachable by it: not worth it for a throwaway test server.
  log "starting $bin on 127.0.0.1:$http (state in $dir)"
  setsid "$bin" --config-file="$dir/config.xml" --pid-file="$dir/clickhouse.pid" \
    </dev/null >"$dir/log/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/server.pid"
  while ! ping_ok "$http"; do
    tries=$((tries + 1))
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
      die "the server exited during start-up (logs in $dir/log)"
    fi
    if [ "$tries" -ge 600 ]; then
      kill "$pid" 2>/dev/null || true
      die "no answer on /ping after 60 s (logs in $dir/log)"
    fi
    sleep 0.1
  done
  {
    echo "HERALD_CLICKHOUSE_URL=http://127.0.0.1:$http"
    echo "HERALD_CLICKHOUSE_HTTP_PORT=$http"
    echo "HERALD_CLICKHOUSE_TCP_PORT=$tcp"
    echo "HERALD_CLICKHOUSE_USER=herald"
    echo "HERALD_CLICKHOUSE_PASSWORD=$password"
    echo "HERALD_CLICKHOUSE_STATE=$dir"
  } | tee "$dir/server.env"
  chmod 600 "$dir/server.env"
  log "ready after $((tries / 10)).$((tries % 10)) s"
}

stop() {
  local dir=${1:-${HERALD_CLICKHOUSE_STATE:-}}
  [ -n "$dir" ] || die "stop: which state directory? (argument or HERALD_CLICKHOUSE_STATE)"
  [ -d "$dir" ] || die "stop: $dir is not a directory"
  if [ -f "$dir/server.pid" ]; then
    local pid i
    pid=$(cat "$dir/server.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "server $pid did not stop in 10 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$dir/server.pid"
  fi
  if [ "${HERALD_CLICKHOUSE_CLEAN:-0}" = 1 ]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  install) ensure_installed; server_bin ;;
  start) shift; start "${1:-}" ;;
  stop) shift; stop "${1:-}" ;;
  *) echo "usage: $0 install | start [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
