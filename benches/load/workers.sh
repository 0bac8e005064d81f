#!/usr/bin/env bash
# Throughput with one worker and with two: does Switchboard scale with cores?
#
#   bash benches/load/workers.sh            # 3 rounds of 8 s each, interleaved
#   ROUNDS=1 SECS=3 bash benches/load/workers.sh
#
# Runs the instruction harness's timed mode (benches/instructions/harness.rs, release): the
# gateway from the app factory with the shipped policies, request log, usage and metrics on,
# `--workers 1` and `--workers 2`, against its in-process upstream, driven by CONNS client
# threads of the same process (blocking sockets, one keep-alive connection each). The ratio
# is what a second worker adds. On a 2-core machine the clients and the upstream share the
# cores with the workers, so the ratio cannot reach 2 here; what it shows is that nothing
# serialises the workers below what the cores allow (benches/RESULTS.md, "Scaling").
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
CONNS=${CONNS:-64}
cargo build --locked --quiet --release --example instructions
HARNESS=${CARGO_TARGET_DIR:-target}/release/examples/instructions
declare -A RATES
for round in $(seq 1 "$ROUNDS"); do
  for workers in 1 2; do
    line=$("$HARNESS" 0 --workers "$workers" --load "$CONNS" "$SECS" | grep "req/s")
    echo "  round $round: $line" >&2
    RATES[$workers]+="$(echo "$line" | awk '{print $(NF-1)}') "
  done
done
python3 - "${RATES[1]}" "${RATES[2]}" <<'PY'
import statistics, sys
one, two = ([float(x) for x in a.split()] for a in sys.argv[1:])
m1, m2 = statistics.median(one), statistics.median(two)
print(f"1 worker: {m1:.0f} req/s, 2 workers: {m2:.0f} req/s (medians), ratio {m2 / m1:.2f}")
PY
