import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdctl, type RunningNode, startLab } from "./helpers/nodes.js";

describe("lab etcd with the real etcdctl", () => {
  let node: RunningNode;
  beforeAll(async () => {
    node = await startLab();
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("puts and gets a key", async () => {
    expect((await etcdctl(node.endpoint, ["put", "greeting", "hello"])).stdout).toBe("OK\n");
    const got = await etcdctl(node.endpoint, ["get", "greeting"]);
    expect(got.stdout).toBe("greeting\nhello\n");
  });
});
