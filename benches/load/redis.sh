#!/usr/bin/env bash
# The load benchmark with `--store redis`: what sharing state through Redis costs.
#
#   bash benches/load/redis.sh            # about 3 minutes after the release build
#   QUICK=1 bash benches/load/redis.sh    # shorter rounds, for a smoke test
#
# Starts its own redis-server (a free port, a temp folder, append-only file fsynced every
# second, as README's "Running a fleet" recommends), a fast mock upstream, Switchboard on sled,
# and two Switchboard instances on that Redis. All run the shipped policies with a user key, so
# every request passes the quota script's request limit and token budget: on Redis that is one
# reservation script before the upstream call, and a settlement and a log batch after it.
# Reports, with oha:
#   - concurrency 1: p50 and requests/s, sled against Redis (target: Redis adds <= 0.15 ms p50);
#   - 64 connections: requests/s, sled against Redis (target: Redis >= 0.7 x sled);
#   - a two-instance fleet (32 connections each, at once) against one instance (64).
# Rounds are interleaved so drift hits every target alike. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
[ "${QUICK:-}" = 1 ] && { ROUNDS=1; SECS=3; }
ADMIN=sk-bench-admin

command -v redis-server >/dev/null || { echo "redis-server is needed" >&2; exit 1; }
if ! command -v oha >/dev/null; then
  echo "installing oha (once) ..." >&2
  cargo install oha --locked --quiet
fi
echo "building (release) ..." >&2
cargo build --release --quiet --bin switchboard --example mock_upstream
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

REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/redis"
# REDIS_AOF=no runs Redis without its append-only file: no rewrites, whose stalls (longer than
# the 100 ms timeout on a small VM) otherwise show up as 503s; see benches/RESULTS.md.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" \
  --appendonly "${REDIS_AOF:-yes}" --appendfsync everysec --no-appendfsync-on-rewrite yes >"$WORK/redis.out" 2>&1 &
echo $! >"$WORK/redis.pid"
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

UP=$(start upstream "$EX/mock_upstream")
mkdir -p "$WORK/providers.d"
cat >"$WORK/providers.d/bench.yaml" <<YAML
kind: openai
base_url: $UP/v1
models:
  - { name: bench-fast, pricing: { input: 1.0, output: 2.0 } }
YAML
# The shipped policies, with the quota raised so the load never reaches it (a refusal is
# cheaper than a served request and would flatter the figures); the checks still run.
cp -r policies "$WORK/policies"
sed -i 's/ctx.limit("rpm:" + id, 600, 60)/ctx.limit("rpm:" + id, 1000000000, 60)/; s/1000000, 86400/1000000000000, 86400/' \
  "$WORK/policies/40-quotas.rhai"
grep -q 1000000000000 "$WORK/policies/40-quotas.rhai" || { echo "the quota script changed; update this script" >&2; exit 1; }
serve() {
  SWITCHBOARD_ADMIN_KEY=$ADMIN RUST_LOG=warn start "$1" "$BIN/switchboard" serve --listen 127.0.0.1:0 \
    --providers "$WORK/providers.d" --policies "$WORK/policies" --no-watch "${@:2}"
}
SLED=$(serve sled --data "$WORK/sled")
RED1=$(serve redis1 --data "$WORK/r1" --store redis --redis-url "$REDIS_URL")
RED2=$(serve redis2 --data "$WORK/r2" --store redis --redis-url "$REDIS_URL")
sleep 1

