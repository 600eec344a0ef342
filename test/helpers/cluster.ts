import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { initialClusterOf, memberArgs } from "../../src/etcd/member-args.js";
import { memberProcessArgs } from "../../src/etcd/node-flags.js";
import { etcdctl, freePort, LAB_CLI, REAL_ETCD, sleep, tempDir, waitHealthy } from "./nodes.js";

/**
 * Multi-member clusters of our `lab etcd` (or the real etcd, for comparison) as real processes on
 * loopback, started with etcd's own flags, so the real etcdctl drives them with all endpoints.
 */

export interface MemberSpec {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
}

export interface ClusterMember extends MemberSpec {
  readonly endpoint: string;
  process: ChildProcess | undefined;
  output: string;
  exited: Promise<number | null>;
}

export interface ClusterOptions {
  readonly size: number;
  readonly kind?: "lab" | "etcd";
  readonly token?: string;
  readonly extraArgs?: readonly string[];
}

export class TestCluster {
  readonly members: ClusterMember[] = [];
  private readonly kind: "lab" | "etcd";
  readonly token: string;

  private constructor(
    readonly options: ClusterOptions,
    readonly root: string,
  ) {
    this.kind = options.kind ?? "lab";
    this.token = options.token ?? "lab-test";
  }

  static async start(options: ClusterOptions): Promise<TestCluster> {
    const c = new TestCluster(options, tempDir("cluster"));
    for (let i = 1; i <= options.size; i++) {
      const name = `m${i}`;
      c.members.push({
        name,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: path.join(c.root, `${name}.etcd`),
        endpoint: "",
        process: undefined,
        output: "",
        exited: Promise.resolve(null),
      });
    }
    for (const m of c.members) (m as { endpoint: string }).endpoint = `127.0.0.1:${m.clientPort}`;
    for (const m of c.members) c.spawn(m, "new");
    try {
      await Promise.all(c.members.map((m) => c.waitUp(m)));
    } catch (err) {
      await c.killAll();
      throw err;
    }
    return c;
  }

  get endpoints(): string[] {
    return this.members.filter((m) => m.process !== undefined).map((m) => m.endpoint);
  }

  get allEndpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  initialCluster(members: readonly MemberSpec[] = this.members): string {
    return initialClusterOf(members);
  }

  /** Registers a new member's name, ports and data directory (not started). */
  async addMember(name: string): Promise<ClusterMember> {
    const m: ClusterMember = {
      name,
      clientPort: await freePort(),
      peerPort: await freePort(),
      dataDir: path.join(this.root, `${name}.etcd`),
      endpoint: "",
      process: undefined,
      output: "",
      exited: Promise.resolve(null),
    };
    (m as { endpoint: string }).endpoint = `127.0.0.1:${m.clientPort}`;
    this.members.push(m);
    return m;
  }

