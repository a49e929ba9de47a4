#!/usr/bin/env bash
# ./serve.sh       run the API (127.0.0.1:8000) on the embedded SQLite store, demo traffic, and the
#                  dashboard (127.0.0.1:5006) signed in as the user "demo"
# ./serve.sh postgres  the same on a local PostgreSQL (Debian's, in data/postgres), with two API processes:
#                  the demo writes through one (:8001), the dashboard streams from the other (:8000)
# ./serve.sh test  install what the tests need and run the whole suite
set -euo pipefail
cd "$(dirname "$0")"

API_HOST=127.0.0.1
API_PORT="${TRACES_API_PORT:-8000}"
DASHBOARD_PORT="${TRACES_DASHBOARD_PORT:-5006}"
DATA_DIR="${TRACES_DATA_DIR:-data}"   # logs and the demo token (and the store, when TRACES_DB_URL is unset)
PG_PORT="${TRACES_PG_PORT:-5433}"     # ./serve.sh postgres: the local PostgreSQL's port
PY=.venv/bin/python

# Create .venv on first run and (re)install when pyproject.toml changed since the last install.
ensure_venv() {
    local extras="$1" stamp=".venv/.installed${1:+-$1}"
    if [ ! -x "$PY" ]; then
        echo "creating .venv (first run)…"
        python3 -m venv .venv
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing the package${extras:+ with [$extras]} into .venv…"
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -e ".${extras:+[$extras]}"
        touch "$stamp" .venv/.installed   # [extras] installs the package too: no second install for ./serve.sh
    fi
}

# Debian packages the tests use, installed when missing and we are root.
ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        missing+=(postgresql)
    fi
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)   # not on a user's PATH
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing ${missing[*]} with apt-get…"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "note: ${missing[*]} missing and not root: tests that need them will be skipped" >&2
        fi
    fi
}

run_tests() {
    ensure_system_packages
    ensure_venv test
    shift || true
    echo "ruff check…"
    "$PY" -m ruff check .
    exec "$PY" -m pytest "$@"
}

# The components `./serve.sh` runs, in the order they start: a name, the log's description, the pid.
# Each runs in a session (so a process group) of its own: the terminal's Ctrl-C reaches only this
# script, which stops them in order, and stopping one stops everything it may have started.
NAMES=() LOGS=() PIDS=()
NEW_SESSION=("$PY" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])')   # then the command

# start NAME LOG ARGS…: run "$PY ARGS…" in the background in a new session; LOG is a file, or "" for the console.
start() {
    local name="$1" log="$2"
    shift 2
    if [ -n "$log" ]; then
        "${NEW_SESSION[@]}" "$PY" "$@" </dev/null >>"$log" 2>&1 &
        LOGS+=("its log is $log")
    else
        "${NEW_SESSION[@]}" "$PY" "$@" </dev/null &
        LOGS+=("its output is above")
    fi
    PIDS+=($!) NAMES+=("$name")
}

# stop_group PID…: SIGTERM to each process group, SIGKILL to whatever is left of them after 10 s
# (or at once on a second Ctrl-C).
stop_group() {
    local pid deadline=$((SECONDS + 10))
    for pid; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid; do
        while kill -0 -- "-$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] && [ -z "$FORCE" ]; do sleep 0.1; done
    done
    for pid; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    for pid; do wait "$pid" 2>/dev/null || true; done
}

# Stop everything started, the last started first: the dashboard and the demo (which can finish its open
# calls), then the API, then the database under it.
FORCE=""
stop_all() {
    trap 'FORCE=1' INT TERM HUP
    trap - EXIT
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_group "${PIDS[i]}"; done
    PIDS=()
}

# Ctrl-C, SIGTERM, the terminal closing: stop everything, then end by the same signal.
on_signal() {
    echo; echo "stopping…"
    stop_all
    trap - "$1"
    kill -"$1" $$
}

# One component ended by itself (a crash, a kill): say which, stop the others, fail.
check_running() {
    local i status code
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[i]}" 2>/dev/null && continue
        code=0; wait "${PIDS[i]}" 2>/dev/null || code=$?
        if [ "$code" -gt 128 ]; then status="killed by SIG$(kill -l "$((code - 128))" 2>/dev/null || echo "$((code - 128))")"
        else status="exit status $code"; fi
        echo >&2
        echo "serve.sh: ${NAMES[i]} ended ($status); ${LOGS[i]}. Stopping the rest…" >&2
        stop_all
        exit 1
    done
}

