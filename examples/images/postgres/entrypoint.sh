#!/bin/sh
# Initialises a cluster on first start (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), then runs postgres in the
# foreground as the postgres user — through `exec setpriv`, so the server is PID 1 and gets `docker stop`'s signal
# (runuser would stay in between and swallow it). Extra arguments (`postgres -c fsync=off …`) go to the server.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=md5 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 md5" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != "postgres" ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" | runuser -u postgres -- postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "initialised database $POSTGRES_DB for user $POSTGRES_USER"
fi
[ "${1:-}" = "postgres" ] && shift
exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" -c listen_addresses='*' "$@"
