#!/usr/bin/env python3
"""RSS of a running gateway before, right after and 2/5/10 s after a burst of 16 concurrent
3.5 MB chat requests to the mock provider: shows whether freed memory goes back to the system.

Usage: python3 benches/memory/return_after_burst.py target/release/switchboard [MALLOC_CONF]
The optional second argument overrides jemalloc options (e.g. the old defaults
"background_thread:false,dirty_decay_ms:10000,muzzy_decay_ms:10000") for a comparison.
"""
import os, subprocess, sys, tempfile, time, json, threading, urllib.request
BIN = sys.argv[1]; conf = sys.argv[2] if len(sys.argv) > 2 else ""
tmp = tempfile.mkdtemp()
os.makedirs(f"{tmp}/p"); os.makedirs(f"{tmp}/pol")
open(f"{tmp}/p/mock.yaml","w").write("kind: mock\nmodels: [echo]\n")
env = dict(os.environ, SWITCHBOARD_ADMIN_KEY="sk-mem", RUST_LOG="error")
if conf: env["_RJEM_MALLOC_CONF"] = conf
p = subprocess.Popen([BIN,"serve","--listen","127.0.0.1:0","--data",f"{tmp}/d","--providers",f"{tmp}/p","--policies",f"{tmp}/pol","--no-watch"],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True,env=env)
for line in p.stdout:
    if line.startswith("switchboard listening on "): addr=line.split()[-1]; break
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
body = json.dumps({"model":"echo","messages":[{"role":"user","content":"word "*700000}]}).encode()
def one():
    r = urllib.request.Request(addr+"/v1/chat/completions", data=body, headers={"authorization":"Bearer sk-mem","content-type":"application/json"})
    urllib.request.urlopen(r).read()
print("idle", rss())
ts=[threading.Thread(target=one) for _ in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
print("after burst", rss())
for s in (2,5,10):
    time.sleep(s - (0 if s==2 else (2 if s==5 else 5)))
    print(f"+{s}s", rss())
p.kill()
