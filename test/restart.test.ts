import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "./helpers/grpc-client.js";
import { etcdctl, type RunningNode, startLab } from "./helpers/nodes.js";

describe("restart", () => {
  let node: RunningNode | undefined;
  afterAll(async () => {
    await node?.kill();
  });

  it("loads the newest snapshot and replays only the log after it (snapshots bound restart time)", async () => {
    const extraArgs = ["--snapshot-count", "100"];
    node = await startLab({ extraArgs });
    const client = connect(node.endpoint);
    for (let i = 0; i < 450; i++) await client.put(`r/${i % 30}`, `v${i}`);
    client.close();
    const snapDir = path.join(node.dataDir, "member", "snap");
    expect(fs.readdirSync(snapDir).filter((f) => f.endsWith(".snap")).length).toBeGreaterThan(0);
    const { dataDir, clientPort, peerPort } = node;
    await node.kill();
    node = await startLab({ dataDir, clientPort, peerPort, extraArgs });
    const started = /"msg":"restarted member".*?"replayed-entries":(\d+)/.exec(node.output());
    expect(started, node.output()).not.toBeNull();
    expect(Number(started?.[1])).toBeLessThanOrEqual(100);
    const got = await etcdctl(node.endpoint, ["get", "r/29", "--print-value-only"]);
    expect(got.stdout).toBe("v449\n");
    const status = JSON.parse((await etcdctl(node.endpoint, ["endpoint", "status", "-w", "json"])).stdout);
    expect(status[0].Status.header.revision).toBe(451);
  });
});
