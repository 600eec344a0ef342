import type * as grpc from "@grpc/grpc-js";
import { varintSize } from "../../util/varint.js";
import { EtcdError } from "../errors.js";
import type { KeyValue, MvccEvent } from "../mvcc/store.js";
import { keySpan } from "../mvcc/store.js";
import { kvToWire } from "../server/applier.js";
import type { EtcdServer } from "../server/server.js";
import type { Watcher, WatchSink } from "../server/watch-hub.js";
import { FilterType, int, type KeyValueMsg, type ResponseHeader } from "../wire.js";
import { serviceError } from "./errors.js";
import { header } from "./kv.js";

/**
 * The Watch service: one bidirectional stream carries many watchers. Creation, cancellation and
 * progress requests come in; events, created/canceled notices and progress notifications go out.
 *
 * What goes out follows etcd 3.4 (etcdserver/api/v3rpc/watch.go and mvcc/watcher.go):
 *  - create: "created" with the current revision, or, for an empty range or a watch ID already in
 *    use on the stream, a response with watch_id -1, created and canceled, and the reason;
 *  - a watcher whose start revision was compacted gets a cancel with compact_revision set and a
 *    header revision of 0; its ID stays taken until the client cancels it;
 *  - cancel of an unknown ID is ignored; a known one answers "canceled";
 *  - a client half-close does not end the stream: watchers keep delivering until the call ends.
 * One deliberate difference: a progress request (watch_id -1) is answered only once every watcher
 * of the stream has been handed every revision up to the one in its header, so it is a bookmark
 * (nothing at or before that revision is still on its way). etcd 3.4 answers at once.
 */

interface WatchCreateRequest {
  key: Buffer;
  range_end: Buffer;
  start_revision: string;
  progress_notify: boolean;
  filters: number[];
  prev_kv: boolean;
  watch_id: string;
  fragment: boolean;
}

interface WatchRequest {
  request_union?: "create_request" | "cancel_request" | "progress_request";
  create_request?: WatchCreateRequest | null;
  cancel_request?: { watch_id: string } | null;
  progress_request?: object | null;
}

interface WireEvent {
  type: number;
  kv: KeyValueMsg;
  prev_kv?: KeyValueMsg;
}

/** etcd lets a watch response grow this much past --max-request-bytes before fragmenting it. */
const GRPC_OVERHEAD_BYTES = 512 * 1024;
/** Unsent response bytes on a stream above which it counts as congested (delivery pauses). */
const HIGH_WATER_BYTES = 1024 * 1024;
/** Size charged for responses without events. */
const CONTROL_BYTES = 64;

export function watchService(server: EtcdServer): grpc.UntypedServiceImplementation {
  return {
    Watch: (call: grpc.ServerDuplexStream<WatchRequest, object>) => {
      if (server.isLearner) {
        call.destroy(serviceError(new EtcdError("NotSupportedForLearner")));
        return;
      }
      new WatchStream(server, call).start();
    },
  };
}

class WatchStream implements WatchSink {
  /** Every watcher of the stream by ID, compacted ones included (their IDs stay taken). */
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 0;
  private closed = false;
  /** Progress requests not yet answered: they wait until every watcher has caught up. */
  private progressRequests = 0;
  /** Bytes handed to gRPC and not yet written out to the connection. */
  private unsentBytes = 0;
  /** Whether `congested` was seen true since the last resume (so a resume is owed). */
  private wasCongested = false;

  constructor(
    private readonly server: EtcdServer,
    private readonly call: grpc.ServerDuplexStream<WatchRequest, object>,
  ) {}

  get congested(): boolean {
    const c = this.unsentBytes >= HIGH_WATER_BYTES || this.call.writableNeedDrain;
    if (c) this.wasCongested = true;
    return c;
  }

