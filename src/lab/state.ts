import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Plan, PortName, RuntimeKind } from "../topology/plan.js";
import type { Topology } from "../topology/schema.js";

/**
 * Where labs live on this machine: `$LAB_HOME` (default `$XDG_STATE_HOME/lab`, or
 * `~/.local/state/lab`), one directory per lab with its record (lab.json), its credentials and,
 * on the process runtime, each host's root directory.
 */

export function labHome(): string {
  if (process.env.LAB_HOME) return path.resolve(process.env.LAB_HOME);
  const state = process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
  return path.join(state, "lab");
}

export function labDir(name: string): string {
  return path.join(labHome(), "labs", name);
}

export interface HostRecord {
  readonly name: string;
  readonly role: string;
  /** Process runtime: the host's root directory and its supervisor's PID (0 when stopped). */
  readonly root: string;
  pid: number;
}

export interface LabRecord {
  readonly name: string;
  readonly runtime: RuntimeKind;
  readonly topologyFile: string;
  readonly topology: Topology;
  readonly apiHostPort: number;
  /** Process runtime: every listener's port, by "host/listener". */
  readonly ports: Record<string, number>;
  readonly createdAt: string;
  readonly hosts: HostRecord[];
  readonly apiServerUrl: string;
  readonly etcdEndpoints: readonly string[];
  /** "up" while the lab is meant to run, "stopped" after lab stop. */
  state: "up" | "stopped";
  /**
   * A random id made by lab up: Docker objects carry it, so that removal never touches another
   * lab home's lab of the same name. Absent in records written before it existed.
   */
  readonly instance?: string;
}

export class NoSuchLabError extends Error {
  constructor(name: string) {
    const known = listLabs();
    super(
      `no such lab "${name}"${known.length > 0 ? `; labs here: ${known.join(", ")}` : "; there are no labs (lab up NAME creates one)"}`,
    );
    this.name = "NoSuchLabError";
  }
}

export function listLabs(): string[] {
  const dir = path.join(labHome(), "labs");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => fs.existsSync(path.join(dir, n, "lab.json")))
    .sort();
}

export function readLab(name: string): LabRecord {
  const file = path.join(labDir(name), "lab.json");
  if (!fs.existsSync(file)) throw new NoSuchLabError(name);
  return JSON.parse(fs.readFileSync(file, "utf8")) as LabRecord;
}

export function writeLab(record: LabRecord): void {
  const file = path.join(labDir(record.name), "lab.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

export function portKey(host: string, listener: PortName): string {
  return `${host}/${listener}`;
}

export function recordOf(
  plan: Plan,
  topologyFile: string,
  ports: Record<string, number>,
): LabRecord & { readonly instance: string } {
  return {
    name: plan.lab,
    runtime: plan.runtime,
    topologyFile,
    topology: plan.topology,
    apiHostPort: Number(new URL(plan.apiServerUrl).port),
    ports,
    createdAt: new Date().toISOString(),
    hosts: plan.hosts.map((h) => ({ name: h.name, role: h.role, root: h.root, pid: 0 })),
    apiServerUrl: plan.apiServerUrl,
    etcdEndpoints: plan.etcdEndpoints,
    state: "up",
    instance: crypto.randomBytes(8).toString("hex"),
  };
}
