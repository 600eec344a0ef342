import * as grpc from "@grpc/grpc-js";
import { serviceOf } from "../../src/etcd/proto-client.js";

/**
 * A small typed gRPC client for etcd's v3 API, built on our own .proto files (which are
 * wire-compatible with etcd 3.4), so tests can speak to our member and to the real etcd alike.
 * Messages use our loader's conversion: snake_case fields, int64 as decimal strings, enums as
 * numbers, defaults filled in (absent messages are null).
 *
 *     const c = connect(node.endpoint);
 *     await c.put("a", "1");
 *     const w = c.watch();
 *     w.create({ key: "a" });
 *     const created = await w.next();
 *     ...
 *     c.close();
 */

export type Bytes = string | Buffer;

export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}

export interface KeyValue {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}

export const EventType = { PUT: 0, DELETE: 1 } as const;
export const WatchFilter = { NOPUT: 0, NODELETE: 1 } as const;

export interface Event {
  type: number;
  kv: KeyValue | null;
  prev_kv: KeyValue | null;
}

export interface WatchResponse {
  header: ResponseHeader | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: Event[];
}

export interface WatchCreate {
  key: Bytes;
  /** "" or absent: the single key; "\0": every key >= key; otherwise [key, range_end). */
  range_end?: Bytes;
  start_revision?: number;
  progress_notify?: boolean;
  filters?: number[];
  prev_kv?: boolean;
  /** 0 or absent: the server picks. */
  watch_id?: number;
  fragment?: boolean;
}

export interface PutResponse {
  header: ResponseHeader;
  prev_kv: KeyValue | null;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: string;
}

export interface DeleteRangeResponse {
  header: ResponseHeader;
  deleted: string;
  prev_kvs: KeyValue[];
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: object[];
}

export interface LeaseGrantResponse {
  header: ResponseHeader;
  ID: string;
  TTL: string;
  error: string;
}

/** A request op for `txn`, in the wire's shape. */
export type RequestOp =
  | { request_put: { key: Bytes; value: Bytes; lease?: string } }
  | { request_delete_range: { key: Bytes; range_end?: Bytes; prev_kv?: boolean } }
  | { request_range: { key: Bytes; range_end?: Bytes } };

/** The range_end that selects every key with the given prefix (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: Bytes): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i] = (b[i] as number) + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** A revision or other int64 field as a number (revisions stay far below 2^53). */
export function num(v: string | number | null | undefined): number {
  return v === null || v === undefined || v === "" ? 0 : Number(v);
}

/** Bytes fields must be Buffers: the loader would read a string as base64. */
function opToWire(op: RequestOp): object {
  const b = (v: Bytes | undefined): Buffer => Buffer.from(v ?? "");
  if ("request_put" in op) {
    const p = op.request_put;
    return { request_put: { key: b(p.key), value: b(p.value), lease: p.lease ?? "0" } };
  }
  if ("request_delete_range" in op) {
    const d = op.request_delete_range;
    return { request_delete_range: { key: b(d.key), range_end: b(d.range_end), prev_kv: d.prev_kv ?? false } };
  }
  const r = op.request_range;
  return { request_range: { key: b(r.key), range_end: b(r.range_end) } };
}

type Unary = (
  req: object,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

function call<T>(client: grpc.Client, method: string, req: object, deadlineMs: number): Promise<T> {
  const fn = (client as unknown as Record<string, Unary>)[method];
  if (!fn) throw new Error(`no method ${method}`);
  return new Promise<T>((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: unknown) =>
      err ? reject(err) : resolve(res as T),
    );
  });
}

export interface EtcdClient {
  readonly endpoint: string;
  put(key: Bytes, value: Bytes, opts?: { lease?: string; prev_kv?: boolean }): Promise<PutResponse>;
  range(key: Bytes, rangeEnd?: Bytes, opts?: { revision?: number }): Promise<RangeResponse>;
  deleteRange(key: Bytes, rangeEnd?: Bytes): Promise<DeleteRangeResponse>;
  txn(success: RequestOp[], compare?: object[], failure?: RequestOp[]): Promise<TxnResponse>;
  compact(revision: number): Promise<void>;
  leaseGrant(ttl: number): Promise<LeaseGrantResponse>;
  leaseRevoke(id: string): Promise<void>;
  /** Opens a new Watch stream on this client's connection. */
  watch(): WatchStream;
  /** Cancels every Watch stream opened so far. */
  closeStreams(): void;
  /** Closes the connection (and every stream on it). */
  close(): void;
}

