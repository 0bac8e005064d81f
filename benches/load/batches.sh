#!/usr/bin/env bash
# Batches behind live traffic: does a running batch raise live requests' latency at the load
# benchmark's load (64 connections, the fast mock upstream)? Builds in release mode, starts the
# mock upstream and Switchboard (shipped policies, accounting and logs on, as in run.sh), then
# runs `batch_fairness` (benches/load/batch_fairness.rs): live load alone, then with a
# 20,000-line batch running, ROUNDS times (default 3), SECS seconds each (default 8).
#
#   bash benches/load/batches.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
KEY=sk-bench-admin

echo "building (release) ..." >&2
cargo build --release --quiet --bin switchboard --example mock_upstream --example batch_fairness
BIN=${CARGO_TARGET_DIR:-target}/release
EX=${CARGO_TARGET_DIR:-target}/release/examples
WORK=$(mktemp -d)
cleanup() {
  for f in "$WORK"/*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 1 200); do
    local addr
    addr=$(grep -o 'http://[0-9.:]*' "$WORK/$name.out" | head -n1 || true)
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}
UP=$(start upstream "$EX/mock_upstream")
mkdir -p "$WORK/providers.d"
cat >"$WORK/providers.d/bench.yaml" <<YAML
kind: openai
base_url: $UP/v1
models:
  - { name: bench-fast, pricing: { input: 1.0, output: 2.0 } }
YAML
SB=$(SWITCHBOARD_ADMIN_KEY=$KEY RUST_LOG=warn start switchboard "$BIN/switchboard" serve \
  --listen 127.0.0.1:0 --providers "$WORK/providers.d" --policies policies --data "$WORK/data")
sleep 1
"$EX/batch_fairness" "$SB" "$KEY" "$ROUNDS" "$SECS"
