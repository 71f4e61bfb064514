#!/usr/bin/env python3
"""Measures a pollwatch binary's `bench field` from outside, then the Node peer
against that binary's simulators, the same way (/proc CPU, VmHWM, context
switches). Used for the issue-23 "before" rows at 5,000 and 10 meters: the
harness of the binary before issue 23 read every device's series back for jitter,
which at 5,000 devices outlasted the run.

    benches/peer/measure_external.py BINARY DEVICES BASE_PORT SECONDS

Polls are counted from rows committed to the store (two readings per poll);
jitter from the stored times of up to 500 devices.
"""
import os, subprocess, sys, time, sqlite3, glob, signal
binary, devices, port, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
db = f"/tmp/pw-measure-{os.getpid()}.db"
def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(')', 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / 100
    hwm = 0
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM:"): hwm = int(l.split()[1])
    cs = 0
    for t in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for l in open(t):
                if "ctxt_switches" in l: cs += int(l.split()[1])
        except OSError: pass
    return cpu, hwm, cs
def rows():
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    n = sum(c.execute(f"select count(*) from {t}").fetchone()[0] for t in ("readings", "readings_recent"))
    c.close(); return n
p = subprocess.Popen([binary, "bench", "field", "--devices", str(devices), "--seconds", str(secs + 30),
                      "--base-port", str(port), "--url", f"sqlite://{db}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not os.path.exists(db): time.sleep(0.1)
time.sleep(5)
c0, r0, t0 = stat(p.pid), rows(), time.time()
time.sleep(secs)
c1, r1, t1 = stat(p.pid), rows(), time.time()
subprocess.run(["pkill", "-P", str(p.pid)]); p.kill(); p.wait()
polls = (r1 - r0) / 2
c = sqlite3.connect(db, timeout=30)
ids = [r[0] for r in c.execute("select id from series where factor='e_p' order by id")]
ids = ids[::max(1, len(ids)//500)]
gaps = []
for i in ids:
    ts = sorted(r[0] for r in c.execute(f"select ts from readings where series_id={i} and ts between ? and ? union all select ts from readings_recent where series_id={i} and ts between ? and ?", (int(t0*1000), int(t1*1000)) * 2))
    gaps += [abs(b - a - 1000) for a, b in zip(ts, ts[1:])]
gaps.sort()
jit = f"jitter p50 {gaps[len(gaps)//2]} ms, p99 {gaps[int(len(gaps)*0.99)]} ms over {len(ids)} devices" if gaps else "no jitter data"
c.close()
print(f"pollwatch: {polls:.0f} polls in {t1-t0:.1f} s, CPU {c1[0]-c0[0]:.2f} s = {(c1[0]-c0[0])*1e4/polls:.3f} s/10k polls, {(c1[2]-c0[2])/polls:.2f} cs/poll, peak RSS {c1[1]/1024:.0f} MiB, {jit}")
pw = (c1[0]-c0[0])*1e4/polls
# peer
sim = subprocess.Popen([binary, "simulate", "modbus", "--gateways", str((devices + 9)//10), "--base-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
sim.stdout.readline()
env = dict(os.environ, PEER_BASE_PORT=str(port), PEER_DEVICES=str(devices), PEER_UNITS="10", PEER_GATEWAYS=str((devices+9)//10))
node = subprocess.Popen(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "modbus-serial.js")], stdout=subprocess.PIPE, env=env, text=True)
last = {}
import threading
def reader():
    for l in node.stdout:
        if l.startswith("peer "): last["l"] = dict(kv.split("=") for kv in l.split()[1:])
threading.Thread(target=reader, daemon=True).start()
time.sleep(5)
d0, l0, u0 = stat(node.pid), last["l"], time.time()
time.sleep(secs)
d1, l1, u1 = stat(node.pid), last["l"], time.time()
node.kill(); sim.kill()
pp = int(l1["polls"]) - int(l0["polls"])
peer = (d1[0]-d0[0])*1e4/pp
print(f"peer: {pp} polls in {u1-u0:.1f} s, CPU {d1[0]-d0[0]:.2f} s = {peer:.3f} s/10k polls, {(d1[2]-d0[2])/pp:.2f} cs/poll, peak RSS {d1[1]/1024:.0f} MiB, jitter p50 {l1['p50_ms']} p99 {l1['p99_ms']} ms")
print(f"ratio {pw/peer:.2f}")
os.remove(db)
