import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "vitest";
import {
  type CommandResult,
  ETCDCTL,
  etcdctl,
  httpGet,
  type NodeOptions,
  type RunningNode,
  sleep,
  startLab,
  startRealEtcd,
  tempDir,
} from "./nodes.js";

/**
 * Differential testing with the real etcdctl: the same command runs against our member and a real
 * etcd 3.4 started the same way, and the outputs are compared after normalizing only what may
 * legitimately differ between two independent servers (IDs, times, raft bookkeeping, db size,
 * hashes, lease IDs). Everything else (revisions, values, ordering, error texts, exit codes) must
 * match exactly.
 */

export type SideName = "lab" | "etcd";

export interface Normalized {
  readonly code: number | null;
  readonly signal?: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface NormalizeOptions {
  /** Normalize a lease's remaining TTL (it counts down with the clock) after checking its range. */
  readonly remainingTtl?: boolean;
  /** Go panic traces carry goroutine memory addresses that differ from run to run. */
  readonly goPanic?: boolean;
  /** Key prefixes followed by an unpadded hex lease ID (etcdctl lock/elect keys). */
  readonly leaseKeyPrefixes?: readonly string[];
}

/** Table columns whose values legitimately differ between two servers. */
const VOLATILE_COLUMNS = new Set(["VERSION", "DB SIZE", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "TOOK"]);

/** One server of a pair, with what is needed to normalize its outputs. */
export class Side {
  memberId = 0n;
  clusterId = 0n;
  /** Lease ID (16 hex digits) to placeholder, in order of first appearance. */
  private readonly leases = new Map<string, string>();
  private readonly hashes = new Map<string, string>();
  /** A scratch directory for files this side's commands write (snapshots). */
  readonly dir: string;

  constructor(
    readonly name: SideName,
    readonly node: RunningNode,
  ) {
    this.dir = tempDir(`etcdctl-${name}`);
  }

  /** Learns the member and cluster IDs, which every header carries. */
  async init(): Promise<void> {
    const r = await etcdctl(this.node.endpoint, ["member", "list", "-w", "json"]);
    // Parsed from the text: these 64-bit IDs do not fit a JS number.
    const cluster = /"cluster_id":(\d+)/.exec(r.stdout)?.[1];
    const member = /"member_id":(\d+)/.exec(r.stdout)?.[1];
    if (!cluster || !member) throw new Error(`${this.name}: cannot read member list: ${r.stdout}${r.stderr}`);
    this.clusterId = BigInt(cluster);
    this.memberId = BigInt(member);
  }

  /** The real lease ID (hex) behind a placeholder such as <LEASE1>. */
  leaseHex(placeholder: string): string {
    for (const [hex, p] of this.leases) if (p === placeholder) return hex;
    throw new Error(`${this.name}: no lease seen yet for ${placeholder}`);
  }

  /** Replaces <LEASEn> placeholders in command arguments with this side's lease IDs. */
  args(args: readonly string[]): string[] {
    return args.map((a) => a.replace(/<LEASE\d+>/g, (p) => this.leaseHex(p)).replace(/<DIR>/g, this.dir));
  }

  private lease(hex16: string): string {
    let p = this.leases.get(hex16);
    if (!p) {
      p = `<LEASE${this.leases.size + 1}>`;
      this.leases.set(hex16, p);
    }
    return p;
  }

  private hash(value: string): string {
    let p = this.hashes.get(value);
    if (!p) {
      p = `<HASH${this.hashes.size + 1}>`;
      this.hashes.set(value, p);
    }
    return p;
  }

