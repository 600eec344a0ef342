/**
 * Side-by-side benchmark of our API server (`lab apiserver`) over our store and over the real
 * etcd 3.4: one `lab apiserver` process (plain HTTP on 127.0.0.1, --etcd-compaction-interval=0)
 * over (1) one `lab etcd` member, (2) one real etcd member, (3) three `lab etcd` members and (4)
 * three real etcd members, every member started with etcd's flags (fsync on, fresh data
 * directories in os.tmpdir(), 127.0.0.1 only) and the API server given all of them. The load
 * generator runs in this process: Node's `http` module with a keep-alive agent (one socket per
 * request in flight), JSON bodies. Prints each figure for both stores and the ratio ours/etcd.
 *
 *   npm run bench:apiserver                                    # 5 s phases
 *   LAB_BENCH_SECONDS=1 npm run bench:apiserver                # a quick run
 *   LAB_BENCH_LOG_DIR=/tmp/logs npm run bench:apiserver        # keep every process's output
 *
 * Phases, in namespace `bench`:
 * - create: POST 1,000 ConfigMaps, CONCURRENCY in flight: requests/s (all of them / elapsed), p50, p99.
 * - get: GET them by name for LAB_BENCH_SECONDS, CONCURRENCY in flight.
 * - list: GET the whole list (1,000 objects, no limit) for LAB_BENCH_SECONDS, LIST_CONCURRENCY in flight.
 * - watch fan-out: WATCHERS watches from the list's resourceVersion, then merge-patches of the
 *   ConfigMaps for LAB_BENCH_SECONDS, CONCURRENCY in flight (each loop patches its own ConfigMaps,
 *   so there are no conflicts). Events/s = events delivered to all watchers / the time from the
 *   first patch until the last watcher has received the last event; every watcher must receive
 *   every update exactly once (30 s cap after the last patch).
 *
 * Every non-2xx response, lost or extra watch event fails the run, after the phase, with what went
 * wrong and the tail of the API server's output. After the creates, a few answers every correct
 * API server gives (the system namespaces exist, GET of a missing ConfigMap is 404) are checked:
 * a wrong one is printed as a warning with the tables, and the run exits with 1.
 *
 * Not a test: nothing here asserts a speed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { Etcd3 } from "etcd3";
import { initialClusterOf, type MemberAddress, memberArgs } from "../src/etcd/member-args.js";
import { memberProcessArgs } from "../src/etcd/node-flags.js";
import {
  countError,
  describeErrors,
  fmt,
  freePort,
  LAB_CLI,
  passThrough,
  percentile,
  REAL_ETCD,
  ratio,
  removeDir,
  sleep,
  stopChild,
  tempDir,
  track,
} from "./common.js";

type Kind = "lab" | "etcd";

/** Requests in flight during create, get and the watch phase's updates. */
const CONCURRENCY = 32;
/** Lists in flight during the list phase. */
const LIST_CONCURRENCY = 4;
const CONFIGMAPS = 1000;
const WATCHERS = 100;
const NAMESPACE = "bench";
/** After the last update, how long the watchers get to receive every event. */
const DRAIN_LIMIT_MS = 30_000;
/** After every watcher has every event, how long to wait for extra (duplicate) events. */
const EXTRA_GRACE_MS = 300;
/** One request's limit: a hung server fails the run instead of hanging it. */
const REQUEST_TIMEOUT_MS = 30_000;
const START_LIMIT_MS = 60_000;
const LOG_DIR = process.env.LAB_BENCH_LOG_DIR;
/**
 * Per phase and side: 5 s, as the README's API server figures were taken (the store benchmarks
 * run 30 s; their one-client p99 needs the calls, these phases keep 32 requests in flight).
 */
const SECONDS = Number(process.env.LAB_BENCH_SECONDS ?? 5);

if (!(SECONDS > 0))
  throw new Error(`LAB_BENCH_SECONDS must be a positive number, not ${process.env.LAB_BENCH_SECONDS}`);

const nameOf = (i: number): string => `cm-${String(i).padStart(5, "0")}`;
const COLLECTION = `/api/v1/namespaces/${NAMESPACE}/configmaps`;

// ---- processes: the store members and the API server ----

/** A child process whose output tail is kept (and written to LAB_BENCH_LOG_DIR when set). */
interface Proc {
  readonly child: ChildProcess;
  output: string;
}

