import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { memberProcessArgs } from "../etcd/node-flags.js";
import type { Logger } from "../util/logger.js";
import { yaml } from "../util/yaml-lazy.js";

/**
 * A lab host's supervisor: a small kubelet for static pods. It runs every component whose
 * manifest is in `<root>/etc/kubernetes/manifests` (Pod YAML, as kubeadm writes them), restarts a
 * component that exits (with backoff), restarts it when its manifest changes and stops it when the
 * manifest goes: so editing `etcd.yaml` on a host restarts etcd with the new flags, as on a
 * kubeadm node. Each component is its own process (no wrapper between), under its familiar name.
 */

export const MANIFEST_SUBDIR = "etc/kubernetes/manifests";
export const LOG_SUBDIR = "var/log/pods";
export const STATUS_FILE = "var/run/lab-host.json";

export interface ComponentStatus {
  readonly name: string;
  readonly pid: number | undefined;
  readonly startedAt: string | undefined;
  readonly restarts: number;
  readonly lastExit: string | undefined;
  readonly manifestHash: string;
}

export interface HostStatus {
  readonly host: string;
  readonly pid: number;
  readonly updatedAt: string;
  readonly components: readonly ComponentStatus[];
}

interface Manifest {
  readonly name: string;
  readonly command: readonly string[];
  readonly hash: string;
}

/**
 * Where a host keeps the commands of manifests it has parsed, by the sha256 of their text, in the
 * host's /etc/kubernetes (the directory a Docker host gets from the machine). A supervisor starting
 * on manifests `lab up` just wrote (and primed here) needs no YAML parser, which would cost every
 * host's boot more CPU than anything else it does; an edited manifest misses and is parsed.
 */
export const MANIFEST_CACHE_FILE = "etc/kubernetes/.lab-manifest-cache.json";

type ParsedManifests = Record<string, { name: string; command: string[] }>;

function readParsed(root: string): ParsedManifests {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, MANIFEST_CACHE_FILE), "utf8")) as ParsedManifests;
  } catch {
    return {};
  }
}

function writeParsed(root: string, parsed: ParsedManifests): void {
  const file = path.join(root, MANIFEST_CACHE_FILE);
  try {
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(parsed));
    fs.renameSync(`${file}.tmp`, file);
  } catch {
    // Only a cache: the next start parses again.
  }
}

const hashOf = (text: string) => createHash("sha256").update(text).digest("hex");

/** Parses a static pod manifest's text: the first container's command (and args) is what runs. */
export function parseManifest(text: string, file: string): { name: string; command: string[] } {
  const doc = yaml().parse(text) as {
    metadata?: { name?: unknown };
    spec?: { containers?: { command?: unknown; args?: unknown }[] };
  } | null;
  const name = doc?.metadata?.name;
  const container = doc?.spec?.containers?.[0];
  const command = [...((container?.command as unknown[]) ?? []), ...((container?.args as unknown[]) ?? [])];
  if (typeof name !== "string" || name === "") throw new Error(`${file}: metadata.name is required`);
  if (command.length === 0 || !command.every((c) => typeof c === "string"))
    throw new Error(`${file}: spec.containers[0].command must be a list of strings`);
  return { name, command: command as string[] };
}

/** Reads a static pod manifest, through the host's cache of parsed manifests when `root` is given. */
export function readManifest(file: string, root?: string): Manifest {
  const text = fs.readFileSync(file, "utf8");
  const digest = hashOf(text);
  const parsed = root === undefined ? {} : readParsed(root);
  let entry = parsed[digest];
  if (entry === undefined) {
    entry = parseManifest(text, file);
    // Newest last; a few dozen entries cover every manifest a host has plus recent edits.
    if (root !== undefined)
      writeParsed(root, Object.fromEntries(Object.entries({ ...parsed, [digest]: entry }).slice(-32)));
  }
  return { name: entry.name, command: entry.command, hash: digest.slice(0, 16) };
}

