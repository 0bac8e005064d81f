#!/usr/bin/env bash
# Runs the Dockerfile's build and start commands outside a container (the build machine has no
# container engine): the release build, then the image's CMD with its folders mapped to a temp
# folder, then its HEALTHCHECK command. Prints how long the build took. Not part of CI (the
# release build takes minutes); tests/api/container.rs checks the rest with the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."

build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[[ "$build" == "cargo build --release --locked" ]] || { echo "unexpected build command: $build" >&2; exit 1; }
started=$(date +%s)
$build
echo "build: $(( $(date +%s) - started )) s"

work=$(mktemp -d)
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/etc" "$work/var"
cp -r providers.d policies "$work/etc/"
mapfile -t cmd < <(python3 -c '
import json, sys
line = next(l for l in open("Dockerfile") if l.startswith("CMD"))
for a in json.loads(line[line.index("["):]):
    print(a.replace("/etc/switchboard", sys.argv[1]).replace("/var/lib/switchboard", sys.argv[2]).replace("0.0.0.0:8080", "127.0.0.1:0"))
' "$work/etc" "$work/var")
SWITCHBOARD_ADMIN_KEY=sk-check target/release/switchboard "${cmd[@]}" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do
    addr=$(sed -n 's#^switchboard listening on ##p' "$work/out" | head -n1)
    [[ -n "$addr" ]] && break
    sleep 0.1
done
[[ -n "${addr:-}" ]] || { echo "the start command did not serve" >&2; cat "$work/err" >&2; exit 1; }
target/release/switchboard healthcheck --url "$addr"
echo "ok: built, started from the image's CMD at $addr, healthy"
