/**
 * Side-by-side benchmark of our store member and the real etcd 3.4, started with the same settings
 * (fsync on, fresh data directories, loopback), driven by the same load generator: the `etcd3`
 * npm client. Prints each figure for both and the ratio ours/etcd.
 *
 *   npm run bench                       # all phases, 30 s per side each, in 15 alternating slices
 *   LAB_BENCH_SECONDS=10 npm run bench  # shorter phases (LAB_BENCH_SLICES, LAB_BENCH_ONE_CLIENT_SLICES: how many slices)
 *   LAB_BENCH_WARMUP_SECONDS=0 npm run bench  # no unmeasured warm-up first (default 20 s)
 *   npm run bench:cluster               # three-member clusters and failover: bench/cluster.ts
 *
 * Not a test: nothing here asserts a speed. The README records the ratios.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Etcd3, type Watcher } from "etcd3";
import { memberArgs } from "../src/etcd/member-args.js";
import { memberProcessArgs } from "../src/etcd/node-flags.js";
import {
  alternately,
  CONNECTIONS,
  describeErrors,
  driveStretch,
  fmt,
  freePort,
  LAB_CLI,
  ONE_CLIENT_SLICES,
  onBothSides,
  PER_CONNECTION,
  type PutFigures,
  putFigures,
  putFromManyClients,
  putFromOneClient,
  REAL_ETCD,
  ratio,
  removeDir,
  SECONDS,
  type Side,
  type Stretch,
  sleep,
  stopChild,
  tempDir,
  track,
  WARMUP_SECONDS,
  warmUp,
} from "./common.js";

const KEYS_FOR_MEMORY = Number(process.env.LAB_BENCH_KEYS ?? 100_000);

interface Server {
  readonly name: string;
  readonly endpoint: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

interface Figures extends PutFigures {
  rangesPerSec128: number;
  p99Range128: number;
  watchEventsPerSec: number;
  rssMiB100k: number;
}

async function startServer(kind: "lab" | "etcd"): Promise<Server> {
  const dir = tempDir(`lab-bench-${kind}`);
  const client = await freePort();
  const peer = await freePort();
  const args = memberArgs({ name: "bench", dataDir: path.join(dir, "data"), clientPort: client, peerPort: peer });
  const child = track(
    kind === "lab"
      ? spawn(process.execPath, memberProcessArgs(LAB_CLI, args), { stdio: "ignore" })
      : spawn(REAL_ETCD, args, { stdio: "ignore" }),
  );
  const endpoint = `127.0.0.1:${client}`;
  const probe = new Etcd3({ hosts: endpoint });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await probe.put("bench-ready").value("1");
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${kind} did not start: ${(err as Error).message}`);
      await sleep(100);
    }
  }
  probe.close();
  return {
    name: kind,
    endpoint,
    process: child,
    async stop() {
      await stopChild(child);
      removeDir(dir);
    },
  };
}

/** One slice of a phase run alternately on both sides; the single-member phases expect no failures: the first aborts the run. */
async function slice(
  endpoint: string,
  connections: number,
  perConnection: number,
  op: (client: Etcd3, loop: number, i: number) => Promise<unknown>,
  seconds: number,
): Promise<Stretch> {
  const stretch = await driveStretch(endpoint, connections, perConnection, op, seconds);
  if (stretch.errors > 0) {
    throw new Error(`${stretch.errors} operations failed: ${describeErrors(stretch.errorMessages)}`);
  }
  return stretch;
}

/**
 * One side's watcher on watch-bench/, kept open for the whole watch phase, which runs in
 * alternating slices like the load phases (it ran in one piece per side until stop 24, and a
 * drift of the VM within the minute put the whole of it on one side).
 */
interface WatchSide {
  readonly client: Etcd3;
  readonly watcher: Watcher;
  received: number;
  /** When the current slice's first and latest events arrived (performance.now()). */
  firstAt: number;
  lastAt: number;
}

async function openWatch(endpoint: string): Promise<WatchSide> {
  const client = new Etcd3({ hosts: endpoint });
  const watcher = await client.watch().prefix("watch-bench/").create();
  const side: WatchSide = { client, watcher, received: 0, firstAt: 0, lastAt: 0 };
  watcher.on("put", () => {
    if (side.firstAt === 0) side.firstAt = performance.now();
    side.received++;
    side.lastAt = performance.now();
  });
  return side;
}

async function closeWatch(side: WatchSide): Promise<void> {
  await side.watcher.cancel();
  side.client.close();
}

/**
 * Puts from 128 clients for `seconds` while the side's watcher receives them; the slice ends when
 * every acknowledged put has arrived as an event. Its rate is events over the time between the
 * slice's first and last event.
 */
