import type * as grpc from "@grpc/grpc-js";
import type { MvccEvent } from "../mvcc/store.js";
import { keySpan } from "../mvcc/store.js";
import { kvToWire } from "../server/applier.js";
import type { EtcdServer } from "../server/server.js";
import type { Watcher, WatchSink } from "../server/watch-hub.js";
import { FilterType, int } from "../wire.js";
import { header } from "./kv.js";
import type { Metrics } from "./metrics.js";

/**
 * The Watch service: one bidirectional stream carries many watchers. Creation, cancellation and
 * progress requests come in; events, created/canceled notices and progress notifications go out.
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

// A response's payload size estimate: key + value (+ prev) + framing per event.
const EVENT_OVERHEAD = 64;

export function watchService(server: EtcdServer, metrics: Metrics): grpc.UntypedServiceImplementation {
  return {
    Watch: (call: grpc.ServerDuplexStream<WatchRequest, object>) => {
      metrics.countRequest("Watch");
      new WatchStream(server, call).start();
    },
  };
}

class WatchStream implements WatchSink {
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 0;
  private closed = false;
  /** A progress request waits here until every watcher of the stream has caught up. */
  private progressPending = false;

  constructor(
    private readonly server: EtcdServer,
    private readonly call: grpc.ServerDuplexStream<WatchRequest, object>,
  ) {}

  get congested(): boolean {
    return this.call.writableNeedDrain;
  }

  start(): void {
    this.call.on("data", (req: WatchRequest) => this.onRequest(req));
    this.call.on("drain", () => {
      this.server.watchHub.resume();
      this.maybeAnswerProgress();
    });
    const close = (): void => this.close();
    this.call.on("end", () => {
      close();
      this.call.end();
    });
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

  private send(msg: object): void {
    if (this.closed) return;
    this.call.write(msg);
  }

  private onRequest(req: WatchRequest): void {
    if (this.closed) return;
    if (req.create_request) this.create(req.create_request);
    else if (req.cancel_request) this.cancel(int(req.cancel_request.watch_id));
    else if (req.progress_request) {
      this.progressPending = true;
      this.maybeAnswerProgress();
    }
  }

  private create(c: WatchCreateRequest): void {
    const current = this.server.mvcc.currentRevision;
    const span = keySpan(c.key, c.range_end);
    let id = int(c.watch_id);
    let error: string | undefined;
    if (!span.single && span.end !== undefined && span.start >= span.end) error = "mvcc: watcher range is empty";
    else if (id === 0) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id)) error = "mvcc: watcher ID exists";
    if (error !== undefined) {
      this.send({
        header: header(this.server, current),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: error,
      });
      return;
    }
    this.send({ header: header(this.server, current), watch_id: id, created: true });
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
    this.send({ header: header(this.server, this.server.mvcc.currentRevision), watch_id: id, canceled: true });
    this.maybeAnswerProgress();
  }

  private maybeAnswerProgress(): void {
    if (!this.progressPending) return;
    for (const w of this.watchers.values()) if (!this.server.watchHub.isSynced(w)) return;
    this.progressPending = false;
    this.send({ header: header(this.server, this.server.mvcc.currentRevision), watch_id: -1 });
  }

  // ---- WatchSink ----

  deliver(w: Watcher, events: MvccEvent[], revision: number): void {
    const wire = events.map((e) => ({
      type: e.type === "PUT" ? 0 : 1,
      kv: kvToWire(e.kv),
      ...(w.prevKv && e.prevKv ? { prev_kv: kvToWire(e.prevKv) } : {}),
    }));
    const hdr = header(this.server, revision);
    const limit = this.server.config.maxRequestBytes;
    if (!w.fragment || estimate(events, w.prevKv) <= limit) {
      this.send({ header: hdr, watch_id: w.id, events: wire });
    } else {
      // Split a response too large for one message; every part but the last says "fragment".
      let part: typeof wire = [];
      let size = 0;
      const parts: (typeof wire)[] = [];
      wire.forEach((ev, i) => {
        const evSize = eventSize(events[i] as MvccEvent, w.prevKv);
        if (part.length > 0 && size + evSize > limit) {
          parts.push(part);
          part = [];
          size = 0;
        }
        part.push(ev);
        size += evSize;
      });
      parts.push(part);
      parts.forEach((p, i) => {
        this.send({ header: hdr, watch_id: w.id, events: p, fragment: i < parts.length - 1 });
      });
    }
    if (this.progressPending) this.maybeAnswerProgress();
  }

  compacted(w: Watcher, compactRevision: number): void {
    this.watchers.delete(w.id);
    this.send({
      header: header(this.server, this.server.mvcc.currentRevision),
      watch_id: w.id,
      canceled: true,
      compact_revision: compactRevision,
    });
  }

  progress(w: Watcher, revision: number): void {
    this.send({ header: header(this.server, revision), watch_id: w.id });
  }
}

function eventSize(e: MvccEvent, withPrev: boolean): number {
  let n = e.kv.key.length + e.kv.value.length + EVENT_OVERHEAD;
  if (withPrev && e.prevKv) n += e.prevKv.key.length + e.prevKv.value.length + EVENT_OVERHEAD;
  return n;
}

function estimate(events: readonly MvccEvent[], withPrev: boolean): number {
  let n = 0;
  for (const e of events) n += eventSize(e, withPrev);
  return n;
}
