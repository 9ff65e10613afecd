#!/usr/bin/env bash
# Throughput as deployed: an HTTP-only server (WORKERS=0) on PostgreSQL with
# a Redis cache, filled over HTTP by `examples/loadgen` (4 connections), then
# drained by separate `examples/worker` processes (no-op processor), the
# progress read over HTTP (`GET /api/v1/batches?state=running`).
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
# REDIS (default redis://127.0.0.1:6379). Prints per run: the drain rate,
# the CPU each side used during the drain (PostgreSQL, workers, server,
# Redis; in cores busy on average, 2 on this machine), and the ingest rate
# with p50/p99 of the 202 (from loadgen). When PostgreSQL preloads
# `pg_stat_statements` (shared_preload_libraries), also the statements of
# the drain by total execution time (STATEMENTS, default 8; 0: none), with
# their calls, rows and share of the database's time. BEFORE_DRAIN_SQL:
# statements run on the filled database before the workers start (for
# experiments, e.g. dropping an index to measure what it costs).
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
STATEMENTS=${STATEMENTS:-8}
pg_stats=false
if [ "$STATEMENTS" -gt 0 ] && psql -Atq "$PG/postgres" -c "SHOW shared_preload_libraries" | grep -q pg_stat_statements; then
  pg_stats=true
fi
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

# CPU time (clock ticks, user + system) of the processes whose command name
# is $1: what each side spent during a drain.
cpu_ticks() {
  local total=0 pid
  for pid in $(pgrep -x "$1"); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# Whole machine: busy ticks (all but idle and iowait) from /proc/stat.
machine_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
cpu_all() { echo "$(cpu_ticks postgres) $(cpu_ticks worker) $(cpu_ticks server) $(cpu_ticks redis-server) $(machine_busy)"; }

# pg_stat_statements of the bench database: reset, and the top statements
# since the reset ($1: what they are of, for the heading).
reset_statements() {
  $pg_stats || return 0
  psql -q "$PG/$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
    -c "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)" > /dev/null
}
print_statements() {
  $pg_stats || return 0
  echo "run $run: statements of the $1 by total time (pg_stat_statements; ms, share of the database's time, µs per organization, WAL bytes per organization, full-page images, planning µs per organization):"
  psql -q "$PG/$db" -P pager=off -F ' | ' -A -c "
    WITH s AS (SELECT * FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
    SELECT calls, round(total_exec_time) AS total_ms, round((100 * total_exec_time / sum(total_exec_time) OVER ())::numeric, 1) AS pct,
      round((1000 * total_exec_time / $ORGS)::numeric, 2) AS us_per_org, rows, round((total_exec_time / NULLIF(calls, 0))::numeric, 2) AS mean_ms,
      round(wal_bytes / $ORGS) AS wal_bytes_per_org, wal_fpi, round((1000 * total_plan_time / $ORGS)::numeric, 2) AS plan_us_per_org,
      left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
    FROM s ORDER BY total_exec_time DESC LIMIT $STATEMENTS" | sed "s/^/run $run:   /"
}
# CPU each side used between two `cpu_all` readings, over $1 seconds.
print_cpu() {
  local what=$1 took=$2 hz
  hz=$(getconf CLK_TCK)
  read -r a0 b0 c0 d0 e0 <<< "$3"
  read -r a1 b1 c1 d1 e1 <<< "$4"
  printf 'run %s: CPU during the %s, in cores busy on average: PostgreSQL %.2f, worker(s) %.2f, server %.2f, Redis %.2f; whole machine %.2f of %s\n' \
    "$run" "$what" "$(echo "($a1 - $a0) / $hz / $took" | bc -l)" "$(echo "($b1 - $b0) / $hz / $took" | bc -l)" \
    "$(echo "($c1 - $c0) / $hz / $took" | bc -l)" "$(echo "($d1 - $d0) / $hz / $took" | bc -l)" \
    "$(echo "($e1 - $e0) / $hz / $took" | bc -l)" "$(nproc)"
}

# Whether every batch is completed, read over HTTP: the first page of the
# running batches (`state=running`, limit 1) is empty once the last batch's
# completion is recorded, which a worker does right after its last finish.
# One batch's counts per poll: reading every batch's counts each 250 ms
# (the first version of this script) was 17-19 % of the database's time
# in a 100,000-organization drain, a load the measurement put on what it
# measured.
drained() {
  local page
  page=$(curl -sf -H "Authorization: Bearer $KEY" \
    "http://127.0.0.1:$PORT/api/v1/batches?state=running&limit=1") || return 1
  [ "$(jq '.data | length' <<< "$page")" = 0 ]
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
  reset_statements
  fill_started=$(date +%s.%N)
  fill_cpu=$(cpu_all)
  ingest=$("$BIN/loadgen" --addr "127.0.0.1:$PORT" --api-key "$KEY" --clients 4 --requests $((ORGS / 1000)) \
    --probes 0 --completion 0 --server-pid "$server" 2>&1 | tail -n 20)
  fill_took=$(echo "$(date +%s.%N) - $fill_started" | bc -l)
  # The fill's shares: the server (JSON, validation, events, logging) beside
  # the database (the client, loadgen, is not counted).
  print_cpu "fill (ingest)" "$fill_took" "$fill_cpu" "$(cpu_all)"
  print_statements "fill (ingest)"
  if [ -n "${BEFORE_DRAIN_SQL:-}" ]; then psql -q "$PG/$db" -c "$BEFORE_DRAIN_SQL"; fi
  reset_statements
  started=$(date +%s.%N)
  drain_cpu=$(cpu_all)
  for w in $(seq 1 "$WORKER_PROCS"); do
    "${common[@]}" WORKERS="$WORKER_SLOTS" METRICS_ADDR=127.0.0.1:0 "$BIN/worker" > "/tmp/$prefix-worker$w.log" 2>&1 &
    pids+=("$!")
  done
  deadline=$(( $(date +%s) + 600 ))
  while ! drained; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "run $run: not drained in 600 s" >&2; exit 1; }
    sleep 0.25
  done
  took=$(echo "$(date +%s.%N) - $started" | bc -l)
  printf 'run %s: queue %s, %s organizations, %s worker process(es) x %s: drained in %.2f s = %.0f organizations/s\n' \
    "$run" "$QUEUE" "$ORGS" "$WORKER_PROCS" "$WORKER_SLOTS" "$took" "$(echo "$ORGS / $took" | bc -l)"
  print_cpu "drain" "$took" "$drain_cpu" "$(cpu_all)"
  print_statements "drain"
  echo "$ingest" | grep -iE "accepted|p50|202" | sed "s/^/run $run ingest: /" || true
  stop_all
  psql -q "$PG/postgres" -c "DROP DATABASE $db WITH (FORCE)"
  redis-cli -u "$REDIS" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS" del > /dev/null
done
