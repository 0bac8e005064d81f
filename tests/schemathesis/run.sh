#!/usr/bin/env bash
# Checks that the OpenAPI documents are honest: schemathesis generates requests from
# /openapi/proxy.json and /openapi/admin.json, sends them to a real gateway (mock provider only,
# throwaway data folder, no network beyond 127.0.0.1) and fails on any 5xx or any response
# whose status, content type or body the document does not declare.
#
# Usage: tests/schemathesis/run.sh   (after `cargo build`; needs `pip install schemathesis`)
# SWITCHBOARD_BIN picks the binary; ST_MAX_EXAMPLES the cases per operation (default 50).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/switchboard}"
max_examples="${ST_MAX_EXAMPLES:-50}"
if [[ ! -x "$bin" ]]; then
    echo "error: $bin not found; run cargo build first" >&2
    exit 2
fi
# pip may put the `schemathesis` script outside PATH (~/.local/bin); the module always works.
if command -v schemathesis >/dev/null; then
    st=(schemathesis)
elif python3 -c 'import schemathesis' 2>/dev/null; then
    st=(python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())')
else
    echo "error: schemathesis is not installed (python3 -m pip install 'schemathesis>=4.32,<5')" >&2
    exit 2
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/providers.d" "$work/policies"
cp providers.d/mock.yaml "$work/providers.d/"
# The admin key comes from the environment, so no request the run makes (revoking or rotating
# stored keys included) can lock it out.
admin_key="sk-schemathesis-$RANDOM$RANDOM"

SWITCHBOARD_ADMIN_KEY="$admin_key" RUST_LOG=warn "$bin" serve \
    --listen 127.0.0.1:0 \
    --providers "$work/providers.d" \
    --policies "$work/policies" \
    --data "$work/data" \
    --no-watch \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!

addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's#^switchboard listening on http://##p' "$work/stdout" | head -n1)"
    [[ -n "$addr" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: the gateway exited:" >&2
        cat "$work/stderr" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$addr" ]]; then
    echo "error: the gateway never printed its address" >&2
    exit 1
fi
echo "gateway at http://$addr"

status=0
for doc in proxy admin; do
    echo "== schemathesis: /openapi/$doc.json"
    # Each document is bounded twice: cases per operation, and a wall-clock limit.
    timeout 240 "${st[@]}" run "http://$addr/openapi/$doc.json" \
        --url "http://$addr" \
        --header "Authorization: Bearer $admin_key" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$max_examples" \
        --request-timeout 10 \
        --generation-database none \
        --seed 1 \
        --no-color \
        || status=1
done

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: the gateway died during the run" >&2
    status=1
fi
if [[ $status -ne 0 ]]; then
    echo "schemathesis found responses the documents do not describe (gateway log: below)" >&2
    tail -n 50 "$work/stderr" >&2
fi
exit $status
