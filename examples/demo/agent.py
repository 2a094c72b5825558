#!/usr/bin/env python3
"""A small stand-in for an agent gateway (OpenClaw-like), run by scripts/demo.

It reports what it can and cannot do from inside its jail: who it is, what it sees of
the host, whether it can reach the network, read its credentials, rewrite its own
protected memory files, or escape its limits. Then it does some honest work: it keeps
a memory file in its workspace, and (with egress) calls an allowlisted API.
"""
import json
import os
import socket
import sys
import time


def check(label, fn):
    try:
        result = fn()
        print(f"  {label:<48} {result}")
    except Exception as e:  # the point is to show what the jail refuses
        print(f"  {label:<48} refused: {type(e).__name__}: {e}")


def read(path):
    with open(path) as f:
        return f"read {len(f.read())} bytes"


def write(path):
    with open(path, "a") as f:
        f.write("the agent was here\n")
    return "written"


def unshare_user():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return "created"


def connect(host, port):
    s = socket.create_connection((host, port), timeout=2)
    s.close()
    return "connected"


print(f"demo agent: uid {os.getuid()}, pid {os.getpid()}, host {socket.gethostname()}, cwd {os.getcwd()}")
print("what the jail allows and refuses:")
check("read my credentials (/run/credentials/token)", lambda: read("/run/credentials/token"))
check("write my credentials", lambda: write("/run/credentials/token"))
check("rewrite my protected SOUL.md", lambda: write("SOUL.md"))
check("keep notes in memory/notes.md", lambda: write("memory/notes.md"))
check("read the host's /etc/shadow", lambda: read("/etc/shadow"))
check("see the host's processes (/proc)", lambda: f"{len([p for p in os.listdir('/proc') if p.isdigit()])} pids visible")
check("write to /usr", lambda: write("/usr/lib/evil"))
check("reach 1.1.1.1:443", lambda: connect("1.1.1.1", 443))
check("reach the host's sshd on 127.0.0.1:22", lambda: connect("127.0.0.1", 22))
check("create a user namespace", unshare_user)

token = open("/run/credentials/token").read().strip()
print(f"  {'printing my token (redacted on the way out)':<48} {token}")
print("\x1b]0;an escape sequence that would retitle your terminal\x07 (made visible instead)")

with open("memory/notes.md", "a") as f:
    f.write(f"{time.strftime('%H:%M:%S')} demo run finished\n")
print("demo agent: done")
