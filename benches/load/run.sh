#!/usr/bin/env bash
# The load benchmark: one command, a few minutes, a table.
#
#   bash benches/load/run.sh            # full run (about 4 minutes after the release build)
#   QUICK=1 bash benches/load/run.sh    # shorter rounds, for a smoke test
#
# The same request body goes to all three targets: the model names are the upstream's own, so
# the mock upstream sees the same `bench-delay50` whoever forwards it.
#
# Builds in release mode, starts a fast mock upstream, a bare actix-web + reqwest pass-through
# proxy (the reference) and Switchboard (shipped policies, usage accounting and request logs
# on), then drives each with oha (installed from crates.io if missing), rounds interleaved so
# drift hits all three alike. Prints requests/s, p50/p99 latency, errors, stream time to first
# byte, 1000 concurrent streams, and Switchboard's RSS. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-2}
SECS=${SECS:-8}
[ "${QUICK:-}" = 1 ] && { ROUNDS=1; SECS=3; }
KEY=sk-bench-admin

if ! command -v oha >/dev/null; then
  echo "installing oha (once) ..." >&2
  cargo install oha --locked --quiet
fi
echo "building (release) ..." >&2
cargo build --release --quiet --bin switchboard --example mock_upstream --example bare_proxy --example streams
BIN=target/release
EX=target/release/examples

WORK=$(mktemp -d)
# `start` runs inside `$(...)`, a subshell, so the servers' pids are kept in files, not in a
# variable the subshell would set for itself only.
cleanup() {
  for f in "$WORK"/*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a server in the background; echoes its address once it has printed it.
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
REF=$(start reference "$EX/bare_proxy" 127.0.0.1:0 "$UP/v1")

mkdir -p "$WORK/providers.d"
cat >"$WORK/providers.d/bench.yaml" <<YAML
kind: openai
base_url: $UP/v1
models:
  - { name: bench-fast, pricing: { input: 1.0, output: 2.0 } }
  - { name: bench-delay50, pricing: { input: 1.0, output: 2.0 } }
  - { name: bench-stream, pricing: { input: 1.0, output: 2.0 } }
YAML
SB=$(SWITCHBOARD_ADMIN_KEY=$KEY RUST_LOG=warn start switchboard "$BIN/switchboard" serve \
  --listen 127.0.0.1:0 --providers "$WORK/providers.d" --policies policies --data "$WORK/data")
SB_PID=$(cat "$WORK/switchboard.pid")
sleep 1
IDLE_RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SB_PID/status")

body() { printf '{"model":"%s","messages":[{"role":"user","content":"Hello, how are you today?"}]}' "$1"; }

# oha against one target; appends a JSON line tagged with the scenario and target.
drive() {
  local scenario=$1 target=$2 url=$3 model=$4 conns=$5 secs=$6
  oha -z "${secs}s" -c "$conns" --no-tui --output-format json -m POST \
    -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d "$(body "$model")" "$url/v1/chat/completions" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['scenario']='$scenario'; d['target']='$target'; print(json.dumps(d))" \
    >>"$WORK/results.jsonl"
}

scenario() {
  local name=$1 model=$2 conns=$3 secs=$4
  for round in $(seq 1 "$ROUNDS"); do
    echo "  $name, round $round ..." >&2
    drive "$name" direct "$UP" "$model" "$conns" "$secs"
    drive "$name" reference "$REF" "$model" "$conns" "$secs"
    drive "$name" switchboard "$SB" "$model" "$conns" "$secs"
  done
}

echo "running ..." >&2
# Warm-up: connection pools, caches, first allocations.
drive warmup switchboard "$SB" bench-fast 16 2; drive warmup reference "$REF" bench-fast 16 2
scenario "64 conns, no delay" bench-fast 64 "$SECS"
scenario "1 conn, no delay" bench-fast 1 "$SECS"
scenario "256 conns, 50 ms upstream" bench-delay50 256 "$SECS"

# Streams: time to first byte (one at a time), then 1000 at once.
for target in direct reference switchboard; do
  case $target in direct) url=$UP ;; reference) url=$REF ;; switchboard) url=$SB ;; esac
  "$EX/streams" "$url/v1/chat/completions" "$KEY" ttfb 200 \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['target']='$target'; print(json.dumps(d))" >>"$WORK/ttfb.jsonl"
done
"$EX/streams" "$SB/v1/chat/completions" "$KEY" concurrent 1000 >"$WORK/concurrent.json"
PEAK_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SB_PID/status")

python3 - "$WORK" "$IDLE_RSS_KB" "$PEAK_RSS_KB" <<'PY'
import json, statistics, sys
work, idle_kb, peak_kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(f"{work}/results.jsonl") if '"warmup"' not in l]

def pick(scenario, target):
    rs = [r for r in rows if r["scenario"] == scenario and r["target"] == target]
    rps = statistics.median(r["summary"]["requestsPerSec"] for r in rs)
    p50 = statistics.median(r["latencyPercentiles"]["p50"] for r in rs) * 1e3
    p99 = statistics.median(r["latencyPercentiles"]["p99"] for r in rs) * 1e3
    ok = sum(r["statusCodeDistribution"].get("200", 0) for r in rs)
    errors = sum(sum(r["statusCodeDistribution"].values()) for r in rs) - ok
    # oha cuts the requests in flight when the duration ends: not the server's errors.
    errors += sum(n for r in rs for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
    return rps, p50, p99, errors

print()
print(f"{'scenario':<28}{'target':<13}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
for scenario in dict.fromkeys(r["scenario"] for r in rows):
    figures = {t: pick(scenario, t) for t in ("direct", "reference", "switchboard")}
    for t, (rps, p50, p99, errors) in figures.items():
        print(f"{scenario:<28}{t:<13}{rps:>10.0f}{p50:>10.3f}{p99:>10.3f}{errors:>8}")
    (rs, s50, s99, _), (rr, r50, r99, _), (_, d50, d99, _) = figures["switchboard"], figures["reference"], figures["direct"]
    print(f"{'':<28}{'sb/ref':<13}{rs / rr:>10.2f}{s50 / r50:>10.2f}{s99 / r99:>10.2f}")
    print(f"{'':<28}{'sb-direct':<13}{'':>10}{(s50 - d50) * 1e3:>9.0f}µ{(s99 - d99) * 1e3:>9.0f}µ")
print()
print(f"{'streams: time to first byte':<28}{'target':<13}{'p50 µs':>10}{'p99 µs':>10}{'errors':>8}")
for line in open(f"{work}/ttfb.jsonl"):
    d = json.loads(line)
    print(f"{'':<28}{d['target']:<13}{d['ttfb_p50_us']:>10}{d['ttfb_p99_us']:>10}{d['errors']:>8}")
c = json.load(open(f"{work}/concurrent.json"))
print(f"\n1000 concurrent streams through switchboard: {c['completed']} completed, {c['stalled']} stalled, {c['failed']} failed, {c['seconds']} s")
print(f"switchboard RSS: idle {idle_kb / 1024:.1f} MB, peak {peak_kb / 1024:.1f} MB")
PY
