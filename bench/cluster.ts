/**
 * Side-by-side benchmark of a three-member cluster of our store and a three-member cluster of the
 * real etcd 3.4, each started the same way (etcd's flags, default --heartbeat-interval and
 * --election-timeout, fsync on, fresh data directories in os.tmpdir(), 127.0.0.1 only), driven by
 * the same load generator: the `etcd3` npm client given all three endpoints.
 *
 *   npm run bench:cluster                                        # 5 s phases, 20 leader kills
 *   LAB_BENCH_SECONDS=1 LAB_BENCH_KILLS=3 npm run bench:cluster  # a quick run
 *   LAB_BENCH_LOG_DIR=/tmp/logs npm run bench:cluster            # keep every member's output
 *
 * Failover: SIGKILL the leader (the member whose Maintenance Status header.member_id equals the
 * leader all members report), then time until a put succeeds through a client that knows only
 * the two survivors and retries in a tight loop, each attempt with a 200 ms deadline. Then the
 * killed member is restarted on its data directory and the next kill waits until all three agree
 * on a leader and have converged (same applied index, revision and KV hash).
 *
 * Not a test: nothing here asserts a speed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Etcd3, type ICallable, type IHashKVResponse, type IStatusResponse } from "etcd3";
import { initialClusterOf, memberArgs } from "../src/etcd/member-args.js";
import { memberProcessArgs } from "../src/etcd/node-flags.js";
import {
  alternately,
  CONNECTIONS,
  countError,
  describeErrors,
  driveStretch,
  fmt,
  freePort,
  LAB_CLI,
  median,
  ONE_CLIENT_SLICES,
  onBothSides,
  PER_CONNECTION,
  type PutFigures,
  passThrough,
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

type Kind = Side;

const KILLS = Number(process.env.LAB_BENCH_KILLS ?? 20);
if (!Number.isInteger(KILLS) || KILLS < 0) throw new Error(`LAB_BENCH_KILLS must be a whole number, not ${KILLS}`);
const LOG_DIR = process.env.LAB_BENCH_LOG_DIR;
/** Per-attempt deadline of the failover client. */
const ATTEMPT_MS = 200;
/** Give up on one failover (and fail the run) after this long. */
const FAILOVER_LIMIT_MS = 60_000;
const SETTLE_LIMIT_MS = 120_000;
const MANY = CONNECTIONS * PER_CONNECTION;

interface Member {
  readonly name: string;
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  /** The tail of the member's stdout and stderr. */
  output: string;
}

class Cluster {
  readonly members: Member[] = [];
  private readonly token = `lab-bench-${Math.random().toString(36).slice(2, 10)}`;
  private readonly root: string;

  private constructor(readonly kind: Kind) {
    this.root = tempDir(`lab-bench-cluster-${kind}`);
  }

  static async start(kind: Kind): Promise<Cluster> {
    const c = new Cluster(kind);
    for (let i = 1; i <= 3; i++) {
      const clientPort = await freePort();
      const peerPort = await freePort();
      c.members.push({
        name: `m${i}`,
        endpoint: `127.0.0.1:${clientPort}`,
        clientPort,
        peerPort,
        dataDir: path.join(c.root, `m${i}.etcd`),
        child: undefined,
        exited: Promise.resolve(),
        output: "",
      });
    }
    for (const m of c.members) c.spawn(m);
    await c.settle();
    // One write through the all-endpoints client before anything is measured.
    const client = new Etcd3({ hosts: c.endpoints });
    try {
      await client.put("bench-ready").value("1");
    } finally {
      client.close();
    }
    return c;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  private spawn(m: Member): void {
    // Ignored by both once the data directory exists (a restart), as in test/helpers/cluster.ts.
    const args = memberArgs(m, {
      initialCluster: initialClusterOf(this.members),
      initialClusterState: "new",
      initialClusterToken: this.token,
    });
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("ETCD_")) delete env[k];
    const stdio: ["ignore", "pipe", "pipe"] = ["ignore", "pipe", "pipe"];
    const child = track(
      this.kind === "lab"
        ? spawn(process.execPath, memberProcessArgs(LAB_CLI, args), { env, stdio })
        : spawn(REAL_ETCD, args, { env, stdio }),
    );
    m.child = child;
    m.exited = new Promise((r) => child.once("exit", () => r()));
    const logFile = LOG_DIR ? path.join(LOG_DIR, `${this.kind}-${m.name}.log`) : undefined;
    if (logFile) {
      fs.mkdirSync(path.dirname(logFile), { recursive: true });
      fs.appendFileSync(logFile, `==== ${new Date().toISOString()} start pid ${child.pid}\n`);
    }
    const append = (d: Buffer): void => {
      m.output += d.toString();
      if (m.output.length > 200_000) m.output = m.output.slice(-100_000);
      if (logFile) fs.appendFileSync(logFile, d);
    };
    child.stdout.on("data", append);
    child.stderr.on("data", append);
  }

