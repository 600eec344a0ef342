/**
 * Side-by-side benchmark of our store member and the real etcd 3.4, started with the same settings
 * (fsync on, fresh data directories, loopback), driven by the same load generator: the `etcd3`
 * npm client. Prints each figure for both and the ratio ours/etcd.
 *
 *   npm run bench                       # all phases, 5 s each
 *   LAB_BENCH_SECONDS=10 npm run bench  # longer phases
 *   LAB_BENCH_WARMUP_SECONDS=0 npm run bench  # no unmeasured warm-up first (default 20 s)
 *   npm run bench:cluster               # three-member clusters and failover: bench/cluster.ts
 *
 * Not a test: nothing here asserts a speed. The README records the ratios.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Etcd3 } from "etcd3";
import { memberArgs } from "../src/etcd/member-args.js";
import { memberProcessArgs } from "../src/etcd/node-flags.js";
import {
  alternately,
  CONNECTIONS,
  type DriveResult,
  describeErrors,
  driveStretch,
  fmt,
  freePort,
  LAB_CLI,
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
  summarize,
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

/** The single-member phases expect no failures: the first one aborts the run, as it always did. */
async function drive(
  endpoint: string,
  connections: number,
  perConnection: number,
  op: (client: Etcd3, loop: number, i: number) => Promise<unknown>,
): Promise<DriveResult> {
  return summarize([await slice(endpoint, connections, perConnection, op, SECONDS)]);
}

/** One slice of a phase run alternately on both sides; failures abort the run, as in drive(). */
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

async function watchEventsPerSec(endpoint: string): Promise<number> {
  const watcherClient = new Etcd3({ hosts: endpoint });
  const watcher = await watcherClient.watch().prefix("watch-bench/").create();
  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  watcher.on("put", () => {
    if (received === 0) firstAt = performance.now();
    received++;
    lastAt = performance.now();
  });
  let sent = 0;
  await drive(endpoint, CONNECTIONS, PER_CONNECTION, (client, loop, i) => {
    sent++;
    return client
      .put(`watch-bench/${loop}/${i % 100}`)
      .value("v")
      .exec();
  });
  const deadline = performance.now() + 30_000;
  while (received < sent && performance.now() < deadline) await sleep(20);
  await watcher.cancel();
  watcherClient.close();
  if (received < sent) throw new Error(`watch lost events: ${received} of ${sent}`);
  return received / ((lastAt - firstAt) / 1000);
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
 * Both servers side by side: the load phases in alternating slices (alternately), the watch and
 * memory phases on one and then at once on the other (onBothSides).
 */
async function measureBoth(): Promise<{ lab: Figures; etcd: Figures }> {
  const servers = { lab: await startServer("lab"), etcd: await startServer("etcd") };
  try {
    const each = <T>(label: string, run: (server: Server) => Promise<T>): Promise<Record<Side, T>> =>
      onBothSides(label, (side) => run(servers[side]));
    await each(`warm-up, ${WARMUP_SECONDS} s (not measured)`, (s) => warmUp(s.endpoint));
    const one = await alternately("puts, 1 client", (side, secs) =>
      slice(servers[side].endpoint, 1, 1, putFromOneClient, secs),
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
    const watch = await each("watch events", (s) => watchEventsPerSec(s.endpoint));
    const rss = await each(`memory at ${KEYS_FOR_MEMORY} keys`, (s) => rssAfterKeys(s));
    const figures = (kind: Side): Figures => ({
      ...putFigures(one[kind], many[kind]),
      rangesPerSec128: ranges[kind].perSec,
      p99Range128: ranges[kind].p99,
      watchEventsPerSec: watch[kind],
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
