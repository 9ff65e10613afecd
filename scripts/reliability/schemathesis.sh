#!/usr/bin/env bash
# Runs schemathesis with every check (`--checks all`: no 5xx, statuses,
# content types, headers and bodies as documented, schema-valid requests
# accepted, schema-violating ones rejected, auth enforced, ...) against
# GET /api/v1/openapi.json of a real examples/server.rs on PostgreSQL, with
# workers and webhooks on so that the stateful phase follows the document's
# links (submit -> status, organizations, retry, cancel; deliveries ->
# replay) with real ids. Fails on any check failure or a panic in the log.
#
#   scripts/reliability/schemathesis.sh             # installs schemathesis into a venv when missing
#   MAX_EXAMPLES=500 SEED=7 scripts/reliability/schemathesis.sh
#   scripts/reliability/schemathesis.sh --phases stateful   # extra arguments go to `st run`
#
# Configuration (statuses the checks accept): scripts/reliability/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
version=4.32.5
venv=${ST_VENV:-${TMPDIR:-/tmp}/onboarding-schemathesis-venv}
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi
cargo build -q --workspace --examples --all-features
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
db="rel_st_$(date +%s)_$$"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db"
port=$(free_port)
hook_port=$(free_port)
key="key-schemathesis-$$"
log="${TMPDIR:-/tmp}/schemathesis-server-$$.log"
# The webhook endpoint: answers 204 to every delivery (and its replays).
python3 - "$hook_port" <<'PY' &
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
PY
hook=$!
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" QUEUE_URL=database WORKERS=2 \
  API_KEYS="acme:$key" RATE_LIMIT=100000/s BIND_ADDR="127.0.0.1:$port" METRICS_ADDR=off \
  WEBHOOK_URLS="acme=http://127.0.0.1:$hook_port/hook" WEBHOOK_SECRET=schemathesis-secret \
  WEBHOOK_ALLOW_HTTP=true WEBHOOK_ALLOW_PRIVATE=true AUTH_FAILURE_LIMIT=off \
  ADMIN_TOKEN="admin-schemathesis-$$-0123456789" \
  RUST_LOG=warn "$CARGO_TARGET_DIR/debug/examples/server" > "$log" 2>&1 &
server=$!
cleanup() {
  cd /
  rm -rf "${work:-}"
  kill "$server" "$hook" 2>/dev/null || true
  wait "$server" "$hook" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
config="$PWD/scripts/reliability/schemathesis.toml"
# schemathesis keeps a cache in the working directory: not in the repository.
work=$(mktemp -d)
cd "$work"
"$venv/bin/st" --config-file "$config" run \
  "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks all \
  --max-examples "${MAX_EXAMPLES:-100}" \
  --seed "${SEED:-1}" \
  --generation-database none \
  --no-color \
  "$@"
if grep -q panicked "$log"; then
  echo "the server panicked (log: $log)"
  exit 1
fi
