import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connect,
  type EtcdClient,
  type NormalizedResponse,
  normalize,
  num,
  prefixEnd,
  WatchFilter,
  type WatchResponse,
  type WatchStream,
} from "./helpers/grpc-client.js";
import { ETCDCTL, httpGet, type RunningNode, sleep, startLab, startRealEtcd } from "./helpers/nodes.js";

/**
 * The Watch service, differentially: every scenario runs against our member and the real etcd
 * 3.4.23 at the same time, through the same gRPC client, and the transcripts (revisions made
 * relative to the scenario's first write) must be equal. Each scenario also states what the
 * transcript must contain, so that a shared mistake cannot pass unnoticed.
 */

// A short progress interval so periodic progress notifications can be observed.
const ARGS = ["--experimental-watch-progress-notify-interval", "1s"];

let lab: RunningNode;
let real: RunningNode;
let labClient: EtcdClient;
let realClient: EtcdClient;

beforeAll(async () => {
  [lab, real] = await Promise.all([startLab({ extraArgs: ARGS }), startRealEtcd({ extraArgs: ARGS })]);
  labClient = connect(lab.endpoint);
  realClient = connect(real.endpoint);
});

afterAll(async () => {
  labClient?.close();
  realClient?.close();
  await Promise.all([lab?.stop(), real?.stop()]);
});

/**
 * Runs a scenario against both members at once; resolves to [ours, etcd's]. Both runs finish
 * before it settles, so a failure on one side never leaves the other writing into the next test.
 */
async function both<T>(scenario: (c: EtcdClient, node: RunningNode) => Promise<T>): Promise<[T, T]> {
  const [a, b] = await Promise.allSettled([scenario(labClient, lab), scenario(realClient, real)]);
  labClient.closeStreams();
  realClient.closeStreams();
  if (a.status === "rejected") throw new Error(`lab etcd: ${String(a.reason)}`, { cause: a.reason });
  if (b.status === "rejected") throw new Error(`real etcd: ${String(b.reason)}`, { cause: b.reason });
  return [a.value, b.value];
}

/**
 * Writes a marker key beside (not under) the scenario's prefix ("A/" -> "A-base"); its revision is
 * the scenario's base for relative revisions.
 */
async function baseRevision(c: EtcdClient, prefix: string): Promise<number> {
  return num((await c.put(`${prefix.replace(/\/$/, "")}-base`, "x")).header.revision);
}

/**
 * Takes responses until `events` events have arrived, then waits `quietMs` more to catch anything
 * extra (there must be nothing). Returns them normalized and grouped by watch ID, in arrival order.
 */
async function collect(
  w: WatchStream,
  events: number,
  base: number,
  quietMs = 300,
): Promise<Record<number, NormalizedResponse[]>> {
  const rs = await w.takeEvents(events);
  for (let r = await w.poll(quietMs); r; r = await w.poll(quietMs)) rs.push(r);
  return byWatcher(rs.map((r) => normalize(r, base)));
}

function byWatcher(rs: NormalizedResponse[]): Record<number, NormalizedResponse[]> {
  const out: Record<number, NormalizedResponse[]> = {};
  for (const r of rs) {
    const list = out[r.id] ?? [];
    list.push(r);
    out[r.id] = list;
  }
  return out;
}

function eventCount(rs: NormalizedResponse[] | undefined): number {
  return (rs ?? []).reduce((n, r) => n + (r.events?.length ?? 0), 0);
}

async function createAll(w: WatchStream, n: number, base: number): Promise<NormalizedResponse[]> {
  const out: NormalizedResponse[] = [];
  for (let i = 0; i < n; i++) out.push(normalize(await w.next(), base));
  return out;
}

async function metric(node: RunningNode, name: string): Promise<number> {
  const body = await httpGet(node.clientPort, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.split(" ")[1]);
}

/** Polls a metric until it has the wanted value (generous deadline); returns the last value seen. */
async function waitMetric(node: RunningNode, name: string, want: number, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let v = await metric(node, name);
  while (v !== want && Date.now() < deadline) {
    await sleep(100);
    v = await metric(node, name);
  }
  return v;
}

