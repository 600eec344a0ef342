import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdctl, type RunningNode, startLab } from "./helpers/nodes.js";

/**
 * etcdctl check perf --load s: one minute of writes that must meet etcd's own thresholds. It runs
 * against our member only (the real etcd would double the time and proves nothing about ours).
 */
describe("etcdctl check perf against lab etcd", () => {
  let node: RunningNode;
  beforeAll(async () => {
    node = await startLab();
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("check perf --load s passes", { timeout: 180_000 }, async () => {
    const r = await etcdctl(node.endpoint, ["check", "perf", "--load", "s"], { timeoutMs: 170_000 });
    expect(r.stdout + r.stderr).toMatch(/PASS: Throughput is \d+ writes\/s/);
    expect(r.stdout).toMatch(/\nPASS\n?$/);
    expect(r.code).toBe(0);
  });
});
