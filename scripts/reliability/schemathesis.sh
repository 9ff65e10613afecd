#!/usr/bin/env bash
# Runs schemathesis against a real examples/server.rs on PostgreSQL, driven
# by GET /api/v1/openapi.json: every generated request must be answered
# without a 5xx, and every error must be problem+json (schemathesis checks
# the answers against the document).
#
#   scripts/reliability/schemathesis.sh            # installs schemathesis into a venv when missing
#   MAX_EXAMPLES=500 scripts/reliability/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
venv=${ST_VENV:-${TMPDIR:-/tmp}/onboarding-schemathesis-venv}
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q schemathesis
fi
cargo build -q --workspace --examples --all-features
db="rel_st_$(date +%s)_$$"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key="key-schemathesis-$$"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" QUEUE_URL=database WORKERS=0 \
  API_KEYS="acme:$key" RATE_LIMIT=100000/s BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/debug/examples/server" > "${TMPDIR:-/tmp}/schemathesis-server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true;
            psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
"$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error \
  --max-examples "${MAX_EXAMPLES:-200}" "$@"
if grep -q panicked "${TMPDIR:-/tmp}/schemathesis-server.log"; then
  echo "the server panicked"; exit 1
fi
