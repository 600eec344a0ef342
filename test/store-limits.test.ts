import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { etcdctl, httpGet, type RunningNode, startLab, tempDir } from "./helpers/nodes.js";

describe("backend quota (NOSPACE)", () => {
  let node: RunningNode | undefined;
  afterAll(async () => {
    await node?.stop();
  });

  it("raises NOSPACE, refuses writes with etcd's error, and recovers by compact + defrag + disarm", async () => {
    node = await startLab({ extraArgs: ["--quota-backend-bytes", String(256 * 1024)] });
    const ep = node.endpoint;
    const value = "x".repeat(8 * 1024);
    let failure = "";
    for (let i = 0; i < 100 && !failure; i++) {
      const r = await etcdctl(ep, ["put", "big", value]);
      if (r.code !== 0) failure = r.stderr;
    }
    expect(failure).toContain("etcdserver: mvcc: database space exceeded");

    const alarms = await etcdctl(ep, ["alarm", "list"]);
    expect(alarms.stdout).toMatch(/^memberID:\d+ alarm:NOSPACE \n$/);
    const status = await etcdctl(ep, ["endpoint", "status", "-w", "json"]);
    expect(status.stdout).toContain("alarm:NOSPACE");
    expect(await httpGet(node.clientPort, "/health")).toBe('{"health":"false"}');

    // Writes stay refused while the alarm is active, even small ones; reads and deletes work.
    expect((await etcdctl(ep, ["put", "small", "v"])).stderr).toContain("database space exceeded");
    expect((await etcdctl(ep, ["get", "big", "--print-value-only"])).stdout).toBe(`${value}\n`);
    expect((await etcdctl(ep, ["del", "nothing"])).code).toBe(0);

    // The documented recovery: compact history, defragment, disarm.
    const rev = JSON.parse((await etcdctl(ep, ["get", "big", "-w", "json"])).stdout).header.revision as number;
    expect((await etcdctl(ep, ["compaction", String(rev)])).code).toBe(0);
    expect((await etcdctl(ep, ["defrag"])).stdout).toContain("Finished defragmenting etcd member");
    expect((await etcdctl(ep, ["alarm", "disarm"])).code).toBe(0);
    expect((await etcdctl(ep, ["alarm", "list"])).stdout).toBe("");
    expect((await etcdctl(ep, ["put", "small", "v"])).stdout).toBe("OK\n");
  });
});

describe("storage failure", () => {
  const mountPoint = tempDir("fulldisk");
  let node: RunningNode | undefined;
  afterAll(async () => {
    await node?.kill();
    try {
      execFileSync("umount", [mountPoint]);
    } catch {
      // not mounted
    }
  });

  it("stops acknowledging writes on a full disk, keeps serving reads, and loses nothing acknowledged", async () => {
    // A small tmpfs stands in for a full disk. The suite runs as root (it installs packages too).
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=384k", "tmpfs", mountPoint]);
    const dataDir = path.join(mountPoint, "m1.etcd");
    node = await startLab({ dataDir });
    const ep = node.endpoint;
    const acked: string[] = [];
    let failure = "";
    for (let i = 0; i < 400 && !failure; i++) {
      const r = await etcdctl(ep, ["put", `k${i}`, "v".repeat(2048)]);
      if (r.code === 0) acked.push(`k${i}`);
      else failure = r.stderr;
    }
    expect(failure).toMatch(/write-ahead log failed \(.*ENOSPC.*\); the member stopped accepting writes/);
    expect(acked.length).toBeGreaterThan(10);
    // Reads still served; further writes refused with the same clear error.
    expect((await etcdctl(ep, ["get", acked[0] as string, "--print-value-only"])).stdout).toBe(`${"v".repeat(2048)}\n`);
    expect((await etcdctl(ep, ["put", "later", "v"])).stderr).toContain("stopped accepting writes");
    expect((await etcdctl(ep, ["endpoint", "status", "-w", "json"])).stdout).toContain("stopped accepting writes");
    expect(await httpGet(node.clientPort, "/health")).toBe('{"health":"false"}');

    // Free space and restart: every acknowledged write is there, and writes work again.
    const { clientPort, peerPort } = node;
    await node.kill();
    execFileSync("mount", ["-o", "remount,size=8m", mountPoint]);
    node = await startLab({ dataDir, clientPort, peerPort });
    const keys = (await etcdctl(node.endpoint, ["get", "k", "--prefix", "--keys-only"])).stdout
      .split("\n")
      .filter(Boolean);
    for (const k of acked) expect(keys).toContain(k);
    expect((await etcdctl(node.endpoint, ["put", "after", "ok"])).stdout).toBe("OK\n");
    expect(fs.existsSync(path.join(dataDir, "member", "wal"))).toBe(true);
  });
});
