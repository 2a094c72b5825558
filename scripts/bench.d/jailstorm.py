#!/usr/bin/python3
"""Starts idle jails for a fixed time with a bounded number of starts in flight and
counts the jails whose command is running: a jail counts once its command has printed
"up" (the command is `sh -c 'echo up; exec sleep N'`, so it then idles in `sleep`).

    jailstorm.py SECONDS MAX INFLIGHT PIDFILE -- CMD... (CMD gets the sh -c command appended)

Starting everything at once only measures how the machine thrashes; keeping a few
starts in flight per core measures throughput. The pids of
every launched process go to PIDFILE, one per line, for the memory count and clean-up,
and "running launched" to PIDFILE.result once the time is up.
"""
import os
import resource
import selectors
import subprocess
import sys
import time

seconds, limit, inflight_max, pidfile = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cmd = sys.argv[sys.argv.index("--") + 1:] + ["/bin/sh", "-c", "echo up; exec /bin/sleep 300"]

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

sel = selectors.DefaultSelector()
launched, running, inflight = [], 0, 0
end = time.monotonic() + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    while inflight < inflight_max and len(launched) < limit:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        launched.append(p)
        sel.register(p.stdout, selectors.EVENT_READ, p)
        inflight += 1
    if inflight == 0:
        break
    for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
        data = os.read(key.fileobj.fileno(), 16)
        sel.unregister(key.fileobj)
        key.fileobj.close()
        inflight -= 1
        if data.startswith(b"up"):
            running += 1

with open(pidfile, "w") as f:
    for p in launched:
        f.write(f"{p.pid}\n")
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{running} {len(launched)}\n")
os.rename(pidfile + ".tmp", pidfile + ".result")
# Stay the parent of every launched process until told to go (bwrap --die-with-parent
# would take its jails down with us); the caller kills the jails, then us.
for p in launched:
    p.wait()
