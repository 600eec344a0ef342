import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type KeySpan, keySpan, MvccStore } from "../src/etcd/mvcc/store.js";
import {
  applyDeltas,
  decodeSnapshotFile,
  encodeSnapshot,
  MAX_DELTAS,
  type SnapshotDelta,
  SnapshotStore,
  type StateSnapshot,
} from "../src/etcd/wal/snapshot.js";
import { mulberry32 } from "./helpers/prng.js";

/**
 * Delta snapshots: a full snapshot plus the deltas after it load as the state the live store had,
 * through compactions, deletes and multi-key transactions, and a damaged or missing link is an
 * error naming the file.
 */

const b = (s: string): Buffer => Buffer.from(s);
const all: KeySpan = keySpan(b("\0"), b("\0"));
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempSnapDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "lab-test-snapdelta-"));
  dirs.push(d);
  return d;
}

function put(s: MvccStore, key: string, value: string): void {
  const txn = s.write();
  txn.put(b(key), b(value), 0n);
  txn.end();
}

function remove(s: MvccStore, key: string): void {
  const txn = s.write();
  txn.deleteRange(keySpan(b(key), Buffer.alloc(0)));
  txn.end();
}

function stateOf(s: MvccStore, index: number, records = s.image().records): StateSnapshot {
  return {
    index,
    term: 1,
    clusterId: 7n,
    members: [{ id: 1n, name: "m1", peerUrls: ["http://127.0.0.1:2380"], clientUrls: [], isLearner: false }],
    store: { currentRevision: s.currentRevision, compactedRevision: s.compactedRevision, records },
    leases: [{ id: BigInt(index), ttl: 30 }],
    alarms: [],
  };
}

/** Takes a snapshot the way the member does: a delta when the history reaches back, else full. */
class Snapshotter {
  chain: { index: number; revision: number; deltas: number } | undefined;
  kinds: string[] = [];
  constructor(
    private readonly store: SnapshotStore,
    private readonly s: MvccStore,
  ) {}

  async take(index: number): Promise<void> {
    const since = this.chain && this.chain.deltas < MAX_DELTAS ? this.s.recordsAfter(this.chain.revision) : undefined;
    if (this.chain && since) {
      const delta: SnapshotDelta = {
        ...stateOf(this.s, index, since),
        follows: this.chain.index,
        fromRevision: this.chain.revision,
      };
      await this.store.save(delta);
      this.chain = { index, revision: this.s.currentRevision, deltas: this.chain.deltas + 1 };
      this.kinds.push("delta");
    } else {
      await this.store.save(stateOf(this.s, index));
      this.chain = { index, revision: this.s.currentRevision, deltas: 0 };
      this.kinds.push("full");
    }
  }
}

/** A store with `count` puts, each followed by a snapshot, in a directory of its own. */
async function snapshotted(count: number, key: (i: number) => string) {
  const s = new MvccStore();
  const dir = tempSnapDir();
  const snaps = new SnapshotStore(dir);
  const taker = new Snapshotter(snaps, s);
  for (let i = 1; i <= count; i++) {
    put(s, key(i), `v${i}`);
    await taker.take(i);
  }
  return { s, dir, snaps, taker };
}

function expectSameStore(restored: MvccStore, live: MvccStore): void {
  expect(restored.currentRevision).toBe(live.currentRevision);
  expect(restored.compactedRevision).toBe(live.compactedRevision);
  const first = Math.max(live.compactedRevision, 1);
  for (
    let rev = first;
    rev <= live.currentRevision;
    rev += Math.max(1, Math.floor((live.currentRevision - first) / 25))
  ) {
    expect(restored.range(all, { revision: rev }), `range at ${rev}`).toEqual(live.range(all, { revision: rev }));
    expect(restored.hashKV(rev), `hashKV at ${rev}`).toEqual(live.hashKV(rev));
  }
  // The watch history: the same events per revision (within one, key order stands in for the
  // transaction's).
  const events = (s: MvccStore) =>
    s.eventsSince(first + 1, 1e9).map((r) => ({
      revision: r.revision,
      events: r.events
        .map((e) => `${e.type} ${e.kv.key} ${e.kv.value} ${e.kv.modRevision} ${e.prevKv?.modRevision ?? "-"}`)
        .sort(),
    }));
  expect(events(restored)).toEqual(events(live));
}

