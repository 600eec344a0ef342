/**
 * The peer transport (src/etcd/peer): the message codec, framing, and real TCP transports on
 * 127.0.0.1 exchanging messages and requests, with restarts, refusals, faults and garbage.
 */
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { EtcdConfig } from "../src/etcd/config.js";
import { decodeMessage, encodeMessage, PeerCodecError } from "../src/etcd/peer/codec.js";
import {
  anonymousRequest,
  DISCOVERY_REQUEST_KIND,
  discoverCluster,
  parseClusterInfo,
} from "../src/etcd/peer/discovery.js";
import {
  encodeFrame,
  encodeHello,
  FrameDecoder,
  FrameError,
  FrameType,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "../src/etcd/peer/frame.js";
import { PeerRequestError, PeerTransport } from "../src/etcd/peer/transport.js";
import { hexId } from "../src/etcd/server/ids.js";
import { type Entry, type Message, MessageType, message } from "../src/raft/types.js";
import type { Logger } from "../src/util/logger.js";
import { freePort, sleep } from "./helpers/nodes.js";
import { mulberry32 as prng } from "./helpers/prng.js";

// ---------------------------------------------------------------------------------------------
// helpers

function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const ALL_TYPES = Object.values(MessageType);

function randomMessage(rand: () => number): Message {
  const int = (max: number): number => Math.floor(rand() * max);
  const big = (): bigint => {
    const pick = int(4);
    if (pick === 0) return 0n;
    if (pick === 1) return (1n << 64n) - 1n;
    return (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  };
  const num = (): number => (int(5) === 0 ? Number.MAX_SAFE_INTEGER : int(2 ** 40));
  const entries: Entry[] = [];
  for (let i = int(5); i > 0; i--) {
    entries.push({
      term: num(),
      index: num(),
      type: int(2) === 0 ? "normal" : "confChange",
      data: randomBytes(rand, int(300)),
    });
  }
  const m: Message = {
    type: ALL_TYPES[int(ALL_TYPES.length)] as MessageType,
    from: big(),
    to: big(),
    term: num(),
    logTerm: num(),
    index: num(),
    entries,
    commit: num(),
    reject: int(2) === 0,
    rejectHint: num(),
    context: randomBytes(rand, int(3) === 0 ? int(40) : 0),
  };
  if (int(4) === 0) m.durable = num();
  if (int(4) === 0) m.commitOnly = true;
  if (int(3) === 0) {
    const ids = (): bigint[] => Array.from({ length: int(6) }, big);
    m.snapshot = {
      metadata: { index: num(), term: num(), confState: { voters: ids(), learners: ids() } },
      data: randomBytes(rand, int(2000)),
    };
  }
  return m;
}

/** A message with byte arrays as plain arrays, so equality does not depend on Buffer vs Uint8Array. */
function plain(m: Message): unknown {
  return {
    ...m,
    context: [...m.context],
    entries: m.entries.map((e) => ({ ...e, data: [...e.data] })),
    ...(m.snapshot === undefined ? {} : { snapshot: { ...m.snapshot, data: [...m.snapshot.data] } }),
  };
}

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function captureLogger(lines: LogLine[]): Logger {
  const at =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      lines.push({ level, msg, fields });
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

const CLUSTER = 0xc1c1c1c1n;

interface TNode {
  id: bigint;
  port: number;
  url: string;
  t: PeerTransport;
  received: Message[];
  unreachable: bigint[];
  snapStatus: Array<[bigint, string]>;
  refused: Array<[bigint, string]>;
  requests: Array<[bigint, string]>;
  logs: LogLine[];
}

type RequestHandler = (from: bigint, kind: string, body: Buffer) => Promise<Buffer>;

/** Echoes (reversed), fails on "fail", never answers "hang", answers cluster-info. */
const defaultHandler: RequestHandler = async (_from, kind, body) => {
  if (kind === "echo") return Buffer.from([...body].reverse());
  if (kind === "fail") throw new Error("requested lease not found");
  if (kind === "hang") return new Promise<Buffer>(() => {});
  if (kind === DISCOVERY_REQUEST_KIND) {
    return Buffer.from(
      JSON.stringify({
        clusterId: CLUSTER.toString(),
        members: [{ id: "1", name: "m1", peerUrls: ["http://127.0.0.1:1"], clientUrls: [], isLearner: false }],
      }),
    );
  }
  throw new Error(`unknown peer request "${kind}"`);
};

async function startNode(
  id: bigint,
  opts: {
    port?: number;
    clusterId?: bigint;
    onRequest?: RequestHandler;
    redialMs?: { initial: number; max: number };
  } = {},
): Promise<TNode> {
  const port = opts.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const n: Omit<TNode, "t"> = {
    id,
    port,
    url,
    received: [],
    unreachable: [],
    snapStatus: [],
    refused: [],
    requests: [],
    logs: [],
  };
  const handler = opts.onRequest ?? defaultHandler;
  const t = await PeerTransport.start({
    memberId: id,
    clusterId: opts.clusterId ?? CLUSTER,
    listen: [new URL(url)],
    logger: captureLogger(n.logs),
    onMessage: (m) => n.received.push(m),
    onRequest: (from, kind, body) => {
      n.requests.push([from, kind]);
      return handler(from, kind, body);
    },
    onUnreachable: (peer) => n.unreachable.push(peer),
    onSnapshotStatus: (peer, status) => n.snapStatus.push([peer, status]),
    onRefused: (peer, reason) => n.refused.push([peer, reason]),
    ...(opts.redialMs === undefined ? {} : { redialMs: opts.redialMs }),
  });
  return { ...n, t };
}

function link(...nodes: TNode[]): void {
  for (const a of nodes) for (const b of nodes) if (a !== b) a.t.addPeer(b.id, [b.url]);
}

/** A tagged heartbeat: `term` marks the test, `index` the sequence number. */
function hb(from: TNode, to: TNode, tag: number, seq: number): Message {
  return message({ type: MessageType.MsgHeartbeat, from: from.id, to: to.id, term: tag, index: seq, commit: seq });
}

function tagged(n: TNode, from: TNode, tag: number): number[] {
  return n.received.filter((m) => m.from === from.id && m.term === tag).map((m) => m.index);
}

/** Sends one tagged message every 50 ms until the receiver has it (connections may still be forming). */
async function sendUntilReceived(from: TNode, to: TNode, tag: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (let i = 1; tagged(to, from, tag).length === 0; i++) {
    if (Date.now() > deadline) throw new Error(`${hexId(to.id)} never received tag ${tag} from ${hexId(from.id)}`);
    from.t.send([hb(from, to, tag, i)]);
    await sleep(50);
  }
}

/** Opens a raw TCP connection, writes `data`, and resolves with what came back once the peer closed it. */
/** Closes `down`, then keeps sending it tagged messages (as Raft would) until `from` reports it unreachable. */
async function stopUntilUnreachable(from: TNode, down: TNode, tag: number): Promise<void> {
  await down.t.close();
  for (let i = 0; !from.unreachable.includes(down.id); i++) {
    if (i > 300) throw new Error("no onUnreachable while the peer was down");
    from.t.send([hb(from, down, tag, i)]);
    await sleep(50);
  }
}

function rawExchange(port: number, data: Buffer[], timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("the acceptor did not close the connection"));
    }, timeoutMs);
    s.on("connect", () => {
      for (const d of data) s.write(d);
    });
    s.on("data", (c: Buffer) => got.push(c));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// codec

describe("message codec", () => {
  test("round-trips every field", () => {
    const m: Message = {
      type: MessageType.MsgSnap,
      from: 0x8e9e05c52164694dn,
      to: (1n << 64n) - 1n,
      term: 7,
      logTerm: 6,
      index: Number.MAX_SAFE_INTEGER,
      commit: 12345678901,
      reject: true,
      rejectHint: 99,
      context: new TextEncoder().encode("CampaignTransfer"),
      entries: [
        { term: 5, index: 10, type: "normal", data: new Uint8Array([1, 2, 3]) },
        { term: 6, index: 11, type: "confChange", data: new TextEncoder().encode("addNode:42") },
        { term: 6, index: 12, type: "normal", data: new Uint8Array(0) },
      ],
      snapshot: {
        metadata: { index: 100, term: 9, confState: { voters: [1n, 2n, 0xffffffffffffffffn], learners: [4n] } },
        data: new Uint8Array([9, 8, 7]),
      },
    };
    const decoded = decodeMessage(encodeMessage(m));
    expect(plain(decoded)).toEqual(plain(m));
    expect(decoded.snapshot?.metadata.confState.voters).toEqual([1n, 2n, 0xffffffffffffffffn]);
    const noSnap = message({ type: MessageType.MsgHeartbeat, from: 1n, to: 2n, term: 3, commit: 4 });
    const d2 = decodeMessage(encodeMessage(noSnap));
    expect(plain(d2)).toEqual(plain(noSnap));
    expect("snapshot" in d2).toBe(false);
  });

  test("round-trips random messages of every type", () => {
    const rand = prng(20240601);
    for (let i = 0; i < 500; i++) {
      const m = randomMessage(rand);
      expect(plain(decodeMessage(encodeMessage(m))), `case ${i}`).toEqual(plain(m));
    }
    expect(new Set(Array.from({ length: 200 }, () => randomMessage(rand).type)).size).toBe(ALL_TYPES.length);
  });

  test("the encoding is a copy: mutating the message afterwards does not change it", () => {
    const data = new Uint8Array([1, 2, 3]);
    const m = message({
      type: MessageType.MsgApp,
      from: 1n,
      to: 2n,
      entries: [{ term: 1, index: 1, type: "normal", data }],
    });
    const enc = encodeMessage(m);
    data[0] = 42;
    m.term = 9;
    const d = decodeMessage(enc);
    expect([...(d.entries[0]?.data ?? [])]).toEqual([1, 2, 3]);
    expect(d.term).toBe(0);
  });

  test("a commit-only notice is version 2; every other message stays version 1, as older builds wrote it", () => {
    const notice = message({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 3, index: 9, logTerm: 3, commit: 9 });
    const unflagged = encodeMessage(notice);
    expect(unflagged[0]).toBe(1);
    expect(decodeMessage(unflagged).commitOnly).toBeUndefined();
    const flagged = encodeMessage({ ...notice, commitOnly: true });
    expect(flagged[0]).toBe(2);
    // The same bytes otherwise, but for the version and the flag.
    expect(flagged.subarray(1, 50)).toEqual(unflagged.subarray(1, 50));
    expect(flagged[50]).toBe(2);
    expect(flagged.subarray(51)).toEqual(unflagged.subarray(51));
    expect(plain(decodeMessage(flagged))).toEqual(plain({ ...notice, commitOnly: true }));
  });

  test("a message with the leader's durable index is version 3: a u64 after rejectHint, the rest as before", () => {
    const notice = message({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 3, index: 9, logTerm: 3, commit: 8 });
    const plainNotice = encodeMessage({ ...notice, commitOnly: true });
    const withDurable = encodeMessage({ ...notice, commitOnly: true, durable: 9 });
    expect(withDurable[0]).toBe(3);
    expect(withDurable.length).toBe(plainNotice.length + 8);
    const afterHint = 1 + 1 + 48 + 1 + 8;
    expect(withDurable.subarray(1, afterHint)).toEqual(plainNotice.subarray(1, afterHint));
    expect(withDurable.readBigUInt64LE(afterHint)).toBe(9n);
    expect(withDurable.subarray(afterHint + 8)).toEqual(plainNotice.subarray(afterHint));
    expect(plain(decodeMessage(withDurable))).toEqual(plain({ ...notice, commitOnly: true, durable: 9 }));
    // A durable index of 0 is still a durable index (the field is present, not defaulted).
    expect(decodeMessage(encodeMessage({ ...notice, durable: 0 })).durable).toBe(0);
    // Without the field, version 3's layout reads as short.
    const cut = Buffer.from(withDurable.subarray(0, withDurable.length - 8));
    expect(() => decodeMessage(cut)).toThrow(PeerCodecError);
  });

  test("every truncation, trailing bytes, bad flags and versions throw a PeerCodecError", () => {
    const rand = prng(7);
    for (let i = 0; i < 20; i++) {
      const enc = encodeMessage(randomMessage(rand));
      for (let n = 0; n < enc.length; n += Math.max(1, Math.floor(enc.length / 97))) {
        expect(() => decodeMessage(enc.subarray(0, n)), `truncated to ${n}`).toThrow(PeerCodecError);
      }
      expect(() => decodeMessage(Buffer.concat([enc, Buffer.from([0])]))).toThrow(/unexpected bytes after/);
    }
    const base = encodeMessage(message({ type: MessageType.MsgApp, from: 1n, to: 2n }));
    const v4 = Buffer.from(base);
    v4[0] = 4;
    expect(() => decodeMessage(v4)).toThrow(/unsupported message encoding version 4/);
    const badType = Buffer.from(base);
    badType[1] = 200;
    expect(() => decodeMessage(badType)).toThrow(/unknown message type code 200/);
    // Version 1's flags byte is reject (0|1); version 2 adds commitOnly (2) and nothing else.
    const badReject = Buffer.from(base);
    badReject[1 + 1 + 48] = 2;
    expect(() => decodeMessage(badReject)).toThrow(/flags are 2/);
    const badFlags = Buffer.from(base);
    badFlags[0] = 2;
    badFlags[1 + 1 + 48] = 4;
    expect(() => decodeMessage(badFlags)).toThrow(/flags are 4/);
    const hugeTerm = Buffer.from(base);
    hugeTerm.writeBigUInt64LE(1n << 60n, 2 + 16);
    expect(() => decodeMessage(hugeTerm)).toThrow(/term .* above 2\^53-1/);
    // An entry count of 4 billion in a tiny message must fail before allocating anything.
    const hugeCount = Buffer.from(base);
    hugeCount.writeUInt32LE(0xffffffff, base.length - 5);
    expect(() => decodeMessage(hugeCount)).toThrow(/entry count 4294967295 does not fit/);
  });

  test("random garbage never throws anything but a PeerCodecError", () => {
    const rand = prng(99);
    for (let i = 0; i < 2000; i++) {
      const g = randomBytes(rand, Math.floor(rand() * 200));
      if (i % 2 === 0 && g.length > 0) g[0] = 1; // get past the version byte half of the time
      try {
        decodeMessage(g);
      } catch (err) {
        expect(err, `case ${i}`).toBeInstanceOf(PeerCodecError);
      }
    }
  });

  test("encoding rejects malformed messages with a clear error", () => {
    const ok = message({ type: MessageType.MsgApp, from: 1n, to: 2n });
    expect(() => encodeMessage({ ...ok, term: -1 })).toThrow(/term is -1/);
    expect(() => encodeMessage({ ...ok, index: 1.5 })).toThrow(/index is 1.5/);
    expect(() => encodeMessage({ ...ok, to: 1n << 64n })).toThrow(/to is 18446744073709551616/);
    expect(() => encodeMessage({ ...ok, type: "MsgBogus" as MessageType })).toThrow(/unknown message type MsgBogus/);
    expect(() =>
      encodeMessage({ ...ok, entries: [{ term: 1, index: 1, type: "weird" as "normal", data: new Uint8Array() }] }),
    ).toThrow(PeerCodecError);
  });
});

describe("framing", () => {
  test("frames survive any chunking, including empty payloads", () => {
    const rand = prng(3);
    const payloads = Array.from({ length: 50 }, (_, i) =>
      Buffer.from(randomBytes(rand, i % 7 === 0 ? 0 : Math.floor(rand() * 5000))),
    );
    const stream = Buffer.concat(payloads.map((p, i) => encodeFrame((i % 6) + 1, p)));
    for (let round = 0; round < 20; round++) {
      const d = new FrameDecoder(MAX_FRAME_BYTES);
      const got: Buffer[] = [];
      for (let off = 0; off < stream.length; ) {
        const n = 1 + Math.floor(rand() * (round < 10 ? 20 : 20_000));
        for (const f of d.push(stream.subarray(off, off + n))) got.push(Buffer.from(f.payload));
        off += n;
      }
      expect(got.length).toBe(payloads.length);
      expect(got.findIndex((g, i) => !g.equals(payloads[i] as Buffer))).toBe(-1);
      expect(d.idle).toBe(true);
    }
  });

  test("a bad checksum or an oversized frame is a FrameError", () => {
    const f = encodeFrame(FrameType.Message, Buffer.from("hello"));
    const bad = Buffer.from(f);
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
    expect(() => new FrameDecoder(1024).push(bad)).toThrow(/checksum mismatch/);
    const big = Buffer.alloc(9);
    big.writeUInt32LE(2000, 0);
    expect(() => new FrameDecoder(1024).push(big)).toThrow(FrameError);
    expect(() => new FrameDecoder(1024).push(big)).toThrow(/exceeds the limit of 1024/);
  });
});

// ---------------------------------------------------------------------------------------------
// transport

describe("peer transport on 127.0.0.1", () => {
  let a: TNode;
  let b: TNode;
  let c: TNode;
  const extra: TNode[] = [];

  beforeAll(async () => {
    a = await startNode(1n);
    b = await startNode(2n);
    c = await startNode(3n);
    link(a, b, c);
    await sendUntilReceived(a, b, 1);
    await sendUntilReceived(a, c, 1);
    await sendUntilReceived(b, a, 1);
    await sendUntilReceived(b, c, 1);
    await sendUntilReceived(c, a, 1);
    await sendUntilReceived(c, b, 1);
  });

  afterAll(async () => {
    for (const n of [a, b, c, ...extra]) await n?.t.close();
  });

  async function extraNode(id: bigint, opts: Parameters<typeof startNode>[1] = {}): Promise<TNode> {
    const n = await startNode(id, opts);
    extra.push(n);
    return n;
  }

  test("three members exchange messages, in order per peer", async () => {
    const TAG = 10;
    for (let i = 1; i <= 600; i += 10) {
      const batch: Message[] = [];
      for (let k = i; k < i + 10; k++)
        batch.push(hb(a, b, TAG, k), hb(a, c, TAG, k), hb(b, a, TAG, k), hb(c, b, TAG, k));
      a.t.send(batch.filter((m) => m.from === a.id));
      b.t.send(batch.filter((m) => m.from === b.id));
      c.t.send(batch.filter((m) => m.from === c.id));
    }
    const expected = Array.from({ length: 600 }, (_, i) => i + 1);
    await waitFor("all 600 messages on every link", () =>
      [tagged(b, a, TAG), tagged(c, a, TAG), tagged(a, b, TAG), tagged(b, c, TAG)].every((l) => l.length >= 600),
    );
    expect(tagged(b, a, TAG)).toEqual(expected);
    expect(tagged(c, a, TAG)).toEqual(expected);
    expect(tagged(a, b, TAG)).toEqual(expected);
    expect(tagged(b, c, TAG)).toEqual(expected);
    for (const m of b.received) expect(m.to).toBe(b.id);
    const sa = a.t.stats()[hexId(b.id)];
    expect(sa?.connected).toBe(true);
    expect(sa?.sentMessages).toBeGreaterThanOrEqual(600);
    expect(b.t.stats()[hexId(a.id)]?.receivedMessages).toBeGreaterThanOrEqual(600);
    expect(a.unreachable).toEqual([]);
  });

  test("large entries and a snapshot of several MiB arrive intact", async () => {
    const rand = prng(11);
    const big = (n: number): Uint8Array => {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) out.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
      return out;
    };
    const entries: Entry[] = [1, 2, 3].map((i) => ({ term: 20, index: i, type: "normal", data: big(3 * 1024 * 1024) }));
    const snapData = big(12 * 1024 * 1024);
    a.t.send([
      message({ type: MessageType.MsgApp, from: a.id, to: b.id, term: 20, index: 1, entries }),
      message({
        type: MessageType.MsgSnap,
        from: a.id,
        to: b.id,
        term: 20,
        index: 2,
        snapshot: {
          metadata: { index: 500, term: 19, confState: { voters: [1n, 2n, 3n], learners: [] } },
          data: snapData,
        },
      }),
      hb(a, b, 20, 3),
    ]);
    await waitFor("the big messages", () => tagged(b, a, 20).length >= 3);
    expect(tagged(b, a, 20)).toEqual([1, 2, 3]);
    const app = b.received.find((m) => m.term === 20 && m.type === MessageType.MsgApp);
    expect(app?.entries.map((e) => Buffer.from(e.data).equals(Buffer.from(entries[e.index - 1]?.data ?? [])))).toEqual([
      true,
      true,
      true,
    ]);
    const snap = b.received.find((m) => m.term === 20 && m.type === MessageType.MsgSnap);
    expect(snap?.snapshot?.metadata).toEqual({
      index: 500,
      term: 19,
      confState: { voters: [1n, 2n, 3n], learners: [] },
    });
    expect(Buffer.from(snap?.snapshot?.data ?? []).equals(Buffer.from(snapData))).toBe(true);
    await waitFor("the snapshot status", () => a.snapStatus.length > 0);
    expect(a.snapStatus).toEqual([[b.id, "finish"]]);
  });

  test("requests: answers, remote errors, timeouts, unknown peers, many at once", async () => {
    expect((await a.t.request(b.id, "echo", Buffer.from("abc"), 10_000)).toString()).toBe("cba");
    expect(b.requests).toContainEqual([a.id, "echo"]);

    const remote = await a.t.request(b.id, "fail", Buffer.alloc(0), 10_000).catch((e: unknown) => e);
    expect(remote).toBeInstanceOf(PeerRequestError);
    expect((remote as PeerRequestError).code).toBe("remote");
    expect((remote as PeerRequestError).message).toBe("requested lease not found");

    const timeout = await a.t.request(b.id, "hang", Buffer.alloc(0), 300).catch((e: unknown) => e);
    expect((timeout as PeerRequestError).code).toBe("timeout");
    expect((timeout as PeerRequestError).message).toMatch(/timed out after 300 ms/);

    const unknown = await a.t.request(77n, "echo", Buffer.alloc(0), 1000).catch((e: unknown) => e);
    expect((unknown as PeerRequestError).code).toBe("unknown-peer");

    const bodies = Array.from({ length: 100 }, (_, i) => Buffer.from(`request-${i}`));
    const answers = await Promise.all(bodies.map((body, i) => (i % 2 ? c : a).t.request(b.id, "echo", body, 10_000)));
    expect(answers.map((x) => x.toString())).toEqual(bodies.map((x) => [...x.toString()].reverse().join("")));
  });

  test("messages and snapshots to unknown peers are dropped; a MsgSnap reports failure", async () => {
    a.t.send([
      message({ type: MessageType.MsgHeartbeat, from: a.id, to: 77n }),
      message({
        type: MessageType.MsgSnap,
        from: a.id,
        to: 77n,
        snapshot: { metadata: { index: 1, term: 1, confState: { voters: [], learners: [] } }, data: new Uint8Array(1) },
      }),
    ]);
    await waitFor("a failure status", () => a.snapStatus.some(([p]) => p === 77n));
    expect(a.snapStatus.filter(([p]) => p === 77n)).toEqual([[77n, "failure"]]);
  });

  test("reconnects after a peer restarts; messages while it is down report unreachable", async () => {
    const d = await extraNode(4n);
    let e = await extraNode(5n);
    link(d, e);
    await sendUntilReceived(d, e, 30);
    await sendUntilReceived(e, d, 30);

    await stopUntilUnreachable(d, e, 31);
    expect(d.t.stats()[hexId(e.id)]?.connected).toBe(false);
    expect(d.t.stats()[hexId(e.id)]?.dropped).toBeGreaterThan(0);
    d.t.send([
      message({
        type: MessageType.MsgSnap,
        from: d.id,
        to: e.id,
        snapshot: {
          metadata: { index: 1, term: 1, confState: { voters: [], learners: [] } },
          data: new Uint8Array(10),
        },
      }),
    ]);
    await waitFor("snapshot failure while down", () => d.snapStatus.some(([p, s]) => p === e.id && s === "failure"));
    const pendingWhileDown = await d.t.request(e.id, "echo", Buffer.from("x"), 5000).catch((err: unknown) => err);
    expect((pendingWhileDown as PeerRequestError).code).toBe("unreachable");

    e = await extraNode(5n, { port: e.port });
    e.t.addPeer(d.id, [d.url]);
    await sendUntilReceived(d, e, 32);
    await sendUntilReceived(e, d, 32);
    expect(tagged(e, d, 31)).toEqual([]); // nothing sent while it was down is replayed to the new process
    expect(d.t.stats()[hexId(e.id)]?.connected).toBe(true);
    expect((await d.t.request(e.id, "echo", Buffer.from("xy"), 10_000)).toString()).toBe("yx");
  });

  test("a peer that comes back and dials us is redialed at once, not when our backoff runs out", async () => {
    // d waits a minute between dials, so only the immediate redial can reconnect it within the test.
    const d = await extraNode(6n, { redialMs: { initial: 60_000, max: 60_000 } });
    let e = await extraNode(7n);
    link(d, e);
    await sendUntilReceived(d, e, 40);
    await sendUntilReceived(e, d, 40);

    await stopUntilUnreachable(d, e, 41);
    expect(d.t.stats()[hexId(e.id)]?.connected).toBe(false);

    e = await extraNode(7n, { port: e.port });
    e.t.addPeer(d.id, [d.url]);
    await sendUntilReceived(e, d, 42);
    await sendUntilReceived(d, e, 42);
    expect(d.t.stats()[hexId(e.id)]?.connected).toBe(true);
  });

  test("a cluster ID mismatch is refused, with the clear error on both sides", async () => {
    const x = await extraNode(6n, { clusterId: 0xbadn });
    x.t.addPeer(a.id, [a.url]);
    x.t.send([hb(x, a, 40, 1)]);
    await waitFor("onRefused at the dialer", () => x.refused.length > 0);
    const [peer, reason] = x.refused[0] as [bigint, string];
    expect(peer).toBe(a.id);
    expect(reason).toBe(
      `cluster ID mismatch: local ${hexId(0xbadn)}, remote ${hexId(CLUSTER)} (check --initial-cluster-token and --initial-cluster)`,
    );
    await waitFor("the acceptor's warning", () => a.logs.some((l) => l.msg === "refused peer connection"));
    const warn = a.logs.find((l) => l.msg === "refused peer connection" && l.fields["remote-peer-id"] === hexId(x.id));
    expect(warn?.level).toBe("warn");
    expect(warn?.fields.reason).toBe(
      `cluster ID mismatch: local ${hexId(CLUSTER)}, remote ${hexId(0xbadn)} (check --initial-cluster-token and --initial-cluster)`,
    );
    expect(x.logs.some((l) => l.level === "warn" && l.msg === "peer refused the connection")).toBe(true);
    expect(a.received.filter((m) => m.from === x.id)).toEqual([]);
    expect(x.t.stats()[hexId(a.id)]?.connected).toBe(false);
  });

  test("a hello meant for another member is refused", async () => {
    const y = await extraNode(7n);
    y.t.addPeer(99n, [a.url]); // a's URL, but y believes member 99 lives there
    await waitFor("onRefused", () => y.refused.length > 0);
    expect(y.refused[0]).toEqual([99n, `this member is ${hexId(a.id)}, not ${hexId(99n)}`]);
  });

  test("a removed member's connections close and its later hellos are refused", async () => {
    const p = await extraNode(10n);
    const q = await extraNode(11n);
    link(p, q);
    await sendUntilReceived(p, q, 50);
    await sendUntilReceived(q, p, 50);

    p.t.removePeer(q.id);
    await waitFor("q refused as removed", () => q.refused.length > 0);
    expect(q.refused[0]).toEqual([p.id, "the member has been removed from the cluster"]);
    // q keeps trying (Raft would); nothing reaches p, and p's messages to q are dropped silently.
    const before = p.received.filter((m) => m.from === q.id).length;
    for (let i = 0; i < 10; i++) {
      q.t.send([hb(q, p, 51, i)]);
      p.t.send([hb(p, q, 51, i)]);
      await sleep(20);
    }
    await sleep(200);
    expect(p.received.filter((m) => m.from === q.id).length).toBe(before);
    expect(tagged(q, p, 51)).toEqual([]);
    expect(p.unreachable).toEqual([]);
    expect(
      p.logs.some(
        (l) =>
          l.msg === "refused peer connection" && l.fields.reason === "the member has been removed from the cluster",
      ),
    ).toBe(true);
  });

  test("fault drop=1 drops every message and request to that peer", async () => {
    a.t.setFaults(b.id, { drop: 1 });
    a.t.send(Array.from({ length: 50 }, (_, i) => hb(a, b, 60, i + 1)));
    const r = await a.t.request(b.id, "echo", Buffer.from("x"), 300).catch((e: unknown) => e);
    expect((r as PeerRequestError).code).toBe("timeout");
    // c is unaffected.
    await sendUntilReceived(a, c, 61);
    a.t.clearFaults();
    a.t.send([hb(a, b, 60, 1000)]);
    // Per-peer order: the marker arriving means anything sent before it would have arrived first.
    await waitFor("the marker", () => tagged(b, a, 60).includes(1000));
    expect(tagged(b, a, 60)).toEqual([1000]);
    expect(a.t.stats()[hexId(b.id)]?.faultDropped).toBeGreaterThanOrEqual(51);
    expect(a.unreachable).toEqual([]);
  });

  test("blockOutbound blocks only this → peer", async () => {
    const unreachableBefore = a.unreachable.length;
    a.t.setFaults(b.id, { blockOutbound: true });
    a.t.send(Array.from({ length: 20 }, (_, i) => hb(a, b, 70, i + 1)));
    b.t.send(Array.from({ length: 20 }, (_, i) => hb(b, a, 70, i + 1)));
    await waitFor("b → a still flows", () => tagged(a, b, 70).length === 20);
    a.t.setFaults(b.id, {});
    a.t.send([hb(a, b, 70, 1000)]);
    await waitFor("the marker", () => tagged(b, a, 70).includes(1000));
    expect(tagged(b, a, 70)).toEqual([1000]);
    expect(a.unreachable.length).toBe(unreachableBefore);
  });

  test("blockInbound blocks only peer → this, and the sender is not told", async () => {
    b.t.setFaults(a.id, { blockInbound: true });
    a.t.send(Array.from({ length: 20 }, (_, i) => hb(a, b, 80, i + 1)));
    b.t.send(Array.from({ length: 20 }, (_, i) => hb(b, a, 80, i + 1)));
    await waitFor("b → a still flows", () => tagged(a, b, 80).length === 20);
    // a → b carries a's requests and a's answers to b's requests: both vanish, both sides time out.
    const r = await a.t.request(b.id, "echo", Buffer.from("x"), 300).catch((e: unknown) => e);
    expect((r as PeerRequestError).code).toBe("timeout");
    const r2 = await b.t.request(a.id, "echo", Buffer.from("ab"), 300).catch((e: unknown) => e);
    expect((r2 as PeerRequestError).code).toBe("timeout");
    expect(a.requests.filter(([from, k]) => from === b.id && k === "echo").length).toBeGreaterThan(0);
    b.t.clearFaults();
    expect((await b.t.request(a.id, "echo", Buffer.from("ab"), 10_000)).toString()).toBe("ba");
    a.t.send([hb(a, b, 80, 1000)]);
    await waitFor("the marker", () => tagged(b, a, 80).includes(1000));
    expect(tagged(b, a, 80)).toEqual([1000]);
    expect(a.unreachable).toEqual([]);
    expect(b.t.stats()[hexId(a.id)]?.faultDropped).toBeGreaterThanOrEqual(20);
  });

  test("delay delays, and keeps per-peer order when it is lifted", async () => {
    a.t.setFaults(b.id, { delayMs: 400 });
    const t0 = Date.now();
    a.t.send(Array.from({ length: 5 }, (_, i) => hb(a, b, 90, i + 1)));
    a.t.setFaults(b.id, {});
    a.t.send(Array.from({ length: 5 }, (_, i) => hb(a, b, 90, i + 6)));
    await waitFor("the first delayed message", () => tagged(b, a, 90).length > 0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    await waitFor("all ten", () => tagged(b, a, 90).length === 10);
    expect(tagged(b, a, 90)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("faults() reports the settings JSON-friendly; bad settings throw", () => {
    a.t.setFaults("all", { drop: 0.25 });
    a.t.setFaults(b.id, { blockInbound: true, delayMs: 5 });
    const f = a.t.faults();
    expect(JSON.parse(JSON.stringify(f))).toEqual({
      all: { drop: 0.25 },
      peers: { [hexId(b.id)]: { blockInbound: true, delayMs: 5 } },
    });
    a.t.clearFaults();
    expect(a.t.faults()).toEqual({ all: null, peers: {} });
    expect(() => a.t.setFaults(b.id, { drop: 1.5 })).toThrow(RangeError);
    expect(() => a.t.setFaults(b.id, { delayMs: -1 })).toThrow(RangeError);
    expect(a.t.faults()).toEqual({ all: null, peers: {} });
  });

  test("garbage on the peer port closes that connection only", async () => {
    const rand = prng(5);
    // Random bytes, a 1 GiB length, a bad checksum, HTTP, a frame before the hello.
    const huge = Buffer.alloc(9);
    huge.writeUInt32LE(1024 * 1024 * 1024, 0);
    const badCrc = encodeFrame(FrameType.Hello, Buffer.alloc(29));
    badCrc[4] = (badCrc[4] as number) ^ 0xff;
    for (const data of [
      [Buffer.from(randomBytes(rand, 70_000))],
      [huge],
      [badCrc],
      [encodeFrame(FrameType.Message, Buffer.from("not a hello"))],
      [encodeFrame(FrameType.Hello, Buffer.from("short"))],
    ]) {
      await rawExchange(a.port, data);
    }
    const http = await rawExchange(a.port, [Buffer.from("GET /members HTTP/1.1\r\nHost: x\r\n\r\n")]);
    expect(http.toString()).toMatch(/^HTTP\/1.1 400 Bad Request/);

    // A proper hello, then a message frame whose payload is not a message.
    const hello = encodeHello({ version: PROTOCOL_VERSION, clusterId: CLUSTER, from: 12n, to: a.id });
    const answer = await rawExchange(a.port, [
      encodeFrame(FrameType.Hello, hello),
      encodeFrame(FrameType.Message, Buffer.from([1, 2, 3])),
    ]);
    expect(answer[8]).toBe(FrameType.HelloOk);
    // A hello from the wrong protocol version is refused with a readable reason.
    const v9 = encodeHello({ version: 9, clusterId: CLUSTER, from: 12n, to: a.id });
    const refusal = await rawExchange(a.port, [encodeFrame(FrameType.Hello, v9)]);
    expect(refusal.toString("latin1")).toContain("unsupported peer protocol version 9");
    expect(refusal.toString("latin1")).toContain("must run the same lab build");

    const warnings = a.logs.filter((l) => l.level === "warn" && l.msg.startsWith("closing peer connection"));
    expect(warnings.length).toBeGreaterThanOrEqual(6);
    expect(warnings.some((l) => String(l.fields.error).includes("checksum mismatch"))).toBe(true);
    expect(warnings.some((l) => String(l.fields.error).includes("exceeds the limit"))).toBe(true);
    expect(warnings.some((l) => String(l.fields.error).includes("peer codec"))).toBe(true);

    // Everything else still works.
    await sendUntilReceived(b, a, 100);
    await sendUntilReceived(a, b, 100);
  });

  test("cluster discovery: an anonymous connection may ask cluster-info and nothing else", async () => {
    const answer = await anonymousRequest(new URL(a.url), DISCOVERY_REQUEST_KIND, Buffer.alloc(0), 10_000);
    expect(parseClusterInfo(answer)).toEqual({
      clusterId: CLUSTER,
      members: [{ id: 1n, name: "m1", peerUrls: ["http://127.0.0.1:1"], clientUrls: [], isLearner: false }],
    });
    expect(a.requests).toContainEqual([0n, DISCOVERY_REQUEST_KIND]);
    await expect(anonymousRequest(new URL(a.url), "echo", Buffer.from("x"), 10_000)).rejects.toThrow(
      /connection closed before an answer/,
    );
    const config = {
      name: "m9",
      initialAdvertisePeerUrls: [new URL("http://127.0.0.1:1")],
      initialCluster: new Map([
        ["m9", [new URL("http://127.0.0.1:1")]],
        ["m1", [new URL(a.url)]],
      ]),
    } as unknown as EtcdConfig;
    const logs: LogLine[] = [];
    const found = await discoverCluster(config, captureLogger(logs));
    expect(found.clusterId).toBe(CLUSTER);
    expect(found.members.map((m) => m.id)).toEqual([1n]);
  });

  test("a port in use is a clear error naming the URL", async () => {
    const err = await startNode(20n, { port: a.port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(
      `cannot listen for peers on http://127.0.0.1:${a.port}: address 127.0.0.1:${a.port} is already in use`,
    );
  });

  test("close() rejects pending requests and later calls", async () => {
    const r = await extraNode(13n);
    const s = await extraNode(14n);
    link(r, s);
    await sendUntilReceived(r, s, 110);
    const pending = r.t.request(s.id, "hang", Buffer.alloc(0), 60_000).catch((e: unknown) => e);
    await waitFor("the request to arrive", () => s.requests.some(([, k]) => k === "hang"));
    await r.t.close();
    const err = await pending;
    expect(err).toBeInstanceOf(PeerRequestError);
    expect((err as PeerRequestError).code).toBe("closed");
    expect(() => r.t.send([hb(r, s, 111, 1)])).not.toThrow();
    const after = await r.t.request(s.id, "echo", Buffer.alloc(0), 1000).catch((e: unknown) => e);
    expect((after as PeerRequestError).code).toBe("closed");
    // s notices and reports r unreachable once Raft tries to talk to it.
    for (let i = 0; !s.unreachable.includes(r.id); i++) {
      if (i > 300) throw new Error("s never reported r unreachable");
      s.t.send([hb(s, r, 112, i)]);
      await sleep(50);
    }
  });
});
