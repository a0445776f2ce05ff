#!/usr/bin/env bash
# A real Umami 2.10.0 server on loopback for herald's tests
# (tests/integration/test_umami_real.py), built from the npm registry only and
# run against a private PostgreSQL cluster from Debian. The npm package holds
# sources only, so it is built here (next build), with three patches: Prisma's
# WASM query engine and pg driver adapter instead of the native engine (which
# would be downloaded from binaries.prisma.sh), and the upstream 2.10.0 bug that
# makes every identify a 500 (`key` for `sessionKey`). The schema is applied
# with psql from Prisma's migration SQL (prisma migrate needs a native engine).
#
# Usage:
#   scripts/umami-server.sh build          build Umami into the cache (if missing), nothing else
#   scripts/umami-server.sh start          build if needed, start PostgreSQL + Umami, print:
#       HERALD_UMAMI_URL=http://127.0.0.1:PORT
#       HERALD_UMAMI_WEBSITE=<website uuid>
#       HERALD_UMAMI_DATABASE_URL=postgresql://umami@127.0.0.1:PGPORT/umami
#       HERALD_UMAMI_STATE=<state dir, for stop>
#     (shell assignments: eval "$(scripts/umami-server.sh start)")
#   scripts/umami-server.sh stop [STATE]   stop both servers and remove the state dir
#                                          (STATE defaults to $HERALD_UMAMI_STATE)
#
# The build (1.5-2.5 minutes on 2 cores, 1.2 GB of scratch space and 350 MB of npm
# cache; 57 MB kept) is cached in ${HERALD_UMAMI_CACHE:-$HOME/.cache/herald-umami}/
# umami-2.10.0-<hash of the build steps>, so a change to the steps below rebuilds.
# Every start uses a fresh cluster and database with the migrations applied and
# one website row, so runs never see each other's events.
# Needs: node >= 18 and npm (registry reachable for a cold build), python3, and
# PostgreSQL from Debian (installed with apt-get when missing and we are root).
# Everything listens on 127.0.0.1 only. Progress goes to stderr.
set -euo pipefail

UMAMI_VERSION=2.10.0
CACHE=${HERALD_UMAMI_CACHE:-$HOME/.cache/herald-umami}
export NEXT_TELEMETRY_DISABLED=1 DISABLE_TELEMETRY=1

log() { echo "umami-server: $*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_postgresql() {
  pg_bindir >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL is missing: apt-get install postgresql (as root)"
  log "installing PostgreSQL from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  }
  pg_bindir >/dev/null || die "PostgreSQL binaries not found after install"
}