describe("delta snapshots", () => {
  it("lists the records written after a revision, in revision order; nothing once a compaction passed it", () => {
    const s = new MvccStore();
    const txn0 = s.write();
    txn0.put(b("a"), b("1"), 0n);
    txn0.end(); // rev 2
    const txn = s.write();
    txn.put(b("b"), b("2"), 0n);
    txn.put(b("a"), b("3"), 0n);
    txn.end(); // rev 3: two records, in the transaction's order
    const del = s.write();
    del.deleteRange(keySpan(b("a"), Buffer.alloc(0)));
    del.end(); // rev 4: a tombstone
    const listed = (rev: number) =>
      s.recordsAfter(rev)?.map((r) => `${r.key}@${r.modRevision}${r.version === 0 ? " (deleted)" : ""}`);
    expect(listed(1)).toEqual(["a@2", "b@3", "a@3", "a@4 (deleted)"]);
    expect(listed(2)).toEqual(["b@3", "a@3", "a@4 (deleted)"]);
    expect(listed(4)).toEqual([]);
    s.compact(3);
    expect(listed(2)).toBeUndefined();
    expect(listed(3)).toEqual(["a@4 (deleted)"]);
  });

  it("a full snapshot and its deltas load as the live state, through compactions, deletes and transactions", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rnd = mulberry32(seed);
      const s = new MvccStore();
      const dir = tempSnapDir();
      const snaps = new SnapshotStore(dir);
      const taker = new Snapshotter(snaps, s);
      let index = 0;
      for (let step = 0; step < 1500; step++) {
        index++;
        const r = rnd();
        const key = `k${Math.floor(rnd() * 40)}`;
        if (r < 0.6) {
          const txn = s.write();
          txn.put(b(key), b(`v${step}`), rnd() < 0.1 ? 5n : 0n);
          txn.end();
        } else if (r < 0.75) {
          const txn = s.write();
          txn.deleteRange(keySpan(b(key), Buffer.alloc(0)));
          txn.end();
        } else if (r < 0.88) {
          const txn = s.write();
          for (let k = 0; k < 4; k++) txn.put(b(`t${Math.floor(rnd() * 10)}-${k}`), b(`tv${step}`), 0n);
          txn.end();
        } else if (r < 0.9 && s.currentRevision > s.compactedRevision + 5) {
          // Sometimes behind the last snapshot (a delta still follows), sometimes past it (full).
          const lo = s.compactedRevision + 1;
          s.compact(lo + Math.floor(rnd() * (s.currentRevision - lo)));
        } else if (r < 0.97) {
          await taker.take(index);
        }
      }
      await taker.take(index + 1);
      const loaded = snaps.loadNewest();
      expect(loaded?.state.index).toBe(index + 1);
      expect(loaded?.deltas).toBe(taker.chain?.deltas);
      const restored = new MvccStore();
      restored.restore((loaded as { state: StateSnapshot }).state.store);
      expectSameStore(restored, s);
      expect(loaded?.state.leases).toEqual([{ id: BigInt(index + 1), ttl: 30 }]);
      // Both kinds were exercised, and no chain is longer than MAX_DELTAS.
      expect(taker.kinds, `seed ${seed}`).toContain("full");
      expect(taker.kinds, `seed ${seed}`).toContain("delta");
      let run = 0;
      for (const k of taker.kinds) {
        run = k === "delta" ? run + 1 : 0;
        expect(run).toBeLessThanOrEqual(MAX_DELTAS);
      }
    }
  });

  it("a compaction behind the last snapshot: the next one is still a delta, and loading applies the compaction", async () => {
    const s = new MvccStore();
    const snaps = new SnapshotStore(tempSnapDir());
    const taker = new Snapshotter(snaps, s);
    for (let i = 0; i < 30; i++) put(s, `k${i % 4}`, `a${i}`);
    remove(s, "k3");
    await taker.take(1); // full, revision 32
    for (let i = 0; i < 30; i++) put(s, `k${i % 5}`, `b${i}`);
    await taker.take(2); // delta, revision 62
    s.compact(45); // drops records the full snapshot and the first delta hold
    put(s, "k9", "c");
    await taker.take(3);
    expect(taker.kinds).toEqual(["full", "delta", "delta"]);
    const loaded = snaps.loadNewest() as { state: StateSnapshot; deltas: number };
    expect(loaded.deltas).toBe(2);
    expect(loaded.state.store.compactedRevision).toBe(45);
    expect(loaded.state.store.records).toHaveLength(s.image().records.length);
    const restored = new MvccStore();
    restored.restore(loaded.state.store);
    expectSameStore(restored, s);
  });

  it("keeps the two newest full snapshots with their deltas, and prefers a full one at an index a delta has", async () => {
    const { s, dir, snaps, taker } = await snapshotted(3 * (MAX_DELTAS + 1), (i) => `k${i % 5}`);
    const files = fs.readdirSync(dir).sort();
    expect(files.filter((f) => f.endsWith(".snap"))).toHaveLength(2);
    expect(files.filter((f) => f.endsWith(".delta"))).toHaveLength(2 * MAX_DELTAS);
    // A defragment writes the same index again, in full: that file wins.
    const last = taker.chain?.index as number;
    await snaps.save(stateOf(s, last));
    const loaded = snaps.loadNewest();
    expect(loaded?.deltas).toBe(0);
    expect(loaded?.state.index).toBe(last);
    const restored = new MvccStore();
    restored.restore((loaded as { state: StateSnapshot }).state.store);
    expectSameStore(restored, s);
  });

  it("names the file when a delta is damaged or does not follow the one before it", async () => {
    const { dir, snaps, taker } = await snapshotted(4, (i) => `k${i}`);
    expect(taker.kinds).toEqual(["full", "delta", "delta", "delta"]);
    const deltas = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".delta"))
      .sort();
    const last = path.join(dir, deltas[2] as string);
    const original = fs.readFileSync(last);
    const damaged = Buffer.from(original);
    damaged[damaged.length - 9] = (damaged[damaged.length - 9] as number) ^ 1;
    fs.writeFileSync(last, damaged);
    expect(() => snaps.loadNewest()).toThrow(`snapshot ${last} is unreadable: checksum mismatch`);
    fs.writeFileSync(last, original);
    expect(snaps.loadNewest()?.state.index).toBe(4);
    // The delta at index 4 follows index 3, whose file is gone.
    fs.rmSync(path.join(dir, deltas[1] as string));
    expect(() => snaps.loadNewest()).toThrow(
      `snapshot ${last} is unreadable: it follows the snapshot at index 3 (revision 4), but the one before it is at index 2 (revision 3)`,
    );
  });

  it("refuses a delta where a full snapshot is expected, and applies a chain only in order", () => {
    const s = new MvccStore();
    const txn = s.write();
    txn.put(b("a"), b("1"), 0n);
    txn.end();
    const base = stateOf(s, 1);
    const t2 = s.write();
    t2.put(b("a"), b("2"), 0n);
    t2.end();
    const d2: SnapshotDelta = { ...stateOf(s, 2, s.recordsAfter(2) ?? []), follows: 1, fromRevision: 2 };
    const t3 = s.write();
    t3.put(b("b"), b("3"), 0n);
    t3.end();
    const d3: SnapshotDelta = { ...stateOf(s, 3, s.recordsAfter(3) ?? []), follows: 2, fromRevision: 3 };
    expect(applyDeltas(base, [d2, d3]).store.records.map((r) => `${r.key}=${r.value}`)).toEqual(["a=1", "a=2", "b=3"]);
    expect(() => applyDeltas(base, [d3, d2], ["three", "two"])).toThrow(
      /snapshot three is unreadable: it follows the snapshot at index 2 \(revision 3\), but the one before it is at index 1 \(revision 2\)/,
    );
    expect(decodeSnapshotFile(encodeSnapshot(d2), "d2")).toEqual(d2);
  });

  it("decodes a key's records with one shared copy of the key", () => {
    const s = new MvccStore();
    for (const [k, v] of [
      ["a", "1"],
      ["a", "2"],
      ["b", "3"],
      ["a", "4"],
      ["b", "5"],
    ] as const) {
      const txn = s.write();
      txn.put(b(k), b(v), 0n);
      txn.end();
    }
    const decoded = decodeSnapshotFile(encodeSnapshot(stateOf(s, 5)), "full");
    const [a1, a2, a4, b3, b5] = decoded.store.records;
    expect(decoded.store.records.map((r) => `${r.key}=${r.value}`)).toEqual(["a=1", "a=2", "a=4", "b=3", "b=5"]);
    expect(a2?.key).toBe(a1?.key);
    expect(a4?.key).toBe(a1?.key);
    expect(b5?.key).toBe(b3?.key);
    expect(b3?.key).not.toBe(a1?.key);
  });
});
