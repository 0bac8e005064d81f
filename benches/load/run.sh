#!/usr/bin/env bash
# The load benchmark: one command, a few minutes, a table.
#
#   bash benches/load/run.sh            # full run, both modes (about 8 minutes after the build)
#   QUICK=1 bash benches/load/run.sh    # shorter rounds, for a smoke test
#   MODES=one-core bash benches/load/run.sh   # one mode only (`shared` or `one-core`)
#   POLICIES=none bash benches/load/run.sh    # Switchboard without policies
#
# The same request body goes to all three targets: the model names are the upstream's own, so
# the mock upstream sees the same `bench-delay50` whoever forwards it.
#
# Builds in release mode, starts a fast mock upstream, a bare actix-web + reqwest pass-through
# proxy (the reference) and Switchboard (shipped policies, usage accounting and request logs
# on), then drives each with oha (installed from crates.io if missing), rounds interleaved so
# drift hits all three alike. Prints requests/s, p50/p99 latency, errors, the CPU time each
# proxy spent per request served (utime + stime of the process, from /proc/PID/stat, over the
# 200s oha counted), stream time to first byte, 1000 concurrent streams, and Switchboard's RSS.
# Everything listens on 127.0.0.1 only.
#
# Two modes: `shared` (nothing pinned: the proxies, the mock and oha share both cores) and
# `one-core` (as an operator gives a gateway one vCPU: Switchboard and the reference each
# pinned with all their threads to core 0 by `taskset`, the mock upstream and oha to core 1,
# and both proxies started with one worker). The direct figures of `one-core` have the mock
# and oha on one core together.
#
# Switching subsystems off (request log, metrics) is not a setting of the binary; the exact
# per-subsystem breakdown is in instructions (benches/instructions/check.sh --breakdown).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-2}
SECS=${SECS:-8}
[ "${QUICK:-}" = 1 ] && { ROUNDS=1; SECS=3; }
KEY=sk-bench-admin

# oha drives the load when it is installed; otherwise the repository's own closed-loop client
# (benches/load/load_client.rs, same JSON), for machines that cannot install it (no network).
if command -v oha >/dev/null; then LOADER=oha; else
  echo "oha is not installed: using benches/load/load_client.rs instead" >&2
  LOADER=load_client
fi
echo "building (release) ..." >&2
cargo build --release --quiet --bin switchboard --example mock_upstream --example bare_proxy --example streams --example load_client
BIN=${CARGO_TARGET_DIR:-target}/release
EX=$BIN/examples

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

MODES=${MODES:-shared one-core}
HZ=$(getconf CLK_TCK)
body() { printf '{"model":"%s","messages":[{"role":"user","content":"Hello, how are you today?"}]}' "$1"; }
# CPU time (utime + stime, in clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# oha against one target; appends a JSON line tagged with the mode, scenario and target, and
# the CPU ticks the target's process used meanwhile (none for direct: the mock is not measured).
drive() {
  local scenario=$1 target=$2 url=$3 model=$4 conns=$5 secs=$6 pid=${7:-}
  local before=0 after=0
  [ -n "$pid" ] && before=$(ticks "$pid")
  if [ "$LOADER" = oha ]; then
    $LOADPIN oha -z "${secs}s" -c "$conns" --no-tui --output-format json -m POST \
      -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
      -d "$(body "$model")" "$url/v1/chat/completions" >"$WORK/oha.json"
  else
    $LOADPIN "$EX/load_client" "$url/v1/chat/completions" "$KEY" "$(body "$model")" "$conns" "$secs" >"$WORK/oha.json"
  fi
  [ -n "$pid" ] && after=$(ticks "$pid")
  python3 -c "import json,sys; d=json.load(open('$WORK/oha.json')); d['mode']='$MODE'; d['scenario']='$scenario'; d['target']='$target'; d['cpu_secs']=($after - $before) / $HZ; print(json.dumps(d))" \
    >>"$WORK/results.jsonl"
}

scenario() {
  local name=$1 model=$2 conns=$3 secs=$4
  for round in $(seq 1 "$ROUNDS"); do
    echo "  $MODE: $name, round $round ..." >&2
    drive "$name" direct "$UP" "$model" "$conns" "$secs"
    drive "$name" reference "$REF" "$model" "$conns" "$secs" "$REF_PID"
    drive "$name" switchboard "$SB" "$model" "$conns" "$secs" "$SB_PID"
  done
}

POLICY_DIR=policies
if [ "${POLICIES:-}" = none ]; then POLICY_DIR=$WORK/no-policies; mkdir -p "$POLICY_DIR"; fi

for MODE in $MODES; do
  case $MODE in
    shared) PROXYPIN=""; LOADPIN="" ;;
    one-core) PROXYPIN="taskset -c 0"; LOADPIN="taskset -c 1" ;;
    *) echo "unknown mode $MODE (shared, one-core)" >&2; exit 2 ;;
  esac
  echo "mode $MODE ..." >&2
  # shellcheck disable=SC2086 # the pinning prefix is words on purpose
  UP=$(start upstream $LOADPIN "$EX/mock_upstream")
  # shellcheck disable=SC2086
  REF=$(start reference $PROXYPIN "$EX/bare_proxy" 127.0.0.1:0 "$UP/v1")
  REF_PID=$(cat "$WORK/reference.pid")

  rm -rf "$WORK/providers.d" "$WORK/data"
  mkdir -p "$WORK/providers.d"
  cat >"$WORK/providers.d/bench.yaml" <<YAML