# Run a PostgreSQL server program: initdb and postgres refuse to run as root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The build steps, in a process of their own so that set -e holds in them.
build_in() {
  local work=$1
  cd "$work"
  npm pack --silent "umami@$UMAMI_VERSION" >/dev/null
  tar xzf "umami-$UMAMI_VERSION.tgz"
  cd package
  # sharp (via @netlify/plugin-nextjs) downloads libvips from GitHub: not needed.
  npm pkg delete devDependencies.@netlify/plugin-nextjs
  # No lifecycle scripts (Prisma's would fetch engines from binaries.prisma.sh); add
  # Prisma's pg driver adapter of the same version as @prisma/client (5.7.0).
  npm install --no-audit --no-fund --legacy-peer-deps --ignore-scripts --loglevel=error \
    @prisma/adapter-pg@5.7.0 @prisma/driver-adapter-utils@5.7.0 pg@8.11.3 >&2
  # Prisma: the WASM query engine shipped inside @prisma/client 5.7.0.
  # db/postgresql -> prisma/ (the script picks the directory by database type).
  DATABASE_TYPE=postgresql node scripts/copy-db-files.js >&2
  python3 - <<'PY'
p = 'prisma/schema.prisma'
s = open(p).read()
old = 'provider = "prisma-client-js"\n'
assert old in s
s = s.replace(old, old + '  previewFeatures = ["driverAdapters"]\n  engineType = "wasm"\n', 1)
open(p, 'w').write(s)
PY
  mkdir -p .prisma-placeholders
  touch .prisma-placeholders/{schema-engine,query-engine,libquery_engine.so.node}
  chmod +x .prisma-placeholders/{schema-engine,query-engine}
  PRISMA_SCHEMA_ENGINE_BINARY=$PWD/.prisma-placeholders/schema-engine \
  PRISMA_QUERY_ENGINE_BINARY=$PWD/.prisma-placeholders/query-engine \
  PRISMA_QUERY_ENGINE_LIBRARY=$PWD/.prisma-placeholders/libquery_engine.so.node \
    npx prisma generate --no-engine >&2
  test -f node_modules/.prisma/client/query-engine.wasm
  # @umami/prisma-client: use the pg adapter; spread raw-query parameters.
  python3 - <<'PY'
p = 'node_modules/@umami/prisma-client/dist/index.js'
s = open(p).read()
old = '  const client2 = new client$2.PrismaClient({\n    errorFormat: "pretty",'
assert old in s
s = s.replace(old, '''  const { Pool } = require("pg");
  const { PrismaPg } = require("@prisma/adapter-pg");
  const client2 = new client$2.PrismaClient({
    adapter: new PrismaPg(new Pool({ connectionString: process.env.DATABASE_URL })),
    errorFormat: "pretty",''', 1)
assert s.count('$queryRawUnsafe(query, params)') == 2
s = s.replace('$queryRawUnsafe(query, params)', '$queryRawUnsafe(query, ...params)')
open(p, 'w').write(s)
PY
  # Upstream bug in 2.10.0: identify writes `key` instead of `sessionKey` (500).
  sed -i 's/^    key: a.key,$/    sessionKey: a.key,/' \
    src/queries/analytics/sessions/saveSessionData.ts
  grep -q 'sessionKey: a.key' src/queries/analytics/sessions/saveSessionData.ts
  npx next build >&2
  cp node_modules/.prisma/client/query-engine.wasm \
    .next/standalone/node_modules/.prisma/client/
  # Keep only what runs (57 MB) and the migration SQL.
  mkdir -p "$work/out"
  mv .next/standalone "$work/out/standalone"
  mkdir -p "$work/out/migrations"
  for d in prisma/migrations/*/; do
    cp "$d/migration.sql" "$work/out/migrations/$(basename "$d").sql"
  done
  ls "$work"/out/migrations/*.sql >/dev/null
  touch "$work/out/.complete"
}

# The cache directory: named after the version and the build steps.
BUILT=$CACHE/umami-$UMAMI_VERSION-$(declare -f build_in | sha256sum | cut -c1-12)

# ---- build (cached) ----------------------------------------------------------------
build() {
  if [ -f "$BUILT/.complete" ]; then
    return 0
  fi
  command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 18 ] || die "node >= 18 is required (found $(node --version))"
  mkdir -p "$CACHE"
  local work
  work=$(mktemp -d "$CACHE/build.XXXXXX")
  log "building Umami $UMAMI_VERSION in $work (a few minutes; cached afterwards)"
  local start=$SECONDS
  if ! bash "$0" _build_in "$work"; then
    rm -rf "$work"
    die "build failed"
  fi
  rm -rf "$BUILT"
  mv "$work/out" "$BUILT"
  rm -rf "$work"
  log "built in $((SECONDS - start)) s: $BUILT"
}

# ---- start -------------------------------------------------------------------------
stop_state() {
  local state=$1
  [ -d "$state" ] || return 0
  if [ -f "$state/umami.pid" ]; then
    local pid
    pid=$(cat "$state/umami.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ -f "$state/pgdata/postmaster.pid" ]; then
    as_pg "$(pg_bindir)/pg_ctl" -D "$state/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}

start() {
  ensure_postgresql
  build
  local bin state pgport port website dburl
  bin=$(pg_bindir)
  state=$(mktemp -d "${TMPDIR:-/tmp}/herald-umami.XXXXXX")
  chmod 755 "$state"
  # Whatever fails from here on (set -e, die) stops what was started.
  trap "stop_state '$state'" EXIT
  mkdir "$state/pgdata" "$state/socket"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$state/pgdata" "$state/socket"
  pgport=$(free_port)
  log "PostgreSQL ($bin) on 127.0.0.1:$pgport"
  as_pg "$bin/initdb" -D "$state/pgdata" -U umami -A trust -E UTF8 --no-locale \
    >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; false; }
  as_pg "$bin/pg_ctl" -D "$state/pgdata" -l "$state/pgdata/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $state/socket -c fsync=off" start >/dev/null
  dburl=postgresql://umami@127.0.0.1:$pgport/umami
  psql -q -v ON_ERROR_STOP=1 "postgresql://umami@127.0.0.1:$pgport/postgres" \
    -c 'CREATE DATABASE umami' >/dev/null
  local f
  for f in "$BUILT"/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 "$dburl" -f "$f" >/dev/null
  done
  website=$(python3 -c 'import uuid; print(uuid.uuid4())')
  psql -q -v ON_ERROR_STOP=1 "$dburl" -c \
    "insert into website (website_id, name, domain, user_id, created_at)
     select '$website', 'herald-test', 'example.test', user_id, now()
     from \"user\" where username = 'admin'" >/dev/null
  port=$(free_port)
  log "Umami $UMAMI_VERSION on 127.0.0.1:$port"
  (
    cd "$BUILT/standalone"
    DATABASE_URL=$dburl PORT=$port HOSTNAME=127.0.0.1 \
      exec node server.js >"$state/umami.log" 2>&1 </dev/null
  ) &
  echo $! >"$state/umami.pid"
  local i
  for i in $(seq 300); do
    if python3 - "$port" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/api/heartbeat" % sys.argv[1], timeout=1).read()
PY
    if ! kill -0 "$(cat "$state/umami.pid")" 2>/dev/null; then
      cat "$state/umami.log" >&2
      die "Umami exited"
    fi
    sleep 0.1
  done
  [ "$i" -lt 300 ] || { cat "$state/umami.log" >&2; die "Umami did not answer /api/heartbeat"; }
  trap - EXIT
  echo "HERALD_UMAMI_URL=http://127.0.0.1:$port"
  echo "HERALD_UMAMI_WEBSITE=$website"
  echo "HERALD_UMAMI_DATABASE_URL=$dburl"
  echo "HERALD_UMAMI_STATE=$state"
}

case "${1:-}" in
  build) build ;;
  _build_in) build_in "$2" ;;
  start) start ;;
  stop)
    state=${2:-${HERALD_UMAMI_STATE:-}}
    [ -n "$state" ] || die "stop: give the state dir (or set HERALD_UMAMI_STATE)"
    case "$state" in
      */herald-umami.*) ;;
      *) die "stop: $state is not a herald-umami state dir" ;;
    esac
    stop_state "$state"
    ;;
  *) echo "usage: $0 build | start | stop [STATE]" >&2; exit 2 ;;
esac
