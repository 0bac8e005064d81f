#!/usr/bin/env python3
"""Idle RSS of a gateway started with 1, 2, 4 and 8 workers (shipped policies, one provider),
split into anonymous memory (the heap, stacks) and the binary's mapped pages, read from
/proc/PID/smaps 2.5 s after it is listening. What grows with the worker count is what each
worker holds for itself.

Usage: python3 benches/memory/idle_per_worker.py target/release/switchboard [WORKERS ...]
"""
import os, re, subprocess, sys, tempfile, time

BIN = sys.argv[1]
counts = [int(w) for w in sys.argv[2:]] or [1, 2, 4, 8]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smaps_kb(pid):
    anon = mapped = 0
    file_backed = False
    for line in open(f"/proc/{pid}/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            file_backed = len(parts) > 5 and parts[5].startswith("/")
        elif line.startswith("Rss:"):
            kb = int(line.split()[1])
            if file_backed:
                mapped += kb
            else:
                anon += kb
    return anon, mapped


print(f"{'workers':>8}{'anon MB':>10}{'mapped MB':>11}{'RSS MB':>9}")
for workers in counts:
    tmp = tempfile.mkdtemp()
    os.makedirs(f"{tmp}/p")
    with open(f"{tmp}/p/bench.yaml", "w") as f:
        f.write("kind: openai\nbase_url: http://127.0.0.1:9/v1\nmodels: [bench-fast]\n")
    env = dict(os.environ, SWITCHBOARD_ADMIN_KEY="sk-idle-0123456789", RUST_LOG="error")
    p = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:0", "--data", f"{tmp}/d", "--providers",
         f"{tmp}/p", "--policies", f"{root}/policies", "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in p.stdout:
        if line.startswith("switchboard listening on "):
            break
    time.sleep(2.5)
    anon, mapped = smaps_kb(p.pid)
    p.terminate()
    p.wait()
    print(f"{workers:>8}{anon / 1024:>10.1f}{mapped / 1024:>11.1f}{(anon + mapped) / 1024:>9.1f}")
