import * as net from "node:net";
import { LOCAL_MESSAGE_TYPES, type Message, MessageType, NONE } from "../../raft/types.js";
import type { Logger } from "../../util/logger.js";
import { hexId } from "../server/ids.js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { DISCOVERY_REQUEST_KIND } from "./discovery.js";
import {
  decodeHello,
  decodeHelloOk,
  decodeRefuse,
  decodeRequest,
  decodeResponse,
  encodeHello,
  encodeHelloOk,
  encodeRefuse,
  encodeRequest,
  encodeResponse,
  FRAME_HEADER_BYTES,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  frameHeader,
  MAX_FRAME_BYTES,
  MAX_HANDSHAKE_FRAME_BYTES,
  PROTOCOL_VERSION,
  RefuseCode,
} from "./frame.js";
import { peerLookup } from "./lookup.js";

/**
 * The peer transport: Raft messages and peer RPCs between members, over plain TCP on the peer
 * URLs (http://host:port, as given to --listen-peer-urls and --initial-advertise-peer-urls; the
 * scheme names the port, we do not speak HTTP on it).
 *
 * Connections. Each member keeps one outbound connection to every peer it knows (dialed when the
 * peer is added, redialed with backoff 50 ms → 500 ms when it fails, trying the peer's URLs in
 * turn, and at once when the peer itself connects to us) and accepts one inbound connection from
 * every peer. A connection carries traffic in one direction: the dialer sends Raft messages and
 * requests on it, the acceptor sends only the answers to those requests back. So A→B messages
 * always travel on A's connection to B and B→A messages on B's connection to A; each is a single
 * ordered TCP stream.
 *
 * Handshake. The dialer sends Hello (magic, protocol version, cluster ID, its member ID, the
 * member ID it means to reach). The acceptor answers HelloOk, or Refuse and closes when the
 * version differs, the cluster ID differs, it is not the intended member, or the sender was
 * removed. A newer accepted connection from a peer replaces an older one. The acceptor accepts
 * senders it has not been told about (a member being added may talk before addPeer() ran here).
 * A hello with cluster ID, sender and receiver all 0 opens an anonymous discovery connection that
 * may carry only DISCOVERY_REQUEST_KIND requests (see discovery.ts).
 *
 * Frames: u32 length, u32 CRC-32C, u8 type, payload (see frame.ts). A bad checksum, an oversized
 * frame, an unexpected frame type or an undecodable payload closes that connection with a logged
 * warning; nothing else is affected.
 */

export { anonymousRequest, DISCOVERY_REQUEST_KIND, type DiscoveredCluster, discoverCluster } from "./discovery.js";

/** Injected network faults for tests and chaos runs. See PeerTransport.setFaults. */
export interface PeerFaults {
  /** Probability (0..1) that each outgoing message, request or response to the peer is discarded. */
  drop?: number;
  /** Delay added before each outgoing message or request to the peer is written; order is kept. */
  delayMs?: number;
  /** Discard everything this member sends to the peer (one-way partition, this → peer). */
  blockOutbound?: boolean;
  /** Discard everything this member receives from the peer (one-way partition, peer → this). */
  blockInbound?: boolean;
}

/** faults(): JSON-friendly, member IDs as hex strings. */
export interface PeerFaultsReport {
  /** Settings for every peer (from setFaults("all", ...)), or null. */
  all: PeerFaults | null;
  /** Per-peer settings; a per-peer field overrides the same field of `all`. */
  peers: Record<string, PeerFaults>;
}

export interface PeerStats {
  /** The outbound connection's handshake completed and it has not failed since. */
  connected: boolean;
  /** Raft messages written to the outbound connection, and all bytes written to this peer (frames incl. headers). */
  sentMessages: number;
  sentBytes: number;
  /** Raft messages delivered to onMessage from this peer, and all bytes received from it. */
  receivedMessages: number;
  receivedBytes: number;
  /** Messages not delivered because the peer was unreachable or its queue was full (each reported via onUnreachable). */
  dropped: number;
  /** Messages, requests and responses discarded by injected faults, either direction. */
  faultDropped: number;
  /** Messages and requests waiting in the outbound queue. */
  queued: number;
}

export type PeerRequestErrorCode = "unknown-peer" | "unreachable" | "timeout" | "remote" | "closed";

/** How request() fails. `remote`: the peer's onRequest rejected; the message is its error message. */
export class PeerRequestError extends Error {
  override name = "PeerRequestError";
  constructor(
    message: string,
    readonly code: PeerRequestErrorCode,
  ) {
    super(message);
  }
}

/**
 * Callbacks are never called synchronously from inside a PeerTransport method: they come from
 * socket events, timers or a microtask queued by the method, so they may arrive between any two
 * awaits of the caller. A caller holding a Raft Ready should queue them for its Raft loop rather
 * than stepping Raft in the middle of handling that Ready. An exception thrown by a callback is
 * logged and otherwise ignored. No callback is called after close() started.
 */
