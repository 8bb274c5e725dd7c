#!/usr/bin/env bash
# Entry point of the PostgreSQL stand-in image: initialise the cluster once (user, password,
# database from the official image's variables), then run the server in the foreground.
set -euo pipefail
if [[ "${1:-}" != postgres ]]; then exec "$@"; fi
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required (the official postgres image asks for it too)}"
user="${POSTGRES_USER:-postgres}" db="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    pw="$(mktemp)"; printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth=scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pw"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [[ "$db" != postgres ]]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start >/dev/null
        PGPASSWORD="$POSTGRES_PASSWORD" createdb -h /var/run/postgresql -U "$user" "$db"
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "postgres stand-in: initialised $PGDATA (user $user, database $db)"
fi
shift
exec postgres -D "$PGDATA" -k /var/run/postgresql "$@"
