import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { type HostStatus, LOG_SUBDIR, STATUS_FILE } from "../host/supervisor.js";
import type { HostRecord, LabRecord } from "./state.js";

/**
 * The process runtime: each host of a plan is a directory (its root) and a detached `lab host`
 * supervisor process that runs the host's static pods as local processes on 127.0.0.1. The lab
 * outlives the command that started it. Before signalling a recorded PID it checks that the
 * process is still this host's supervisor (PIDs get reused).
 */

export const LAB_MAIN = fileUrlToMain();

function fileUrlToMain(): string {
  // dist/src/lab/process-runtime.js → dist/src/cli/main.js (and the same from src/ under tests).
  const here = new URL(import.meta.url).pathname;
  const dist = here.replace(/\/src\/lab\/process-runtime\.(js|ts)$/, "/src/cli/main.js");
  if (dist.includes("/dist/")) return dist;
  return path.resolve(path.dirname(here), "../../dist/src/cli/main.js");
}

/** Whether `pid` is the supervisor of the host rooted at `root` (and not a process that reused the PID). */
export function isHostProcess(pid: number, root: string): boolean {
  if (!pid) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.includes("host") && cmdline.includes(`--root=${root}`);
  } catch {
    return false;
  }
}

export function hostRunning(host: HostRecord): boolean {
  return isHostProcess(host.pid, host.root);
}

/** Starts a host's supervisor, detached; returns its PID. */
export function startHost(lab: LabRecord, host: HostRecord): number {
  if (hostRunning(host)) return host.pid;
  const logDir = path.join(host.root, LOG_SUBDIR);
  fs.mkdirSync(logDir, { recursive: true });
  const log = fs.openSync(path.join(host.root, "var/log/lab-host.log"), "a");
  const child = spawn(
    process.execPath,
    [LAB_MAIN, "host", `--name=${host.name}`, `--root=${host.root}`, `--lab=${lab.name}`],
    {
      detached: true,
      stdio: ["ignore", log, log],
      argv0: "lab",
    },
  );
  fs.closeSync(log);
  child.unref();
  host.pid = child.pid ?? 0;
  return host.pid;
}

/**
 * Processes that belong to a host: their command line names a path inside the host's root
 * (--root, --data-dir, certificate files), which no other program's does.
 */
export function processesOfHost(host: HostRecord): number[] {
  const marker = `${host.root}/`;
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes(marker) || cmdline.split("\0").includes(`--root=${host.root}`)) {
        pids.push(Number(entry));
        continue;
      }
      const environ = fs.readFileSync(`/proc/${entry}/environ`, "utf8");
      if (environ.split("\0").includes(`LAB_HOST_ROOT=${host.root}`)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Stops a host's supervisor (it stops its components first); waits until it is gone. */
export async function stopHost(host: HostRecord, timeoutMs = 20_000): Promise<void> {
  await stopSupervisor(host, timeoutMs);
  // Components whose supervisor died (crash, SIGKILL) are still the host's: stop them too.
  const left = processesOfHost(host);
  for (const pid of left) signal(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (processesOfHost(host).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of processesOfHost(host)) signal(pid, "SIGKILL");
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function stopSupervisor(host: HostRecord, timeoutMs: number): Promise<void> {
  if (!hostRunning(host)) {
    host.pid = 0;
    return;
  }
  process.kill(host.pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (hostRunning(host) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (hostRunning(host)) {
    // The supervisor did not finish: take it and whatever it still runs down hard.
    for (const c of hostStatus(host)?.components ?? []) if (c.pid) killIfAlive(c.pid);
    process.kill(host.pid, "SIGKILL");
  }
  host.pid = 0;
}

function killIfAlive(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** The supervisor's own record of its components (PIDs, restarts). */
export function hostStatus(host: HostRecord): HostStatus | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(host.root, STATUS_FILE), "utf8")) as HostStatus;
  } catch {
    return undefined;
  }
}

/** The host's logs: its supervisor's and each component's. */
export function hostLogs(host: HostRecord): string {
  const out: string[] = [];
  const supervisor = path.join(host.root, "var/log/lab-host.log");
  if (fs.existsSync(supervisor)) out.push(`==> ${host.name}: supervisor <==\n${fs.readFileSync(supervisor, "utf8")}`);
  const dir = path.join(host.root, LOG_SUBDIR);
  if (fs.existsSync(dir))
    for (const f of fs.readdirSync(dir).sort())
      out.push(`==> ${host.name}: ${f.replace(/\.log$/, "")} <==\n${fs.readFileSync(path.join(dir, f), "utf8")}`);
  return out.join("\n");
}