# wait_for URL WHAT SECONDS: until URL answers, while every component keeps running.
wait_for() {
    local deadline=$((SECONDS + $3))
    until "$PY" - "$1" <<'PYEOF' 2>/dev/null; do
import sys, urllib.request
urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=1)
PYEOF
        check_running
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "serve.sh: $2 did not answer $1 within $3 s; stopping" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# start_postgres: a PostgreSQL cluster of our own in $DATA_DIR/postgres (created on first run), on
# 127.0.0.1:$PG_PORT, as a component like the others; run as the postgres user when we are root.
start_postgres() {
    local bin data="$DATA_DIR/postgres" as=()
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [ -z "$bin" ]; then
        echo "serve.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
        exit 1
    fi
    [ "$(id -u)" = 0 ] && as=(/usr/sbin/runuser -u postgres --)
    if [ ! -f "$data/PG_VERSION" ]; then
        echo "creating a PostgreSQL cluster in $data (first run)…"
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres: "$data"
        "${as[@]}" "$bin/initdb" -D "$(realpath "$data")" -U postgres --auth=trust -E UTF8 >"$DATA_DIR/initdb.log"
    fi
    local server=("${as[@]}" "$bin/postgres" -D "$(realpath "$data")" -p "$PG_PORT" -c listen_addresses=127.0.0.1
                  -c unix_socket_directories="$(realpath "$data")")
    "${NEW_SESSION[@]}" "${server[@]}" </dev/null >>"$DATA_DIR/postgres.log" 2>&1 &
    PIDS+=($!) NAMES+=("PostgreSQL") LOGS+=("its log is $DATA_DIR/postgres.log")
    local deadline=$((SECONDS + 30))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
        check_running
        if [ "$SECONDS" -ge "$deadline" ]; then echo "serve.sh: PostgreSQL did not start; see $DATA_DIR/postgres.log" >&2; exit 1; fi
        sleep 0.2
    done
    "${as[@]}" "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'traces'" \
        | grep -q 1 || "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres traces
    export TRACES_DB_URL="postgresql://postgres@127.0.0.1:$PG_PORT/traces"
    # The JWT secret lives beside a SQLite file by default; on Postgres it is kept in the data folder.
    if [ -z "${TRACES_JWT_SECRET:-}" ]; then
        [ -f "$DATA_DIR/jwt.secret" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$DATA_DIR/jwt.secret")
        TRACES_JWT_SECRET="$(cat "$DATA_DIR/jwt.secret")"
        export TRACES_JWT_SECRET
    fi
}

run_all() {
    local mode="$1"
    ensure_venv ""
    local api_url="http://$API_HOST:$API_PORT" dashboard_url="http://$API_HOST:$DASHBOARD_PORT"
    local writer_url="$api_url" token_file="$DATA_DIR/demo.token"
    mkdir -p "$DATA_DIR"
    # TRACES_DATA_DIR moves the store (and the JWT secret beside it) too, unless TRACES_DB_URL says otherwise.
    if [ "$mode" = sqlite ] && [ -n "${TRACES_DATA_DIR:-}" ] && [ -z "${TRACES_DB_URL:-}" ]; then
        export TRACES_DB_URL="sqlite:///$DATA_DIR/traces.db"
    fi
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
    trap 'on_signal HUP' HUP
    trap stop_all EXIT

    [ "$mode" = postgres ] && start_postgres
    start "the API" "" -m dashboard api --host "$API_HOST" --port "$API_PORT" --no-access-log
    wait_for "$api_url/healthz" "the API" 30
    if [ "$mode" = postgres ]; then  # a second node: what the demo writes there streams from the first
        writer_url="http://$API_HOST:$((API_PORT + 1))"
        start "the second API process" "$DATA_DIR/api-2.log" -m dashboard api --host "$API_HOST" --port "$((API_PORT + 1))"
        wait_for "$writer_url/healthz" "the second API process" 30
    fi
    TRACES_API_URL="$writer_url" start "the demo traffic generator" "" -m dashboard demo --api-url "$writer_url"

    # The dashboard's token, for a week, in a file only this user can read: never on the screen.
    # (In a session of its own too: a Ctrl-C meanwhile stops everything once it is done, without a traceback.)
    rm -f "$token_file.tmp"
    (umask 077 && "${NEW_SESSION[@]}" "$PY" -m dashboard token --user demo --ttl 604800 </dev/null >"$token_file.tmp")
    mv -f "$token_file.tmp" "$token_file"
    TRACES_API_URL="$api_url" TRACES_TOKEN="$(cat "$token_file")" start "the dashboard" "$DATA_DIR/dashboard.log" \
        -m panel serve dashboard/app.py --address "$API_HOST" --port "$DASHBOARD_PORT" --liveness \
        --allow-websocket-origin "$API_HOST:$DASHBOARD_PORT" --allow-websocket-origin "localhost:$DASHBOARD_PORT"
    wait_for "$dashboard_url/liveness" "the dashboard" 60
    cat <<INFO

  Dashboard  $dashboard_url/app   (signed in as "demo")
  API        $api_url          (docs: $api_url/docs)
  Dashboard server log: $DATA_DIR/dashboard.log

  Watch the raw stream (the token is in $token_file, readable only by you):
    curl -N -H "Authorization: Bearer \$(cat $token_file)" $api_url/api/analytics/traces/stream

  Ctrl-C stops them all.

INFO
    if [ "$mode" = postgres ]; then
        echo "  On PostgreSQL ($TRACES_DB_URL): the demo writes through $writer_url, the dashboard streams from $api_url."
        echo
    fi
    while true; do
        wait -n "${PIDS[@]}" 2>/dev/null || true   # (no "Killed" line from bash: check_running says it)
        check_running
    done
}

case "${1:-}" in
    test) run_tests "$@" ;;
    "") run_all sqlite ;;
    postgres) run_all postgres ;;
    *) echo "usage: ./serve.sh [postgres | test [pytest args…]]" >&2; exit 2 ;;
esac