describe("watch: creation forms and event routing (differential)", () => {
  it("delivers single-key, range, prefix, from-key and all-keys watchers their events, each revision whole", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "A/");
      const w = c.watch();
      w.create({ key: "A/a" });
      w.create({ key: "A/a", range_end: "A/c" });
      w.create({ key: "A/", range_end: prefixEnd("A/") });
      w.create({ key: "A/b", range_end: "\0" });
      w.create({ key: "", range_end: "\0" });
      const created = await createAll(w, 5, base);
      await c.put("A/a", "1");
      await c.put("A/b", "1");
      await c.put("A/c", "1");
      await c.put("B", "1");
      await c.deleteRange("A/a");
      await c.txn([
        { request_put: { key: "A/d", value: "1" } },
        { request_put: { key: "A/a", value: "2" } },
        { request_delete_range: { key: "A/b" } },
      ]);
      const events = await collect(w, 3 + 5 + 7 + 5 + 8, base);
      w.close();
      await c.deleteRange("B");
      return { created, events };
    });
    expect(ours).toEqual(theirs);
    expect(ours.created).toEqual([0, 1, 2, 3, 4].map((id) => ({ id, rev: 0, created: true })));
    const ev = ours.events;
    expect(ev[0]?.map((r) => r.events)).toEqual([
      ["PUT A/a=1 c1 m1 v1"],
      ["DELETE A/a= c0 m5 v0"],
      ["PUT A/a=2 c6 m6 v1"],
    ]);
    // The txn's revision reaches each watcher as one response, events in the txn's order.
    expect(ev[1]?.at(-1)).toEqual({ id: 1, rev: 6, events: ["PUT A/a=2 c6 m6 v1", "DELETE A/b= c0 m6 v0"] });
    expect(ev[2]?.map((r) => r.rev)).toEqual([1, 2, 3, 5, 6]);
    expect(ev[2]?.at(-1)?.events).toHaveLength(3);
    expect(ev[3]?.flatMap((r) => r.events)).toEqual([
      "PUT A/b=1 c2 m2 v1",
      "PUT A/c=1 c3 m3 v1",
      "PUT B=1 c4 m4 v1",
      "PUT A/d=1 c6 m6 v1",
      "DELETE A/b= c0 m6 v0",
    ]);
    expect(eventCount(ev[4])).toBe(8);
  });

  it("keeps every revision of a txn in one response and drops deletes of missing keys", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "T/");
      const w = c.watch();
      w.create({ key: "T/", range_end: prefixEnd("T/") });
      w.create({ key: "T/b", range_end: "T/d", prev_kv: true });
      await createAll(w, 2, base);
      await c.txn([
        ...["a", "b", "c", "d", "e", "f"].map((k) => ({ request_put: { key: `T/${k}`, value: k } })),
        { request_delete_range: { key: "T/x" } },
      ]);
      await c.txn([
        { request_delete_range: { key: "T/a", range_end: "T/c" } },
        { request_put: { key: "T/g", value: "g" } },
      ]);
      const events = await collect(w, 9 + 3, base);
      w.close();
      return events;
    });
    expect(ours).toEqual(theirs);
    expect(ours[0]?.map((r) => r.events?.length)).toEqual([6, 3]);
    expect(ours[1]).toEqual([
      { id: 1, rev: 1, events: ["PUT T/b=b c1 m1 v1", "PUT T/c=c c1 m1 v1"] },
      { id: 1, rev: 2, events: ["DELETE T/b= c0 m2 v0 prev(T/b=b c1 m1 v1)"] },
    ]);
  });

  it("honours start revisions in the past, now, next and in the future", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "S/");
      for (let i = 1; i <= 3; i++) await c.put("S/k", String(i));
      const w = c.watch();
      for (const start of [base + 1, base + 3, base + 4, base + 6, 0]) w.create({ key: "S/k", start_revision: start });
      // The two watchers that start in the past catch up at once (before more writes, so that the
      // grouping does not depend on when etcd's 100 ms catch-up loop runs); their events may come
      // before other watchers' "created".
      const first = await w.takeUntil(
        (rs) => rs.filter((r) => r.created).length === 5 && rs.reduce((n, r) => n + r.events.length, 0) === 4,
      );
      const created = first.filter((r) => r.created).map((r) => normalize(r, base));
      const catchUp = byWatcher(first.filter((r) => !r.created).map((r) => normalize(r, base)));
      for (let i = 4; i <= 7; i++) await c.put("S/k", String(i));
      const live = await collect(w, 4 + 4 + 4 + 2 + 4, base);
      w.close();
      return { created, catchUp, live };
    });
    expect(ours).toEqual(theirs);
    expect(ours.catchUp).toEqual({
      0: [{ id: 0, rev: 3, events: ["PUT S/k=1 c1 m1 v1", "PUT S/k=2 c1 m2 v2", "PUT S/k=3 c1 m3 v3"] }],
      1: [{ id: 1, rev: 3, events: ["PUT S/k=3 c1 m3 v3"] }],
    });
    expect(ours.live[2]?.map((r) => r.rev)).toEqual([4, 5, 6, 7]);
    expect(ours.live[3]?.map((r) => r.rev)).toEqual([6, 7]);
    expect(ours.live[4]?.map((r) => r.rev)).toEqual([4, 5, 6, 7]);
  });

  it("applies prev_kv and the NOPUT / NODELETE filters", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "F/");
      const w = c.watch();
      const prefix = { key: "F/", range_end: prefixEnd("F/") };
      w.create({ ...prefix, prev_kv: true });
      w.create({ ...prefix, filters: [WatchFilter.NOPUT] });
      w.create({ ...prefix, filters: [WatchFilter.NODELETE] });
      w.create({ ...prefix, filters: [WatchFilter.NOPUT, WatchFilter.NODELETE] });
      w.create({ ...prefix, filters: [WatchFilter.NOPUT], prev_kv: true });
      await createAll(w, 5, base);
      await c.put("F/a", "1");
      await c.put("F/a", "2");
      await c.deleteRange("F/a");
      await c.put("F/a", "3");
      await c.txn([{ request_put: { key: "F/b", value: "1" } }, { request_delete_range: { key: "F/a" } }]);
      const events = await collect(w, 6 + 2 + 4 + 0 + 2, base);
      w.close();
      return events;
    });
    expect(ours).toEqual(theirs);
    expect(ours[0]?.flatMap((r) => r.events)).toEqual([
      "PUT F/a=1 c1 m1 v1",
      "PUT F/a=2 c1 m2 v2 prev(F/a=1 c1 m1 v1)",
      "DELETE F/a= c0 m3 v0 prev(F/a=2 c1 m2 v2)",
      "PUT F/a=3 c4 m4 v1",
      "PUT F/b=1 c5 m5 v1",
      "DELETE F/a= c0 m5 v0 prev(F/a=3 c4 m4 v1)",
    ]);
    expect(ours[1]?.flatMap((r) => r.events)).toEqual(["DELETE F/a= c0 m3 v0", "DELETE F/a= c0 m5 v0"]);
    expect(eventCount(ours[2])).toBe(4);
    expect(ours[3]).toBeUndefined();
    expect(ours[4]?.flatMap((r) => r.events)).toEqual([
      "DELETE F/a= c0 m3 v0 prev(F/a=2 c1 m2 v2)",
      "DELETE F/a= c0 m5 v0 prev(F/a=3 c4 m4 v1)",
    ]);
  });
});