function spawnProc(label: string, command: string, args: readonly string[]): Proc {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("ETCD_")) delete env[k];
  const child = track(spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] }));
  const proc: Proc = { child, output: "" };
  const logFile = LOG_DIR ? path.join(LOG_DIR, `${label}.log`) : undefined;
  if (logFile) {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    fs.appendFileSync(logFile, `==== ${new Date().toISOString()} ${command} ${args.join(" ")}: pid ${child.pid}\n`);
  }
  const append = (d: Buffer): void => {
    proc.output += d.toString();
    if (proc.output.length > 200_000) proc.output = proc.output.slice(-100_000);
    if (logFile) fs.appendFileSync(logFile, d);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  return proc;
}

const tail = (label: string, p: Proc): string => `--- ${label} (last output) ---\n${p.output.slice(-3000)}`;

class Store {
  readonly members: (MemberAddress & { proc: Proc | undefined })[] = [];
  private readonly root: string;

  private constructor(
    readonly kind: Kind,
    private readonly size: number,
  ) {
    this.root = tempDir(`lab-bench-apiserver-${kind}`);
  }

  static async start(kind: Kind, size: number): Promise<Store> {
    const s = new Store(kind, size);
    try {
      for (let i = 1; i <= size; i++) {
        s.members.push({
          name: `m${i}`,
          dataDir: path.join(s.root, `m${i}.etcd`),
          clientPort: await freePort(),
          peerPort: await freePort(),
          proc: undefined,
        });
      }
      const token = `lab-bench-${Math.random().toString(36).slice(2, 10)}`;
      for (const m of s.members) {
        const args = memberArgs(
          m,
          size === 1
            ? {}
            : { initialCluster: initialClusterOf(s.members), initialClusterState: "new", initialClusterToken: token },
        );
        m.proc =
          kind === "lab"
            ? spawnProc(`${kind}-${size}-${m.name}`, process.execPath, memberProcessArgs(LAB_CLI, args))
            : spawnProc(`${kind}-${size}-${m.name}`, REAL_ETCD, args);
      }
      await s.ready();
      return s;
    } catch (err) {
      await s.stop();
      throw err;
    }
  }