  /** SIGKILL a member; resolves once it has exited. */
  async kill(m: Member): Promise<void> {
    m.child?.kill("SIGKILL");
    await m.exited;
    m.child = undefined;
    if (LOG_DIR) fs.appendFileSync(path.join(LOG_DIR, `${this.kind}-${m.name}.log`), "==== SIGKILL\n");
  }

  /** Restarts a killed member on its data directory, same flags. */
  restart(m: Member): void {
    this.spawn(m);
  }

  /** Maintenance Status of one member, or the error. */
  async status(m: Member): Promise<IStatusResponse | Error> {
    const client = new Etcd3({
      hosts: m.endpoint,
      dialTimeout: 1000,
      faultHandling: { host: () => passThrough, global: passThrough },
    });
    try {
      return await client.maintenance.status({ deadline: Date.now() + 1000 });
    } catch (err) {
      return err as Error;
    } finally {
      client.close();
    }
  }

  private async hash(m: Member, revision: string): Promise<string | Error> {
    const client = new Etcd3({
      hosts: m.endpoint,
      dialTimeout: 1000,
      faultHandling: { host: () => passThrough, global: passThrough },
    });
    try {
      // etcd3 1.1.2's maintenance.hashKV() calls a method named "hashKV", but grpc-js names it
      // "HashKV" (and "hashKv"): make the call through the client's own connection pool instead.
      const pool = (client.maintenance as unknown as { client: ICallable<unknown> }).client;
      const r = await pool.exec<IHashKVResponse>(
        "Maintenance",
        "HashKV",
        { revision },
        { deadline: Date.now() + 2000 },
      );
      return String(r.hash); // a uint32: a number at run time despite the declared string
    } catch (err) {
      return err as Error;
    } finally {
      client.close();
    }
  }

  /**
   * Waits until every member runs, all report the same leader, that leader is one of them, and
   * they have converged: the same applied index and revision, and the same KV hash at it.
   * Returns the leader and the status it reported.
   */
  async settle(limitMs = SETTLE_LIMIT_MS): Promise<{ leader: Member; status: IStatusResponse }> {
    const deadline = performance.now() + limitMs;
    let last = "";
    while (performance.now() < deadline) {
      const st = await Promise.all(this.members.map((m) => this.status(m)));
      const ok = st.filter((s): s is IStatusResponse => !(s instanceof Error));
      if (ok.length === this.members.length) {
        const leaders = new Set(ok.map((s) => s.leader));
        const applied = new Set(ok.map((s) => s.raftAppliedIndex));
        const revisions = new Set(ok.map((s) => s.header.revision));
        const li = ok.findIndex((s) => s.header.member_id === s.leader);
        const leader = this.members[li];
        const status = ok[li];
        if (leaders.size === 1 && leader && status && applied.size === 1 && revisions.size === 1) {
          const revision = [...revisions][0] as string;
          const hashes = await Promise.all(this.members.map((m) => this.hash(m, revision)));
          if (hashes.every((h) => !(h instanceof Error)) && new Set(hashes).size === 1) return { leader, status };
          last = `hashes at ${revision}: ${hashes.map(String).join(" ")}`;
        } else {
          last = ok
            .map(
              (s, i) =>
                `${this.members[i]?.name}: id ${s.header.member_id} leader ${s.leader} applied ${s.raftAppliedIndex} rev ${s.header.revision}`,
            )
            .join("; ");
        }
      } else {
        last = st.map((s, i) => `${this.members[i]?.name}: ${s instanceof Error ? s.message : "ok"}`).join("; ");
      }
      await sleep(50);
    }
    throw new Error(`${this.kind}: no agreed leader and convergence in ${limitMs} ms: ${last}\n${this.dump()}`);
  }