  normalize(text: string, options: NormalizeOptions = {}): string {
    let s = text;
    // Addresses: each side listens on its own free ports.
    s = s.replaceAll(`127.0.0.1:${this.node.clientPort}`, "<CLIENT>");
    s = s.replaceAll(`127.0.0.1:${this.node.peerPort}`, "<PEER>");
    s = s.replaceAll(this.dir, "<DIR>");
    // etcdctl's own log lines: timestamps, a random client UUID, durations.
    s = s.replace(/"ts":("[^"]*"|[\d.e+]+)/g, '"ts":"<TS>"');
    s = s.replace(/client-[0-9a-f-]{36}/g, "client-<UUID>");
    s = s.replace(/"took":("[^"]*"|[\d.e+-]+)/g, '"took":"<TOOK>"');
    s = s.replace(/took = [\d.]+[µnm]?s/g, "took = <TOOK>");
    // Member and cluster IDs are derived from URLs (ports differ), in decimal and in hex.
    for (const [id, label] of [
      [this.memberId, "<MEMBER>"],
      [this.clusterId, "<CLUSTER>"],
    ] as const) {
      s = s.replace(
        new RegExp(`\\b(${id.toString(10)}|${id.toString(16).padStart(16, "0")}|${id.toString(16)})\\b`, "g"),
        label,
      );
    }
    // Raft bookkeeping: the real etcd campaigns at startup (term 2) and logs membership entries.
    s = s.replace(/"(raft_term|raftTerm|raftIndex|raftAppliedIndex)":\d+/g, '"$1":"<RAFT>"');
    s = s.replace(/"(RaftTerm)" : \d+/g, '"$1" : "<RAFT>"');
    // Backend size: bbolt pages versus our own accounting.
    s = s.replace(/"(dbSize|dbSizeInUse)":\d+/g, '"$1":"<SIZE>"');
    s = s.replace(/"size":"[^"]*"/g, '"size":"<SIZE>"');
    s = s.replace(/"version":"[^"]*"/g, '"version":"<VERSION>"');
    // Hashes differ (different hash functions) but equal states must hash equal on each side.
    s = s.replace(/"hash":(\d+)/g, (_m, h: string) => `"hash":"${this.hash(h)}"`);
    s = s.replace(/^(<CLIENT>), (\d+)$/gm, (_m, ep: string, h: string) => `${ep}, ${this.hash(h)}`);
    // Lease IDs, in one left-to-right pass so placeholders follow order of appearance.
    s = s.replace(
      /("(?:ID|id|lease)":|"(?:ID|Lease)" : )(\d+)|\b([0-9a-f]{16})\b/g,
      (m, key: string | undefined, dec: string | undefined, hex: string | undefined) => {
        if (key !== undefined && dec !== undefined) {
          return dec === "0" ? m : `${key}"${this.lease(BigInt(dec).toString(16).padStart(16, "0"))}"`;
        }
        return this.lease(hex as string);
      },
    );
    for (const prefix of options.leaseKeyPrefixes ?? []) {
      const re = new RegExp(`(${escapeRegExp(prefix)})([0-9a-f]{1,16})\\b`, "g");
      s = s.replace(re, (_m, p: string, hex: string) => `${p}${this.lease(hex.padStart(16, "0"))}`);
    }
    if (options.remainingTtl) s = normalizeRemaining(s);
    if (options.goPanic) s = s.replace(/0x[0-9a-f]+/g, "0x?");
    return normalizeTables(s, (column, value) => {
      if (column === "HASH") return this.hash(value);
      return VOLATILE_COLUMNS.has(column) ? `<${column}>` : value;
    });
  }
}

/** A lease's remaining TTL counts down with the clock; check it is sane, then hide it. */
function normalizeRemaining(s: string): string {
  const check = (remaining: string, granted: string): void => {
    const r = Number(remaining);
    const g = Number(granted);
    expect(r, `remaining TTL ${r} of a ${g}s lease`).toBeLessThanOrEqual(g);
    expect(r, `remaining TTL ${r} of a ${g}s lease`).toBeGreaterThanOrEqual(g - 5);
  };
  s = s.replace(/TTL\((\d+)s\), remaining\((\d+)s\)/g, (_m, g: string, r: string) => {
    check(r, g);
    return `TTL(${g}s), remaining(<TTL>s)`;
  });
  // etcd lists a lease's keys in Go map order, which is random: compare them sorted.
  s = s.replace(
    /attached keys\(\[([^\]]*)\]\)/g,
    (_m, keys: string) => `attached keys([${keys.split(" ").sort().join(" ")}])`,
  );
  s = s.replace(/"keys":\[([^\]]*)\]/g, (_m, keys: string) => `"keys":[${keys.split(",").sort().join(",")}]`);
  s = s.replace(/"TTL" : (\d+)\n"GrantedTTL" : (\d+)/g, (_m, r: string, g: string) => {
    check(r, g);
    return `"TTL" : "<TTL>"\n"GrantedTTL" : ${g}`;
  });
  return s.replace(/"ttl":(\d+),"granted-ttl":(\d+)/g, (_m, r: string, g: string) => {
    check(r, g);
    return `"ttl":"<TTL>","granted-ttl":${g}`;
  });
}

/**
 * etcdctl's tables pad every column to its widest cell, so one normalized value changes the whole
 * layout: rebuild each table without padding, passing each cell through `cell`.
 */
function normalizeTables(s: string, cell: (column: string, value: string) => string): string {
  const lines = s.split("\n");
  let header: string[] | undefined;
  return lines
    .map((line) => {
      if (/^\+[-+]+\+$/.test(line)) return "+";
      if (!line.startsWith("|")) {
        header = undefined;
        return line;
      }
      const cells = line
        .slice(1, -1)
        .split("|")
        .map((c) => c.trim());
      if (!header) {
        header = cells;
        return `| ${cells.join(" | ")} |`;
      }
      const h = header;
      return `| ${cells.map((c, i) => cell(h[i] ?? "", c)).join(" | ")} |`;
    })
    .join("\n");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export interface RunOptions extends NormalizeOptions {
  readonly input?: string;
  readonly timeoutMs?: number;
}

export interface Both<T> {
  readonly lab: T;
  readonly etcd: T;
}

/** Our member and a real etcd, started with the same flags. */
export class Pair {
  /** Every etcdctl started with spawn(), so that a failed test leaves none running. */
  private readonly background: Background[] = [];

  private constructor(
    readonly lab: Side,
    readonly etcd: Side,
    /** The data directories are temporary ones the helpers made for this pair. */
    private readonly ownsDataDirs: boolean,
  ) {}

  static async start(options: NodeOptions = {}): Promise<Pair> {
    const [lab, etcd] = await Promise.all([startLab(options), startRealEtcd(options)]);
    const pair = new Pair(new Side("lab", lab), new Side("etcd", etcd), options.dataDir === undefined);
    await Promise.all([pair.lab.init(), pair.etcd.init()]);
    return pair;
  }

  get sides(): readonly Side[] {
    return [this.lab, this.etcd];
  }

  async stop(): Promise<void> {
    await Promise.all(this.background.map((b) => b.stop("SIGKILL")));
    await Promise.all(this.sides.map((s) => s.node.stop()));
    for (const side of this.sides) {
      fs.rmSync(side.dir, { recursive: true, force: true });
      if (this.ownsDataDirs) fs.rmSync(path.dirname(side.node.dataDir), { recursive: true, force: true });
    }
  }

  /** Runs etcdctl with the same arguments on both sides; returns the normalized outputs. */
  async run(args: readonly string[], options: RunOptions = {}): Promise<Both<Normalized>> {
    const [lab, etcd] = await Promise.all(
      this.sides.map(async (side) => {
        const r = await etcdctl(side.node.endpoint, side.args(args), {
          ...(options.input !== undefined ? { input: side.args([options.input])[0] as string } : {}),
          ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        });
        return normalizeResult(side, r, options);
      }),
    );
    return { lab: lab as Normalized, etcd: etcd as Normalized };
  }

  /**
   * Runs the command on both sides and asserts identical normalized outputs. Returns etcd's, so
   * that the caller can also pin down what the command is expected to do.
   */
  async same(args: readonly string[], options: RunOptions = {}): Promise<Normalized> {
    const r = await this.run(args, options);
    expect(r.lab, `etcdctl ${args.join(" ")}`).toEqual(r.etcd);
    return r.etcd;
  }

  /** Starts a long-running etcdctl (watch, elect, lock) on both sides. */
  spawn(args: readonly string[], options: { stdin?: boolean } = {}): Both<Background> {
    const both = {
      lab: new Background(this.lab, args, options.stdin ?? false),
      etcd: new Background(this.etcd, args, options.stdin ?? false),
    };
    this.background.push(both.lab, both.etcd);
    return both;
  }
}

function normalizeResult(side: Side, r: CommandResult, options: NormalizeOptions): Normalized {
  return { code: r.code, stdout: side.normalize(r.stdout, options), stderr: side.normalize(r.stderr, options) };
}

/** An etcdctl process that runs until stopped (watch, elect, lock). */
export class Background {
  private readonly child: ChildProcess;
  private out = "";
  private err = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly side: Side,
    args: readonly string[],
    stdin: boolean,
  ) {
    this.child = spawn(
      ETCDCTL,
      ["--endpoints", side.node.endpoint, "--dial-timeout=3s", "--command-timeout=10s", ...side.args(args)],
      { env: { ...process.env, ETCDCTL_API: "3" }, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] },
    );
    this.child.stdout?.on("data", (d: Buffer) => {
      this.out += d.toString();
    });
    this.child.stderr?.on("data", (d: Buffer) => {
      this.err += d.toString();
    });
    // "close", not "exit": output the process (or a command it ran, as `lock -- cmd` does) wrote
    // just before exiting can still be in the pipe when "exit" fires.
    this.exited = new Promise((resolve) => this.child.once("close", (code, signal) => resolve({ code, signal })));
  }