  get endpoints(): string[] {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`);
  }

  /** Waits until a linearizable read succeeds through every member (each one is up and has a leader). */
  private async ready(): Promise<void> {
    const deadline = performance.now() + START_LIMIT_MS;
    for (const endpoint of this.endpoints) {
      const client = new Etcd3({
        hosts: endpoint,
        dialTimeout: 1000,
        faultHandling: { host: () => passThrough, global: passThrough },
      });
      try {
        for (;;) {
          try {
            // A linearizable read needs a leader; no write: the store holds only the API server's keys.
            await client
              .get("bench-ready")
              .options({ deadline: Date.now() + 1000 })
              .string();
            break;
          } catch (err) {
            const exited = this.members.find((m) => m.proc && m.proc.child.exitCode !== null);
            if (exited || performance.now() > deadline)
              throw new Error(
                `${this.kind}: ${this.size} member(s) did not start (${endpoint}: ${(err as Error).message})\n${this.dump()}`,
              );
            await sleep(100);
          }
        }
      } finally {
        client.close();
      }
    }
  }

  dump(): string {
    return this.members.map((m) => (m.proc ? tail(`${this.kind} ${m.name}`, m.proc) : "")).join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => (m.proc ? stopChild(m.proc.child) : Promise.resolve())));
    removeDir(this.root);
  }
}

class ApiServer {
  private constructor(
    readonly port: number,
    readonly proc: Proc,
  ) {}

  static async start(store: Store): Promise<ApiServer> {
    const port = await freePort();
    const proc = spawnProc(`apiserver-over-${store.kind}-${store.members.length}`, process.execPath, [
      LAB_CLI,
      "apiserver",
      `--etcd-servers=${store.endpoints.map((e) => `http://${e}`).join(",")}`,
      "--secure-port=0",
      `--insecure-port=${port}`,
      "--etcd-compaction-interval=0",
    ]);
    const server = new ApiServer(port, proc);
    const deadline = performance.now() + START_LIMIT_MS;
    const agent = new http.Agent({ keepAlive: false });
    let last = "";
    try {
      while (performance.now() < deadline) {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null)
          throw new Error(`lab apiserver exited (${proc.child.exitCode ?? proc.child.signalCode})\n${server.dump()}`);
        try {
          const r = await call(agent, port, { method: "GET", path: "/readyz" });
          if (r.status === 200) return server;
          last = `readyz ${r.status}: ${r.body.slice(0, 300)}`;
        } catch (err) {
          last = (err as Error).message;
        }
        await sleep(50);
      }
      throw new Error(`lab apiserver did not become ready in ${START_LIMIT_MS} ms (last: ${last})\n${server.dump()}`);
    } catch (err) {
      await stopChild(proc.child);
      throw err;
    } finally {
      agent.destroy();
    }
  }

  dump(): string {
    return tail("lab apiserver", this.proc);
  }

  async stop(): Promise<void> {
    await stopChild(this.proc.child);
  }
}

// ---- HTTP ----

interface Call {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
}

interface Reply {
  readonly status: number;
  readonly body: string;
}

/** One request on `agent` to 127.0.0.1:port; resolves with the whole body (any status). */
function call(agent: http.Agent, port: number, c: Call): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = c.body === undefined ? undefined : Buffer.from(JSON.stringify(c.body));
    const headers: http.OutgoingHttpHeaders = { Accept: "application/json" };
    if (payload) {
      headers["Content-Type"] = c.contentType ?? "application/json";
      headers["Content-Length"] = payload.length;
    }
    const req = http.request({ agent, host: "127.0.0.1", port, method: c.method, path: c.path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A non-2xx reply as an error: the method, status and the Status object's reason and message. */
function failure(c: Call, r: Reply): Error {
  let detail = r.body.slice(0, 200);
  try {
    const s = JSON.parse(r.body) as { reason?: string; message?: string };
    detail = `${s.reason ?? ""}: ${s.message ?? ""}`;
  } catch {
    // not a Status object: the body's start
  }
  // One entry per kind of failure, not per ConfigMap.
  return new Error(`${c.method} ${r.status} ${detail}`.replace(/cm-\d{5}/g, "cm-N"));
}

async function ok(agent: http.Agent, port: number, c: Call): Promise<Reply> {
  const r = await call(agent, port, c);
  if (r.status < 200 || r.status > 299) throw failure(c, r);
  return r;
}

interface PhaseResult {
  /** Successful requests. */
  done: number;
  /** performance.now() when the clock started (after the sockets were opened). */
  startedAt: number;
  perSec: number;
  p50: number;
  p99: number;
  elapsedMs: number;
  errors: number;
  errorMessages: Map<string, number>;
}

/**
 * Runs `op` from `concurrency` loops on a keep-alive agent with one socket per loop, either until
 * `count` requests have been made (the loops share the indices 0..count-1) or for SECONDS. The
 * sockets are opened before the clock starts. A non-2xx reply or a failed request is counted as
 * an error, not thrown.
 */
async function load(
  port: number,
  concurrency: number,
  until: { count: number } | { seconds: number },
  op: (loop: number, i: number) => Call,
): Promise<PhaseResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  try {
    await Promise.all(
      Array.from({ length: concurrency }, () =>
        ok(agent, port, { method: "GET", path: `/api/v1/namespaces/${NAMESPACE}` }),
      ),
    );
    const latencies: number[] = [];
    const errorMessages = new Map<string, number>();
    let errors = 0;
    let next = 0;
    const start = performance.now();
    const end = "seconds" in until ? start + until.seconds * 1000 : Number.POSITIVE_INFINITY;
    const count = "count" in until ? until.count : Number.POSITIVE_INFINITY;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, loop) => {
        for (let i = 0; performance.now() < end; i++) {
          const index = "count" in until ? next++ : i;
          if (index >= count) break;
          const c = op(loop, index);
          const t0 = performance.now();
          try {
            await ok(agent, port, c);
            latencies.push(performance.now() - t0);
          } catch (err) {
            errors++;
            countError(errorMessages, err);
            await sleep(10); // do not spin on a failing server
          }
        }
      }),
    );
    const elapsedMs = performance.now() - start;
    latencies.sort((a, b) => a - b);
    return {
      done: latencies.length,
      startedAt: start,
      perSec: latencies.length / (elapsedMs / 1000),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      elapsedMs,
      errors,
      errorMessages,
    };
  } finally {
    agent.destroy();
  }
}

// ---- watch fan-out ----

/** One streaming watch: counts MODIFIED events; anything else, or an early end, is a problem. */
class Watcher {
  events = 0;
  readonly problems: string[] = [];
  private closing = false;
  private buffer = "";

  private constructor(
    private readonly req: http.ClientRequest,
    private readonly onEvent: () => void,
  ) {}

  /** Resolves once the server answered 200 (the watch is registered), rejects otherwise. */
  static open(agent: http.Agent, port: number, watchPath: string, onEvent: () => void): Promise<Watcher> {
    return new Promise((resolve, reject) => {
      const req = http.request({ agent, host: "127.0.0.1", port, method: "GET", path: watchPath }, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on("data", (d: Buffer) => chunks.push(d));
          res.on("end", () =>
            reject(
              failure(
                { method: "GET", path: watchPath },
                { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() },
              ),
            ),
          );
          return;
        }
        const w = new Watcher(req, onEvent);
        res.setEncoding("utf8");
        res.on("data", (d: string) => w.data(d));
        res.on("error", (err) => w.ended(`watch stream error: ${err.message}`));
        res.on("end", () => w.ended("the watch ended"));
        resolve(w);
      });
      req.on("error", reject);
      req.end();
    });
  }

  private data(d: string): void {
    this.buffer += d;
    let nl = this.buffer.indexOf("\n");
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.line(line);
      nl = this.buffer.indexOf("\n");
    }
  }

  private line(line: string): void {
    // The server writes JSON.stringify({ type, object }): no need to parse every event.
    if (line.startsWith('{"type":"MODIFIED"')) {
      this.events++;
      this.onEvent();
      return;
    }
    let type = "?";
    try {
      type = String((JSON.parse(line) as { type?: unknown }).type);
    } catch {
      this.problems.push(`not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if (type === "MODIFIED") {
      this.events++;
      this.onEvent();
    } else if (type !== "BOOKMARK") this.problems.push(`unexpected ${type} event: ${line.slice(0, 300)}`);
  }

