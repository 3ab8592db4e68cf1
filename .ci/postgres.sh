#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server (Debian's package) on 127.0.0.1:55432 for the tests
# and prints the URL to use. Data lives under /tmp; it is discarded with the machine.
set -euo pipefail
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
DATA="${PGDATA_DIR:-/tmp/reportgen-pg}"
PORT="${PGPORT_TEST:-55432}"
RUN_AS=()
if [ "$(id -u)" = "0" ]; then RUN_AS=(runuser -u postgres --); fi
if ! "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  rm -rf "$DATA" && mkdir -p "$DATA"
  [ "$(id -u)" = "0" ] && chown postgres "$DATA"
  "${RUN_AS[@]}" "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on" -l "$DATA/server.log" -w start >/dev/null
fi
psql -h 127.0.0.1 -p "$PORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='reportgen_test'" | grep -q 1 \
  || psql -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE reportgen_test" >/dev/null
echo "postgresql://postgres@127.0.0.1:$PORT/reportgen_test"
