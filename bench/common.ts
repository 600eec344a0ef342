/**
 * Shared by the benchmarks (bench/store.ts: one member; bench/cluster.ts: three members): free
 * loopback ports, temporary directories and child processes that are always cleaned up (also on
 * an error, SIGINT or SIGTERM), the load generator and the table printer.
 */
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Etcd3, type IOptions } from "etcd3";
import { freeLoopbackPort } from "../src/util/ports.js";

/**
 * Per phase and side. One client's p99 rests on its slowest 1% of calls, and on this VM those
 * come in bursts (a slow fsync, a stolen core): at 5 s (~2,500 calls) one burst on one side moved
 * the ratio by 0.2 and more from run to run, so each phase now runs 30 s per side.
 */
export const SECONDS = Number(process.env.LAB_BENCH_SECONDS ?? 30);
/** Unmeasured load before the first phase; 0 skips it. */
export const WARMUP_SECONDS = Number(process.env.LAB_BENCH_WARMUP_SECONDS ?? 20);
/**
 * Each load phase runs in this many slices, alternating sides (lab, etcd, etcd, lab, lab, ...):
 * this VM's disk changes speed within seconds, and slices spread each burst over both sides.
 */
export const SLICES = wholeSlices("LAB_BENCH_SLICES", 15);
/**
 * The one-client phases run in more, shorter slices (0.75 s per slice at 30 s): their p99 rests
 * on the slowest 1% of 45,000–60,000 calls, which on this VM come in bursts of a second or more. Two
 * identical members of ours and etcd alternated in 3-s slices (stop 25, two runs) differed by 12
 * and 13% in their one-client p99; in 0.75-s slices by 3 and 5%. A slice's first call (after the
 * other side's slice) is one in ~1,400 here, far from the slowest 1%.
 */
export const ONE_CLIENT_SLICES = wholeSlices("LAB_BENCH_ONE_CLIENT_SLICES", 40);
function wholeSlices(variable: string, fallback: number): number {
  const slices = Number(process.env[variable] ?? fallback);
  if (!Number.isInteger(slices) || slices < 1) throw new Error(`${variable} must be a whole number ≥ 1, not ${slices}`);
  return slices;
}
export const CONNECTIONS = 8;
export const PER_CONNECTION = 16;
export const LAB_CLI = path.resolve(import.meta.dirname, "../src/cli/main.js");
export const REAL_ETCD = "/usr/bin/etcd";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ports this process handed out: the kernel may offer a released port again at once. */
const handedOutPorts = new Set<number>();

/** A loopback port nothing listens on now, and not one this process handed out before. */
export const freePort = (): Promise<number> => freeLoopbackPort(handedOutPorts);

// ---- cleanup: every child process and temporary directory this run created ----

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/** Registers a child process we spawned so that it is killed (by its PID) whatever happens. */
export function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** A fresh directory in os.tmpdir(), removed at the end whatever happens. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  dirs.delete(dir);
}

/** SIGTERM (SIGKILL after `graceMs`) and wait for the exit. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 10_000,
): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill(signal);
  const timer = setTimeout(() => {
    if (alive(child)) child.kill("SIGKILL");
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** Last resort (process exit, signal): SIGKILL what is still running, remove what is left. */
function cleanupSync(): void {
  for (const child of children) if (alive(child)) child.kill("SIGKILL");
  children.clear();
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch {
      // nothing more to do at exit
    }
  }
  dirs.clear();
}