describe("watch: IDs, cancellation and stream lifetime (differential)", () => {
  it("handles client-chosen IDs, duplicates, empty ranges and cancels as etcd does", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "D/");
      const w = c.watch();
      const control: NormalizedResponse[] = [];
      const step = async (send: () => void): Promise<void> => {
        send();
        control.push(normalize(await w.next(), base));
      };
      await step(() => w.create({ key: "D/k", watch_id: 5 }));
      await step(() => w.create({ key: "D/k" }));
      await step(() => w.create({ key: "D/k", watch_id: 1 }));
      await step(() => w.create({ key: "D/k" }));
      await step(() => w.create({ key: "D/k", watch_id: 5 }));
      await step(() => w.create({ key: "D/z", range_end: "D/a" }));
      await step(() => w.create({ key: "D/a", range_end: "D/a" }));
      // An unknown ID is ignored: the next response answers the cancel after it.
      await step(() => {
        w.cancel(99);
        w.cancel(0);
      });
      await step(() => w.create({ key: "D/k" }));
      await c.put("D/k", "v");
      const events = await collect(w, 4, base);
      w.close();
      return { control, events };
    });
    expect(ours).toEqual(theirs);
    const dup = "mvcc: duplicate watch ID provided on the WatchStream";
    const empty = "mvcc: watcher range is empty";
    expect(ours.control).toEqual([
      { id: 5, rev: 0, created: true },
      { id: 0, rev: 0, created: true },
      { id: 1, rev: 0, created: true },
      { id: 2, rev: 0, created: true },
      { id: -1, rev: 0, created: true, canceled: true, reason: dup },
      { id: -1, rev: 0, created: true, canceled: true, reason: empty },
      { id: -1, rev: 0, created: true, canceled: true, reason: empty },
      { id: 0, rev: 0, canceled: true },
      { id: 3, rev: 0, created: true },
    ]);
    expect(Object.keys(ours.events).sort()).toEqual(["1", "2", "3", "5"]);
  });

  it("keeps delivering after the client half-closes its side of the stream", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "H/");
      const w = c.watch();
      await w.watch({ key: "H/k" });
      w.end();
      await sleep(200);
      await c.put("H/k", "1");
      const got = await collect(w, 1, base);
      const ended = w.ended;
      w.close();
      return { got, ended };
    });
    expect(ours).toEqual(theirs);
    expect(ours).toEqual({ got: { 0: [{ id: 0, rev: 1, events: ["PUT H/k=1 c1 m1 v1"] }] }, ended: false });
  });

  it("answers each progress request with watch_id -1 and the current revision", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "P/");
      const w = c.watch();
      await w.watch({ key: "P/", range_end: prefixEnd("P/") });
      await c.put("P/a", "1");
      await c.put("P/b", "1");
      await w.takeEvents(2);
      w.requestProgress();
      w.requestProgress();
      const got = [normalize(await w.next(), base), normalize(await w.next(), base)];
      w.close();
      return got;
    });
    expect(ours).toEqual(theirs);
    expect(ours).toEqual([
      { id: -1, rev: 2 },
      { id: -1, rev: 2 },
    ]);
  });

  it("frees the watchers of closed streams (many streams x many watchers)", async () => {
    const STREAMS = 6;
    const PER_STREAM = 30;
    const [ours, theirs] = await both(async (c, node) => {
      const idle = await waitMetric(node, "etcd_debugging_mvcc_watcher_total", 0);
      const base = await baseRevision(c, "M/");
      const streams: WatchStream[] = [];
      for (let s = 0; s < STREAMS; s++) {
        const w = c.watch();
        for (let j = 0; j < PER_STREAM; j++) {
          if (j % 2 === 0) w.create({ key: `M/k${j % 10}` });
          else w.create({ key: "M/", range_end: prefixEnd("M/") });
        }
        streams.push(w);
      }
      for (const w of streams) await createAll(w, PER_STREAM, base);
      const registered = await metric(node, "etcd_debugging_mvcc_watcher_total");
      for (let k = 0; k < 10; k++) await c.put(`M/k${k}`, String(k));
      // Per stream: 15 prefix watchers see all 10 puts; 15 single-key watchers see their one key.
      const perStream = (PER_STREAM / 2) * 10 + PER_STREAM / 2;
      const counts: number[][] = [];
      for (const w of streams) {
        const got = await collect(w, perStream, base, 100);
        counts.push(Object.keys(got).map((id) => eventCount(got[Number(id)])));
      }
      for (const w of streams.slice(0, STREAMS / 2)) w.close();
      const half = await waitMetric(node, "etcd_debugging_mvcc_watcher_total", (STREAMS / 2) * PER_STREAM);
      for (const w of streams.slice(STREAMS / 2)) w.close();
      const none = await waitMetric(node, "etcd_debugging_mvcc_watcher_total", 0);
      return { idle, registered, counts, half, none };
    });
    expect(ours).toEqual(theirs);
    expect(ours.registered).toBe(STREAMS * PER_STREAM);
    const oneStream = Array.from({ length: PER_STREAM }, (_, j) => (j % 2 === 0 ? 1 : 10));
    expect(ours.counts).toEqual(Array.from({ length: STREAMS }, () => oneStream));
    expect(ours.half).toBe((STREAMS / 2) * PER_STREAM);
    expect(ours.none).toBe(0);
  });
});

