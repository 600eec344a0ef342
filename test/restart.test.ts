import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "./helpers/grpc-client.js";
import { etcdctl, type RunningNode, sleep, startLab } from "./helpers/nodes.js";

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

  it("saves a snapshot of many records (encoded over several turns) that a restart loads", async () => {
    await node?.kill();
    // 9,000 puts on 3,000 keys: the snapshot at entry 9,000 holds ~9,000 records, more than two
    // of the slices the member encodes per turn of its event loop (4,096 records).
    const extraArgs = ["--snapshot-count", "9000"];
    node = await startLab({ extraArgs });
    const client = connect(node.endpoint);
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = next++; i < 9000; i = next++) await client.put(`many/${i % 3000}`, `v${i}`);
      }),
    );
    const after = await client.put("after", "x");
    client.close();
    const running = node;
    const saved = async (): Promise<RegExpExecArray | null> =>
      /"msg":"saved snapshot".*?"revision":(\d+).*?"bytes":(\d+)/.exec(running.output());
    for (let i = 0; i < 200 && !(await saved()); i++) await sleep(50);
    const line = await saved();
    expect(line, running.output()).not.toBeNull();
    expect(Number(line?.[2])).toBeGreaterThan(9000 * 10);
    const { dataDir, clientPort, peerPort } = running;
    await running.kill();
    node = await startLab({ dataDir, clientPort, peerPort, extraArgs });
    const started = /"msg":"restarted member".*?"snapshot-index":(\d+).*?"replayed-entries":(\d+)/.exec(node.output());
    expect(started, node.output()).not.toBeNull();
    expect(Number(started?.[1])).toBeGreaterThanOrEqual(9000);
    expect(Number(started?.[2])).toBeLessThan(100);
    for (const k of [0, 1234, 2999]) {
      const got = await etcdctl(node.endpoint, ["get", `many/${k}`, "--print-value-only"]);
      // The last of the puts to this key (i ≡ k mod 3,000) wrote v<k + 6,000>.
      expect(got.stdout).toBe(`v${k + 6000}\n`);
    }
    const status = JSON.parse((await etcdctl(node.endpoint, ["endpoint", "status", "-w", "json"])).stdout);
    expect(status[0].Status.header.revision).toBe(Number(after.header?.revision));
  });
});