  /** Starts (or restarts) a member's process. */
  spawn(
    m: ClusterMember,
    state: "new" | "existing",
    initialCluster = this.initialCluster(),
    extra: readonly string[] = [],
  ): void {
    const args = [
      ...memberArgs(m, { initialCluster, initialClusterState: state, initialClusterToken: this.token }),
      ...(this.options.extraArgs ?? []),
      ...extra,
    ];
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("ETCD_")) delete env[k];
    const child =
      this.kind === "lab"
        ? spawn(process.execPath, memberProcessArgs(LAB_CLI, args), {
            env,
            stdio: ["ignore", "pipe", "pipe"],
          })
        : spawn(REAL_ETCD, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    m.process = child;
    const append = (d: Buffer): void => {
      m.output += d.toString();
      if (m.output.length > 2_000_000) m.output = m.output.slice(-1_000_000);
    };
    child.stdout?.on("data", append);
    child.stderr?.on("data", append);
    m.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  async waitUp(m: ClusterMember, timeoutMs = 30_000): Promise<void> {
    const proc = m.process;
    if (!proc) throw new Error(`${m.name} is not running`);
    try {
      await waitHealthy(
        {
          clientPort: m.clientPort,
          process: proc,
        } as Parameters<typeof waitHealthy>[0],
        timeoutMs,
      );
    } catch (err) {
      throw new Error(
        `${m.name} did not become healthy: ${(err as Error).message}\n--- output ---\n${m.output.slice(-4000)}`,
      );
    }
  }

  async restart(m: ClusterMember): Promise<void> {
    this.spawn(m, "new");
    await this.waitUp(m);
  }

  async kill(m: ClusterMember, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = m.process;
    if (!p) return;
    if (p.exitCode === null && p.signalCode === null) p.kill(signal);
    await m.exited;
    m.process = undefined;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m)));
  }

  /** Every member's status (etcdctl endpoint status -w json), one per live member. */
  async statuses(): Promise<EndpointStatus[]> {
    const r = await etcdctl(this.endpoints, ["endpoint", "status", "-w", "json"]);
    if (r.code !== 0) throw new Error(`endpoint status failed: ${r.stderr}`);
    return parseJsonBig(r.stdout) as EndpointStatus[];
  }

  /** Waits until every live member agrees on one leader; returns it. */
  async waitLeader(timeoutMs = 20_000): Promise<ClusterMember> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const st = await this.statuses();
        const leaders = new Set(st.map((s) => String(s.Status.leader)));
        if (leaders.size === 1 && st.length === this.endpoints.length) {
          const leaderId = BigInt(String([...leaders][0]));
          const leader = st.find((s) => BigInt(String(s.Status.header.member_id)) === leaderId);
          const m = leader && this.members.find((x) => x.endpoint === leader.Endpoint);
          if (m) return m;
        }
        last = JSON.stringify(st.map((s) => [s.Endpoint, String(s.Status.leader)]));
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`no single leader after ${timeoutMs} ms: ${last}`);
  }

  /** `etcdctl endpoint hashkv` on every live member: the hashes. */
  async hashes(): Promise<string[]> {
    const r = await etcdctl(this.endpoints, ["endpoint", "hashkv", "-w", "json"]);
    if (r.code !== 0) throw new Error(`hashkv failed: ${r.stderr}`);
    return (parseJsonBig(r.stdout) as Array<{ HashKV: { hash: number } }>).map((h) => String(h.HashKV.hash));
  }

  /** Waits until every live member has applied the same state (equal hashkv at equal revisions). */
  async waitConverged(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const st = await this.statuses();
        const applied = new Set(st.map((s) => String(s.Status.raftAppliedIndex)));
        const revs = new Set(st.map((s) => String(s.Status.header.revision)));
        if (applied.size === 1 && revs.size === 1) {
          const h = await this.hashes();
          if (new Set(h).size === 1) return;
          last = `hashes ${h.join(" ")}`;
        } else last = `applied ${[...applied].join(" ")} revisions ${[...revs].join(" ")}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(200);
    }
    throw new Error(`members did not converge in ${timeoutMs} ms: ${last}`);
  }

  dump(): string {
    return this.members.map((m) => `--- ${m.name} ---\n${m.output.slice(-3000)}`).join("\n");
  }
}

/** etcdctl prints 64-bit IDs as bare JSON numbers; keep long ones as strings so no digit is lost. */
export function parseJsonBig(text: string): unknown {
  return JSON.parse(text.replace(/([:[,]\s*)(\d{16,})(?=\s*[,}\]])/g, '$1"$2"'));
}

export interface EndpointStatus {
  Endpoint: string;
  Status: {
    header: { cluster_id: number | string; member_id: number | string; revision: number; raft_term: number };
    leader: number | string;
    raftIndex: number;
    raftTerm: number;
    raftAppliedIndex: number;
    isLearner?: boolean;
  };
}

/** The lab's fault hook on a member's client port (POST/DELETE /lab/faults). */
export async function setFaults(m: ClusterMember, method: "POST" | "DELETE", body?: object): Promise<string> {
  const res = await fetch(`http://${m.endpoint}/lab/faults`, {
    method,
    ...(body ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`fault hook ${method}: ${res.status} ${text}`);
  return text;
}
