import { describe, expect, it } from "vitest";
import { EtcdError } from "../src/etcd/errors.js";
import { type KeySpan, keySpan, MvccStore } from "../src/etcd/mvcc/store.js";
import {
  decodeSnapshot,
  encodeSnapshot,
  encodeSnapshotInSlices,
  type StateSnapshot,
} from "../src/etcd/wal/snapshot.js";

const b = (s: string): Buffer => Buffer.from(s);
const one = (k: string): KeySpan => keySpan(b(k), Buffer.alloc(0));
const prefix = (p: string): KeySpan =>
  keySpan(b(p), b(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1)));
const all: KeySpan = keySpan(b("\0"), b("\0"));

function put(store: MvccStore, key: string, value: string, lease = 0n): number {
  const txn = store.write();
  txn.put(b(key), b(value), lease);
  return txn.end().revision;
}

function del(store: MvccStore, span: KeySpan): number {
  const txn = store.write();
  txn.deleteRange(span);
  return txn.end().revision;
}

function value(store: MvccStore, key: string, revision = 0): string | undefined {
  return store.range(one(key), { revision }).kvs[0]?.value.toString();
}

function errorKind(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof EtcdError) return err.kind;
    throw err;
  }
  return undefined;
}

describe("MVCC store", () => {
  it("follows the worked example in store.ts", () => {
    const s = new MvccStore();
    put(s, "x", "filler"); // rev 2
    put(s, "a", "1"); // rev 3
    put(s, "x", "filler"); // rev 4
    put(s, "a", "2"); // rev 5
    del(s, one("a")); // rev 6
    put(s, "a", "3"); // rev 7
    expect(s.currentRevision).toBe(7);
    expect(value(s, "a", 4)).toBe("1");
    expect(value(s, "a", 5)).toBe("2");
    expect(value(s, "a", 6)).toBeUndefined();
    const latest = s.range(one("a")).kvs[0];
    expect(latest).toMatchObject({ createRevision: 7, modRevision: 7, version: 1 });
    const v2 = s.range(one("a"), { revision: 5 }).kvs[0];
    expect(v2).toMatchObject({ createRevision: 3, modRevision: 5, version: 2 });

    s.compact(5);
    expect(value(s, "a", 5)).toBe("2");
    expect(errorKind(() => s.range(one("a"), { revision: 4 }))).toBe("Compacted");
    s.compact(6);
    expect(value(s, "a", 6)).toBeUndefined();
    expect(value(s, "a")).toBe("3");
    expect(errorKind(() => s.range(one("a"), { revision: 8 }))).toBe("FutureRev");
    expect(errorKind(() => s.compact(6))).toBe("Compacted");
    expect(errorKind(() => s.compact(99))).toBe("FutureRev");
  });

  it("counts past the limit and reads ranges in key order", () => {
    const s = new MvccStore();
    for (const k of ["b/2", "a/1", "b/1", "b/3", "c"]) put(s, k, k);
    const r = s.range(prefix("b/"), { limit: 2 });
    expect(r.kvs.map((kv) => kv.key.toString())).toEqual(["b/1", "b/2"]);
    expect(r.count).toBe(3);
    expect(s.range(all).kvs.map((kv) => kv.key.toString())).toEqual(["a/1", "b/1", "b/2", "b/3", "c"]);
    expect(s.range(prefix("b/"), { countOnly: true })).toMatchObject({ kvs: [], count: 3 });
  });

  it("gives one revision to a transaction and none to a write that changes nothing", () => {
    const s = new MvccStore();
    const txn = s.write();
    txn.put(b("k1"), b("v"), 0n);
    txn.put(b("k2"), b("v"), 0n);
    expect(txn.range(prefix("k")).kvs).toHaveLength(2); // reads see the transaction's own writes
    const rev = txn.end();
    expect(rev.revision).toBe(2);
    expect(rev.events.map((e) => e.type)).toEqual(["PUT", "PUT"]);
    expect(del(s, one("missing"))).toBe(2);
    expect(s.currentRevision).toBe(2);
  });

  it("keeps whole revisions in the watch history, and drops what compaction removes", () => {
    const s = new MvccStore();
    put(s, "a", "1"); // 2
    del(s, one("a")); // 3
    put(s, "b", "1"); // 4
    expect(s.eventsSince(2, 100).map((r) => r.revision)).toEqual([2, 3, 4]);
    s.compact(3);
    expect(errorKind(() => s.eventsSince(2, 100))).toBe("Compacted");
    // At the compaction revision itself, deletes are gone (as in etcd), later revisions stay.
    expect(s.eventsSince(3, 100).map((r) => [r.revision, r.events.length])).toEqual([
      [3, 0],
      [4, 1],
    ]);
  });

  it("keeps each revision's events in order, one or many, across compaction and restore", () => {
    const s = new MvccStore();
    const listed = (from: number, max = 100): string[] =>
      s
        .eventsSince(from, max)
        .map(
          (r) =>
            `${r.revision}:${r.events.map((e) => `${e.type} ${e.kv.key}=${e.kv.value}${e.prevKv ? ` (was ${e.prevKv.value})` : ""}`).join(", ")}`,
        );
    put(s, "a", "1"); // 2
    const txn = s.write(); // 3: three events in one revision
    txn.put(b("b"), b("1"), 0n);
    txn.put(b("c"), b("1"), 0n);
    txn.put(b("a"), b("2"), 0n);
    txn.end();
    del(s, prefix("b")); // 4
    const both = s.write(); // 5: a delete and a put
    both.deleteRange(one("c"));
    both.put(b("d"), b("1"), 0n);
    both.end();
    const expected = [
      "2:PUT a=1",
      "3:PUT b=1, PUT c=1, PUT a=2 (was 1)",
      "4:DELETE b= (was 1)",
      "5:DELETE c= (was 1), PUT d=1",
    ];
    expect(listed(2)).toEqual(expected);
    // Whole revisions only: the batch stops once it holds maxEvents, without splitting one.
    expect(listed(2, 2).map((r) => r.split(":")[0])).toEqual(["2", "3"]);
    expect(listed(4, 1).map((r) => r.split(":")[0])).toEqual(["4"]);
    expect(listed(6)).toEqual([]);
    s.compact(5);
    expect(listed(5)).toEqual(["5:PUT d=1"]);
    put(s, "e", "1"); // 6
    expect(listed(5)).toEqual(["5:PUT d=1", "6:PUT e=1"]);
    const restored = new MvccStore();
    restored.restore(s.image());
    expect(restored.eventsSince(5, 100).map((r) => [r.revision, r.events.length])).toEqual([
      [5, 1],
      [6, 1],
    ]);
    // Compacting everything, then writing again, starts the history at the new revision.
    s.compact(6);
    put(s, "f", "1"); // 7
    expect(listed(6)).toEqual(["6:PUT e=1", "7:PUT f=1"]);
  });

  it("shrinks db size only on defragment, after compaction freed space", () => {
    const s = new MvccStore();
    for (let i = 0; i < 100; i++) put(s, "k", "x".repeat(1000));
    const grown = s.dbSize;
    s.compact(s.currentRevision);
    expect(s.dbSize).toBe(grown);
    expect(s.dbSizeInUse).toBeLessThan(grown);
    s.defragment();
    expect(s.dbSize).toBe(s.dbSizeInUse);
    expect(s.dbSize).toBeLessThan(grown);
  });

  it("restores from a snapshot image to the same reads, hashes and history", () => {
    const s = new MvccStore();
    for (let i = 0; i < 30; i++) put(s, `k${i % 7}`, `v${i}`, i % 3 === 0 ? 5n : 0n);
    del(s, prefix("k1"));
    s.compact(10);
    put(s, "late", "x");
    const bytes = encodeSnapshot({
      index: 33,
      term: 2,
      clusterId: 1n,
      members: [],
      store: s.image(),
      leases: [{ id: 5n, ttl: 10 }],
      alarms: [],
    });
    const decoded = decodeSnapshot(bytes, "test");
    const r = new MvccStore();
    const attached: string[] = [];
    r.setLeaseListener({ attach: (lease, key) => attached.push(`${lease}:${key}`), detach: () => {} });
    r.restore(decoded.store);
    expect(r.currentRevision).toBe(s.currentRevision);
    expect(r.compactedRevision).toBe(10);
    for (const rev of [10, 15, 20, s.currentRevision]) {
      expect(r.range(all, { revision: rev })).toEqual(s.range(all, { revision: rev }));
      expect(r.hashKV(rev)).toEqual(s.hashKV(rev));
    }
    expect(r.eventsSince(11, 1000).map((x) => x.revision)).toEqual(s.eventsSince(11, 1000).map((x) => x.revision));
    expect(attached.length).toBeGreaterThan(0);
  });

  it("encodes a snapshot in slices to the same bytes, a turn of the event loop per slice", async () => {
    const s = new MvccStore();
    for (let i = 0; i < 25; i++) put(s, `k${i % 9}`, `value-${i}`, i % 4 === 0 ? 7n : 0n);
    del(s, prefix("k2"));
    const snapshot: StateSnapshot = {
      index: 40,
      term: 3,
      clusterId: 9n,
      members: [{ id: 2n, name: "m2", peerUrls: ["http://127.0.0.1:2380"], clientUrls: [], isLearner: false }],
      store: s.image(),
      leases: [{ id: 7n, ttl: 30 }],
      alarms: [{ memberId: 2n, alarm: 1 }],
    };
    const records = snapshot.store.records.length;
    expect(records).toBe(26);
    const whole = encodeSnapshot(snapshot);
    // Slices that divide the records evenly, leave a remainder, hold one record, or all of them.
    for (const perSlice of [1, 2, 5, 13, 26, 27, 4096]) {
      let turns = 0;
      let counting = true;
      const count = (): void => {
        if (!counting) return;
        turns++;
        setImmediate(count);
      };
      setImmediate(count);
      const sliced = await encodeSnapshotInSlices(snapshot, perSlice);
      counting = false;
      expect(sliced.equals(whole), `${perSlice} records per slice`).toBe(true);
      // Other work ran between the slices: once per slice boundary (records fully encoded in the
      // first turn when one slice holds them all).
      const boundaries = Math.ceil(records / perSlice) - 1;
      expect(turns, `${perSlice} records per slice`).toBeGreaterThanOrEqual(boundaries);
      if (boundaries === 0) expect(turns).toBe(0);
    }
    expect(decodeSnapshot(await encodeSnapshotInSlices(snapshot, 4), "sliced").store.records).toEqual(
      decodeSnapshot(whole, "whole").store.records,
    );
    const empty: StateSnapshot = { ...snapshot, store: new MvccStore().image(), leases: [], alarms: [] };
    expect((await encodeSnapshotInSlices(empty, 1)).equals(encodeSnapshot(empty))).toBe(true);
    await expect(encodeSnapshotInSlices(snapshot, 0)).rejects.toThrow(/records per slice must be a positive integer/);
  });

  it("detects a damaged snapshot", () => {
    const bytes = encodeSnapshot({
      index: 1,
      term: 1,
      clusterId: 1n,
      members: [],
      store: new MvccStore().image(),
      leases: [],
      alarms: [],
    });
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 1;
    expect(() => decodeSnapshot(bytes, "snap")).toThrow(/snapshot snap is unreadable: checksum mismatch/);
  });

  it("handles many keys in order (chunked index)", () => {
    const s = new MvccStore();
    const keys = Array.from({ length: 3000 }, (_, i) => `key/${(i * 7919) % 3000}`.padEnd(12, "_"));
    const txn = s.write();
    for (const k of keys) txn.put(b(k), b("v"), 0n);
    txn.end();
    const got = s.range(all).kvs.map((kv) => kv.key.toString());
    expect(got).toEqual([...keys].sort());
    del(s, prefix("key/1"));
    expect(s.range(all, { countOnly: true }).count).toBe(keys.filter((k) => !k.startsWith("key/1")).length);
  });
});