export interface PeerTransportOptions {
  memberId: bigint;
  clusterId: bigint;
  /** Where to accept peers: host:port of each --listen-peer-urls URL (scheme http). */
  listen: URL[];
  logger: Logger;
  /**
   * A Raft message from a peer, in the order the peer sent it. Already checked: it came over a
   * connection whose hello carried our cluster ID and our member ID, `to` is this member, `from`
   * is the connection's sender, and it is not a local-only type (MsgHup, MsgBeat, ...). The
   * message and its byte arrays are freshly allocated and now belong to the callee.
   */
  onMessage(m: Message): void;
  /**
   * A peer RPC (e.g. a lease keep-alive forwarded to the leader). The resolved buffer travels back
   * to the requester; a rejection travels back as an Error carrying the rejection's message.
   * Requests from one peer may be in progress concurrently. `from` is 0n (NONE) for the one
   * anonymous request, DISCOVERY_REQUEST_KIND ("cluster-info"), that discoverCluster() sends
   * before the asker knows the cluster ID; answer it with the cluster ID and members.
   */
  onRequest(from: bigint, kind: string, body: Buffer): Promise<Buffer>;
  /**
   * Messages to this peer could not be delivered (the connection failed or is down, or its queue
   * overflowed); like etcd's ReportUnreachable. At most once per send() call per peer, and once
   * per connection failure that lost queued messages. Never for injected faults.
   */
  onUnreachable(peer: bigint): void;
  /**
   * For every MsgSnap handed to send(): "finish" once it was written to the socket (flushed to the
   * kernel), "failure" if it was not (dropped, connection failed first, unknown peer, discarded by
   * a fault). Exactly one status per MsgSnap, unless close() came first.
   */
  onSnapshotStatus(peer: bigint, status: "finish" | "failure"): void;
  /**
   * A peer refused our connection: cluster ID mismatch (reason worded from our side: "cluster ID
   * mismatch: local <ours>, remote <theirs> (...)"), "this member is <x>, not <y>", "the member
   * has been removed from the cluster", or an unsupported protocol version. We keep redialing
   * (about once a second), so this repeats until the caller acts (e.g. removePeer or shutdown).
   */
  onRefused(peer: bigint, reason: string): void;
  /** Bound on messages and requests queued per peer (default 4096); beyond it sends are dropped. */
  maxQueueMessages?: number;
  /** Bound on queued bytes per peer (default 256 MiB); one item is always admitted into an empty queue. */
  maxQueueBytes?: number;
  /**
   * Redial delays after a lost or failed connection: `initial` (default 50 ms), doubling per
   * failed dial up to `max` (default 500 ms). A peer that dials us is redialed at once anyway.
   */
  redialMs?: { initial: number; max: number };
}

/** Known to be down (its connection broke or the last dial failed): messages to it are dropped. */
function isDown(p: Peer): boolean {
  return p.unreachable && p.state !== "connected";
}

const INITIAL_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 500;
const REFUSED_RETRY_MS = 1000;
/** Frames up to this size are gathered into one buffer per socket write; larger ones go by reference. */
const GATHER_BYTES = 64 * 1024;
const HANDSHAKE_TIMEOUT_MS = 5000;
const KEEPALIVE_MS = 5000;
const DEFAULT_MAX_QUEUE_MESSAGES = 4096;
const DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024;
const HTTP_METHOD = /^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) /;

interface OutItem {
  type: FrameType.Message | FrameType.Request;
  payload: Buffer;
  /** Not written before this time (delay fault). */
  readyAt: number;
  msgType?: MessageType;
  requestId?: number;
}

interface PendingRequest {
  peer: bigint;
  kind: string;
  resolve(b: Buffer): void;
  reject(e: PeerRequestError): void;
  timer: NodeJS.Timeout;
}

/** Outbound side of one peer. */
interface Peer {
  id: bigint;
  urls: URL[];
  nextUrl: number;
  state: "connecting" | "connected" | "waiting";
  socket: net.Socket | undefined;
  /** The last connection attempt failed (or the connection broke) and none succeeded since: sends fail fast. */
  unreachable: boolean;
  /** A failure was already logged since the last success (later ones go to debug). */
  failureLogged: boolean;
  /** The last refusal reason logged since the last success (a new reason is logged again). */
  lastRefusal: string | undefined;
  backoffMs: number;
  retryTimer: NodeJS.Timeout | undefined;
  delayTimer: NodeJS.Timeout | undefined;
  draining: boolean;
  queue: OutItem[];
  queueBytes: number;
  lastReadyAt: number;
  /** MsgSnaps handed to the socket whose write callback has not reported yet. */
  inflightSnaps: Set<{ done: boolean }>;
}

interface Inbound {
  socket: net.Socket;
  remote: string;
  decoder: FrameDecoder;
  /** new: nothing received yet; hello: waiting for the hello; open: accepted; closing: refused, ignore the rest. */
  state: "new" | "hello" | "open" | "closing";
  /** The sender, once its hello was accepted. */
  from: bigint | undefined;
}

/** The counters of PeerStats; `connected` and `queued` are read from the live state. */
type MutableStats = Omit<PeerStats, "connected" | "queued">;

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function urlText(u: URL): string {
  return `${u.protocol}//${u.host}`;
}

/** host and port of a peer URL; only http:// (plain TCP) is supported. */
function hostPort(u: URL): { host: string; port: number } {
  if (u.protocol !== "http:") {
    throw new Error(
      `peer URL ${u.href}: scheme ${u.protocol} is not supported (peer URLs are http://host:port; TLS is not implemented)`,
    );
  }
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  if (host === "") throw new Error(`peer URL ${u.href} has no host`);
  return { host, port: u.port === "" ? 80 : Number(u.port) };
}

function parsePeerUrls(id: bigint, urls: readonly string[]): URL[] {
  if (urls.length === 0) throw new Error(`peer ${hexId(id)}: no peer URLs`);
  return urls.map((s) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new Error(`peer ${hexId(id)}: invalid peer URL ${JSON.stringify(s)}`);
    }
    hostPort(u);
    return u;
  });
}

function validateFaults(f: PeerFaults): PeerFaults {
  const out: PeerFaults = {};
  if (f.drop !== undefined) {
    if (!(f.drop >= 0 && f.drop <= 1)) throw new RangeError(`fault drop must be in [0, 1], got ${f.drop}`);
    if (f.drop > 0) out.drop = f.drop;
  }
  if (f.delayMs !== undefined) {
    if (!(Number.isFinite(f.delayMs) && f.delayMs >= 0)) {
      throw new RangeError(`fault delayMs must be a non-negative number, got ${f.delayMs}`);
    }
    if (f.delayMs > 0) out.delayMs = f.delayMs;
  }
  if (f.blockOutbound === true) out.blockOutbound = true;
  if (f.blockInbound === true) out.blockInbound = true;
  return out;
}

