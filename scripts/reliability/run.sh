#!/usr/bin/env bash
# Runs the reliability suite (tests/reliability, the root package's test
# `reliability`): real examples/server.rs and examples/worker.rs processes
# against the loopback PostgreSQL, Redis and RabbitMQ (started by
# .ci/services.sh when down).
#
#   scripts/reliability/run.sh                      # CI counts (what `cargo test --workspace --all-features` runs)
#   RELIABILITY_FULL=1 scripts/reliability/run.sh   # full counts (10,000 organizations, 60 s + 30 s load, ...)
#   scripts/reliability/run.sh workers sigkill      # one scenario module, tests whose name also matches a filter
#   RELIABILITY_RELEASE=1 ...                       # release build of the suite and of the examples it runs
#
# Each scenario prints a `RELIABILITY <scenario>: key=value ...` line (shown
# here with --nocapture) and appends it to $TMPDIR/onboarding-reliability/report.txt;
# process logs are under $TMPDIR/onboarding-reliability/<scenario>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash .ci/services.sh >/dev/null
rm -f "${TMPDIR:-/tmp}/onboarding-reliability/report.txt"
args=(--all-features --test reliability)
if [ "${RELIABILITY_RELEASE:-}" = 1 ]; then args+=(--release); fi
filter=()
if [ $# -ge 1 ]; then filter=("$1::${2:-}"); fi
cargo test "${args[@]}" -- --nocapture "${filter[@]}"
echo "== report"
cat "${TMPDIR:-/tmp}/onboarding-reliability/report.txt"