/**
 * Connects to host:port. Each client has its own HTTP/2 connection (no subchannel sharing), so a
 * stalled watch stream on one client cannot hold up another's calls through connection-level flow
 * control. Received messages may be of any size.
 */
export function connect(endpoint: string, deadlineMs = 20_000): EtcdClient {
  const options: grpc.ClientOptions = {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
    "grpc.use_local_subchannel_pool": 1,
  };
  const creds = grpc.credentials.createInsecure();
  const kv = new (serviceOf("etcdserverpb.KV"))(endpoint, creds, options);
  const lease = new (serviceOf("etcdserverpb.Lease"))(endpoint, creds, {
    ...options,
    channelOverride: kv.getChannel(),
  });
  const watch = new (serviceOf("etcdserverpb.Watch"))(endpoint, creds, {
    ...options,
    channelOverride: kv.getChannel(),
  });
  const streams = new Set<WatchStream>();
  return {
    endpoint,
    put: (key, value, opts = {}) =>
      call(
        kv,
        "Put",
        { key: Buffer.from(key), value: Buffer.from(value), lease: opts.lease ?? "0", prev_kv: opts.prev_kv ?? false },
        deadlineMs,
      ),
    range: (key, rangeEnd, opts = {}) =>
      call(
        kv,
        "Range",
        { key: Buffer.from(key), range_end: Buffer.from(rangeEnd ?? ""), revision: String(opts.revision ?? 0) },
        deadlineMs,
      ),
    deleteRange: (key, rangeEnd) =>
      call(kv, "DeleteRange", { key: Buffer.from(key), range_end: Buffer.from(rangeEnd ?? "") }, deadlineMs),
    txn: (success, compare = [], failure = []) =>
      call(kv, "Txn", { compare, success: success.map(opToWire), failure: failure.map(opToWire) }, deadlineMs),
    compact: async (revision) => {
      await call(kv, "Compact", { revision: String(revision), physical: true }, deadlineMs);
    },
    leaseGrant: (ttl) => call(lease, "LeaseGrant", { TTL: String(ttl), ID: "0" }, deadlineMs),
    leaseRevoke: async (id) => {
      await call(lease, "LeaseRevoke", { ID: id }, deadlineMs);
    },
    watch: () => {
      const s = new WatchStream(
        (watch as unknown as { Watch(): grpc.ClientDuplexStream<object, WatchResponse> }).Watch(),
      );
      streams.add(s);
      return s;
    },
    closeStreams: () => {
      for (const s of streams) s.close();
      streams.clear();
    },
    close: () => {
      for (const s of streams) s.close();
      kv.close();
      lease.close();
      watch.close();
    },
  };
}

/**
 * One client-side Watch stream. Responses are queued as they arrive; `next` takes them in order.
 * `pause` stops reading (gRPC flow control then pushes back on the server), `resume` reads again.
 */
export class WatchStream {
  private readonly queue: WatchResponse[] = [];
  private wake: (() => void) | undefined;
  /** Set once the server ended the stream or it failed. */
  ended = false;
  error: grpc.ServiceError | undefined;
  /** Every response received so far, in order (never trimmed). */
  readonly received: WatchResponse[] = [];

