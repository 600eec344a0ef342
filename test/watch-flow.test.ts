import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connect,
  type EtcdClient,
  EventType,
  num,
  prefixEnd,
  type WatchResponse,
  type WatchStream,
} from "./helpers/grpc-client.js";
import { httpGet, type RunningNode, startLab } from "./helpers/nodes.js";

/**
 * Our member's own delivery guarantees, beyond what a differential test can show: slow watchers
 * never block writers and never lose events, and a progress response is a bookmark (every event
 * at or below its revision has already been delivered on that stream). etcd 3.4 does not promise
 * the latter, so these run against our member only.
 */

let lab: RunningNode;
let client: EtcdClient;

beforeAll(async () => {
  lab = await startLab();
  client = connect(lab.endpoint);
});

afterAll(async () => {
  client?.close();
  await lab?.stop();
});

async function metric(name: string): Promise<number> {
  const body = await httpGet(lab.clientPort, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.split(" ")[1]);
}

/** Runs `n` tasks with at most `concurrency` in flight. */
async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Checks the bookmark property over a stream's responses: after a progress response (watch_id -1)
 * with revision P, no event at or below P arrives; returns how many progress responses there were.
 */
function checkBookmarks(rs: WatchResponse[]): number {
  let bookmark = 0;
  let progress = 0;
  for (const r of rs) {
    if (num(r.watch_id) === -1 && r.events.length === 0 && !r.created && !r.canceled) {
      bookmark = num(r.header?.revision);
      progress++;
    }
    for (const e of r.events) {
      const rev = num(e.kv?.mod_revision);
      if (rev <= bookmark) throw new Error(`event at revision ${rev} arrived after a progress response at ${bookmark}`);
    }
  }
  return progress;
}