kind: openai
base_url: $UP/v1
models:
  - { name: bench-fast, pricing: { input: 1.0, output: 2.0 } }
  - { name: bench-delay50, pricing: { input: 1.0, output: 2.0 } }
  - { name: bench-stream, pricing: { input: 1.0, output: 2.0 } }
YAML
  # shellcheck disable=SC2086
  SB=$(SWITCHBOARD_ADMIN_KEY=$KEY RUST_LOG=warn start switchboard $PROXYPIN "$BIN/switchboard" serve \
    --listen 127.0.0.1:0 --providers "$WORK/providers.d" --policies "$POLICY_DIR" --data "$WORK/data")
  SB_PID=$(cat "$WORK/switchboard.pid")
  sleep 1
  IDLE_RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SB_PID/status")

  echo "running ..." >&2
  # Warm-up: connection pools, caches, first allocations.
  drive warmup switchboard "$SB" bench-fast 16 2; drive warmup reference "$REF" bench-fast 16 2
  scenario "64 conns, no delay" bench-fast 64 "$SECS"
  scenario "1 conn, no delay" bench-fast 1 "$SECS"
  scenario "256 conns, 50 ms upstream" bench-delay50 256 "$SECS"

  # Streams: time to first byte (one at a time), then 1000 at once.
  for target in direct reference switchboard; do
    case $target in direct) url=$UP ;; reference) url=$REF ;; switchboard) url=$SB ;; esac
    $LOADPIN "$EX/streams" "$url/v1/chat/completions" "$KEY" ttfb 200 \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['mode']='$MODE'; d['target']='$target'; print(json.dumps(d))" >>"$WORK/ttfb.jsonl"
  done
  $LOADPIN "$EX/streams" "$SB/v1/chat/completions" "$KEY" concurrent 1000 \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['mode']='$MODE'; print(json.dumps(d))" >>"$WORK/concurrent.jsonl"
  PEAK_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SB_PID/status")
  echo "{\"mode\": \"$MODE\", \"idle_kb\": $IDLE_RSS_KB, \"peak_kb\": $PEAK_RSS_KB}" >>"$WORK/rss.jsonl"
  for f in "$WORK"/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
  wait 2>/dev/null || true
done

python3 - "$WORK" <<'PY'
import json, statistics, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/results.jsonl") if '"warmup"' not in l]

def pick(mode, scenario, target):
    rs = [r for r in rows if r["mode"] == mode and r["scenario"] == scenario and r["target"] == target]
    rps = statistics.median(r["summary"]["requestsPerSec"] for r in rs)
    p50 = statistics.median(r["latencyPercentiles"]["p50"] for r in rs) * 1e3
    p99 = statistics.median(r["latencyPercentiles"]["p99"] for r in rs) * 1e3
    ok = sum(r["statusCodeDistribution"].get("200", 0) for r in rs)
    errors = sum(sum(r["statusCodeDistribution"].values()) for r in rs) - ok
    # oha cuts the requests in flight when the duration ends: not the server's errors.
    errors += sum(n for r in rs for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
    # CPU per request: the process's CPU time over the requests it answered, all rounds.
    cpu = sum(r["cpu_secs"] for r in rs)
    cpu_us = cpu / ok * 1e6 if ok and target != "direct" else None
    return rps, p50, p99, errors, cpu_us

for mode in dict.fromkeys(r["mode"] for r in rows):
    print(f"\n== mode: {mode}")
    print(f"{'scenario':<28}{'target':<13}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'CPU µs/req':>12}")
    for scenario in dict.fromkeys(r["scenario"] for r in rows if r["mode"] == mode):
        figures = {t: pick(mode, scenario, t) for t in ("direct", "reference", "switchboard")}
        for t, (rps, p50, p99, errors, cpu) in figures.items():
            cpu_s = f"{cpu:>12.1f}" if cpu is not None else f"{'':>12}"
            print(f"{scenario:<28}{t:<13}{rps:>10.0f}{p50:>10.3f}{p99:>10.3f}{errors:>8}{cpu_s}")
        (rs, s50, s99, _, sc), (rr, r50, r99, _, rc), (_, d50, d99, _, _) = figures["switchboard"], figures["reference"], figures["direct"]
        print(f"{'':<28}{'sb/ref':<13}{rs / rr:>10.2f}{s50 / r50:>10.2f}{s99 / r99:>10.2f}{'':>8}{sc / rc:>12.2f}")
        print(f"{'':<28}{'sb-direct':<13}{'':>10}{(s50 - d50) * 1e3:>9.0f}µ{(s99 - d99) * 1e3:>9.0f}µ")
        print(f"{'':<28}{'ref-direct':<13}{'':>10}{(r50 - d50) * 1e3:>9.0f}µ{(r99 - d99) * 1e3:>9.0f}µ")
    print()
    print(f"{'streams: time to first byte':<28}{'target':<13}{'p50 µs':>10}{'p99 µs':>10}{'errors':>8}")
    for line in open(f"{work}/ttfb.jsonl"):
        d = json.loads(line)
        if d["mode"] == mode:
            print(f"{'':<28}{d['target']:<13}{d['ttfb_p50_us']:>10}{d['ttfb_p99_us']:>10}{d['errors']:>8}")
    for line in open(f"{work}/concurrent.jsonl"):
        c = json.loads(line)
        if c["mode"] == mode:
            print(f"\n1000 concurrent streams through switchboard: {c['completed']} completed, {c['stalled']} stalled, {c['failed']} failed, {c['seconds']} s")
    for line in open(f"{work}/rss.jsonl"):
        m = json.loads(line)
        if m["mode"] == mode:
            print(f"switchboard RSS: idle {m['idle_kb'] / 1024:.1f} MB, peak {m['peak_kb'] / 1024:.1f} MB")
PY