user_key() {
  curl -s -X POST "$1/admin/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
SLED_KEY=$(user_key "$SLED")
REDIS_KEY=$(user_key "$RED1")
sleep 0.5

BODY='{"model":"bench-fast","messages":[{"role":"user","content":"Hello, how are you today?"}]}'
drive() {
  local scenario=$1 target=$2 url=$3 key=$4 conns=$5
  oha -z "${SECS}s" -c "$conns" --no-tui --output-format json -m POST \
    -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d "$BODY" "$url/v1/chat/completions" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['scenario']='$scenario'; d['target']='$target'; print(json.dumps(d))" \
    >>"$WORK/results.jsonl"
}

echo "running ..." >&2
SECS=2 drive warmup sled "$SLED" "$SLED_KEY" 16; SECS=2 drive warmup redis "$RED1" "$REDIS_KEY" 16
SECS=2 drive warmup redis "$RED2" "$REDIS_KEY" 16
for round in $(seq 1 "$ROUNDS"); do
  echo "  round $round ..." >&2
  drive "1 conn" sled "$SLED" "$SLED_KEY" 1
  drive "1 conn" redis "$RED1" "$REDIS_KEY" 1
  drive "64 conns" sled "$SLED" "$SLED_KEY" 64
  drive "64 conns" redis "$RED1" "$REDIS_KEY" 64
  # Two instances at once, half the connections each.
  drive "fleet of 2" redis-a "$RED1" "$REDIS_KEY" 32 &
  other=$!
  drive "fleet of 2" redis-b "$RED2" "$REDIS_KEY" 32
  wait "$other"
done

# What Redis went through: forks for AOF rewrites stall it, and a stall longer than the
# timeout is what makes a gateway answer 503 store_unavailable.
redis-cli -p "$REDIS_PORT" info persistence | grep -E '^(aof_rewrites|latest_fork_usec)' >"$WORK/redis-info" || true
redis-cli -p "$REDIS_PORT" info stats | grep -E '^latest_fork_usec|^total_forks' >>"$WORK/redis-info" || true
redis-cli -p "$REDIS_PORT" info memory | grep -E '^used_memory_human' >>"$WORK/redis-info" || true
grep -h "redis is unreachable" "$WORK"/redis1.err "$WORK"/redis2.err | sed 's/\x1b\[[0-9;]*m//g; s/.*cause=//' | sort | uniq -c >"$WORK/outages" || true

python3 - "$WORK" <<'PY'
import json, statistics, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/results.jsonl") if '"warmup"' not in l]
def med(scenario, target, f):
    return statistics.median(f(r) for r in rows if r["scenario"] == scenario and r["target"] == target)
rps = lambda r: r["summary"]["requestsPerSec"]
p50 = lambda r: r["latencyPercentiles"]["p50"] * 1e3
p99 = lambda r: r["latencyPercentiles"]["p99"] * 1e3
def errors(scenario):
    bad = 0
    for r in rows:
        if r["scenario"] == scenario:
            bad += sum(r["statusCodeDistribution"].values()) - r["statusCodeDistribution"].get("200", 0)
            bad += sum(n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
    return bad
print()
print(f"{'scenario':<14}{'target':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
for s in ("1 conn", "64 conns"):
    for t in ("sled", "redis"):
        print(f"{s:<14}{t:<10}{med(s, t, rps):>10.0f}{med(s, t, p50):>10.3f}{med(s, t, p99):>10.3f}")
added = med("1 conn", "redis", p50) - med("1 conn", "sled", p50)
ratio = med("64 conns", "redis", rps) / med("64 conns", "sled", rps)
fleet = med("fleet of 2", "redis-a", rps) + med("fleet of 2", "redis-b", rps)
one = med("64 conns", "redis", rps)
print(f"\nredis adds {added * 1e3:.0f} µs at p50, concurrency 1 (target <= 150 µs)")
print(f"redis / sled throughput at 64 connections: {ratio:.2f} (target >= 0.70)")
print(f"fleet of 2 instances: {fleet:.0f} req/s, {fleet / one:.2f} x one instance")
print(f"non-200 answers: {sum(errors(s) for s in ('1 conn', '64 conns', 'fleet of 2'))}")
statuses = {}
for r in rows:
    for code, n in r["statusCodeDistribution"].items():
        if code != "200":
            k = (r["scenario"], r["target"], code)
            statuses[k] = statuses.get(k, 0) + n
for (s, t, code), n in sorted(statuses.items()):
    print(f"  {s}, {t}: {n} x {code}")
print("redis:", " ".join(l.strip() for l in open(f"{work}/redis-info")))
outages = open(f"{work}/outages").read().strip()
print("gateways found redis unreachable:", outages or "never")
PY