/**
 * Records manifests about to be written to a host (`lab up`), parsed, so that the host's first
 * start finds them in its cache. Each text is parsed exactly as the supervisor would parse it.
 */
export function primeManifestCache(root: string, texts: readonly { file: string; text: string }[]): void {
  const parsed: ParsedManifests = {};
  for (const { file, text } of texts) parsed[hashOf(text)] = parseManifest(text, file);
  writeParsed(root, parsed);
}

/** How a familiar command name maps onto this program: `etcd ...` is `lab etcd ...`. */
export function resolveCommand(
  command: readonly string[],
  labMain: string,
): { file: string; args: string[]; argv0: string } {
  const [name, ...rest] = command as [string, ...string[]];
  const sub: Record<string, string> = { "kube-apiserver": "apiserver", "lab-lb": "lb" };
  if (name === "etcd") return { file: process.execPath, args: memberProcessArgs(labMain, rest), argv0: name };
  if (sub[name]) return { file: process.execPath, args: [labMain, sub[name] as string, ...rest], argv0: name };
  if (name === "lab") return { file: process.execPath, args: [labMain, ...rest], argv0: "lab" };
  return { file: name, args: rest, argv0: name };
}

interface Running {
  manifest: Manifest;
  child: ChildProcess | undefined;
  startedAt: number;
  restarts: number;
  lastExit: string | undefined;
  timer: NodeJS.Timeout | undefined;
  stopping: boolean;
}

export class HostSupervisor {
  private readonly running = new Map<string, Running>();
  private scanTimer: NodeJS.Timeout | undefined;
  private watcher: fs.FSWatcher | undefined;
  private stopped = false;
  /** Each manifest as last read, by file, with the stat it was read at: unchanged files are not re-read. */
  private readonly manifestCache = new Map<string, { stamp: string; manifest: Manifest | Error }>();
  /** The components part of the status file as last written: an idle host does not rewrite it. */
  private lastStatus = "";

  constructor(
    private readonly host: string,
    private readonly root: string,
    private readonly labMain: string,
    private readonly logger: Logger,
  ) {}

  private get manifestDir(): string {
    return path.join(this.root, MANIFEST_SUBDIR);
  }