  dump(): string {
    return this.members.map((m) => `--- ${this.kind} ${m.name} ---\n${m.output.slice(-3000)}`).join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => (m.child ? stopChild(m.child) : Promise.resolve())));
    removeDir(this.root);
  }
}

interface Kill {
  ms: number;
  exitMs: number;
  attempts: number;
  errors: Map<string, number>;
  from: string;
  to: string;
  termBefore: string;
  termAfter: string;
  rejoinMs: number;
}

/** One leader kill: the time from SIGKILL to the first put that succeeds through a survivor. */
async function failover(cluster: Cluster, n: number): Promise<Kill> {
  const { leader, status: before } = await cluster.settle();
  const survivors = cluster.members.filter((m) => m !== leader);
  const client = new Etcd3({
    hosts: survivors.map((m) => m.endpoint),
    faultHandling: { host: () => passThrough, global: passThrough },
  });
  const errors = new Map<string, number>();
  let attempts = 0;
  try {
    // Open the connections to both survivors (each call picks one at random) before the kill.
    for (let i = 0; i < 10; i++)
      await client
        .get("failover-warmup")
        .serializable(true)
        .options({ deadline: Date.now() + 2000 });
    const t0 = performance.now();
    await cluster.kill(leader);
    const exitMs = performance.now() - t0;
    for (;;) {
      const a0 = performance.now();
      attempts++;
      try {
        await client
          .put(`failover/${n}`)
          .value(String(attempts))
          .options({ deadline: Date.now() + ATTEMPT_MS })
          .exec();
        break;
      } catch (err) {
        countError(errors, err);
        if (performance.now() - t0 > FAILOVER_LIMIT_MS) {
          throw new Error(
            `${cluster.kind}: no put succeeded within ${FAILOVER_LIMIT_MS} ms of killing ${leader.name}: ${describeErrors(errors)}\n${cluster.dump()}`,
          );
        }
        // A fast failure (no leader, connection refused): retry at once, but do not spin.
        if (performance.now() - a0 < 5) await sleep(5);
      }
    }
    const ms = performance.now() - t0;
    const after = await Promise.all(survivors.map((m) => cluster.status(m)));
    const st = after.find((s): s is IStatusResponse => !(s instanceof Error));
    const newLeader = survivors.find((_, i) => {
      const s = after[i];
      return s !== undefined && !(s instanceof Error) && s.header.member_id === s.leader;
    });
    const r0 = performance.now();
    cluster.restart(leader);
    await cluster.settle();
    return {
      ms,
      exitMs,
      attempts,
      errors,
      from: leader.name,
      to: newLeader?.name ?? "?",
      termBefore: before.raftTerm,
      termAfter: st?.raftTerm ?? "?",
      rejoinMs: performance.now() - r0,
    };
  } finally {
    client.close();
  }
}

interface Figures extends PutFigures {
  linearizablePerSec128: number;
  p99Linearizable128: number;
  serializablePerSec128: number;
  p99Serializable128: number;
  loadErrors: number;
  failoverMedian: number;
  failoverMin: number;
  failoverMax: number;
  rejoinMedian: number;
}

/**
 * Both clusters side by side: each load phase in alternating slices (alternately), each kill on
 * one and then at once on the other (onBothSides).
 */
