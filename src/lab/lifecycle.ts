import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as path from "node:path";
import { primeManifestCache } from "../host/supervisor.js";
import { createLabPki } from "../pki/x509.js";
import { type Loaded, loadTopologyFile, resolveTopologyRef } from "../topology/load.js";
import { MANIFEST_DIR, PKI_DIR, type Plan, type PortName, type RuntimeKind, renderPlan } from "../topology/plan.js";
import { packageRoot } from "../util/paths.js";
import { freeLoopbackPort } from "../util/ports.js";
import { createDockerLab, dockerAvailable, dockerExecCapture } from "./docker/runtime.js";
import { isHostRunning, removeRuntimeObjects, startOneHost, stopOneHost } from "./runtime.js";
import { type LabRecord, labDir, portKey, readLab, recordOf, writeLab } from "./state.js";

/**
 * The lab's lifecycle on either runtime: up (ports → plan → credentials → files → hosts →
 * wait for quorum, API servers and load balancer, as an ordered list of steps that share one
 * context, and a rollback when a step fails), down, stop, start.
 */

export class LabError extends Error {
  override name = "LabError";
}

export interface Progress {
  step(title: string): void;
  done(detail?: string): void;
  fail(detail: string): void;
}

export const silentProgress: Progress = { step() {}, done() {}, fail() {} };

// ------------------------------------------------------------------------------------- ports

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen({ host: "127.0.0.1", port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The topology's API port when it is free, or the next free one after it. */
async function apiPort(wanted: number, explicit: boolean): Promise<number> {
  if (await portFree(wanted)) return wanted;
  if (explicit)
    throw new LabError(
      `port ${wanted} on 127.0.0.1 is in use; free it, or leave --port out to take the next free port`,
    );
  for (let p = wanted + 1; p < Math.min(wanted + 200, 65536); p++) if (await portFree(p)) return p;
  throw new LabError(`no free port from ${wanted} to ${wanted + 199} on 127.0.0.1 for the API endpoint; pass --port`);
}

// ------------------------------------------------------------------------------- templates

function template(name: string, values: Record<string, string>): string {
  const text = fs.readFileSync(path.join(packageRoot(), "templates", name), "utf8");
  return text.replace(/\{\{(\w+)\}\}/g, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`template ${name}: no value for {{${key}}}`);
    return v;
  });
}

export function staticPodManifest(lab: string, host: string, name: string, command: readonly string[]): string {
  const lines = command.map((c) => `    - ${JSON.stringify(c)}`).join("\n");
  return template("static-pod.yaml", { name, lab, host, command: lines });
}

export function kubeconfigFor(record: LabRecord): string {
  const pki = path.join(labDir(record.name), "pki");
  return template("kubeconfig.yaml", {
    lab: record.name,
    server: record.apiServerUrl,
    caData: fs.readFileSync(path.join(pki, "ca.crt")).toString("base64"),
    token: fs.readFileSync(path.join(pki, "admin.token"), "utf8").trim(),
  });
}

// ------------------------------------------------------------------------------------- up

export interface UpOptions {
  readonly topology: string;
  readonly name?: string | undefined;
  readonly port?: number | undefined;
  readonly runtime?: "auto" | RuntimeKind | undefined;
  readonly baseImage?: string | undefined;
  readonly waitMs?: number;
  readonly progress?: Progress;
  /** Told which runtime was picked and why. */
  readonly onRuntime?: (runtime: RuntimeKind, why: string) => void;
}

/** Where a host's files live on this machine: its root (process) or what is mounted at /etc/kubernetes (docker). */
export function filesRoot(lab: string, host: string): string {
  return path.join(labDir(lab), "hosts", host);
}

export async function pickRuntime(wanted: "auto" | RuntimeKind): Promise<{ runtime: RuntimeKind; why: string }> {
  if (wanted === "process") return { runtime: "process", why: "asked for with --runtime process" };
  const docker = await dockerAvailable();
  if (wanted === "docker") {
    if (!docker.ok) throw new LabError(`--runtime docker: ${docker.why}; start dockerd, or use --runtime process`);
    return { runtime: "docker", why: "asked for with --runtime docker" };
  }
  return docker.ok
    ? { runtime: "docker", why: `auto: ${docker.why}` }
    : { runtime: "process", why: `auto: ${docker.why}, so the lab runs as local processes` };
}