  constructor(private readonly stream: grpc.ClientDuplexStream<object, WatchResponse>) {
    stream.on("data", (r: WatchResponse) => {
      this.queue.push(r);
      this.received.push(r);
      this.notify();
    });
    stream.on("error", (e: grpc.ServiceError) => {
      this.error = e;
      this.ended = true;
      this.notify();
    });
    stream.on("end", () => {
      this.ended = true;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  create(c: WatchCreate): void {
    this.stream.write({
      create_request: {
        key: Buffer.from(c.key),
        range_end: Buffer.from(c.range_end ?? ""),
        start_revision: String(c.start_revision ?? 0),
        progress_notify: c.progress_notify ?? false,
        filters: c.filters ?? [],
        prev_kv: c.prev_kv ?? false,
        watch_id: String(c.watch_id ?? 0),
        fragment: c.fragment ?? false,
      },
    });
  }

  cancel(watchId: number | string): void {
    this.stream.write({ cancel_request: { watch_id: String(watchId) } });
  }

  requestProgress(): void {
    this.stream.write({ progress_request: {} });
  }

  /** Creates a watcher and waits for its "created" response; returns the watch ID. */
  async watch(c: WatchCreate, timeoutMs = 10_000): Promise<number> {
    this.create(c);
    const r = await this.next(timeoutMs);
    if (!r.created) throw new Error(`expected a created response, got ${describeResponse(r)}`);
    if (r.canceled) throw new Error(`watch creation failed: ${r.cancel_reason}`);
    return num(r.watch_id);
  }

  /** Responses queued and not yet taken. */
  get pending(): number {
    return this.queue.length;
  }

  /** The next response; rejects after `timeoutMs` or when the stream ends first. */
  async next(timeoutMs = 10_000): Promise<WatchResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.queue.shift();
      if (r) return r;
      if (this.ended) throw new Error(`watch stream ended${this.error ? `: ${this.error.message}` : ""}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no watch response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Waits up to `ms` for a response; undefined when none came (for "nothing more arrives" checks). */
  async poll(ms: number): Promise<WatchResponse | undefined> {
    try {
      return await this.next(ms);
    } catch (err) {
      if (this.ended) throw err;
      return undefined;
    }
  }

  /** Takes responses until `done(taken)` holds; returns them. */
  async takeUntil(done: (taken: WatchResponse[]) => boolean, timeoutMs = 20_000): Promise<WatchResponse[]> {
    const deadline = Date.now() + timeoutMs;
    const out: WatchResponse[] = [];
    while (!done(out)) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }

  /** Takes responses until `count` events have arrived; returns the responses (events in them). */
  async takeEvents(count: number, timeoutMs = 20_000): Promise<WatchResponse[]> {
    const deadline = Date.now() + timeoutMs;
    const out: WatchResponse[] = [];
    let n = 0;
    while (n < count) {
      const r = await this.next(Math.max(1, deadline - Date.now()));
      out.push(r);
      n += r.events.length;
    }
    return out;
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  /** Half-closes: no more requests from this side. */
  end(): void {
    this.stream.end();
  }

  /** Cancels the call. */
  close(): void {
    this.stream.cancel();
  }
}

export function describeResponse(r: WatchResponse): string {
  return JSON.stringify({
    rev: r.header?.revision,
    id: r.watch_id,
    created: r.created,
    canceled: r.canceled,
    compact: r.compact_revision,
    reason: r.cancel_reason,
    fragment: r.fragment,
    events: r.events.map(
      (e) => `${e.type === EventType.PUT ? "PUT" : "DEL"} ${e.kv?.key.toString()}@${e.kv?.mod_revision}`,
    ),
  });
}

/** A watch response with revisions made relative to `base` and member-specific IDs dropped. */
export interface NormalizedResponse {
  id: number;
  /** Header revision - base (0 stays 0). */
  rev: number;
  created?: true;
  canceled?: true;
  compact?: number;
  reason?: string;
  fragment?: true;
  events?: string[];
}

/**
 * Normalizes a watch response for comparing two members that saw the same writes from different
 * starting revisions: every revision becomes `revision - base` (0 stays 0), lease IDs become "L",
 * long values become their length. Events read like `PUT key=value c3 m5 v2 L prev(key=old c3 m3 v1)`.
 */
export function normalize(r: WatchResponse, base: number): NormalizedResponse {
  const rel = (v: string | undefined): number => (num(v) === 0 ? 0 : num(v) - base);
  const kv = (k: KeyValue): string => {
    const value = k.value.length > 32 ? `<${k.value.length} bytes>` : k.value.toString();
    const lease = num(k.lease) !== 0 ? " L" : "";
    return `${k.key.toString()}=${value} c${rel(k.create_revision)} m${rel(k.mod_revision)} v${k.version}${lease}`;
  };
  const out: NormalizedResponse = { id: num(r.watch_id), rev: rel(r.header?.revision) };
  if (r.created) out.created = true;
  if (r.canceled) out.canceled = true;
  if (num(r.compact_revision) !== 0) out.compact = rel(r.compact_revision);
  if (r.cancel_reason) out.reason = r.cancel_reason;
  if (r.fragment) out.fragment = true;
  if (r.events.length > 0) {
    out.events = r.events.map((e) => {
      const prev = e.prev_kv ? ` prev(${kv(e.prev_kv)})` : "";
      return `${e.type === EventType.PUT ? "PUT" : "DELETE"} ${e.kv ? kv(e.kv) : "?"}${prev}`;
    });
  }
  return out;
}
