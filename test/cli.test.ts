import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceOf } from "../src/etcd/proto-client.js";
import { etcdctl, httpGet, LAB_CLI, type RunningNode, run, sleep, startLab } from "./helpers/nodes.js";

const lab = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, [LAB_CLI, ...args], { env, timeoutMs: 15_000 });

describe("lab command line", () => {
  it("prints help through the built entry point and through npx", async () => {
    const direct = await lab(["--help"]);
    expect(direct.code).toBe(0);
    expect(direct.stdout).toContain("lab etcd [flags]");
    const npx = await run("npx", ["--no-install", "lab", "--help"], { timeoutMs: 30_000 });
    expect(npx.code).toBe(0);
    expect(npx.stdout).toBe(direct.stdout);
  });

  it("lists etcd's flags with their defaults", async () => {
    const r = await lab(["etcd", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--name", "--data-dir", "--listen-client-urls", "--quota-backend-bytes", "--max-txn-ops"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it("starts a store member without loading the gRPC client library or the API server", async () => {
    // Every member start pays for what it loads (grpc-js alone took ~100 ms and 12 MiB): the
    // member serves gRPC with its own HTTP/2 code. `etcd --help` loads the member's whole graph.
    const listLoaded =
      'data:text/javascript,import{createRequire}from"node:module";const r=createRequire("/index.js");' +
      'process.on("exit",()=>process.stderr.write("LOADED "+JSON.stringify(Object.keys(r.cache))))';
    const r = await run(process.execPath, ["--import", listLoaded, LAB_CLI, "etcd", "--help"], { timeoutMs: 15_000 });
    expect(r.code).toBe(0);
    const loaded = JSON.parse(r.stderr.slice(r.stderr.indexOf("LOADED ") + 7)) as string[];
    expect(loaded.some((p) => p.includes("protobufjs"))).toBe(true); // the list is real
    expect(loaded.filter((p) => p.includes("@grpc/grpc-js") || p.includes("dockerode"))).toEqual([]);
  });

  it("rejects unknown commands, unknown flags and malformed values with exit code 2", async () => {
    const unknownCommand = await lab(["frobnicate"]);
    expect(unknownCommand.code).toBe(2);
    expect(unknownCommand.stderr).toContain('unknown command "frobnicate"');
    const unknownFlag = await lab(["etcd", "--no-such-flag"]);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/--no-such-flag/);
    expect(unknownFlag.stderr).toContain("lab etcd --help");
    const badNumber = await lab(["etcd", "--max-txn-ops", "many"]);
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toMatch(/"many" for --max-txn-ops/);
    const badEnv = await lab(["etcd"], { ETCD_SNAPSHOT_COUNT: "lots" });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain("ETCD_SNAPSHOT_COUNT");
  });

  it("refuses an --initial-cluster that does not list this member, saying what to do", async () => {
    const r = await lab([
      "etcd",
      "--name",
      "c",
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:2380",
      "--initial-cluster",
      "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--initial-cluster has no member named "c"');
  });
});

describe("a running member", () => {
  let node: RunningNode;
  beforeAll(async () => {
    node = await startLab({
      env: { ETCD_MAX_TXN_OPS: "3" },
      extraArgs: ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"],
    });
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("reads settings from ETCD_* variables", async () => {
    const txn = await etcdctl(node.endpoint, ["txn"], {
      input: "\nput a 1\nput b 1\nput c 1\nput d 1\n\n\n",
    });
    expect(txn.stderr).toContain("etcdserver: too many operations in txn request");
  });

  it("compacts automatically with a periodic retention", async () => {
    await etcdctl(node.endpoint, ["put", "ac", "1"]);
    const first = JSON.parse((await etcdctl(node.endpoint, ["get", "ac", "-w", "json"])).stdout).header
      .revision as number;
    let compacted = false;
    for (let i = 0; i < 100 && !compacted; i++) {
      await etcdctl(node.endpoint, ["put", "ac", String(i)]);
      const r = await etcdctl(node.endpoint, ["get", "ac", `--rev=${first}`]);
      compacted = r.stderr.includes("required revision has been compacted");
      if (!compacted) await sleep(200);
    }
    expect(compacted).toBe(true);
    expect(node.output()).toContain("auto compaction");
  });

  it("serves /metrics with etcd's metric names, /version and /health", async () => {
    const metrics = await httpGet(node.clientPort, "/metrics");
    for (const name of [
      "etcd_server_has_leader 1",
      "etcd_mvcc_db_total_size_in_bytes",
      "etcd_mvcc_db_total_size_in_use_in_bytes",
      "etcd_debugging_mvcc_keys_total",
    ]) {
      expect(metrics).toContain(name);
    }
    expect(JSON.parse(await httpGet(node.clientPort, "/version"))).toEqual({
      etcdserver: "3.4.23",
      etcdcluster: "3.4.0",
    });
    expect(await httpGet(node.clientPort, "/health")).toBe('{"health":"true"}');
  });

  it("reports each write-ahead log fsync in etcd's etcd_disk_wal_fsync_duration_seconds histogram", async () => {
    const walFigures = async () => {
      const text = await httpGet(node.clientPort, "/metrics");
      const value = (series: string): number => {
        const line = text.split("\n").find((l) => l.startsWith(`${series} `));
        if (line === undefined) throw new Error(`/metrics has no ${series}`);
        return Number(line.slice(series.length + 1));
      };
      const name = "etcd_disk_wal_fsync_duration_seconds";
      // etcd's buckets: 1 ms, doubling, 14 of them (up to 8.192 s).
      const bounds = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);
      const buckets = [...bounds.map((b) => value(`${name}_bucket{le="${b}"}`)), value(`${name}_bucket{le="+Inf"}`)];
      return {
        text,
        buckets,
        count: value(`${name}_count`),
        sum: value(`${name}_sum`),
        bytes: value("etcd_disk_wal_write_bytes_total"),
      };
    };
    const before = await walFigures();
    expect(before.text).toContain("# TYPE etcd_disk_wal_fsync_duration_seconds histogram");
    for (let i = 0; i < 5; i++) await etcdctl(node.endpoint, ["put", `fsync-${i}`, "x".repeat(100)]);
    const after = await walFigures();
    // Each acknowledged put was fsynced first (one member: one fsync per put at least).
    expect(after.count - before.count).toBeGreaterThanOrEqual(5);
    expect(after.sum).toBeGreaterThan(before.sum);
    expect(after.bytes - before.bytes).toBeGreaterThan(5 * 100);
    for (let i = 1; i < after.buckets.length; i++) {
      expect(after.buckets[i]).toBeGreaterThanOrEqual(after.buckets[i - 1] as number);
    }
    expect(after.buckets.at(-1)).toBe(after.count);
  });

  it("answers the gRPC health service and refuses Auth with a clear Unimplemented", async () => {
    const Health = serviceOf("grpc.health.v1.Health");
    const health = new Health(node.endpoint, grpc.credentials.createInsecure());
    const check = health.Check;
    if (check === undefined) throw new Error("the Health client has no Check method");
    const status = await new Promise<{ status: number }>((resolve, reject) =>
      check.call(health, {}, (err: Error | null, v: { status: number }) => (err ? reject(err) : resolve(v))),
    );
    expect(status.status).toBe(1); // SERVING
    health.close();
    const user = await etcdctl(node.endpoint, ["user", "list"]);
    expect(user.code).not.toBe(0);
    expect(user.stderr).toContain("authentication (users, roles, auth enable) is not implemented");
  });

  it("survives malformed protobuf on every method and keeps serving", async () => {
    const garbage = [Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x7f, 0x01]), Buffer.alloc(0)];
    const raw = new grpc.Client(node.endpoint, grpc.credentials.createInsecure());
    const methods = [
      "/etcdserverpb.KV/Range",
      "/etcdserverpb.KV/Put",
      "/etcdserverpb.KV/DeleteRange",
      "/etcdserverpb.KV/Txn",
      "/etcdserverpb.KV/Compact",
      "/etcdserverpb.Lease/LeaseGrant",
      "/etcdserverpb.Lease/LeaseRevoke",
      "/etcdserverpb.Lease/LeaseTimeToLive",
      "/etcdserverpb.Maintenance/Status",
      "/etcdserverpb.Maintenance/Alarm",
      "/etcdserverpb.Maintenance/HashKV",
      "/etcdserverpb.Maintenance/MoveLeader",
      "/etcdserverpb.Cluster/MemberList",
    ];
    for (const method of methods) {
      for (const bytes of garbage) {
        await new Promise<void>((resolve) => {
          raw.makeUnaryRequest(
            method,
            (b: Buffer) => b,
            (b: Buffer) => b,
            bytes,
            () => resolve(),
          );
        });
      }
    }
    // A watch stream fed garbage, then closed.
    const stream = raw.makeBidiStreamRequest(
      "/etcdserverpb.Watch/Watch",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    stream.on("error", () => {});
    stream.write(Buffer.from([0x0a, 0xff]));
    stream.end();
    await sleep(200);
    raw.close();
    expect(node.process.exitCode).toBeNull();
    expect((await etcdctl(node.endpoint, ["put", "still", "alive"])).stdout).toBe("OK\n");
  });

  it("shuts down cleanly on SIGTERM and keeps its data across the restart", async () => {
    await etcdctl(node.endpoint, ["put", "persist", "yes"]);
    const { dataDir, clientPort, peerPort } = node;
    await node.stop();
    expect(await node.exited).toBe(0);
    node = await startLab({ dataDir, clientPort, peerPort });
    expect((await etcdctl(node.endpoint, ["get", "persist", "--print-value-only"])).stdout).toBe("yes\n");
  });
});