function writeCredentials(plan: Plan, dir: string): void {
  const pki = createLabPki({ hostNames: [...plan.certificateNames.dns], ipAddresses: [...plan.certificateNames.ips] });
  const token = randomBytes(24).toString("hex");
  const labPki = path.join(dir, "pki");
  fs.mkdirSync(labPki, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(labPki, "ca.crt"), pki.ca.certPem);
  fs.writeFileSync(path.join(labPki, "ca.key"), pki.ca.keyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(labPki, "admin.token"), `${token}\n`, { mode: 0o600 });
  for (const h of plan.hosts) {
    if (h.role !== "control-plane") continue;
    const hostPki = path.join(filesRoot(plan.lab, h.name), PKI_DIR);
    fs.mkdirSync(hostPki, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(hostPki, "ca.crt"), pki.ca.certPem);
    fs.writeFileSync(path.join(hostPki, "apiserver.crt"), pki.apiServer.certPem);
    fs.writeFileSync(path.join(hostPki, "apiserver.key"), pki.apiServer.keyPem, { mode: 0o600 });
    fs.writeFileSync(
      path.join(hostPki, "tokens.csv"),
      `${token},kubernetes-admin,kubernetes-admin,"system:masters"\n`,
      { mode: 0o600 },
    );
  }
}

function writeManifests(plan: Plan): void {
  for (const h of plan.hosts) {
    const root = filesRoot(plan.lab, h.name);
    const dir = path.join(root, MANIFEST_DIR);
    fs.mkdirSync(dir, { recursive: true });
    const files = h.components.map((c) => ({
      file: path.join(dir, `${c.name}.yaml`),
      text: staticPodManifest(plan.lab, h.name, c.name, c.command),
    }));
    primeManifestCache(root, files);
    for (const f of files) fs.writeFileSync(f.file, f.text);
  }
}

