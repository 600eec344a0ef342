import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bothPrinted, Pair, readSideFile, stopBoth } from "./helpers/etcdctl-diff.js";

/**
 * Maintenance and cluster commands: member list, endpoint status/health/hashkv, compaction, defrag,
 * alarms and snapshots, against our member and a real etcd 3.4.23.
 */
describe("etcdctl maintenance commands: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start();
  });
  afterAll(async () => {
    await pair?.stop();
  });

  it("member list in every format", async () => {
    const simple = await pair.same(["member", "list"]);
    expect(simple.stdout).toBe("<MEMBER>, started, m1, http://<PEER>, http://<CLIENT>, false\n");
    for (const w of ["table", "json", "fields"]) await pair.same(["member", "list", "-w", w]);
  });

  it("endpoint status, health and hashkv", async () => {
    for (let i = 0; i < 5; i++) await pair.same(["put", `m/${i}`, `v${i}`]);
    const status = await pair.same(["endpoint", "status", "-w", "table"]);
    expect(status.stdout).toContain("| <CLIENT> | <MEMBER> | <VERSION> | <DB SIZE> | true | false |");
    await pair.same(["endpoint", "status", "-w", "json"]);
    const health = await pair.same(["endpoint", "health"]);
    // etcdctl 3.4 prints the health line on stderr.
    expect(health.stderr).toBe("<CLIENT> is healthy: successfully committed proposal: took = <TOOK>\n");
    await pair.same(["endpoint", "health", "-w", "table"]);
    await pair.same(["endpoint", "health", "-w", "json"]);
    // Each side's hashes are mapped to placeholders: equal states must hash equal, others not.
    expect((await pair.same(["endpoint", "hashkv"])).stdout).toBe("<CLIENT>, <HASH1>\n");
    await pair.same(["endpoint", "hashkv", "-w", "table"]);
    await pair.same(["endpoint", "hashkv", "-w", "json"]);
    await pair.same(["put", "m/0", "changed"]);
    expect((await pair.same(["endpoint", "hashkv"])).stdout).toBe("<CLIENT>, <HASH2>\n");
    expect((await pair.same(["endpoint", "hashkv", "--rev", "6"])).stdout).toBe("<CLIENT>, <HASH1>\n");
    await pair.same(["endpoint", "hashkv", "--rev", "100"]);
  });

  it("compaction, reads below it, and --physical", async () => {
    await pair.same(["get", "m/0", "--rev", "2"]);
    // etcd starts "compacted at -1": compacting at 0 is allowed once, and hashkv reports it.
    expect((await pair.same(["endpoint", "hashkv", "-w", "json"])).stdout).toContain('"compact_revision":-1');
    expect((await pair.same(["compaction", "0"])).stdout).toBe("compacted revision 0\n");
    expect((await pair.same(["endpoint", "hashkv", "-w", "json"])).stdout).not.toContain("compact_revision");
    expect((await pair.same(["compaction", "0"])).stderr).toContain("required revision has been compacted");
    await pair.same(["compaction", "--", "-1"]);
    expect((await pair.same(["compaction", "4"])).stdout).toBe("compacted revision 4\n");
    const below = await pair.same(["get", "m/0", "--rev", "3"]);
    expect(below.stderr).toContain("etcdserver: mvcc: required revision has been compacted");
    await pair.same(["get", "m/", "--prefix", "--rev", "4", "-w", "json"]);
    await pair.same(["get", "m/", "--prefix", "--rev", "5"]);
    await pair.same(["compaction", "4"]);
    await pair.same(["compaction", "3"]);
    await pair.same(["compaction", "1000"]);
    expect((await pair.same(["compaction", "--physical", "6"])).stdout).toBe("compacted revision 6\n");
    await pair.same(["get", "", "--from-key", "--rev", "5"]);
    await pair.same(["txn"], { input: "\nget m/0 --rev 5\n\n\n" });
    await pair.same(["endpoint", "hashkv", "--rev", "5"]);
    await pair.same(["compaction"]);
    await pair.same(["compaction", "abc"]);
  });

  it("watch from a compacted revision is cancelled with the compaction revision", async () => {
    const w = pair.spawn(["watch", "m/", "--prefix", "--rev", "2", "-w", "json"]);
    // etcdctl exits by itself once the server cancels the watch.
    expect(await w.lab.waitExit(), "lab watch exits").toBe(true);
    expect(await w.etcd.waitExit(), "etcd watch exits").toBe(true);
    const r = await stopBoth(w, "SIGTERM");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("required revision has been compacted");
    // From the compaction revision itself: a normal watch, prev_kv included where still kept.
    const ok = pair.spawn(["watch", "m/", "--prefix", "--rev", "6", "--prev-kv", "-w", "json"]);
    await bothPrinted(ok, "Y2hhbmdlZA=="); // the catch-up reached "changed" (rev 7)
    await pair.same(["put", "m/end", "sentinel"]);
    await bothPrinted(ok, "c2VudGluZWw=");
    await stopBoth(ok, "SIGTERM");
  });

  it("move-leader to an unknown member", async () => {
    const r = await pair.same(["move-leader", "1234"]);
    expect(r.stderr).toContain("etcdserver: bad leader transferee");
    await pair.same(["move-leader"]);
  });

  it("defrag", async () => {
    expect((await pair.same(["defrag"])).stdout).toBe("Finished defragmenting etcd member[<CLIENT>]\n");
    await pair.same(["endpoint", "status", "-w", "json"]);
    await pair.same(["get", "m/", "--prefix"]);
  });

  it("alarm list and disarm with no alarm raised", async () => {
    expect(await pair.same(["alarm", "list"])).toEqual({ code: 0, stdout: "", stderr: "" });
    await pair.same(["alarm", "disarm"]);
    await pair.same(["alarm", "list", "-w", "json"]);
    await pair.same(["alarm", "list", "extra"]);
  });

  it("snapshot save writes the data followed by its sha256", async () => {
    const r = await pair.same(["snapshot", "save", "<DIR>/snap.db"]);
    expect(r.stdout).toBe("Snapshot saved at <DIR>/snap.db\n");
    for (const side of pair.sides) {
      const data = readSideFile(side, "snap.db");
      const body = data.subarray(0, data.length - 32);
      expect(
        createHash("sha256")
          .update(body)
          .digest()
          .equals(data.subarray(data.length - 32)),
        side.name,
      ).toBe(true);
    }
    await pair.same(["snapshot", "save"]);
  });
});