  start(): void {
    fs.mkdirSync(this.manifestDir, { recursive: true });
    fs.mkdirSync(path.join(this.root, LOG_SUBDIR), { recursive: true });
    fs.mkdirSync(path.dirname(path.join(this.root, STATUS_FILE)), { recursive: true });
    this.scan();
    try {
      this.watcher = fs.watch(this.manifestDir, () => this.scan());
      // Out of inotify watches and the like: polling below still notices changes.
      this.watcher.on("error", (e) => {
        this.logger.warn("manifest watch failed; polling only", { error: e.message });
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // Polling below covers file systems without watch support.
    }
    this.scanTimer = setInterval(() => this.scan(), 2_000);
  }

  /** Compares the manifests on disk with what runs, and reconciles. */
  scan(): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    let files: string[] = [];
    try {
      files = fs.readdirSync(this.manifestDir).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"));
    } catch {
      files = [];
    }
    for (const f of files) {
      const m = this.cachedManifest(f);
      if (m === undefined) continue;
      seen.add(m.name);
      const r = this.running.get(m.name);
      if (!r) {
        this.launch({
          manifest: m,
          child: undefined,
          startedAt: 0,
          restarts: 0,
          lastExit: undefined,
          timer: undefined,
          stopping: false,
        });
      } else if (r.manifest.hash !== m.hash) {
        this.logger.info("manifest changed; restarting", { component: m.name });
        r.manifest = m;
        this.restart(r);
      }
    }
    for (const f of this.manifestCache.keys()) if (!files.includes(f)) this.manifestCache.delete(f);
    for (const [name, r] of this.running) {
      if (!seen.has(name)) {
        this.logger.info("manifest removed; stopping", { component: name });
        this.running.delete(name);
        void this.terminate(r);
      }
    }
    this.writeStatus();
  }

  /** The manifest in `file`, read again only when its stat changed; undefined when unreadable (warned once). */
  private cachedManifest(file: string): Manifest | undefined {
    const full = path.join(this.manifestDir, file);
    let stamp: string;
    try {
      const st = fs.statSync(full);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    } catch {
      return undefined; // removed between readdir and stat
    }
    let entry = this.manifestCache.get(file);
    if (entry?.stamp !== stamp) {
      let manifest: Manifest | Error;
      try {
        manifest = readManifest(full, this.root);
      } catch (e) {
        manifest = e as Error;
        this.logger.warn("cannot read manifest", { file, error: manifest.message });
      }
      entry = { stamp, manifest };
      this.manifestCache.set(file, entry);
    }
    return entry.manifest instanceof Error ? undefined : entry.manifest;
  }

  private launch(r: Running): void {
    this.running.set(r.manifest.name, r);
    const { file, args, argv0 } = resolveCommand(r.manifest.command, this.labMain);
    const log = fs.openSync(path.join(this.root, LOG_SUBDIR, `${r.manifest.name}.log`), "a");
    // LAB_HOST_ROOT marks the host's processes, so a lab can always find (and stop) its own.
    const child = spawn(file, args, {
      argv0,
      stdio: ["ignore", log, log],
      env: { ...process.env, LAB_HOST_ROOT: this.root },
    });
    fs.closeSync(log);
    r.child = child;
    r.startedAt = Date.now();
    r.stopping = false;
    this.logger.info("started", { component: r.manifest.name, pid: child.pid });
    child.once("error", (e) => {
      r.lastExit = `failed to start: ${e.message}`;
    });
    child.once("exit", (code, signal) => {
      if (r.child !== child) return;
      r.child = undefined;
      r.lastExit = signal ? `signal ${signal}` : `exit code ${code}`;
      this.writeStatus();
      if (r.stopping || this.stopped || this.running.get(r.manifest.name) !== r) return;
      // Back off like the kubelet: quick first restart, slower when it keeps failing.
      const ranMs = Date.now() - r.startedAt;
      if (ranMs > 10_000) r.restarts = 0;
      const delay = Math.min(500 * 2 ** Math.min(r.restarts, 5), 10_000);
      r.restarts++;
      this.logger.warn("component exited; restarting", { component: r.manifest.name, exit: r.lastExit, inMs: delay });
      r.timer = setTimeout(() => {
        r.timer = undefined;
        if (!this.stopped && this.running.get(r.manifest.name) === r && !r.child) this.launch(r);
      }, delay);
    });
    this.writeStatus();
  }

  private restart(r: Running): void {
    void this.terminate(r).then(() => {
      if (!this.stopped && this.running.get(r.manifest.name) === r) {
        r.restarts = 0;
        this.launch(r);
      }
    });
  }

  /** SIGTERM, then SIGKILL after 10 s. */
  private async terminate(r: Running): Promise<void> {
    r.stopping = true;
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    const child = r.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(kill);
  }

  status(): HostStatus {
    return {
      host: this.host,
      pid: process.pid,
      updatedAt: new Date().toISOString(),
      components: [...this.running.values()].map((r) => ({
        name: r.manifest.name,
        pid: r.child?.pid,
        startedAt: r.child ? new Date(r.startedAt).toISOString() : undefined,
        restarts: r.restarts,
        lastExit: r.lastExit,
        manifestHash: r.manifest.hash,
      })),
    };
  }

  private writeStatus(): void {
    const file = path.join(this.root, STATUS_FILE);
    const status = this.status();
    const components = JSON.stringify(status.components);
    if (components === this.lastStatus && fs.existsSync(file)) return;
    this.lastStatus = components;
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(status, null, 2));
      fs.renameSync(`${file}.tmp`, file);
    } catch (e) {
      this.logger.warn("cannot write the status file", { error: (e as Error).message });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    this.watcher?.close();
    await Promise.all([...this.running.values()].map((r) => this.terminate(r)));
    this.writeStatus();
  }
}