  get stdout(): string {
    return this.out;
  }

  write(line: string): void {
    this.child.stdin?.write(line);
  }

  /** Waits until stdout contains `text` (or the timeout passes: the comparison shows what is missing). */
  async waitFor(text: string, timeoutMs = 10_000): Promise<boolean> {
    return waitUntil(() => this.out.includes(text), timeoutMs);
  }

  /** Waits until the process exits on its own; false if it still runs after the timeout. */
  async waitExit(timeoutMs = 10_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal (if still running) and waits for exit; returns the normalized output. */
  async stop(signal: NodeJS.Signals, options: NormalizeOptions = {}): Promise<Normalized> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const { code, signal: sig } = await this.exited;
    return {
      code,
      signal: sig,
      stdout: this.side.normalize(this.out, options),
      stderr: this.side.normalize(this.err, options),
    };
  }

  /** Waits for a normal exit (no signal sent). */
  async finish(options: NormalizeOptions = {}, timeoutMs = 15_000): Promise<Normalized> {
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    try {
      const { code, signal } = await this.exited;
      return {
        code,
        signal,
        stdout: this.side.normalize(this.out, options),
        stderr: this.side.normalize(this.err, options),
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

export async function waitUntil(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await sleep(25);
  }
  return predicate();
}

/**
 * A gauge or counter from the member's /metrics (both etcd and ours serve it on the client port),
 * summed over the series whose labels contain every string in `labels`.
 */
export async function metric(node: RunningNode, name: string, labels: readonly string[] = []): Promise<number> {
  const body = await httpGet(node.clientPort, "/metrics");
  let sum = 0;
  for (const line of body.split("\n")) {
    const m = /^([^\s{]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name || !labels.every((l) => (m[2] ?? "").includes(l))) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/**
 * Waits until each side has exactly `count` registered watchers: a new watch is in place (so the
 * writes that follow reach it), or the watchers of a stopped etcdctl are gone.
 */
export async function waitForWatchers(pair: Pair, count: number): Promise<void> {
  for (const side of pair.sides) {
    let seen = -1;
    const ok = await waitUntil(async () => {
      seen = await metric(side.node, "etcd_debugging_mvcc_watcher_total");
      return seen === count;
    });
    if (!ok) throw new Error(`${side.name}: expected ${count} watchers, the member reports ${seen}`);
  }
}

/** Reads a file this side's command wrote, relative to its scratch directory. */
export function readSideFile(side: Side, name: string): Buffer {
  return fs.readFileSync(path.join(side.dir, name));
}

/** Waits until both processes printed `text` (a timeout is not an error: the comparison shows it). */
export async function bothPrinted(bg: Both<Background>, text: string, timeoutMs = 10_000): Promise<void> {
  await Promise.all([bg.lab.waitFor(text, timeoutMs), bg.etcd.waitFor(text, timeoutMs)]);
}

/** Stops both processes with `signal` and asserts that they printed the same, then exited the same. */
export async function stopBoth(
  bg: Both<Background>,
  signal: NodeJS.Signals,
  options: NormalizeOptions = {},
): Promise<Normalized> {
  const [lab, etcd] = await Promise.all([bg.lab.stop(signal, options), bg.etcd.stop(signal, options)]);
  expect(lab).toEqual(etcd);
  return etcd;
}

/** Waits for both processes to exit on their own and asserts the same outputs. */
export async function finishBoth(bg: Both<Background>, options: NormalizeOptions = {}): Promise<Normalized> {
  const [lab, etcd] = await Promise.all([bg.lab.finish(options), bg.etcd.finish(options)]);
  expect(lab).toEqual(etcd);
  return etcd;
}

/** The lease placeholder a normalized `lease grant` printed. */
export function grantedLease(r: Normalized): string {
  const m = /lease (<LEASE\d+>) granted/.exec(r.stdout);
  if (!m?.[1]) throw new Error(`no lease granted: ${r.stdout}${r.stderr}`);
  return m[1];
}