export async function up(options: UpOptions): Promise<{ record: LabRecord; loaded: Loaded }> {
  const progress = options.progress ?? silentProgress;
  const file = resolveTopologyRef(options.topology);
  const loaded = loadTopologyFile(file);
  const name = options.name ?? loaded.topology.name;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 40)
    throw new LabError(`--name ${name}: a lab name is lower-case letters, digits and '-' (at most 40)`);
  const dir = labDir(name);
  if (fs.existsSync(path.join(dir, "lab.json"))) {
    const existing = readLab(name);
    let running = false;
    for (const h of existing.hosts) running ||= await isHostRunning(existing, h);
    throw new LabError(
      `lab "${name}" already exists (${running ? "running" : "stopped"}); ${running ? "use it, or" : `lab start --name ${name} starts it again, or`} lab down --name ${name} removes it, or pick another --name`,
    );
  }
  const { runtime, why } = await pickRuntime(options.runtime ?? "auto");
  options.onRuntime?.(runtime, why);
  const waitMs = options.waitMs ?? (runtime === "docker" ? 120_000 : 60_000);
  let record: LabRecord | undefined;
  let created = false;
  try {
    progress.step("Choosing ports on 127.0.0.1");
    const taken = new Set<number>();
    const api = await apiPort(options.port ?? loaded.topology.ports.apiServer, options.port !== undefined);
    taken.add(api);
    const ports: Record<string, number> = {};
    let plan: Plan;
    if (runtime === "process") {
      const wanted: { host: string; listener: PortName }[] = [];
      const draft = renderPlan(loaded.topology, {
        lab: name,
        runtime,
        apiHostPort: api,
        portFor: (host, listener) => {
          wanted.push({ host, listener });
          return 1;
        },
        hostRoot: (h) => filesRoot(name, h),
      });
      const singleApi = !loaded.topology.loadBalancer.enabled;
      for (const { host, listener } of wanted) {
        const key = portKey(host, listener);
        if (ports[key] !== undefined) continue;
        // Without a load balancer, the first API server listens on the API endpoint itself.
        ports[key] =
          singleApi && listener === "apiserver" && host === draft.hosts[0]?.name ? api : await freeLoopbackPort(taken);
      }
      plan = renderPlan(loaded.topology, {
        lab: name,
        runtime,
        apiHostPort: api,
        portFor: (host, listener) => ports[portKey(host, listener)] as number,
        hostRoot: (h) => filesRoot(name, h),
      });
    } else {
      plan = renderPlan(loaded.topology, { lab: name, runtime, apiHostPort: api });
    }
    progress.done(`API endpoint ${plan.apiServerUrl}`);

    progress.step("Writing credentials and manifests");
    fs.mkdirSync(dir, { recursive: true });
    const fresh = recordOf(plan, file, ports);
    record = fresh;
    writeLab(record);
    writeCredentials(plan, dir);
    writeManifests(plan);
    progress.done();

    if (runtime === "docker") {
      progress.step("Node image, networks, volumes and containers");
      created = true;
      let made: Awaited<ReturnType<typeof createDockerLab>>;
      try {
        made = await createDockerLab(plan, (h) => filesRoot(name, h), {
          instance: fresh.instance,
          ...(options.baseImage ? { baseImage: options.baseImage } : {}),
        });
      } catch (e) {
        const message = (e as Error).message.replace(/^Error: /, "");
        throw new LabError(
          `${message}${options.baseImage ? "; check --base-image (it must be an image this Docker Engine has or can pull)" : ""}`,
        );
      }
      progress.done(`${made.image}${made.imageBuilt ? ` (built in ${made.imageSeconds.toFixed(1)}s)` : ""}`);
    }
    progress.step(`Starting ${plan.hosts.length} hosts`);
    created = true;
    for (const h of record.hosts) await startOneHost(record, h);
    writeLab(record);
    progress.done(record.hosts.map((h) => (runtime === "process" ? `${h.name} (pid ${h.pid})` : h.name)).join(", "));

    await waitReady(record, plan, waitMs, progress);
    return { record, loaded };
  } catch (e) {
    // Nothing half-created stays behind (and nothing of another lab is touched: Docker objects
    // go by this lab's instance id).
    if (record && created) {
      for (const h of record.hosts) await stopOneHost(record, h).catch(() => undefined);
      await removeRuntimeObjects(record).catch(() => undefined);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------------- health

function httpGet(url: string, ca?: Buffer, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const req = mod.get(
      url,
      {
        timeout: 2_000,
        ...(ca ? { ca } : {}),
        ...(token ? { headers: { Authorization: `Bearer ${token}` } } : {}),
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

async function waitFor(what: string, deadline: number, check: () => Promise<string | undefined>): Promise<void> {
  let last = "";
  for (;;) {
    try {
      const problem = await check();
      if (problem === undefined) return;
      last = problem;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new LabError(`${what} not ready in time (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Checks URLs from where they are reachable: this machine (process runtime) or inside the first
 * control-plane host (Docker: the store's network is internal). Returns the first problem.
 */
async function probe(record: LabRecord, urls: readonly string[]): Promise<string | undefined> {
  if (record.runtime === "docker") {
    const host = record.hosts.find((h) => h.role === "control-plane")?.name as string;
    const r = dockerExecCapture(host, [
      "/usr/local/bin/node",
      "/lab/dist/src/cli/main.js",
      "probe",
      "--ca=/etc/kubernetes/pki/ca.crt",
      ...urls,
    ]);
    return r.code === 0 ? undefined : (r.stdout + r.stderr).trim() || `probe exited ${r.code}`;
  }
  const ca = fs.readFileSync(path.join(labDir(record.name), "pki", "ca.crt"));
  return probeUrls(urls, ca);
}

/** GETs each URL: /health must say "health":"true", anything else must answer 200. */
export async function probeUrls(urls: readonly string[], ca: Buffer | undefined): Promise<string | undefined> {
  for (const url of urls) {
    try {
      const r = await httpGet(url, ca);
      if (url.endsWith("/health") ? !r.body.includes('"health":"true"') : r.status !== 200)
        return `${url}: ${r.status} ${r.body.trim().slice(0, 200)}`;
    } catch (e) {
      return `${url}: ${(e as Error).message}`;
    }
  }
  return undefined;
}

async function waitReady(record: LabRecord, plan: Plan, waitMs: number, progress: Progress): Promise<void> {
  const deadline = Date.now() + waitMs;
  const hostsAlive = async (): Promise<string | undefined> => {
    const dead: string[] = [];
    for (const h of record.hosts) if (!(await isHostRunning(record, h))) dead.push(h.name);
    return dead.length > 0 ? `host ${dead.join(", ")} is not running (lab logs shows why)` : undefined;
  };
  progress.step(`Store: ${record.etcdEndpoints.length} member(s) and a leader`);
  await waitFor("the store", deadline, async () => {
    const dead = await hostsAlive();
    if (dead) throw new LabError(dead);
    return probe(
      record,
      record.etcdEndpoints.map((e) => `${e}/health`),
    );
  });
  progress.done();
  const apiServers = plan.hosts.flatMap((h) =>
    h.components
      .filter((c) => c.name === "kube-apiserver")
      .map((c) => `https://${record.runtime === "docker" ? h.name : "127.0.0.1"}:${c.ports[0]?.port}/readyz`),
  );
  progress.step(`API servers: ${apiServers.length} ready`);
  await waitFor("the API servers", deadline, () => probe(record, apiServers));
  progress.done();
  // The endpoint as users reach it: through the load balancer, or the published port.
  const ca = fs.readFileSync(path.join(labDir(record.name), "pki", "ca.crt"));
  progress.step(plan.topology.loadBalancer.enabled ? "Load balancer" : "API endpoint");
  await waitFor("the API endpoint", deadline, () => probeUrls([`${record.apiServerUrl}/readyz`], ca));
  progress.done(record.apiServerUrl);
}

// ------------------------------------------------------------------------ down, stop, start

export async function down(name: string): Promise<LabRecord> {
  const record = readLab(name);
  // Everything goes, data included, so nothing needs a graceful stop: containers are removed with
  // force, all at once (as kind deletes a cluster); local hosts stop side by side.
  if (record.runtime === "process") await Promise.all(record.hosts.map((h) => stopOneHost(record, h)));
  await removeRuntimeObjects(record);
  fs.rmSync(labDir(name), { recursive: true, force: true });
  return record;
}

function hostsNamed(record: LabRecord, host: string | undefined) {
  if (host === undefined) return record.hosts;
  const h = record.hosts.find((x) => x.name === host);
  if (!h)
    throw new LabError(
      `lab ${record.name} has no host "${host}"; its hosts: ${record.hosts.map((x) => x.name).join(", ")}`,
    );
  return [h];
}

export async function stop(name: string, host?: string): Promise<LabRecord> {
  const record = readLab(name);
  for (const h of hostsNamed(record, host)) await stopOneHost(record, h);
  if (host === undefined) record.state = "stopped";
  writeLab(record);
  return record;
}

export async function start(
  name: string,
  host?: string,
  waitMs = 60_000,
  progress: Progress = silentProgress,
): Promise<LabRecord> {
  const record = readLab(name);
  const hosts = hostsNamed(record, host);
  // Ports were chosen at up and are kept, so kubeconfigs stay valid: they must still be free.
  const busy: string[] = [];
  for (const h of hosts) {
    if (await isHostRunning(record, h)) continue;
    for (const [key, port] of Object.entries(record.ports))
      if (key.startsWith(`${h.name}/`) && !(await portFree(port))) busy.push(`${key} (${port})`);
  }
  if (busy.length > 0)
    throw new LabError(`cannot start: ports of lab ${name} are taken by other programs: ${busy.join(", ")}`);
  const publisher = record.hosts.find((h) => h.role === "load-balancer") ?? record.hosts[0];
  if (
    record.runtime === "docker" &&
    publisher &&
    hosts.includes(publisher) &&
    !(await isHostRunning(record, publisher)) &&
    !(await portFree(record.apiHostPort))
  )
    busy.push(`the API endpoint (${record.apiHostPort})`);
  if (busy.length > 0)
    throw new LabError(`cannot start: ports of lab ${name} are taken by other programs: ${busy.join(", ")}`);
  for (const h of hosts) await startOneHost(record, h);
  record.state = "up";
  writeLab(record);
  if (host === undefined) {
    const plan = renderPlan(
      record.topology,
      record.runtime === "docker"
        ? { lab: record.name, runtime: "docker", apiHostPort: record.apiHostPort }
        : {
            lab: record.name,
            runtime: "process",
            apiHostPort: record.apiHostPort,
            portFor: (h, l) => record.ports[portKey(h, l)] as number,
            hostRoot: (h) => filesRoot(record.name, h),
          },
    );
    await waitReady(record, plan, waitMs, progress);
  }
  return record;
}

export async function restart(name: string, host?: string, progress: Progress = silentProgress): Promise<LabRecord> {
  await stop(name, host);
  return start(name, host, 60_000, progress);
}

export { httpGet };