  private ended(why: string): void {
    if (!this.closing) this.problems.push(why);
  }

  close(): void {
    this.closing = true;
    this.req.destroy();
  }
}

interface WatchResult {
  updates: PhaseResult;
  eventsPerSec: number;
  delivered: number;
  expected: number;
  problems: string[];
}

async function watchFanOut(port: number): Promise<WatchResult> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const watchers: Watcher[] = [];
  try {
    const list = JSON.parse((await ok(agent, port, { method: "GET", path: COLLECTION })).body) as {
      metadata: { resourceVersion: string };
    };
    const rv = list.metadata.resourceVersion;
    let lastEventAt = 0;
    const onEvent = (): void => {
      lastEventAt = performance.now();
    };
    const watchPath = `${COLLECTION}?watch=true&resourceVersion=${encodeURIComponent(rv)}`;
    for (const w of await Promise.all(
      Array.from({ length: WATCHERS }, () => Watcher.open(agent, port, watchPath, onEvent)),
    ))
      watchers.push(w);
    // Each loop patches only its own ConfigMaps (loop, loop + CONCURRENCY, ...): no conflicts.
    const perLoop = Math.floor(CONFIGMAPS / CONCURRENCY);
    const updates = await load(port, CONCURRENCY, { seconds: SECONDS }, (loop, i) => ({
      method: "PATCH",
      path: `${COLLECTION}/${nameOf(loop + CONCURRENCY * (i % perLoop))}`,
      body: { data: { update: `${loop}-${i}` } },
      contentType: "application/merge-patch+json",
    }));
    const expected = updates.done;
    const drainDeadline = performance.now() + DRAIN_LIMIT_MS;
    const behind = (): Watcher[] => watchers.filter((w) => w.events < expected);
    while (behind().length > 0 && performance.now() < drainDeadline) await sleep(5);
    const drainedAt = lastEventAt;
    await sleep(EXTRA_GRACE_MS);
    const problems: string[] = [];
    const late = behind();
    if (late.length > 0)
      problems.push(
        `${late.length} of ${WATCHERS} watchers still lacked events ${DRAIN_LIMIT_MS} ms after the last update ` +
          `(fewest: ${Math.min(...late.map((w) => w.events))} of ${expected})`,
      );
    const extra = watchers.filter((w) => w.events > expected);
    if (extra.length > 0)
      problems.push(
        `${extra.length} of ${WATCHERS} watchers received more events than updates ` +
          `(most: ${Math.max(...extra.map((w) => w.events))} for ${expected} updates)`,
      );
    const seen = new Map<string, number>();
    for (const w of watchers) for (const p of w.problems) seen.set(p, (seen.get(p) ?? 0) + 1);
    for (const [p, n] of seen) problems.push(`${n} watcher(s): ${p}`);
    const delivered = watchers.reduce((sum, w) => sum + w.events, 0);
    return {
      updates,
      eventsPerSec: drainedAt > updates.startedAt ? delivered / ((drainedAt - updates.startedAt) / 1000) : Number.NaN,
      delivered,
      expected: expected * WATCHERS,
      problems,
    };
  } finally {
    for (const w of watchers) w.close();
    agent.destroy();
  }
}