  start(): void {
    this.call.on("data", (req: WatchRequest) => this.onRequest(req));
    this.call.on("drain", () => this.maybeResume());
    // A half-close ("end") only means the client sends no more requests; as in etcd, its watchers
    // keep delivering until the call is cancelled or fails.
    const close = (): void => this.close();
    this.call.on("error", close);
    this.call.on("cancelled", close);
    this.call.on("close", close);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers.values()) this.server.watchHub.remove(w);
    this.watchers.clear();
  }

  private send(msg: object, bytes: number): void {
    if (this.closed) return;
    this.unsentBytes += bytes;
    try {
      this.call.write(msg, () => {
        this.unsentBytes -= bytes;
        this.maybeResume();
      });
    } catch {
      // The call is gone (written after it ended or failed): nothing more can reach the client.
      this.close();
    }
  }

  private maybeResume(): void {
    if (!this.wasCongested || this.closed) return;
    if (this.unsentBytes >= HIGH_WATER_BYTES || this.call.writableNeedDrain) return;
    this.wasCongested = false;
    this.server.watchHub.resume();
  }

  private hdr(revision: number): ResponseHeader {
    return header(this.server, revision);
  }

  private onRequest(req: WatchRequest): void {
    if (this.closed) return;
    if (req.create_request) this.create(req.create_request);
    else if (req.cancel_request) this.cancel(int(req.cancel_request.watch_id));
    else if (req.progress_request) {
      this.progressRequests++;
      this.maybeAnswerProgress();
    }
  }

  private create(c: WatchCreateRequest): void {
    const current = this.server.mvcc.currentRevision;
    // As etcd: an empty key means "\0", the smallest key; a range_end of "\0" means "to the end".
    const key = c.key.length === 0 ? Buffer.from([0]) : c.key;
    const span = keySpan(key, c.range_end);
    let id = int(c.watch_id);
    let error: string | undefined;
    if (!span.single && span.end !== undefined && span.start >= span.end) error = "mvcc: watcher range is empty";
    else if (id === 0) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id)) error = "mvcc: duplicate watch ID provided on the WatchStream";
    if (error !== undefined) {
      this.send(
        { header: this.hdr(current), watch_id: -1, created: true, canceled: true, cancel_reason: error },
        CONTROL_BYTES,
      );
      return;
    }
    this.send({ header: this.hdr(current), watch_id: id, created: true }, CONTROL_BYTES);
    const w = this.server.watchHub.add(id, this, {
      span,
      startRevision: int(c.start_revision),
      prevKv: c.prev_kv,
      noPut: c.filters.includes(FilterType.NOPUT),
      noDelete: c.filters.includes(FilterType.NODELETE),
      progressNotify: c.progress_notify,
      fragment: c.fragment,
    });
    this.watchers.set(id, w);
  }

  private cancel(id: number): void {
    const w = this.watchers.get(id);
    if (!w) return;
    this.server.watchHub.remove(w);
    this.watchers.delete(id);
    this.send({ header: this.hdr(this.server.mvcc.currentRevision), watch_id: id, canceled: true }, CONTROL_BYTES);
    this.maybeAnswerProgress();
  }

  private maybeAnswerProgress(): void {
    if (this.progressRequests === 0 || this.closed) return;
    for (const w of this.watchers.values()) if (!this.server.watchHub.isCaughtUp(w)) return;
    const hdr = this.hdr(this.server.mvcc.currentRevision);
    for (; this.progressRequests > 0; this.progressRequests--) this.send({ header: hdr, watch_id: -1 }, CONTROL_BYTES);
  }

  // ---- WatchSink ----

  deliver(w: Watcher, events: MvccEvent[], revision: number): void {
    const compactRev = this.server.mvcc.compactedRevision;
    const wire: WireEvent[] = [];
    const sizes: number[] = [];
    for (const e of events) {
      // etcd reads the previous value at mod_revision - 1, which is gone once compacted.
      const prev = w.prevKv && e.prevKv && e.kv.modRevision - 1 >= compactRev ? e.prevKv : undefined;
      const ev: WireEvent = { type: e.type === "PUT" ? 0 : 1, kv: kvToWire(e.kv) };
      if (prev) ev.prev_kv = kvToWire(prev);
      wire.push(ev);
      sizes.push(eventSize(e, prev));
    }
    const hdr = this.hdr(revision);
    const base = messageSize(headerSize(hdr)) + int64FieldSize(w.id);
    let total = base;
    for (const s of sizes) total += messageSize(s);
    const limit = this.server.config.maxRequestBytes + GRPC_OVERHEAD_BYTES;
    if (!w.fragment || total < limit || wire.length < 2) {
      this.send({ header: hdr, watch_id: w.id, events: wire }, total);
    } else {
      // etcd's sendFragments: fill each part while it stays under the limit (at least one event
      // per part); every part but the last says "fragment".
      const fragBase = base + 2;
      let i = 0;
      while (i < wire.length) {
        const part: WireEvent[] = [];
        let size = fragBase;
        for (; i < wire.length; i++) {
          const s = messageSize(sizes[i] as number);
          if (part.length > 0 && size + s >= limit) break;
          part.push(wire[i] as WireEvent);
          size += s;
        }
        const last = i === wire.length;
        this.send({ header: hdr, watch_id: w.id, events: part, fragment: !last }, last ? size - 2 : size);
      }
    }
    this.maybeAnswerProgress();
  }

  compacted(w: Watcher, compactRevision: number): void {
    // The watcher keeps its ID on the stream until the client cancels it (etcd does the same).
    this.send(
      { header: this.hdr(0), watch_id: w.id, canceled: true, compact_revision: compactRevision },
      CONTROL_BYTES,
    );
    this.maybeAnswerProgress();
  }

  progress(w: Watcher, revision: number): void {
    this.send({ header: this.hdr(revision), watch_id: w.id }, CONTROL_BYTES);
  }

  caughtUp(_w: Watcher): void {
    this.maybeAnswerProgress();
  }
}

// ---- exact protobuf sizes, for fragmenting as etcd does ----

/** A varint field (tag + value); absent when zero, as proto3 encodes it. */
function int64FieldSize(v: number | bigint): number {
  return v === 0 || v === 0n ? 0 : 1 + varintSize(v);
}

function bytesFieldSize(len: number): number {
  return len === 0 ? 0 : 1 + varintSize(len) + len;
}

/** A length-delimited embedded message field (tag + length + body). */
function messageSize(body: number): number {
  return 1 + varintSize(body) + body;
}

function headerSize(h: ResponseHeader): number {
  return (
    int64FieldSize(BigInt(h.cluster_id)) +
    int64FieldSize(BigInt(h.member_id)) +
    int64FieldSize(BigInt(h.revision)) +
    int64FieldSize(BigInt(h.raft_term))
  );
}

function kvSize(kv: KeyValue): number {
  return (
    bytesFieldSize(kv.key.length) +
    int64FieldSize(kv.createRevision) +
    int64FieldSize(kv.modRevision) +
    int64FieldSize(kv.version) +
    bytesFieldSize(kv.value.length) +
    int64FieldSize(kv.lease)
  );
}

function eventSize(e: MvccEvent, prev: KeyValue | undefined): number {
  let n = (e.type === "PUT" ? 0 : 2) + messageSize(kvSize(e.kv));
  if (prev) n += messageSize(kvSize(prev));
  return n;
}
