import { spawn } from "node:child_process";
import type { ComponentStatus, HostStatus } from "../host/supervisor.js";
import {
  dockerExec,
  dockerExecCapture,
  dockerHostRunning,
  dockerLogs,
  dockerStartHost,
  dockerStopHost,
  removeDockerLab,
} from "./docker/runtime.js";
import { hostLogs, hostRunning, hostStatus, startHost, stopHost } from "./process-runtime.js";
import type { HostRecord, LabRecord } from "./state.js";

/**
 * One narrow interface over the two runtimes (as kind's Provider is): what the lab commands need
 * of a host, whether it is a container or a local process tree.
 */

export async function isHostRunning(lab: LabRecord, host: HostRecord): Promise<boolean> {
  return lab.runtime === "docker" ? dockerHostRunning(lab, host) : hostRunning(host);
}

export async function startOneHost(lab: LabRecord, host: HostRecord): Promise<void> {
  if (lab.runtime === "docker") await dockerStartHost(lab, host);
  else startHost(lab, host);
}

export async function stopOneHost(lab: LabRecord, host: HostRecord): Promise<void> {
  if (lab.runtime === "docker") await dockerStopHost(lab, host);
  else await stopHost(host);
}

/** After every host is stopped: the runtime's own objects (containers, networks, volumes). */
export async function removeRuntimeObjects(lab: LabRecord): Promise<void> {
  if (lab.runtime === "docker") await removeDockerLab(lab.name, lab.instance);
}

export async function componentsOf(lab: LabRecord, host: HostRecord): Promise<readonly ComponentStatus[]> {
  if (!(await isHostRunning(lab, host))) return [];
  if (lab.runtime === "process") return hostStatus(host)?.components ?? [];
  const r = dockerExecCapture(host.name, ["cat", "/var/run/lab-host.json"]);
  if (r.code !== 0) return [];
  try {
    return (JSON.parse(r.stdout) as HostStatus).components;
  } catch {
    return [];
  }
}

export async function logsOf(lab: LabRecord, host: HostRecord): Promise<string> {
  return lab.runtime === "docker" ? dockerLogs(host) : hostLogs(host);
}

/** Runs a command in a host with this terminal's stdio; returns its exit code. */
export function execIn(
  lab: LabRecord,
  host: HostRecord,
  cmd: readonly string[],
  env: Record<string, string>,
): Promise<number> {
  if (lab.runtime === "docker") return dockerExec(host.name, cmd, true);
  return new Promise((resolve) => {
    const child = spawn(cmd[0] as string, cmd.slice(1), {
      cwd: host.root,
      stdio: "inherit",
      env: { ...process.env, ...env },
    });
    child.on("error", (e) => {
      process.stderr.write(`lab exec: ${e.message}\n`);
      resolve(127);
    });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