describe("watch: history, compaction and fragments (differential)", () => {
  it("cancels a watcher whose start revision was compacted, with compact_revision set", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "C/");
      for (let i = 1; i <= 4; i++) await c.put("C/k", String(i));
      await c.compact(base + 3);
      const w = c.watch();
      const rs: NormalizedResponse[] = [];
      w.create({ key: "C/k", start_revision: base + 1 });
      rs.push(normalize(await w.next(), base), normalize(await w.next(), base));
      // At the compaction revision itself the history is still there; prev_kv needs revision
      // mod-1, which is compacted for the first event.
      w.create({ key: "C/k", start_revision: base + 3, prev_kv: true });
      rs.push(normalize(await w.next(), base), normalize(await w.next(), base));
      // The compacted watcher keeps its ID until the client cancels it.
      w.create({ key: "C/k", watch_id: 7 });
      rs.push(normalize(await w.next(), base));
      w.cancel(0);
      rs.push(normalize(await w.next(), base));
      w.close();
      return rs;
    });
    expect(ours).toEqual(theirs);
    expect(ours).toEqual([
      { id: 0, rev: 4, created: true },
      { id: 0, rev: 0, canceled: true, compact: 3 },
      { id: 1, rev: 4, created: true },
      { id: 1, rev: 4, events: ["PUT C/k=3 c1 m3 v3", "PUT C/k=4 c1 m4 v4 prev(C/k=3 c1 m3 v3)"] },
      { id: 7, rev: 4, created: true },
      { id: 0, rev: 4, canceled: true },
    ]);
  });

  it("etcdctl watch reports a compacted start revision the same way", async () => {
    const [ours, theirs] = await both(async (c, node) => {
      const base = await baseRevision(c, "X/");
      await c.put("X/k", "1");
      await c.put("X/k", "2");
      await c.compact(base + 2);
      return etcdctlWatch(node, ["watch", "X/k", "--rev", String(base + 1)], () => false);
    });
    expect(ours).toEqual(theirs);
    expect(ours.stderr).toContain("watch was canceled (etcdserver: mvcc: required revision has been compacted)");
    expect(ours.code).not.toBe(0);
  });

  it("etcdctl watch prints the same history and live events", async () => {
    const [ours, theirs] = await both(async (c, node) => {
      const base = await baseRevision(c, "E/");
      await c.put("E/a", "1");
      await c.put("E/a", "2");
      await c.deleteRange("E/a");
      const out = etcdctlWatch(node, ["watch", "--prefix", "E/", "--rev", String(base + 1), "--prev-kv"], (stdout) =>
        stdout.includes("live"),
      );
      await sleep(500);
      await c.put("E/b", "live");
      return out;
    });
    expect(ours).toEqual(theirs);
    expect(ours.stdout).toBe(
      [
        "PUT",
        "E/a",
        "1",
        "PUT",
        "E/a",
        "1",
        "E/a",
        "2",
        "DELETE",
        "E/a",
        "2",
        "E/a",
        "",
        "PUT",
        "E/b",
        "live",
        "",
      ].join("\n"),
    );
  });

  it("fragments a catch-up response over the size limit only for watchers that asked", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "G/");
      const value = Buffer.alloc(100 * 1024, "v");
      for (let i = 0; i < 25; i++) await c.put(`G/${String(i).padStart(2, "0")}`, value);
      const w = c.watch();
      w.create({ key: "G/", range_end: prefixEnd("G/"), start_revision: base + 1, fragment: true });
      await w.next();
      const fragmented = (await takeUntilWhole(w)).map((r) => normalize(r, base));
      w.create({ key: "G/", range_end: prefixEnd("G/"), start_revision: base + 1 });
      await w.next();
      const whole = normalize(await w.next(), base);
      // One txn (one revision) whose response is over the limit only with prev_kv: it is split
      // for a watcher that allows fragments, and arrives whole otherwise.
      const live = c.watch();
      await live.watch({ key: "G/", range_end: prefixEnd("G/"), prev_kv: true, fragment: true });
      await live.watch({ key: "G/", range_end: prefixEnd("G/"), prev_kv: true });
      const ops = Array.from({ length: 14 }, (_, i) => ({
        request_put: { key: `G/${String(i).padStart(2, "0")}`, value: Buffer.alloc(100 * 1024, "w") },
      }));
      await c.txn(ops);
      const txnResponses = byWatcher((await live.takeEvents(28)).map((r) => normalize(r, base)));
      w.close();
      live.close();
      return { fragmented, whole, txnResponses };
    });
    const shape = (r: NormalizedResponse): object => ({ ...r, events: r.events?.length });
    expect(ours.fragmented.map(shape)).toEqual(theirs.fragmented.map(shape));
    expect(ours).toEqual(theirs);
    expect(ours.fragmented.map(shape)).toEqual([
      { id: 0, rev: 25, fragment: true, events: 20 },
      { id: 0, rev: 25, events: 5 },
    ]);
    expect(ours.whole.events).toHaveLength(25);
    expect(ours.txnResponses[0]?.map(shape)).toEqual([
      { id: 0, rev: 26, fragment: true, events: 10 },
      { id: 0, rev: 26, events: 4 },
    ]);
    expect(ours.txnResponses[1]?.map(shape)).toEqual([{ id: 1, rev: 26, events: 14 }]);
  });
});

