#!/usr/bin/env bash
# How docs/bench/loadgen.* were produced: PostgreSQL + Redis, the server's
# built-in no-op processor (PROCESSOR=noop), CLIENTS concurrent clients (default 4).
# Starts the server on 127.0.0.1:18080 with a fresh database and Redis prefix,
# runs loadgen, stops the server, cleans up. Run from the repository root after
#   cargo build --release --all-features --example server --example loadgen
set -u
CLIENTS=${CLIENTS:-4}
REQUESTS=${REQUESTS:-300}
OUT=${OUT:-docs/bench}
DB=onb_bench_load_$(date +%s)
PREFIX=onb-bench-load-$(date +%s)
TARGET=${CARGO_TARGET_DIR:-target}
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB"
API_KEYS=bench:bench-secret-key RATE_LIMIT=100000/s WORKERS=256 PROCESSOR=noop BIND_ADDR=127.0.0.1:18080 RUST_LOG=warn \
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB QUEUE_URL=redis://127.0.0.1:6379 QUEUE_PREFIX=$PREFIX \
  "$TARGET/release/examples/server" > /tmp/server.log 2>&1 &
SPID=$!
for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18080/health && break; sleep 0.2; done
"$TARGET/release/examples/loadgen" --addr 127.0.0.1:18080 --api-key bench-secret-key --server-pid $SPID \
  --clients "$CLIENTS" --requests "$REQUESTS" --probes 3 --max-seconds 200 \
  --floor-postgres postgres://postgres@127.0.0.1:5432/$DB --floor-redis redis://127.0.0.1:6379 --out "$OUT"
echo "loadgen exit $?"
kill -TERM $SPID; wait $SPID
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $DB WITH (FORCE)"
redis-cli --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli del > /dev/null
echo cleaned