// ---- the measurement ----

/** What a correct API server answers, whatever its store: a failed check is printed as a warning. */
const warnings: string[] = [];

async function sanity(port: number): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: false });
  const found: string[] = [];
  try {
    const namespaces = (
      JSON.parse((await ok(agent, port, { method: "GET", path: "/api/v1/namespaces" })).body) as {
        items: { metadata: { name: string } }[];
      }
    ).items.map((n) => n.metadata.name);
    const missing = ["default", "kube-system", "kube-public", "kube-node-lease", NAMESPACE].filter(
      (n) => !namespaces.includes(n),
    );
    if (missing.length > 0)
      found.push(`namespaces ${missing.join(", ")} are missing (the server has: ${namespaces.join(", ")})`);
    // A name that sorts before every ConfigMap: a single-key read that returns the keys after it shows here.
    const r = await call(agent, port, { method: "GET", path: `${COLLECTION}/a-missing` });
    if (r.status !== 404) {
      let got = r.body.slice(0, 200);
      try {
        const o = JSON.parse(r.body) as { kind?: string; metadata?: { name?: string; namespace?: string } };
        got = `${o.kind} ${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
      } catch {
        // the body's start
      }
      found.push(`GET of the missing ConfigMap ${NAMESPACE}/a-missing answered ${r.status}, not 404: ${got}`);
    }
  } finally {
    agent.destroy();
  }
  return found;
}

interface Figures {
  createsPerSec: number;
  createP50: number;
  createP99: number;
  getsPerSec: number;
  getP50: number;
  getP99: number;
  listsPerSec: number;
  listP99: number;
  watchEventsPerSec: number;
  updatesPerSec: number;
}

async function measure(kind: Kind, size: number): Promise<Figures> {
  const label = `${kind}, ${size} member${size === 1 ? "" : "s"}`;
  process.stderr.write(`${label}: starting the store\n`);
  const store = await Store.start(kind, size);
  let server: ApiServer | undefined;
  try {
    process.stderr.write(`${label}: starting lab apiserver\n`);
    server = await ApiServer.start(store);
    const api = server;
    const port = api.port;
    const fail = (what: string, detail: string): Error =>
      new Error(`${label}: ${what}: ${detail}\n${api.dump()}\n${store.dump()}`);
    const phase = async (what: string, run: () => Promise<PhaseResult>): Promise<PhaseResult> => {
      process.stderr.write(`${label}: ${what}\n`);
      const r = await run();
      if (r.errors > 0) throw fail(what, `${r.errors} failed requests: ${describeErrors(r.errorMessages)}`);
      return r;
    };

    const setup = new http.Agent({ keepAlive: false });
    try {
      await ok(setup, port, {
        method: "POST",
        path: "/api/v1/namespaces",
        body: { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } },
      });
    } finally {
      setup.destroy();
    }

    const create = await phase(`create ${CONFIGMAPS} ConfigMaps, ${CONCURRENCY} in flight`, () =>
      load(port, CONCURRENCY, { count: CONFIGMAPS }, (_loop, i) => ({
        method: "POST",
        path: COLLECTION,
        body: {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: nameOf(i), labels: { app: "bench" } },
          data: { color: "blue", index: String(i), note: "a small ConfigMap for the API server benchmark" },
        },
      })),
    );
    for (const w of await sanity(port)) {
      warnings.push(`${label}: ${w}`);
      process.stderr.write(`${label}: WARNING: ${w}\n`);
    }
    const get = await phase(`get, ${CONCURRENCY} in flight`, () =>
      load(port, CONCURRENCY, { seconds: SECONDS }, (loop, i) => ({
        method: "GET",
        path: `${COLLECTION}/${nameOf((loop * 31 + i * 7) % CONFIGMAPS)}`,
      })),
    );

    // The list must hold every ConfigMap (no default limit, nothing lost).
    const check = new http.Agent({ keepAlive: false });
    try {
      const items = (
        JSON.parse((await ok(check, port, { method: "GET", path: COLLECTION })).body) as { items: unknown[] }
      ).items.length;
      if (items !== CONFIGMAPS) throw fail("list", `${items} items, expected ${CONFIGMAPS}`);
    } finally {
      check.destroy();
    }
    const list = await phase(`list ${CONFIGMAPS} ConfigMaps, ${LIST_CONCURRENCY} in flight`, () =>
      load(port, LIST_CONCURRENCY, { seconds: SECONDS }, () => ({ method: "GET", path: COLLECTION })),
    );

    process.stderr.write(`${label}: watch fan-out, ${WATCHERS} watchers, updates ${CONCURRENCY} in flight\n`);
    const watch = await watchFanOut(port);
    process.stderr.write(
      `${label}:   ${watch.updates.done} updates, ${watch.delivered} of ${watch.expected} events delivered\n`,
    );
    if (watch.updates.errors > 0)
      throw fail(
        "watch fan-out updates",
        `${watch.updates.errors} failed requests: ${describeErrors(watch.updates.errorMessages)}`,
      );
    if (watch.delivered !== watch.expected || watch.problems.length > 0)
      throw fail(
        "watch fan-out",
        `EVENT COUNT MISMATCH: ${watch.delivered} events delivered, expected ${watch.expected} ` +
          `(${watch.updates.done} updates × ${WATCHERS} watchers)${watch.problems.map((p) => `\n  ${p}`).join("")}`,
      );

    return {
      createsPerSec: create.perSec,
      createP50: create.p50,
      createP99: create.p99,
      getsPerSec: get.perSec,
      getP50: get.p50,
      getP99: get.p99,
      listsPerSec: list.perSec,
      listP99: list.p99,
      watchEventsPerSec: watch.eventsPerSec,
      updatesPerSec: watch.updates.perSec,
    };
  } finally {
    await server?.stop();
    await store.stop();
  }
}

const ROWS: [keyof Figures, string][] = [
  ["createsPerSec", "creates/s"],
  ["createP50", "create p50 ms"],
  ["createP99", "create p99 ms"],
  ["getsPerSec", "gets/s"],
  ["getP50", "get p50 ms"],
  ["getP99", "get p99 ms"],
  ["listsPerSec", "lists/s (1,000 objects)"],
  ["listP99", "list p99 ms"],
  ["watchEventsPerSec", `watch events/s (${WATCHERS} watchers)`],
  ["updatesPerSec", "updates/s during watch"],
];

const cpus = os.cpus();
const machine =
  `machine: ${cpus.length} CPU(s) (${cpus[0]?.model.trim() ?? "?"}), node ${process.version}; ` +
  `${CONCURRENCY} requests in flight for create, get and updates, ${LIST_CONCURRENCY} for lists, ${SECONDS} s per phase`;
process.stderr.write(`${machine}\n`);

const tables: string[] = [];
for (const [size, topology] of [
  [1, "single member"],
  [3, "3 members"],
] as const) {
  const ours = await measure("lab", size);
  const etcd = await measure("etcd", size);
  const lines = [
    `| figure (${topology}, ${SECONDS} s per phase) | lab store | real etcd 3.4 | ratio |`,
    "|---|---|---|---|",
    ...ROWS.map(
      ([key, label]) => `| ${label} | ${fmt(ours[key])} | ${fmt(etcd[key])} | ${ratio(ours[key], etcd[key])} |`,
    ),
  ];
  tables.push(lines.join("\n"));
}
console.log(machine);
console.log();
console.log(tables.join("\n\n"));
console.log();
if (warnings.length > 0) {
  console.log("**WARNING: the API server answered wrongly; the figures of these runs are suspect:**");
  for (const w of warnings) console.log(`- ${w}`);
  console.log();
  process.exitCode = 1;
}
console.log(
  "Both columns run the same `lab apiserver`; only its store differs. Ratios are lab store/real etcd: above 1 is " +
    "better for the /s rows, below 1 is better for latencies (ms).",
);