describe("watch: slow clients and bookmarks (lab etcd)", () => {
  it("never blocks writers on a client that stops reading, and then delivers every event once, in order", async () => {
    const WRITES = 20_000;
    const value = Buffer.alloc(1024, "x");
    const base = num((await client.put("slow-base", "x")).header.revision);
    const w = client.watch();
    await w.watch({ key: "slow/", range_end: prefixEnd("slow/") });
    await w.watch({ key: "slow/00007" }); // a second watcher on the same stream
    w.pause();
    // The writer has its own connection; every write must complete while the watcher reads nothing.
    const writer = connect(lab.endpoint);
    let sawSlow = 0;
    try {
      await pool(WRITES, 32, async (i) => {
        await writer.put(`slow/${String(i).padStart(5, "0")}`, value);
        if (i % 2000 === 1999) sawSlow = Math.max(sawSlow, await metric("etcd_debugging_mvcc_slow_watcher_total"));
      });
      const after = num((await writer.range("slow-base")).header.revision);
      expect(after).toBe(base + WRITES);
    } finally {
      writer.close();
    }
    // The server noticed the stalled stream and stopped pushing to it (rather than buffering 20 MiB).
    expect(sawSlow).toBeGreaterThan(0);
    w.requestProgress();
    w.resume();
    const rs = await w.takeUntil(
      (taken) =>
        taken.reduce((n, r) => n + r.events.length, 0) === WRITES + 1 && taken.some((r) => num(r.watch_id) === -1),
      60_000,
    );
    expect(checkBookmarks(rs)).toBe(1);
    const byId = new Map<number, number[]>();
    for (const r of rs) {
      for (const e of r.events) {
        expect(e.type).toBe(EventType.PUT);
        const list = byId.get(num(r.watch_id)) ?? [];
        list.push(num(e.kv?.mod_revision));
        byId.set(num(r.watch_id), list);
      }
    }
    // Every revision exactly once, in order, to the prefix watcher; the one key to the other.
    expect(byId.get(0)).toEqual(Array.from({ length: WRITES }, (_, i) => base + 1 + i));
    expect(byId.get(1)).toHaveLength(1);
    // A single write of the 20 000 never arrives split, and nothing more arrives.
    expect(await w.poll(300)).toBeUndefined();
    expect(await metric("etcd_debugging_mvcc_slow_watcher_total")).toBe(0);
    w.close();
  });

  it("answers a progress request only after every watcher on the stream caught up", async () => {
    // 30 revisions of 100 puts each: a watcher from the start needs several catch-up batches.
    const base = num((await client.put("bm-base", "x")).header.revision);
    for (let t = 0; t < 30; t++) {
      await client.txn(
        Array.from({ length: 100 }, (_, i) => ({
          request_put: { key: `bm/${String(t).padStart(2, "0")}/${String(i).padStart(3, "0")}`, value: "v" },
        })),
      );
    }
    const w = client.watch();
    await w.watch({ key: "bm/", range_end: prefixEnd("bm/") }); // synced
    w.create({ key: "bm/", range_end: prefixEnd("bm/"), start_revision: base + 1 }); // catching up
    w.requestProgress();
    // More writes while it catches up, each followed by another progress request.
    for (let i = 0; i < 10; i++) {
      await client.put(`bm/late/${i}`, "v");
      w.requestProgress();
    }
    const total = 3000 + 10 + 10; // the catching-up watcher sees all; the synced one the late ten
    const rs = await w.takeUntil(
      (taken) =>
        taken.reduce((n, r) => n + r.events.length, 0) === total &&
        taken.filter((r) => num(r.watch_id) === -1).length === 11,
    );
    expect(checkBookmarks(rs)).toBe(11);
    const lastProgress = rs.filter((r) => num(r.watch_id) === -1).at(-1);
    expect(num(lastProgress?.header?.revision)).toBe(base + 40);
    // Revisions are whole: each of the 30 txns reached the catching-up watcher inside one response.
    const revisionsPerResponse = rs
      .filter((r) => num(r.watch_id) === 1 && r.events.length > 0)
      .map((r) => new Set(r.events.map((e) => num(e.kv?.mod_revision))));
    const seen = new Set<number>();
    for (const revs of revisionsPerResponse) {
      for (const rev of revs) {
        expect(seen.has(rev)).toBe(false);
        seen.add(rev);
      }
    }
    expect(seen.size).toBe(40);
    w.close();
  });

  it("does not hold a progress request back for a compacted or cancelled watcher", async () => {
    const base = num((await client.put("cp-base", "x")).header.revision);
    await client.put("cp/k", "1");
    await client.put("cp/k", "2");
    await client.compact(base + 2);
    const w = client.watch();
    w.create({ key: "cp/k", start_revision: base }); // compacted
    const [created, cancelled] = [await w.next(), await w.next()];
    expect(created.created).toBe(true);
    expect(num(cancelled.compact_revision)).toBe(base + 2);
    const id = await w.watch({ key: "cp/k", start_revision: base + 2 }); // catches up, then synced
    w.requestProgress();
    const rs = await w.takeUntil((taken) => taken.some((r) => num(r.watch_id) === -1));
    expect(checkBookmarks(rs)).toBe(1);
    expect(rs.flatMap((r) => r.events).length).toBe(1);
    w.cancel(id);
    expect((await w.next()).canceled).toBe(true);
    w.requestProgress();
    expect(num((await w.next()).watch_id)).toBe(-1);
    w.close();
  });

  it("keeps separate streams independent: a stalled stream does not delay another", async () => {
    const base = num((await client.put("ind-base", "x")).header.revision);
    const other = connect(lab.endpoint);
    const stalled = other.watch();
    await stalled.watch({ key: "ind/", range_end: prefixEnd("ind/") });
    stalled.pause();
    const live: WatchStream = client.watch();
    await live.watch({ key: "ind/", range_end: prefixEnd("ind/") });
    const big = Buffer.alloc(64 * 1024, "b");
    for (let i = 0; i < 100; i++) await client.put(`ind/${i}`, big);
    // The live stream has everything while the stalled one holds its share back.
    const got = await live.takeEvents(100);
    expect(got.flatMap((r) => r.events.map((e) => num(e.kv?.mod_revision)))).toEqual(
      Array.from({ length: 100 }, (_, i) => base + 1 + i),
    );
    stalled.resume();
    const late = await stalled.takeEvents(100);
    expect(late.flatMap((r) => r.events.map((e) => num(e.kv?.mod_revision)))).toEqual(
      Array.from({ length: 100 }, (_, i) => base + 1 + i),
    );
    other.close();
    live.close();
  });
});