describe("watch: leases and periodic progress (differential)", () => {
  it("shows lease expiry as DELETE events of one ordinary revision", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "L/");
      const lease = await c.leaseGrant(1);
      for (const k of ["c", "a", "b"]) await c.put(`L/${k}`, k, { lease: lease.ID });
      const w = c.watch();
      await w.watch({ key: "L/", range_end: prefixEnd("L/"), prev_kv: true });
      const got = normalize(await w.next(20_000), base);
      const after = await c.range("L/a", "L/d");
      w.close();
      return { got, left: after.kvs.length, rev: num(after.header.revision) - base };
    });
    expect(ours).toEqual(theirs);
    expect(ours).toEqual({
      got: {
        id: 0,
        rev: 4,
        events: [
          "DELETE L/a= c0 m4 v0 prev(L/a=a c2 m2 v1 L)",
          "DELETE L/b= c0 m4 v0 prev(L/b=b c3 m3 v1 L)",
          "DELETE L/c= c0 m4 v0 prev(L/c=c c1 m1 v1 L)",
        ],
      },
      left: 0,
      rev: 4,
    });
  });

  it("sends periodic progress notifications to synced watchers that asked for them", async () => {
    const [ours, theirs] = await both(async (c) => {
      const base = await baseRevision(c, "N/");
      const w = c.watch();
      await w.watch({ key: "N/k", progress_notify: true });
      await w.watch({ key: "N/k" });
      const first = normalize(await w.next(), base);
      const second = normalize(await w.next(), base);
      await c.put("N/k", "1");
      // The next responses are the event for both watchers (in either order), then progress again.
      const events = byWatcher((await w.takeEvents(2)).map((r) => normalize(r, base)));
      const third = normalize(await w.next(), base);
      w.close();
      return { first, second, events, third };
    });
    expect(ours).toEqual(theirs);
    expect(ours).toEqual({
      first: { id: 0, rev: 0 },
      second: { id: 0, rev: 0 },
      events: {
        0: [{ id: 0, rev: 1, events: ["PUT N/k=1 c1 m1 v1"] }],
        1: [{ id: 1, rev: 1, events: ["PUT N/k=1 c1 m1 v1"] }],
      },
      third: { id: 0, rev: 1 },
    });
  });
});

/** Takes responses until one arrives without the fragment flag. */
async function takeUntilWhole(w: WatchStream): Promise<WatchResponse[]> {
  const out: WatchResponse[] = [];
  for (;;) {
    const r = await w.next(20_000);
    out.push(r);
    if (!r.fragment) return out;
  }
}

/** Runs `etcdctl watch ...` until `done(stdout)` or it exits (at most 10 s), then stops it. */
function etcdctlWatch(
  node: RunningNode,
  args: string[],
  done: (stdout: string) => boolean,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(ETCDCTL, ["--endpoints", node.endpoint, "--dial-timeout=3s", ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(stop, 10_000);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (done(stdout)) stop();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: stopped ? null : code, stdout, stderr });
    });
  });
}
