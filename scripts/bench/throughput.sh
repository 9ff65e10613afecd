#!/usr/bin/env bash
# Every throughput figure of BENCHMARKS.md's "Throughput as deployed" from
# one run, on the same servers, one after the other (issue 17):
#
#   1. the two-write floor (criterion, `worker_backends`: one conditional
#      claim UPDATE and one fenced finish UPDATE per organization);
#   2. the deployed shape (`deployed.sh`: HTTP-only server, filled over
#      HTTP by loadgen with 4 connections, drained by separate worker
#      processes), PostgreSQL + Redis and PostgreSQL + SQL queue, RUNS
#      drains each with one worker process, 3 each with two, and the ingest
#      rate of every fill;
#   3. apalis 1.0 side by side (`apalis`, best settings, no latency probes);
#   4. the SQL-queue drain of 1,000,000 organizations and of 50,000 (`drain`).
#
#   bash scripts/bench/throughput.sh            # ~20 minutes on 2 cores
#
# Environment: RUNS (default 10), ORGS (default 100000), OUT (where the logs
# go, default /tmp/throughput-<time>), CARGO_TARGET_DIR. Needs an otherwise
# idle machine: every figure shares the 2 cores with the database.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-10}
ORGS=${ORGS:-100000}
OUT=${OUT:-/tmp/throughput-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
echo "logs in $OUT"

cargo build --quiet --release --all-features --example server --example worker --example loadgen
cargo bench --quiet -p onboarding-bench --bench worker_backends --bench drain --bench apalis --no-run 2> /dev/null

section() { echo; echo "== $(date -u +%H:%M:%S) $*"; }

section "1. floor: two PostgreSQL writes per organization"
cargo bench -p onboarding-bench --bench worker_backends -- --warm-up-time 2 floor_pg_two_writes > "$OUT/floor.log" 2>&1
grep -E 'floor_pg_two_writes' "$OUT/floor.log" | grep -E '\|' | tail -n 1

deployed() {
  local name=$1; shift
  env "$@" ORGS="$ORGS" bash scripts/bench/deployed.sh > "$OUT/$name.log" 2>&1
  grep -E 'drained in' "$OUT/$name.log" | sed 's/^/  /'
  # Median and slowest / median of the drain rates.
  grep -oE '= [0-9]+ organizations/s' "$OUT/$name.log" | awk '{print $2}' | sort -n |
    awk '{r[NR]=$1} END {m=(NR%2)?r[(NR+1)/2]:(r[NR/2]+r[NR/2+1])/2;
      printf "  median %.0f organizations/s over %d drains; slowest drain / median drain time %.2fx\n", m, NR, m/r[1]}'
  grep -E 'accepted requests/s|latency p50' "$OUT/$name.log" | sed 's/^/  /' | sort | uniq -c | sort -rn | head -n 4
}

section "2a. deployed: PostgreSQL + Redis, 1 worker process, $RUNS drains of $ORGS"
deployed redis QUEUE=redis RUNS="$RUNS"
section "2b. deployed: PostgreSQL + SQL queue, 1 worker process, $RUNS drains of $ORGS"
deployed database QUEUE=database RUNS="$RUNS"
section "2c. deployed: PostgreSQL + Redis, 2 worker processes, 3 drains"
deployed redis2 QUEUE=redis RUNS=3 WORKER_PROCS=2
section "2d. deployed: PostgreSQL + SQL queue, 2 worker processes, 3 drains"
deployed database2 QUEUE=database RUNS=3 WORKER_PROCS=2

section "3. apalis 1.0 side by side (in process, 10,000 jobs, 3 rounds)"
SKIP_LATENCY=1 ROUNDS=3 APALIS_OUT=apalis-throughput \
  APALIS_ROWS=ours_pg_redis,ours_pg_sqlqueue,apalis_pg_best,apalis_redis_best \
  cargo bench -p onboarding-bench --bench apalis > "$OUT/apalis.log" 2>&1 || echo "  (apalis bench failed: $OUT/apalis.log)"
grep -E '^\| (ours|apalis)' "$OUT/apalis.log" | sed 's/^/  /' || true

section "4. SQL-queue backlog: 50,000 then 1,000,000 organizations"
DRAIN_QUEUE=sql DRAIN_ITEMS=50000 cargo bench -p onboarding-bench --bench drain > "$OUT/drain-50k.log" 2>&1
grep -E '^(fill|drain|worker):' "$OUT/drain-50k.log" | sed 's/^/  50k /'
DRAIN_QUEUE=sql cargo bench -p onboarding-bench --bench drain > "$OUT/drain-1m.log" 2>&1
grep -E '^(fill|drain|worker):' "$OUT/drain-1m.log" | sed 's/^/  1M /'
section "done"