export class PeerTransport {
  private readonly log: Logger;
  private readonly me: string;
  private readonly servers: net.Server[] = [];
  private readonly peers = new Map<bigint, Peer>();
  private readonly removed = new Set<bigint>();
  private readonly inbound = new Set<Inbound>();
  private readonly pending = new Map<number, PendingRequest>();
  private readonly statsById = new Map<bigint, MutableStats>();
  private faultAll: PeerFaults | undefined;
  private readonly faultPeers = new Map<bigint, PeerFaults>();
  private nextRequestId = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly maxQueueMessages: number;
  private readonly maxQueueBytes: number;
  private readonly initialRedialMs: number;
  private readonly maxRedialMs: number;

  private constructor(private readonly o: PeerTransportOptions) {
    this.me = hexId(o.memberId);
    this.log = o.logger;
    this.maxQueueMessages = o.maxQueueMessages ?? DEFAULT_MAX_QUEUE_MESSAGES;
    this.maxQueueBytes = o.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES;
    this.initialRedialMs = o.redialMs?.initial ?? INITIAL_BACKOFF_MS;
    this.maxRedialMs = o.redialMs?.max ?? MAX_BACKOFF_MS;
  }

  /**
   * Starts listening on every `listen` URL; resolves once all listen. A port in use (or any other
   * listen error) rejects with an error naming the URL, and nothing stays open.
   */
  static async start(o: PeerTransportOptions): Promise<PeerTransport> {
    if (o.memberId === 0n) throw new Error("peer transport: member ID must not be 0");
    const t = new PeerTransport(o);
    try {
      for (const u of o.listen) await t.listenOn(u);
    } catch (err) {
      await t.close();
      throw err;
    }
    return t;
  }

