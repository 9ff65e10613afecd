#!/usr/bin/env bash
# Throughput as deployed: an HTTP-only server (WORKERS=0) on PostgreSQL with
# a Redis cache, filled over HTTP by `examples/loadgen` (4 connections), then
# drained by separate `examples/worker` processes (no-op processor), the
# progress read over HTTP (`GET /api/v1/batches`).
#
#   cargo build --release --all-features --example server --example worker --example loadgen
#   bash scripts/bench/deployed.sh                      # Redis queue, 50,000 organizations, 1 worker process
#   QUEUE=database WORKER_PROCS=2 bash scripts/bench/deployed.sh
#
# Environment: QUEUE (`redis`, default, or `database`: the SQL queue), ORGS
# (default 50000, a multiple of 1000), WORKER_PROCS (default 1), WORKER_SLOTS
# (WORKERS of each worker, default 256), RUNS (drains in a row, default 1;
# each run fills and drains a fresh database), BIN (default
# target/release/examples), PG (default postgres://postgres@127.0.0.1:5432),
# REDIS (default redis://127.0.0.1:6379). Prints one line per run: the
# ingest rate with p50/p99 of the 202 (from loadgen) and the drain rate.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/examples}
QUEUE=${QUEUE:-redis}
ORGS=${ORGS:-50000}
WORKER_PROCS=${WORKER_PROCS:-1}
WORKER_SLOTS=${WORKER_SLOTS:-256}
RUNS=${RUNS:-1}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${REDIS:-redis://127.0.0.1:6379}
PORT=${PORT:-18480}
KEY=deployed-bench-key-0123456789
for b in server worker loadgen; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release --all-features --example server --example worker --example loadgen" >&2; exit 2; }
done
case "$QUEUE" in
  redis) QUEUE_URL=$REDIS ;;
  database) QUEUE_URL=database ;;
  *) echo "QUEUE: redis or database" >&2; exit 2 ;;
esac

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT

# Completed organizations of every batch, read over HTTP page by page.
completed() {
  local total=0 cursor="" page
  while :; do
    page=$(curl -sf -H "Authorization: Bearer $KEY" \
      "http://127.0.0.1:$PORT/api/v1/batches?limit=200${cursor:+&cursor=$cursor}") || { echo 0; return; }
    total=$((total + $(jq "[.data[].counts.completed] | add // 0" <<< "$page")))
    cursor=$(jq -r ".next_cursor // empty" <<< "$page")
    [ -n "$cursor" ] || break
  done
  echo "$total"
}

for run in $(seq 1 "$RUNS"); do
  db="onb_deployed_$$_$run"
  prefix="deployed$$r$run"
  psql -q "$PG/postgres" -c "CREATE DATABASE $db"
  common=(env DATABASE_URL="$PG/$db" QUEUE_URL="$QUEUE_URL" CACHE_URL="$REDIS" QUEUE_PREFIX="$prefix"
    PROCESSOR=noop RUST_LOG=warn)
  "${common[@]}" API_KEYS="bench:$KEY" RATE_LIMIT=1000000/s WORKERS=0 BIND_ADDR="127.0.0.1:$PORT" \
    METRICS_ADDR=off "$BIN/server" > "/tmp/$prefix-server.log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.1; done
  ingest=$("$BIN/loadgen" --addr "127.0.0.1:$PORT" --api-key "$KEY" --clients 4 --requests $((ORGS / 1000)) \
    --probes 0 --completion 0 --server-pid "$server" 2>&1 | tail -n 20)
  started=$(date +%s.%N)
  for w in $(seq 1 "$WORKER_PROCS"); do
    "${common[@]}" WORKERS="$WORKER_SLOTS" METRICS_ADDR=127.0.0.1:0 "$BIN/worker" > "/tmp/$prefix-worker$w.log" 2>&1 &
    pids+=("$!")
  done
  deadline=$(( $(date +%s) + 600 ))
  while [ "$(completed)" -lt "$ORGS" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "run $run: not drained in 600 s" >&2; exit 1; }
    sleep 0.25
  done
  took=$(echo "$(date +%s.%N) - $started" | bc -l)
  printf 'run %s: queue %s, %s organizations, %s worker process(es) x %s: drained in %.2f s = %.0f organizations/s\n' \
    "$run" "$QUEUE" "$ORGS" "$WORKER_PROCS" "$WORKER_SLOTS" "$took" "$(echo "$ORGS / $took" | bc -l)"
  echo "$ingest" | grep -iE "accepted|p50|202" | sed "s/^/run $run ingest: /" || true
  stop_all
  psql -q "$PG/postgres" -c "DROP DATABASE $db WITH (FORCE)"
  redis-cli -u "$REDIS" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS" del > /dev/null
done
