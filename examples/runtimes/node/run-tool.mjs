#!/usr/bin/env node
// Run one tool command in a clawjail jail from Node.js, and read how it ended from
// the JSON status clawjail writes to fd 3, instead of parsing its stderr.
//
//   node run-tool.mjs [--agent NAME] [--workspace DIR] [--timeout 30s] -- CMD [ARG...]
//
// Prints one JSON line: {"status": {...clawjail's status...}, "stdout": "...", "stderr": "..."}.
// Set CLAWJAIL to the clawjail binary (default: clawjail on PATH).
import { spawn } from "node:child_process";

/**
 * Runs `argv` in a fresh jail. Resolves to { status, stdout, stderr }, where status is
 * the object clawjail wrote to fd 3: run_id, agent, end (exited | signaled | oom |
 * timeout | setup-failed | exec-failed), exit_status, exit_code or signal, message,
 * duration_ms, memory_peak_bytes, cpu_usec, oom_kills.
 */
export function runTool(argv, { agent, workspace, timeout, clawjail = process.env.CLAWJAIL || "clawjail" } = {}) {
  const args = ["exec", "--quiet", "--json-status", "3"];
  if (agent) args.push("--agent", agent);
  if (workspace) args.push("--workspace", workspace);
  if (timeout) args.push("--timeout", timeout);
  args.push("--", ...argv);

  return new Promise((resolve, reject) => {
    // fd 0: nothing; 1 and 2: the tool's output; 3: a pipe for clawjail's status line.
    const child = spawn(clawjail, args, { stdio: ["ignore", "pipe", "pipe", "pipe"] });
    const chunks = { stdout: [], stderr: [], status: [] };
    child.stdout.on("data", (d) => chunks.stdout.push(d));
    child.stderr.on("data", (d) => chunks.stderr.push(d));
    child.stdio[3].on("data", (d) => chunks.status.push(d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const text = Buffer.concat(chunks.status).toString("utf8").trim();
      if (!text) {
        // No status line: clawjail itself failed before the run (bad options, no such agent).
        return reject(new Error(`clawjail exited ${code ?? signal} without a status: ${Buffer.concat(chunks.stderr)}`));
      }
      resolve({
        status: JSON.parse(text),
        stdout: Buffer.concat(chunks.stdout).toString("utf8"),
        stderr: Buffer.concat(chunks.stderr).toString("utf8"),
      });
    });
  });
}

// Command line: the options above, then -- and the command.
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const options = {};
  while (args.length && args[0] !== "--") {
    const flag = args.shift();
    const value = args.shift();
    if (!["--agent", "--workspace", "--timeout"].includes(flag) || value === undefined) {
      console.error(`usage: run-tool.mjs [--agent NAME] [--workspace DIR] [--timeout D] -- CMD [ARG...]`);
      process.exit(64);
    }
    options[flag.slice(2)] = value;
  }
  args.shift();
  try {
    const result = await runTool(args, options);
    console.log(JSON.stringify(result));
    // Act on how it ended, not on a guess from the exit status alone.
    if (result.status.end === "oom") console.error("the tool ran out of memory");
    if (result.status.end === "timeout") console.error("the tool timed out");
    process.exit(result.status.exit_status === 0 ? 0 : 1);
  } catch (e) {
    console.error(e.message);
    process.exit(2);
  }
}