  private listenOn(u: URL): Promise<void> {
    const { host, port } = hostPort(u);
    return new Promise((resolve, reject) => {
      const server = net.createServer((s) => this.accept(s));
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === "EADDRINUSE" ? `address ${host}:${port} is already in use` : err.message;
        reject(new Error(`cannot listen for peers on ${urlText(u)}: ${why}`));
      };
      server.once("error", onError);
      server.listen({ host, port }, () => {
        server.off("error", onError);
        server.on("error", (err) => this.log.error("peer listener error", { url: urlText(u), error: err.message }));
        this.servers.push(server);
        this.log.info("listening for peers", { "local-member-id": this.me, address: urlText(u) });
        resolve();
      });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Membership

  /**
   * Starts connecting to a peer. `urls` are its advertised peer URLs (http://host:port); invalid
   * ones throw. Adding a known peer updates its URLs; adding a removed ID makes it a peer again.
   */
  addPeer(id: bigint, urls: string[]): void {
    if (this.closed) return;
    if (id === this.o.memberId) {
      this.log.warn("ignoring addPeer for the local member", { "local-member-id": this.me });
      return;
    }
    const parsed = parsePeerUrls(id, urls);
    if (this.peers.has(id)) {
      this.updatePeer(id, urls);
      return;
    }
    this.removed.delete(id);
    const p: Peer = {
      id,
      urls: parsed,
      nextUrl: 0,
      state: "waiting",
      socket: undefined,
      unreachable: false,
      failureLogged: false,
      lastRefusal: undefined,
      backoffMs: this.initialRedialMs,
      retryTimer: undefined,
      delayTimer: undefined,
      draining: false,
      queue: [],
      queueBytes: 0,
      lastReadyAt: 0,
      inflightSnaps: new Set(),
    };
    this.peers.set(id, p);
    this.stat(id);
    this.log.info("added peer", { "local-member-id": this.me, "remote-peer-id": hexId(id), urls });
    this.dial(p);
  }

  /** Replaces a peer's URLs; if they changed, its connection is re-established. Unknown IDs are ignored. */
  updatePeer(id: bigint, urls: string[]): void {
    if (this.closed) return;
    const p = this.peers.get(id);
    if (p === undefined) {
      this.log.warn("ignoring updatePeer for an unknown peer", { "remote-peer-id": hexId(id) });
      return;
    }
    const parsed = parsePeerUrls(id, urls);
    if (parsed.map(urlText).join(",") === p.urls.map(urlText).join(",")) return;
    p.urls = parsed;
    p.nextUrl = 0;
    this.log.info("updated peer URLs", { "local-member-id": this.me, "remote-peer-id": hexId(id), urls });
    if (p.socket !== undefined) this.connectionLost(p, p.socket, "peer URLs changed", 0);
    else if (p.state === "waiting") this.retryNow(p);
  }

  /**
   * Forgets a peer: its connections (both directions) close, queued messages are discarded
   * (queued MsgSnaps report "failure", its pending requests reject), later sends to it are
   * dropped, and its later hellos are refused with "the member has been removed from the cluster".
   * Works for IDs that were never added too (they are refused from then on).
   */
  removePeer(id: bigint): void {
    if (this.closed) return;
    this.removed.add(id);
    const p = this.peers.get(id);
    if (p !== undefined) {
      this.peers.delete(id);
      this.clearTimers(p);
      const s = p.socket;
      p.socket = undefined;
      s?.destroy();
      this.failQueue(p, "the peer was removed", false);
      this.failInflightSnaps(p);
      this.rejectPending(id, "unreachable", `peer ${hexId(id)} was removed`);
    }
    for (const c of this.inbound) if (c.from === id) c.socket.destroy();
    this.statsById.delete(id);
    this.log.info("removed peer", { "local-member-id": this.me, "remote-peer-id": hexId(id) });
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  /**
   * Queues messages for their `to` peers. Never blocks, never throws. Each message is encoded
   * before send() returns, so the caller may reuse or mutate it afterwards. Per peer, messages
   * (and requests) are written in the order they were passed, on one connection.
   *
   * A message is dropped (and the peer reported through onUnreachable) when the peer is currently
   * unreachable (its last connection attempt failed or its connection broke; messages are not
   * kept across outages, Raft resends) or its queue is full. Messages to unknown or removed peers
   * are dropped silently. Messages queued while a connection is first being established are kept.
   */
  send(messages: Message[]): void {
    if (this.closed) return;
    const unreachable = new Set<bigint>();
    // Each peer's queue is pumped once, after all of this call's messages are queued, so that
    // they leave in one socket write (one syscall) instead of one write per message.
    const touched = new Set<Peer>();
    for (const m of messages) {
      try {
        this.sendOne(m, unreachable, touched);
      } catch (err) {
        this.log.error("peer transport: failed to send a message", { error: errMessage(err) });
      }
    }
    for (const p of touched) this.pump(p);
    for (const id of unreachable) this.defer(() => this.o.onUnreachable(id));
  }

  private sendOne(m: Message, unreachable: Set<bigint>, touched: Set<Peer>): void {
    const isSnap = m.type === MessageType.MsgSnap;
    const snapFailed = (): void => {
      if (isSnap) this.defer(() => this.o.onSnapshotStatus(m.to, "failure"));
    };
    const p = this.peers.get(m.to);
    if (p === undefined) {
      this.log.debug("dropped a message to an unknown peer", { "remote-peer-id": hexId(m.to), type: m.type });
      snapFailed();
      return;
    }
    let payload: Buffer;
    try {
      payload = encodeMessage(m);
      if (payload.length > MAX_FRAME_BYTES) {
        throw new Error(`encoded ${m.type} is ${payload.length} bytes, above the frame limit ${MAX_FRAME_BYTES}`);
      }
    } catch (err) {
      this.log.error("dropped a message that cannot be encoded", {
        "remote-peer-id": hexId(m.to),
        error: errMessage(err),
      });
      snapFailed();
      return;
    }
    const faults = this.effectiveFaults(m.to);
    if (this.faultDrops(faults)) {
      this.stat(m.to).faultDropped++;
      snapFailed();
      return;
    }
    if (!this.admit(p, payload.length)) {
      this.stat(m.to).dropped++;
      unreachable.add(m.to);
      snapFailed();
      return;
    }
    this.enqueue(p, { type: FrameType.Message, payload, readyAt: 0, msgType: m.type }, faults, false);
    touched.add(p);
  }

  /**
   * Sends a request to a peer's onRequest and resolves with its answer. Rejects with a
   * PeerRequestError: "unknown-peer", "unreachable" (peer down, queue full, or the connection broke
   * before the answer), "timeout" (no answer within timeoutMs, e.g. under a partition fault),
   * "remote" (the peer's onRequest rejected; message = its error message), "closed" (close()).
   * Requests share the peer's ordered queue with messages. `body` is copied before this returns.
   */
  request(to: bigint, kind: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.closed) {
        reject(new PeerRequestError("peer transport is closed", "closed"));
        return;
      }
      const p = this.peers.get(to);
      if (p === undefined) {
        reject(new PeerRequestError(`request ${kind} to unknown peer ${hexId(to)}`, "unknown-peer"));
        return;
      }
      const id = ++this.nextRequestId;
      const payload = encodeRequest({ id, kind, body });
      if (payload.length > MAX_FRAME_BYTES) {
        reject(
          new PeerRequestError(`request ${kind} of ${payload.length} bytes is above the frame limit`, "unreachable"),
        );
        return;
      }
      if (!this.admit(p, payload.length)) {
        this.stat(to).dropped++;
        reject(new PeerRequestError(`request ${kind}: peer ${hexId(to)} is unreachable`, "unreachable"));
        return;
      }
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) {
          reject(new PeerRequestError(`request ${kind} to ${hexId(to)} timed out after ${timeoutMs} ms`, "timeout"));
        }
      }, timeoutMs);
      this.pending.set(id, { peer: to, kind, resolve, reject, timer });
      const faults = this.effectiveFaults(to);
      if (this.faultDrops(faults)) {
        this.stat(to).faultDropped++;
        return; // lost in the "network": the timeout answers
      }
      this.enqueue(p, { type: FrameType.Request, payload, readyAt: 0, requestId: id }, faults);
    });
  }

  /** Whether a new item may enter p's queue (the peer is not known-down and the queue has room). */
  private admit(p: Peer, bytes: number): boolean {
    if (isDown(p)) return false;
    if (p.queue.length >= this.maxQueueMessages) return false;
    return p.queue.length === 0 || p.queueBytes + bytes <= this.maxQueueBytes;
  }

  private enqueue(p: Peer, item: OutItem, faults: PeerFaults, pumpNow = true): void {
    const now = Date.now();
    item.readyAt = Math.max(now + (faults.delayMs ?? 0), p.lastReadyAt);
    p.lastReadyAt = item.readyAt;
    p.queue.push(item);
    p.queueBytes += item.payload.length;
    if (pumpNow) this.pump(p);
  }

  /** Writes queued items while connected, ready (delay) and the socket takes more (backpressure). */
  private pump(p: Peer): void {
    const socket = p.socket;
    if (p.state !== "connected" || socket === undefined || p.draining) return;
    const now = Date.now();
    // Small frames are gathered and copied into one buffer for one socket.write: a corked stream
    // of many small chunks costs Node's writev machinery more CPU than the copy. Large payloads
    // (snapshots, long appends) go by reference.
    let gathered: Buffer[] = [];
    let gatheredBytes = 0;
    const flushGathered = (): boolean => {
      if (gathered.length === 0) return true;
      const out = Buffer.concat(gathered, gatheredBytes);
      gathered = [];
      gatheredBytes = 0;
      return socket.write(out);
    };
    const stall = (): void => {
      p.draining = true;
      socket.once("drain", () => {
        if (p.socket !== socket) return;
        p.draining = false;
        this.pump(p);
      });
    };
    while (p.queue.length > 0) {
      const item = p.queue[0] as OutItem;
      if (item.type === FrameType.Request && !this.pending.has(item.requestId as number)) {
        p.queue.shift(); // timed out before it was written
        p.queueBytes -= item.payload.length;
        continue;
      }
      if (item.readyAt > now) {
        if (p.delayTimer === undefined) {
          p.delayTimer = setTimeout(() => {
            p.delayTimer = undefined;
            this.pump(p);
          }, item.readyAt - now);
        }
        break;
      }
      p.queue.shift();
      p.queueBytes -= item.payload.length;
      const st = this.stat(p.id);
      st.sentBytes += FRAME_HEADER_BYTES + item.payload.length;
      if (item.type === FrameType.Message) st.sentMessages++;
      if (item.msgType === MessageType.MsgSnap || item.payload.length > GATHER_BYTES) {
        if (!flushGathered() || !this.writeItem(p, socket, item)) {
          stall();
          return;
        }
        continue;
      }
      gathered.push(frameHeader(item.type, item.payload), item.payload);
      gatheredBytes += FRAME_HEADER_BYTES + item.payload.length;
      if (gatheredBytes >= GATHER_BYTES && !flushGathered()) {
        stall();
        return;
      }
    }
    if (!flushGathered()) stall();
  }

  /** One frame written by reference; a snapshot's status is reported once the socket took it. */
  private writeItem(p: Peer, socket: net.Socket, item: OutItem): boolean {
    if (item.msgType !== MessageType.MsgSnap) return this.writeFrame(socket, item.type, item.payload);
    const snap = { done: false };
    p.inflightSnaps.add(snap);
    return this.writeFrame(socket, item.type, item.payload, (err) => {
      if (snap.done) return;
      snap.done = true;
      p.inflightSnaps.delete(snap);
      this.defer(() => this.o.onSnapshotStatus(p.id, err ? "failure" : "finish"));
    });
  }

  private writeFrame(
    socket: net.Socket,
    type: FrameType,
    payload: Buffer,
    cb?: (err: Error | null | undefined) => void,
  ): boolean {
    socket.cork();
    socket.write(frameHeader(type, payload));
    const ok = cb === undefined ? socket.write(payload) : socket.write(payload, cb);
    socket.uncork();
    return ok;
  }

  // ---------------------------------------------------------------------------------------------
  // Outbound connections

  private dial(p: Peer): void {
    if (this.closed || this.peers.get(p.id) !== p) return;
    const url = p.urls[p.nextUrl % p.urls.length] as URL;
    const { host, port } = hostPort(url);
    p.state = "connecting";
    const socket = net.connect({ host, port, lookup: peerLookup });
    p.socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES);
    let lastError: string | undefined;
    const hsTimer = setTimeout(() => {
      if (p.socket === socket && p.state === "connecting") {
        this.connectionLost(p, socket, `no answer to the hello within ${HANDSHAKE_TIMEOUT_MS} ms`);
      }
    }, HANDSHAKE_TIMEOUT_MS);
    socket.on("connect", () => {
      socket.setKeepAlive(true, KEEPALIVE_MS);
      const hello = encodeHello({
        version: PROTOCOL_VERSION,
        clusterId: this.o.clusterId,
        from: this.o.memberId,
        to: p.id,
      });
      this.stat(p.id).sentBytes += FRAME_HEADER_BYTES + hello.length;
      this.writeFrame(socket, FrameType.Hello, hello);
    });
    socket.on("data", (chunk: Buffer) => {
      if (p.socket !== socket) return;
      this.stat(p.id).receivedBytes += chunk.length;
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.log.warn("closing peer connection: bad frame", {
          "remote-peer-id": hexId(p.id),
          address: urlText(url),
          error: errMessage(err),
        });
        this.connectionLost(p, socket, errMessage(err));
        return;
      }
      for (const f of frames) {
        if (p.socket !== socket) return;
        try {
          this.onOutboundFrame(p, socket, decoder, url, f);
        } catch (err) {
          this.log.warn("closing peer connection: bad frame", {
            "remote-peer-id": hexId(p.id),
            address: urlText(url),
            error: errMessage(err),
          });
          this.connectionLost(p, socket, errMessage(err));
          return;
        }
      }
    });
    socket.on("error", (err) => {
      lastError = err.message;
    });
    socket.on("close", () => {
      clearTimeout(hsTimer);
      if (p.socket === socket) this.connectionLost(p, socket, lastError ?? "connection closed by the peer");
    });
  }

  private onOutboundFrame(p: Peer, socket: net.Socket, decoder: FrameDecoder, url: URL, f: Frame): void {
    if (p.state === "connecting") {
      if (f.type === FrameType.HelloOk) {
        const ok = decodeHelloOk(f.payload);
        if (ok.memberId !== p.id || ok.clusterId !== this.o.clusterId) {
          throw new FrameError(`hello answered by member ${hexId(ok.memberId)} of cluster ${hexId(ok.clusterId)}`);
        }
        decoder.setMaxBytes(MAX_FRAME_BYTES);
        this.established(p, url);
        return;
      }
      if (f.type === FrameType.Refuse) {
        this.refused(p, socket, decodeRefuse(f.payload));
        return;
      }
      throw new FrameError(`unexpected frame type ${f.type} before the hello was answered`);
    }
    if (f.type !== FrameType.Response) throw new FrameError(`unexpected frame type ${f.type} from the acceptor`);
    const r = decodeResponse(f.payload);
    if (this.effectiveFaults(p.id).blockInbound === true) {
      this.stat(p.id).faultDropped++;
      return;
    }
    const pending = this.pending.get(r.id);
    if (pending === undefined || pending.peer !== p.id) return; // timed out already
    this.pending.delete(r.id);
    clearTimeout(pending.timer);
    if (r.ok) pending.resolve(r.body);
    else pending.reject(new PeerRequestError(r.error, "remote"));
  }

  private established(p: Peer, url: URL): void {
    p.state = "connected";
    p.unreachable = false;
    p.failureLogged = false;
    p.lastRefusal = undefined;
    p.backoffMs = this.initialRedialMs;
    this.log.info("peer became active", {
      "local-member-id": this.me,
      "remote-peer-id": hexId(p.id),
      address: urlText(url),
    });
    this.pump(p);
  }

  private refused(p: Peer, socket: net.Socket, r: ReturnType<typeof decodeRefuse>): void {
    const reason =
      r.code === RefuseCode.ClusterMismatch
        ? `cluster ID mismatch: local ${hexId(this.o.clusterId)}, remote ${hexId(r.clusterId)} (check --initial-cluster-token and --initial-cluster)`
        : r.message;
    const fields = { "local-member-id": this.me, "remote-peer-id": hexId(p.id), reason };
    if (p.lastRefusal === reason) this.log.debug("peer refused the connection", fields);
    else this.log.warn("peer refused the connection", fields);
    p.lastRefusal = reason;
    this.defer(() => this.o.onRefused(p.id, reason));
    this.connectionLost(p, socket, `refused: ${reason}`, REFUSED_RETRY_MS);
  }

  /**
   * The connection `socket` to p failed or was closed: discard it, fail what was queued, mark the
   * peer unreachable and redial after `retryMs` (default: the backoff).
   */
  private connectionLost(p: Peer, socket: net.Socket, reason: string, retryMs?: number): void {
    if (p.socket !== socket) return;
    const wasConnected = p.state === "connected";
    p.socket = undefined;
    p.state = "waiting";
    p.draining = false;
    socket.destroy();
    if (p.delayTimer !== undefined) clearTimeout(p.delayTimer);
    p.delayTimer = undefined;
    const fields = {
      "local-member-id": this.me,
      "remote-peer-id": hexId(p.id),
      address: urlText(p.urls[p.nextUrl % p.urls.length] as URL),
      reason,
    };
    if (wasConnected) this.log.warn("peer became inactive (message send to peer failed)", fields);
    else if (!p.failureLogged && !reason.startsWith("refused")) this.log.warn("cannot connect to peer", fields);
    else this.log.debug("cannot connect to peer", fields);
    p.failureLogged = true;
    p.unreachable = true;
    this.failQueue(p, reason, true);
    this.failInflightSnaps(p);
    this.rejectPending(p.id, "unreachable", `request to ${hexId(p.id)} failed: ${reason}`);
    if (!wasConnected) p.nextUrl++;
    let delay = retryMs;
    if (delay === undefined) {
      delay = wasConnected ? this.initialRedialMs : p.backoffMs;
      p.backoffMs = Math.min(p.backoffMs * 2, this.maxRedialMs);
    }
    if (this.peers.get(p.id) === p && !this.closed) {
      if (p.retryTimer !== undefined) clearTimeout(p.retryTimer);
      p.retryTimer = setTimeout(() => {
        p.retryTimer = undefined;
        this.dial(p);
      }, delay);
    }
  }

  private retryNow(p: Peer): void {
    if (p.retryTimer !== undefined) clearTimeout(p.retryTimer);
    p.retryTimer = undefined;
    this.dial(p);
  }

  /** Discards p's queue: MsgSnaps report failure, requests reject; onUnreachable if `report` and anything was lost. */
  private failQueue(p: Peer, reason: string, report: boolean): void {
    let lostMessages = 0;
    for (const item of p.queue) {
      if (item.type === FrameType.Message) {
        lostMessages++;
        if (item.msgType === MessageType.MsgSnap) this.defer(() => this.o.onSnapshotStatus(p.id, "failure"));
      }
    }
    p.queue = [];
    p.queueBytes = 0;
    p.lastReadyAt = 0;
    if (lostMessages > 0) {
      const st = this.statsById.get(p.id);
      if (st !== undefined) st.dropped += lostMessages;
      if (report) this.defer(() => this.o.onUnreachable(p.id));
      this.log.debug("dropped queued messages", { "remote-peer-id": hexId(p.id), count: lostMessages, reason });
    }
  }

  private failInflightSnaps(p: Peer): void {
    for (const s of p.inflightSnaps) {
      if (s.done) continue;
      s.done = true;
      this.defer(() => this.o.onSnapshotStatus(p.id, "failure"));
    }
    p.inflightSnaps.clear();
  }

  private rejectPending(peer: bigint, code: PeerRequestErrorCode, message: string): void {
    for (const [id, r] of this.pending) {
      if (r.peer !== peer) continue;
      this.pending.delete(id);
      clearTimeout(r.timer);
      r.reject(new PeerRequestError(`${message} (request ${r.kind})`, code));
    }
  }

  private clearTimers(p: Peer): void {
    if (p.retryTimer !== undefined) clearTimeout(p.retryTimer);
    if (p.delayTimer !== undefined) clearTimeout(p.delayTimer);
    p.retryTimer = undefined;
    p.delayTimer = undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Inbound connections

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    const c: Inbound = {
      socket,
      remote: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
      decoder: new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES),
      state: "new",
      from: undefined,
    };
    this.inbound.add(c);
    const timer = setTimeout(() => {
      if (c.from === undefined && !socket.destroyed) {
        this.log.warn("closing peer connection: no hello", { remote: c.remote, timeoutMs: HANDSHAKE_TIMEOUT_MS });
        socket.destroy();
      }
    }, HANDSHAKE_TIMEOUT_MS);
    socket.on("data", (chunk: Buffer) => this.onInboundData(c, chunk));
    socket.on("error", (err) => this.log.debug("peer connection error", { remote: c.remote, error: err.message }));
    socket.on("close", () => {
      clearTimeout(timer);
      this.inbound.delete(c);
    });
  }

  private onInboundData(c: Inbound, chunk: Buffer): void {
    if (c.socket.destroyed || c.state === "closing") return;
    if (c.state === "new") {
      c.state = "hello";
      if (HTTP_METHOD.test(chunk.subarray(0, 8).toString("latin1"))) {
        this.log.warn("closing peer connection: it speaks HTTP (this port speaks lab's framed peer protocol)", {
          remote: c.remote,
        });
        const body = "this is a lab etcd peer port: it speaks lab's framed peer protocol over TCP, not HTTP\n";
        c.socket.end(
          `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        c.state = "closing";
        setTimeout(() => c.socket.destroy(), 1000).unref();
        return;
      }
    }
    let frames: Frame[];
    try {
      frames = c.decoder.push(chunk);
    } catch (err) {
      this.log.warn("closing peer connection: bad frame", {
        remote: c.remote,
        "remote-peer-id": c.from === undefined ? undefined : hexId(c.from),
        error: errMessage(err),
      });
      c.socket.destroy();
      return;
    }
    for (const f of frames) {
      if (c.socket.destroyed || (c.state as Inbound["state"]) === "closing") return;
      try {
        if (c.state === "open" && c.from !== undefined) this.onInboundFrame(c, c.from, f);
        else this.onHello(c, f);
      } catch (err) {
        this.log.warn("closing peer connection: bad frame", {
          remote: c.remote,
          "remote-peer-id": c.from === undefined ? undefined : hexId(c.from),
          error: errMessage(err),
        });
        c.socket.destroy();
        return;
      }
    }
  }

  private onHello(c: Inbound, f: Frame): void {
    if (f.type !== FrameType.Hello) throw new FrameError(`expected a hello, got frame type ${f.type}`);
    const h = decodeHello(f.payload);
    let code: RefuseCode | undefined;
    let reason = "";
    if (h.version !== PROTOCOL_VERSION) {
      code = RefuseCode.Version;
      reason =
        `unsupported peer protocol version ${h.version} (this member speaks ${PROTOCOL_VERSION}): ` +
        "the members of a cluster must run the same lab build; start every member from one build";
    } else if (h.clusterId === 0n && h.from === 0n && h.to === 0n) {
      // A member about to join asks who is in the cluster (discoverCluster): one kind of request only.
      c.state = "open";
      c.from = NONE;
      c.decoder.setMaxBytes(MAX_HANDSHAKE_FRAME_BYTES);
      this.writeFrame(
        c.socket,
        FrameType.HelloOk,
        encodeHelloOk({ clusterId: this.o.clusterId, memberId: this.o.memberId }),
      );
      this.log.debug("accepted a cluster discovery connection", { remote: c.remote });
      return;
    } else if (h.clusterId !== this.o.clusterId) {
      code = RefuseCode.ClusterMismatch;
      reason = `cluster ID mismatch: local ${hexId(this.o.clusterId)}, remote ${hexId(h.clusterId)} (check --initial-cluster-token and --initial-cluster)`;
    } else if (h.to !== this.o.memberId) {
      code = RefuseCode.WrongMember;
      reason = `this member is ${this.me}, not ${hexId(h.to)}`;
    } else if (this.removed.has(h.from)) {
      code = RefuseCode.Removed;
      reason = "the member has been removed from the cluster";
    } else if (h.from === 0n || h.from === this.o.memberId) {
      code = RefuseCode.Other;
      reason = `invalid sender member ID ${hexId(h.from)}`;
    }
    if (code !== undefined) {
      this.log.warn("refused peer connection", {
        "local-member-id": this.me,
        "remote-peer-id": hexId(h.from),
        remote: c.remote,
        reason,
      });
      const payload = encodeRefuse({ code, clusterId: this.o.clusterId, memberId: this.o.memberId, message: reason });
      c.socket.cork();
      c.socket.write(frameHeader(FrameType.Refuse, payload));
      c.socket.write(payload);
      c.socket.uncork();
      c.socket.end();
      c.state = "closing"; // anything else the dialer sends is ignored until the socket closes
      setTimeout(() => c.socket.destroy(), 2000).unref();
      return;
    }
    c.state = "open";
    c.from = h.from;
    c.decoder.setMaxBytes(MAX_FRAME_BYTES);
    for (const other of this.inbound) {
      if (other !== c && other.from === h.from) other.socket.destroy(); // the newer connection replaces it
    }
    this.stat(h.from).receivedBytes += FRAME_HEADER_BYTES + f.payload.length;
    const ok = encodeHelloOk({ clusterId: this.o.clusterId, memberId: this.o.memberId });
    this.writeFrame(c.socket, FrameType.HelloOk, ok);
    this.log.debug("accepted peer connection", { "remote-peer-id": hexId(h.from), remote: c.remote });
    // The peer is back (it just dialed us): dial it now instead of when our backoff runs out, so
    // that our messages reach it as soon as its own reach us. Otherwise a restarted member hears
    // nothing from the leader for up to the backoff and may start an election meanwhile.
    const back = this.peers.get(h.from);
    if (back !== undefined && back.state === "waiting" && back.lastRefusal === undefined) {
      back.backoffMs = this.initialRedialMs;
      this.retryNow(back);
    }
  }

  private onInboundFrame(c: Inbound, from: bigint, f: Frame): void {
    if (from === NONE) {
      this.onDiscoveryFrame(c, f);
      return;
    }
    this.stat(from).receivedBytes += FRAME_HEADER_BYTES + f.payload.length;
    const blocked = this.effectiveFaults(from).blockInbound === true;
    if (f.type === FrameType.Message) {
      if (blocked) {
        this.stat(from).faultDropped++;
        return;
      }
      const m = decodeMessage(f.payload);
      if (m.to !== this.o.memberId || m.from !== from || LOCAL_MESSAGE_TYPES.has(m.type)) {
        this.log.warn("dropped a peer message with a wrong address or type", {
          "remote-peer-id": hexId(from),
          type: m.type,
          from: hexId(m.from),
          to: hexId(m.to),
        });
        return;
      }
      this.stat(from).receivedMessages++;
      try {
        this.o.onMessage(m);
      } catch (err) {
        this.log.error("peer transport: onMessage threw", { error: errMessage(err) });
      }
      return;
    }
    if (f.type === FrameType.Request) {
      const r = decodeRequest(f.payload);
      if (blocked) {
        this.stat(from).faultDropped++;
        return;
      }
      Promise.resolve()
        .then(() => this.o.onRequest(from, r.kind, r.body))
        .then(
          (body) => this.respond(c, from, encodeResponse({ id: r.id, ok: true, body: Buffer.from(body) })),
          (err: unknown) => this.respond(c, from, encodeResponse({ id: r.id, ok: false, error: errMessage(err) })),
        )
        .catch((err: unknown) => this.log.error("peer transport: cannot answer a request", { error: errMessage(err) }));
      return;
    }
    throw new FrameError(`unexpected frame type ${f.type} from a dialer`);
  }

  private onDiscoveryFrame(c: Inbound, f: Frame): void {
    if (f.type !== FrameType.Request) throw new FrameError(`unexpected frame type ${f.type} on a discovery connection`);
    const r = decodeRequest(f.payload);
    if (r.kind !== DISCOVERY_REQUEST_KIND) {
      throw new FrameError(
        `request ${JSON.stringify(r.kind)} on a discovery connection (only ${DISCOVERY_REQUEST_KIND})`,
      );
    }
    Promise.resolve()
      .then(() => this.o.onRequest(NONE, r.kind, r.body))
      .then(
        (body) => encodeResponse({ id: r.id, ok: true, body: Buffer.from(body) }),
        (err: unknown) => encodeResponse({ id: r.id, ok: false, error: errMessage(err) }),
      )
      .then((payload) => {
        if (!this.closed && !c.socket.destroyed) this.writeFrame(c.socket, FrameType.Response, payload);
      })
      .catch((err: unknown) => this.log.error("peer transport: cannot answer a request", { error: errMessage(err) }));
  }

  private respond(c: Inbound, to: bigint, payload: Buffer): void {
    if (this.closed || c.socket.destroyed) return;
    const faults = this.effectiveFaults(to);
    if (this.faultDrops(faults)) {
      this.stat(to).faultDropped++;
      return;
    }
    const write = (): void => {
      if (this.closed || c.socket.destroyed) return;
      this.stat(to).sentBytes += FRAME_HEADER_BYTES + payload.length;
      this.writeFrame(c.socket, FrameType.Response, payload);
    };
    if (faults.delayMs !== undefined) setTimeout(write, faults.delayMs);
    else write();
  }

  // ---------------------------------------------------------------------------------------------
  // Faults

  /**
   * Replaces the fault settings for one peer, or the defaults for every peer ("all"); `{}` clears
   * them. For each field a per-peer setting wins over "all". Faults are applied when a message or
   * request is handed over (send/request: blockOutbound, drop, delayMs), when a response is
   * written (blockOutbound, drop, delayMs), and when a message, request or response arrives
   * (blockInbound). Blocked or dropped traffic vanishes silently, like a network partition: no
   * onUnreachable, requests time out. A MsgSnap discarded by a fault still reports "failure"
   * through onSnapshotStatus, as a broken connection would, so Raft retries it later. Changing
   * faults does not affect items already queued; a shorter delay never reorders them.
   * Throws RangeError for drop outside [0, 1] or a negative delay.
   */
  setFaults(peer: bigint | "all", f: PeerFaults): void {
    const v = validateFaults(f);
    const empty = Object.keys(v).length === 0;
    if (peer === "all") this.faultAll = empty ? undefined : v;
    else if (empty) this.faultPeers.delete(peer);
    else this.faultPeers.set(peer, v);
    this.log.info("peer faults set", { "local-member-id": this.me, peer: peer === "all" ? "all" : hexId(peer), ...v });
  }

  clearFaults(): void {
    this.faultAll = undefined;
    this.faultPeers.clear();
    this.log.info("peer faults cleared", { "local-member-id": this.me });
  }

  faults(): PeerFaultsReport {
    const peers: Record<string, PeerFaults> = {};
    for (const [id, f] of this.faultPeers) peers[hexId(id)] = { ...f };
    return { all: this.faultAll === undefined ? null : { ...this.faultAll }, peers };
  }

  private effectiveFaults(peer: bigint): PeerFaults {
    const own = this.faultPeers.get(peer);
    if (own === undefined) return this.faultAll ?? {};
    if (this.faultAll === undefined) return own;
    return { ...this.faultAll, ...own };
  }

  private faultDrops(f: PeerFaults): boolean {
    return f.blockOutbound === true || (f.drop !== undefined && Math.random() < f.drop);
  }

  // ---------------------------------------------------------------------------------------------
  // Stats and shutdown

  private stat(id: bigint): MutableStats {
    let s = this.statsById.get(id);
    if (s === undefined) {
      s = { sentMessages: 0, sentBytes: 0, receivedMessages: 0, receivedBytes: 0, dropped: 0, faultDropped: 0 };
      this.statsById.set(id, s);
    }
    return s;
  }

  /**
   * Whether a message sent to `id` now would be written to a connection: false for unknown peers
   * and for peers that are known to be down (their connection broke or the last dial failed),
   * whose messages send() drops until a connection is established again.
   */
  reachable(id: bigint): boolean {
    const p = this.peers.get(id);
    return p !== undefined && !isDown(p);
  }

  /** How many peers we hold an established connection to (etcd's rafthttp ActivePeers). */
  activePeers(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.state === "connected") n++;
    return n;
  }

  /** Per peer (known peers and anyone who connected to us), keyed by hex member ID. */
  stats(): Record<string, PeerStats> {
    const out: Record<string, PeerStats> = {};
    for (const [id, s] of this.statsById) {
      const p = this.peers.get(id);
      out[hexId(id)] = { connected: p?.state === "connected", ...s, queued: p?.queue.length ?? 0 };
    }
    return out;
  }

  /**
   * Closes the listeners and every connection. Pending requests reject with code "closed"; queued
   * messages are discarded without callbacks. Idempotent; resolves once the listeners are closed.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    for (const [id, r] of this.pending) {
      this.pending.delete(id);
      clearTimeout(r.timer);
      r.reject(new PeerRequestError(`peer transport closed (request ${r.kind} to ${hexId(r.peer)})`, "closed"));
    }
    for (const p of this.peers.values()) {
      this.clearTimers(p);
      const s = p.socket;
      p.socket = undefined;
      p.queue = [];
      p.queueBytes = 0;
      s?.destroy();
    }
    for (const c of this.inbound) c.socket.destroy();
    this.inbound.clear();
    this.closing = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(
      () => undefined,
    );
    return this.closing;
  }

  /** Runs a callback after the current call returned; never after close(); a throw is logged. */
  private defer(fn: () => void): void {
    queueMicrotask(() => {
      if (this.closed) return;
      try {
        fn();
      } catch (err) {
        this.log.error("peer transport: callback threw", { error: errMessage(err) });
      }
    });
  }
}