async function watchSlice(endpoint: string, side: WatchSide, seconds: number): Promise<Stretch> {
  const before = side.received;
  side.firstAt = 0;
  const puts = await slice(
    endpoint,
    CONNECTIONS,
    PER_CONNECTION,
    (client, loop, i) =>
      client
        .put(`watch-bench/${loop}/${i % 100}`)
        .value("v")
        .exec(),
    seconds,
  );
  const acknowledged = puts.latencies.length;
  const deadline = performance.now() + 30_000;
  while (side.received - before < acknowledged && performance.now() < deadline) await sleep(20);
  const received = side.received - before;
  if (received < acknowledged) throw new Error(`watch lost events: ${received} of ${acknowledged}`);
  return { ...puts, elapsedMs: side.lastAt - side.firstAt };
}

async function rssAfterKeys(server: Server): Promise<number> {
  const clients = Array.from({ length: CONNECTIONS }, () => new Etcd3({ hosts: server.endpoint }));
  const value = "v".repeat(256);
  let next = 0;
  await Promise.all(
    clients.flatMap((client) =>
      Array.from({ length: PER_CONNECTION }, async () => {
        for (let i = next++; i < KEYS_FOR_MEMORY; i = next++) await client.put(`mem/${i}`).value(value);
      }),
    ),
  );
  for (const c of clients) c.close();
  await sleep(1000);
  const status = fs.readFileSync(`/proc/${server.process.pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/**
 * Both servers side by side: the load and watch phases in alternating slices (alternately), the
 * memory phase on one and then at once on the other (onBothSides).
 */
async function measureBoth(): Promise<{ lab: Figures; etcd: Figures }> {
  const servers = { lab: await startServer("lab"), etcd: await startServer("etcd") };
  try {
    const each = <T>(label: string, run: (server: Server) => Promise<T>): Promise<Record<Side, T>> =>
      onBothSides(label, (side) => run(servers[side]));
    await each(`warm-up, ${WARMUP_SECONDS} s (not measured)`, (s) => warmUp(s.endpoint));
    const one = await alternately(
      "puts, 1 client",
      (side, secs) => slice(servers[side].endpoint, 1, 1, putFromOneClient, secs),
      ONE_CLIENT_SLICES,
    );
    const many = await alternately(`puts, ${CONNECTIONS * PER_CONNECTION} clients`, (side, secs) =>
      slice(servers[side].endpoint, CONNECTIONS, PER_CONNECTION, putFromManyClients, secs),
    );
    const ranges = await alternately(`ranges, ${CONNECTIONS * PER_CONNECTION} clients`, (side, secs) =>
      slice(
        servers[side].endpoint,
        CONNECTIONS,
        PER_CONNECTION,
        (c, l) => c.get(`many/${l}/${l % 100}`).string(),
        secs,
      ),
    );
    const watchers = { lab: await openWatch(servers.lab.endpoint), etcd: await openWatch(servers.etcd.endpoint) };
    const watch = await alternately(`watch events, ${CONNECTIONS * PER_CONNECTION} clients putting`, (side, secs) =>
      watchSlice(servers[side].endpoint, watchers[side], secs),
    );
    await closeWatch(watchers.lab);
    await closeWatch(watchers.etcd);
    const rss = await each(`memory at ${KEYS_FOR_MEMORY} keys`, (s) => rssAfterKeys(s));
    const figures = (kind: Side): Figures => ({
      ...putFigures(one[kind], many[kind]),
      rangesPerSec128: ranges[kind].perSec,
      p99Range128: ranges[kind].p99,
      watchEventsPerSec: watch[kind].perSec,
      rssMiB100k: rss[kind],
    });
    return { lab: figures("lab"), etcd: figures("etcd") };
  } finally {
    await servers.lab.stop();
    await servers.etcd.stop();
  }
}

const ROWS: [keyof Figures, string, string][] = [
  ["putsPerSec1", "puts/s, 1 client", "higher"],
  ["p50Put1", "put p50 ms, 1 client", "lower"],
  ["p99Put1", "put p99 ms, 1 client", "lower"],
  ["putsPerSec128", `puts/s, ${CONNECTIONS * PER_CONNECTION} clients`, "higher"],
  ["p50Put128", `put p50 ms, ${CONNECTIONS * PER_CONNECTION} clients`, "lower"],
  ["p99Put128", `put p99 ms, ${CONNECTIONS * PER_CONNECTION} clients`, "lower"],
  ["rangesPerSec128", `ranges/s, ${CONNECTIONS * PER_CONNECTION} clients`, "higher"],
  ["p99Range128", `range p99 ms, ${CONNECTIONS * PER_CONNECTION} clients`, "lower"],
  ["watchEventsPerSec", "watch events/s", "higher"],
  ["rssMiB100k", `RSS MiB at ${KEYS_FOR_MEMORY} keys`, "lower"],
];

const { lab: ours, etcd } = await measureBoth();
console.log(`| figure (${SECONDS} s per phase, after ${WARMUP_SECONDS} s of warm-up) | lab | etcd 3.4.23 | lab/etcd |`);
console.log("|---|---|---|---|");
for (const [key, label] of ROWS) {
  console.log(`| ${label} | ${fmt(ours[key])} | ${fmt(etcd[key])} | ${ratio(ours[key], etcd[key])} |`);
}
