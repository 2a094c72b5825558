#!/usr/bin/env python3
"""Run one tool command in a clawjail jail from Python, and read how it ended from the
JSON status clawjail writes to an inherited pipe, instead of parsing its stderr.

    python3 run_tool.py [--agent NAME] [--workspace DIR] [--timeout 30s] -- CMD [ARG...]

Prints one JSON line: {"status": {...clawjail's status...}, "stdout": "...", "stderr": "..."}.
Set CLAWJAIL to the clawjail binary (default: clawjail on PATH).
"""
import json
import os
import subprocess
import sys


def run_tool(argv, agent=None, workspace=None, timeout=None, clawjail=None):
    """Runs argv in a fresh jail; returns (status, stdout, stderr).

    status is the object clawjail wrote to the status pipe: run_id, agent, end (exited |
    signaled | oom | timeout | setup-failed | exec-failed), exit_status, exit_code or
    signal, message, duration_ms, memory_peak_bytes, cpu_usec, oom_kills.
    """
    clawjail = clawjail or os.environ.get("CLAWJAIL", "clawjail")
    read_end, write_end = os.pipe()
    # The write end keeps its number in the child (pass_fds); tell clawjail which it is.
    args = [clawjail, "exec", "--quiet", "--json-status", str(write_end)]
    if agent:
        args += ["--agent", agent]
    if workspace:
        args += ["--workspace", workspace]
    if timeout:
        args += ["--timeout", timeout]
    args += ["--", *argv]
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(write_end,))
    finally:
        # Only the child writes; our copy must go so that reading ends at its exit.
        os.close(write_end)
    with os.fdopen(read_end, "rb") as status_pipe:
        out, err = proc.communicate()
        text = status_pipe.read().decode().strip()
    if not text:
        # No status line: clawjail itself failed before the run (bad options, no such agent).
        raise RuntimeError(f"clawjail exited {proc.returncode} without a status: {err.decode(errors='replace')}")
    return json.loads(text), out.decode(errors="replace"), err.decode(errors="replace")


def main(args):
    options = {}
    while args and args[0] != "--":
        flag, value = args[0], args[1] if len(args) > 1 else None
        if flag not in ("--agent", "--workspace", "--timeout") or value is None:
            print("usage: run_tool.py [--agent NAME] [--workspace DIR] [--timeout D] -- CMD [ARG...]", file=sys.stderr)
            return 64
        options[flag[2:]] = value
        args = args[2:]
    try:
        status, out, err = run_tool(args[1:], **options)
    except (RuntimeError, OSError) as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps({"status": status, "stdout": out, "stderr": err}))
    # Act on how it ended, not on a guess from the exit status alone.
    if status["end"] == "oom":
        print("the tool ran out of memory", file=sys.stderr)
    elif status["end"] == "timeout":
        print("the tool timed out", file=sys.stderr)
    return 0 if status["exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