async function measureBoth(): Promise<Record<Kind, Figures>> {
  const clusters: Partial<Record<Kind, Cluster>> = {};
  try {
    await onBothSides("starting 3 members", async (kind) => {
      clusters[kind] = await Cluster.start(kind);
    });
    const cluster = (kind: Kind): Cluster => clusters[kind] as Cluster;
    const each = (label: string, run: (hosts: string[], seconds: number) => Promise<Stretch>, slices?: number) =>
      alternately(
        label,
        async (kind, seconds) => {
          const r = await run(cluster(kind).endpoints, seconds);
          if (r.errors > 0) process.stderr.write(`${kind}:   ${r.errors} errors: ${describeErrors(r.errorMessages)}\n`);
          return r;
        },
        slices,
      );
    await onBothSides(`warm-up, ${WARMUP_SECONDS} s (not measured)`, (kind) => warmUp(cluster(kind).endpoints));
    const one = await each(
      "puts, 1 client",
      (hosts, secs) => driveStretch(hosts, 1, 1, putFromOneClient, secs),
      ONE_CLIENT_SLICES,
    );
    const many = await each(`puts, ${MANY} clients`, (hosts, secs) =>
      driveStretch(hosts, CONNECTIONS, PER_CONNECTION, putFromManyClients, secs),
    );
    const linearizable = await each(`linearizable ranges, ${MANY} clients`, (hosts, secs) =>
      driveStretch(hosts, CONNECTIONS, PER_CONNECTION, (c, l) => c.get(`many/${l}/${l % 100}`).string(), secs),
    );
    const serializable = await each(`serializable ranges, ${MANY} clients`, (hosts, secs) =>
      driveStretch(
        hosts,
        CONNECTIONS,
        PER_CONNECTION,
        (c, l) =>
          c
            .get(`many/${l}/${l % 100}`)
            .serializable(true)
            .string(),
        secs,
      ),
    );
    const kills: Record<Kind, Kill[]> = { lab: [], etcd: [] };
    for (let n = 1; n <= KILLS; n++) {
      await onBothSides(`leader kill ${n}/${KILLS}`, async (kind) => {
        const k = await failover(cluster(kind), n);
        kills[kind].push(k);
        process.stderr.write(
          `${kind}: kill ${n}/${KILLS}: leader ${k.from} (term ${k.termBefore}) → ${k.to} (term ${k.termAfter}); ` +
            `put after ${k.ms.toFixed(0)} ms (exit ${k.exitMs.toFixed(0)} ms, ${k.attempts} attempts` +
            `${k.errors.size > 0 ? `: ${describeErrors(k.errors)}` : ""}); rejoined in ${k.rejoinMs.toFixed(0)} ms\n`,
        );
      });
    }
    const figures = (kind: Kind): Figures => {
      const times = kills[kind].map((k) => k.ms);
      return {
        ...putFigures(one[kind], many[kind]),
        linearizablePerSec128: linearizable[kind].perSec,
        p99Linearizable128: linearizable[kind].p99,
        serializablePerSec128: serializable[kind].perSec,
        p99Serializable128: serializable[kind].p99,
        loadErrors: one[kind].errors + many[kind].errors + linearizable[kind].errors + serializable[kind].errors,
        failoverMedian: median(times),
        failoverMin: times.length > 0 ? Math.min(...times) : Number.NaN,
        failoverMax: times.length > 0 ? Math.max(...times) : Number.NaN,
        rejoinMedian: median(kills[kind].map((k) => k.rejoinMs)),
      };
    };
    return { lab: figures("lab"), etcd: figures("etcd") };
  } finally {
    for (const c of Object.values(clusters)) await c.stop();
  }
}

const ROWS: [keyof Figures, string][] = [
  ["putsPerSec1", "puts/s, 1 client"],
  ["p50Put1", "put p50 ms, 1 client"],
  ["p99Put1", "put p99 ms, 1 client"],
  ["putsPerSec128", `puts/s, ${MANY} clients`],
  ["p50Put128", `put p50 ms, ${MANY} clients`],
  ["p99Put128", `put p99 ms, ${MANY} clients`],
  ["linearizablePerSec128", `linearizable ranges/s, ${MANY} clients`],
  ["p99Linearizable128", `linearizable range p99 ms, ${MANY} clients`],
  ["serializablePerSec128", `serializable ranges/s, ${MANY} clients`],
  ["p99Serializable128", `serializable range p99 ms, ${MANY} clients`],
  ["loadErrors", "failed requests during the load phases"],
  ["failoverMedian", `failover ms, median of ${KILLS} leader kills`],
  ["failoverMin", "failover ms, min"],
  ["failoverMax", "failover ms, max"],
  ["rejoinMedian", "killed member restart → all agree and converged, ms, median"],
];

const { lab: ours, etcd } = await measureBoth();
console.log(
  `| figure (3 members, ${SECONDS} s per phase, after ${WARMUP_SECONDS} s of warm-up) | lab | etcd 3.4.23 | lab/etcd |`,
);
console.log("|---|---|---|---|");
for (const [key, label] of ROWS) {
  console.log(`| ${label} | ${fmt(ours[key])} | ${fmt(etcd[key])} | ${ratio(ours[key], etcd[key])} |`);
}
console.log(
  "Higher is better for the /s rows; lower is better for latencies (ms), failover (SIGKILL of the leader → first " +
    `successful put through a survivor, ${ATTEMPT_MS} ms per attempt) and rejoin.`,
);
