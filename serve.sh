#!/usr/bin/env bash
# ./serve.sh       run the API (127.0.0.1:8000) on the embedded SQLite store, demo traffic, and the
#                  dashboard (127.0.0.1:5006) signed in as the user "demo"
# ./serve.sh test  install what the tests need and run the whole suite
set -euo pipefail
cd "$(dirname "$0")"

API_HOST=127.0.0.1
API_PORT="${TRACES_API_PORT:-8000}"
DASHBOARD_PORT="${TRACES_DASHBOARD_PORT:-5006}"
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
        touch "$stamp"
    fi
}

# Debian packages the tests use, installed when missing and we are root.
ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        missing+=(postgresql)
    fi
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

wait_for_api() {
    for _ in $(seq 1 100); do
        if "$PY" - "$1" <<'PYEOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)
PYEOF
        sleep 0.1
    done
    echo "the API did not start; see above" >&2
    return 1
}

run_all() {
    ensure_venv ""
    local api_url="http://$API_HOST:$API_PORT" pids=()
    stop() {
        trap - INT TERM EXIT
        echo; echo "stopping…"
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    }
    trap stop INT TERM EXIT

    "$PY" -m dashboard api --host "$API_HOST" --port "$API_PORT" --no-access-log & pids+=($!)
    wait_for_api "$api_url"
    TRACES_API_URL="$api_url" "$PY" -m dashboard demo --api-url "$api_url" & pids+=($!)

    local token
    mkdir -p data
    token="$("$PY" -m dashboard token --user demo --ttl 604800)"
    TRACES_API_URL="$api_url" TRACES_TOKEN="$token" "$PY" -m panel serve dashboard/app.py \
        --address "$API_HOST" --port "$DASHBOARD_PORT" --allow-websocket-origin "$API_HOST:$DASHBOARD_PORT" \
        --allow-websocket-origin "localhost:$DASHBOARD_PORT" >>data/dashboard.log 2>&1 & pids+=($!)
    cat <<INFO

  Dashboard  http://$API_HOST:$DASHBOARD_PORT/app   (signed in as "demo")
  API        $api_url          (docs: $api_url/docs)
  Dashboard server log: data/dashboard.log

  Watch the raw stream:
    curl -N -H "Authorization: Bearer $token" $api_url/api/analytics/traces/stream

  Ctrl-C stops all three.

INFO
    wait -n "${pids[@]}" || true
}

case "${1:-}" in
    test) run_tests "$@" ;;
    "") run_all ;;
    *) echo "usage: ./serve.sh [test [pytest args…]]" >&2; exit 2 ;;
esac