process.on("exit", cleanupSync);
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: killing ${children.size} server process(es), removing ${dirs.size} dir(s)\n`);
    cleanupSync();
    process.exit(code);
  });
}

// ---- the load generator ----

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export interface DriveResult {
  perSec: number;
  p50: number;
  p99: number;
  /** Operations that failed (after the client's own retries); not counted in perSec or latencies. */
  errors: number;
  /** Error message → count. */
  errorMessages: Map<string, number>;
}

/** What one stretch of load measured, before it is summed with others into a DriveResult. */
export interface Stretch {
  /** Latency of each successful operation, ms. */
  latencies: number[];
  elapsedMs: number;
  errors: number;
  errorMessages: Map<string, number>;
}

/** Sums stretches of the same load (slices of one phase) into rates and percentiles. */
export function summarize(stretches: readonly Stretch[]): DriveResult {
  const latencies = stretches.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const elapsedMs = stretches.reduce((sum, s) => sum + s.elapsedMs, 0);
  const errorMessages = new Map<string, number>();
  for (const s of stretches)
    for (const [m, n] of s.errorMessages) errorMessages.set(m, (errorMessages.get(m) ?? 0) + n);
  return {
    perSec: latencies.length / (elapsedMs / 1000),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: stretches.reduce((sum, s) => sum + s.errors, 0),
    errorMessages,
  };
}

/**
 * Runs `op` from `connections × perConnection` concurrent loops for SECONDS, each connection an
 * `etcd3` client given `hosts`. Failed operations are counted, not thrown.
 */
export async function drive(
  hosts: string | string[],
  connections: number,
  perConnection: number,
  op: (client: Etcd3, loop: number, i: number) => Promise<unknown>,
  seconds = SECONDS,
): Promise<DriveResult> {
  return summarize([await driveStretch(hosts, connections, perConnection, op, seconds)]);
}

/** drive(), without the summary: one stretch, to be summed with the other slices of its phase. */
export async function driveStretch(
  hosts: string | string[],
  connections: number,
  perConnection: number,
  op: (client: Etcd3, loop: number, i: number) => Promise<unknown>,
  seconds: number,
): Promise<Stretch> {
  const clients = Array.from({ length: connections }, () => new Etcd3({ hosts }));
  try {
    // Warm up the connections first so connection setup is not measured (a client given several
    // hosts picks one at random for each call: enough calls to reach all of them).
    const warmups = Array.isArray(hosts) ? hosts.length * 4 : 1;
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < warmups; i++) await c.get("warmup").string();
      }),
    );
    const latencies: number[] = [];
    const errorMessages = new Map<string, number>();
    let errors = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    await Promise.all(
      clients.flatMap((client, c) =>
        Array.from({ length: perConnection }, async (_, l) => {
          const loop = c * perConnection + l;
          for (let i = 0; performance.now() < end; i++) {
            const t0 = performance.now();
            try {
              await op(client, loop, i);
              latencies.push(performance.now() - t0);
            } catch (err) {
              errors++;
              countError(errorMessages, err);
              await sleep(10); // do not spin on a failing server
            }
          }
        }),
      ),
    );
    return { latencies, elapsedMs: performance.now() - start, errors, errorMessages };
  } finally {
    for (const c of clients) c.close();
  }
}

/**
 * Unmeasured load before the first phase, the same for both servers: puts and gets from 128
 * clients for three quarters of WARMUP_SECONDS, then puts from one client for the rest. Our member
 * runs on a JIT that compiles its hot paths only after they have run for a while (etcd is compiled
 * ahead of time), and one client's calls take paths of their own (batches of one): after 3 s of
 * 128-client load, a 3-member cluster of ours spent ~1.5 ms more CPU per one-client put than after
 * 25 s of both, and ran ~0.8× etcd's rate instead of ~1.0×. Keys under warmup/ only.
 */
export async function warmUp(hosts: string | string[]): Promise<void> {
  if (!(WARMUP_SECONDS > 0)) return;
  const value = "w".repeat(64);
  await drive(
    hosts,
    CONNECTIONS,
    PER_CONNECTION,
    (c, l, i) =>
      i % 4 === 3
        ? c.get(`warmup/${l}/${i % 50}`).string()
        : c
            .put(`warmup/${l}/${i % 50}`)
            .value(value)
            .exec(),
    (WARMUP_SECONDS * 3) / 4,
  );
  await drive(
    hosts,
    1,
    1,
    (c, _l, i) =>
      c
        .put(`warmup/one/${i % 50}`)
        .value(value)
        .exec(),
    WARMUP_SECONDS / 4,
  );
}

/** The two sides of every benchmark: our server(s) and real etcd's. */
export type Side = "lab" | "etcd";
const SIDES: readonly Side[] = ["lab", "etcd"];

/**
 * Runs a phase on our side and then at once on etcd's, both servers running side by side (the
 * idle one costs next to nothing), so that the disk's drift over a run (its fsync time moves by
 * tens of percent within minutes on this VM) falls on both sides of a ratio alike.
 */
export async function onBothSides<T>(label: string, run: (side: Side) => Promise<T>): Promise<Record<Side, T>> {
  const out = {} as Record<Side, T>;
  for (const side of SIDES) {
    process.stderr.write(`${side}: ${label}\n`);
    out[side] = await run(side);
  }
  return out;
}

/**
 * Runs a load phase of SECONDS on both sides in SLICES alternating slices (lab, etcd, then etcd,
 * lab, ...: each side goes first as often as second) and sums each side's slices. A phase run in
 * one piece on each side (onBothSides) puts any burst of the disk's drift on one side only.
 */
export async function alternately(
  label: string,
  run: (side: Side, seconds: number) => Promise<Stretch>,
  slices = SLICES,
): Promise<Record<Side, DriveResult>> {
  const stretches: Record<Side, Stretch[]> = { lab: [], etcd: [] };
  process.stderr.write(`lab, etcd: ${label} (${slices} alternating slices of ${fmt(SECONDS / slices)} s each)\n`);
  for (let i = 0; i < slices; i++) {
    for (const side of i % 2 === 0 ? SIDES : [...SIDES].reverse())
      stretches[side].push(await run(side, SECONDS / slices));
  }
  return { lab: summarize(stretches.lab), etcd: summarize(stretches.etcd) };
}

/** The write phases both benchmarks measure: 64-byte puts from one client, and from 128. */
export const putFromOneClient = (c: Etcd3, _loop: number, i: number): Promise<unknown> =>
  c
    .put(`one/${i % 1000}`)
    .value("v".repeat(64))
    .exec();
export const putFromManyClients = (c: Etcd3, loop: number, i: number): Promise<unknown> =>
  c
    .put(`many/${loop}/${i % 100}`)
    .value("v".repeat(64))
    .exec();

/** The figures both benchmarks take from their two put phases. */
export interface PutFigures {
  putsPerSec1: number;
  p50Put1: number;
  p99Put1: number;
  putsPerSec128: number;
  p50Put128: number;
  p99Put128: number;
}

export const putFigures = (one: DriveResult, many: DriveResult): PutFigures => ({
  putsPerSec1: one.perSec,
  p50Put1: one.p50,
  p99Put1: one.p99,
  putsPerSec128: many.perSec,
  p50Put128: many.p50,
  p99Put128: many.p99,
});

/** Counts an error by its message, without the timings grpc-js appends to a deadline error. */
export function countError(counts: Map<string, number>, err: unknown): void {
  const msg = (err as Error).message.replace(/(Deadline exceeded) after .*$/, "$1");
  counts.set(msg, (counts.get(msg) ?? 0) + 1);
}

export function describeErrors(messages: ReadonlyMap<string, number>): string {
  return [...messages].map(([m, n]) => `${n}× ${m}`).join("; ");
}

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A fault-handling policy that just makes the call: no retry, no circuit breaker (the `etcd3`
 * default opens a host's circuit for 5 s after three failures, which would hide a recovered
 * member from a client that measures recovery).
 */
export const passThrough = {
  execute: async (fn: (context: { signal: AbortSignal }) => unknown) => fn({ signal: new AbortController().signal }),
} as unknown as Policy;

// ---- output ----

export const fmt = (n: number): string =>
  Number.isNaN(n) ? "–" : n >= 100 || Number.isInteger(n) ? n.toFixed(0) : n.toFixed(2);

export function ratio(ours: number, theirs: number): string {
  const r = ours / theirs;
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : "–";
}
