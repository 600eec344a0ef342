import * as grpc from "@grpc/grpc-js";
import { serviceOf } from "../etcd/proto-client.js";

/**
 * The API server's connection to the store: etcd's v3 gRPC API, nothing else (the API server is the
 * store's only client, as kube-apiserver is etcd's). It knows several endpoints (`--etcd-servers`)
 * and fails over between them: a call that meets an unreachable member or a store without a leader
 * is retried on the next endpoint until the retry window closes, so a leader change costs a client
 * request no more than the election.
 */

export interface KeyValue {
  readonly key: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly value: Buffer;
  readonly lease: string;
}

export interface RangeResult {
  /** The store revision the range was read at. */
  readonly revision: number;
  readonly kvs: KeyValue[];
  readonly more: boolean;
  readonly count: number;
}

export interface RangeOptions {
  /** Exclusive end; absent: the single key. */
  readonly end?: Buffer;
  /** 0: the latest. */
  readonly revision?: number;
  /** 0: no limit. */
  readonly limit?: number;
  readonly countOnly?: boolean;
}

/** What a compare-and-swap transaction did. */
export interface TxnResult {
  readonly revision: number;
  readonly succeeded: boolean;
  /** The key as the failure branch read it (absent when the key does not exist). */
  readonly current: KeyValue | undefined;
  /** For a successful delete: the value it removed. */
  readonly deleted: KeyValue | undefined;
  /** Sent more than once (an earlier attempt may have been applied). */
  readonly retried: boolean;
}

export interface WatchEvent {
  readonly type: "PUT" | "DELETE";
  readonly kv: KeyValue;
  readonly prevKv: KeyValue | undefined;
}

/** The store's errors that the API server turns into Kubernetes statuses. */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly kind: "compacted" | "future-revision" | "too-large" | "unavailable" | "other",
    /** For "compacted": the store's compact revision, when it said. */
    readonly compactRevision = 0,
  ) {
    super(message);
    this.name = "StoreError";
  }
}

export interface StoreClientOptions {
  /** host:port list, in the order to try. */
  readonly endpoints: readonly string[];
  /** TLS to the store: PEM contents (all three, or none). */
  readonly tls?: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer } | undefined;
  /** Each attempt's deadline. */
  readonly attemptTimeoutMs?: number;
  /** How long a call keeps retrying on other endpoints before it fails. */
  readonly retryWindowMs?: number;
}

interface Connection {
  readonly endpoint: string;
  readonly kv: grpc.Client;
  readonly watch: grpc.Client;
  readonly lease: grpc.Client;
  readonly maintenance: grpc.Client;
}

type Unary = (
  req: object,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

interface WireKv {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}

interface WireHeader {
  revision: string;
}

function kvOf(w: WireKv): KeyValue {
  return {
    key: w.key,
    createRevision: Number(w.create_revision),
    modRevision: Number(w.mod_revision),
    version: Number(w.version),
    value: w.value,
    lease: w.lease,
  };
}

/** The range end that selects every key with this prefix (etcd's rule). */
export function prefixEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const b = prefix[i] as number;
    if (b < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = b + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

/**
 * Store errors worth retrying on another member. A timed-out write may still commit, yet it is
 * retried too: every write this client sends is a compare-and-swap (or a compaction), and the
 * storage layer recognises its own earlier write when the retry's compare fails (same uid, same
 * bytes, or a key already gone), so a retry never applies twice and never reports a false error.
 */
function isRetryable(err: grpc.ServiceError): boolean {
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) return true;
  const m = err.details ?? err.message;
  return /no leader|leader changed|not capable|stopped|is not a leader|timed out/.test(m);
}

function storeErrorOf(err: grpc.ServiceError): StoreError {
  const m = err.details ?? err.message;
  if (m.includes("required revision has been compacted")) return new StoreError(m, "compacted");
  if (m.includes("required revision is a future revision")) return new StoreError(m, "future-revision");
  if (m.includes("request is too large")) return new StoreError(m, "too-large");
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)
    return new StoreError(`the store is unavailable: ${m}`, "unavailable");
  return new StoreError(m, "other");
}

export class StoreClient {
  private readonly connections: Connection[];
  private current = 0;
  private readonly attemptTimeoutMs: number;
  private readonly retryWindowMs: number;
  private closed = false;

  constructor(options: StoreClientOptions) {
    if (options.endpoints.length === 0) throw new Error("no store endpoints");
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 2_500;
    this.retryWindowMs = options.retryWindowMs ?? 20_000;
    const creds = options.tls
      ? grpc.credentials.createSsl(options.tls.ca, options.tls.key, options.tls.cert)
      : grpc.credentials.createInsecure();
    const channelOptions: grpc.ClientOptions = {
      "grpc.max_receive_message_length": -1,
      "grpc.max_send_message_length": -1,
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1_000,
    };
    this.connections = options.endpoints.map((endpoint) => {
      const kv = new (serviceOf("etcdserverpb.KV"))(endpoint, creds, channelOptions);
      const shared = { ...channelOptions, channelOverride: kv.getChannel() };
      return {
        endpoint,
        kv,
        watch: new (serviceOf("etcdserverpb.Watch"))(endpoint, creds, shared),
        lease: new (serviceOf("etcdserverpb.Lease"))(endpoint, creds, shared),
        maintenance: new (serviceOf("etcdserverpb.Maintenance"))(endpoint, creds, shared),
      };
    });
  }

  get endpoints(): string[] {
    return this.connections.map((c) => c.endpoint);
  }

  /** Runs one unary call with failover across endpoints. */
  private async call<T>(
    service: "kv" | "lease" | "maintenance",
    method: string,
    req: object,
    /** Counts attempts (a write's caller must know whether it was sent more than once). */
    attempts?: { count: number },
    connectionIndex?: number,
    /** One attempt with this deadline, no failover (health checks must answer quickly). */
    singleAttemptMs?: number,
  ): Promise<T> {
    const deadline = Date.now() + (singleAttemptMs ?? this.retryWindowMs);
    let lastError: grpc.ServiceError | undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new StoreError("the store client is closed", "unavailable");
      const index = connectionIndex ?? this.current;
      const conn = this.connections[index] as Connection;
      if (attempts) attempts.count = attempt + 1;
      try {
        return await new Promise<T>((resolve, reject) => {
          const fn = (conn[service] as unknown as Record<string, Unary>)[method] as Unary;
          fn.call(
            conn[service],
            req,
            {
              deadline:
                singleAttemptMs !== undefined
                  ? deadline
                  : Date.now() + Math.min(this.attemptTimeoutMs, Math.max(1, deadline - Date.now())),
            },
            (err, res) => (err ? reject(err) : resolve(res as T)),
          );
        });
      } catch (e) {
        const err = e as grpc.ServiceError;
        lastError = err;
        if (
          connectionIndex !== undefined ||
          singleAttemptMs !== undefined ||
          !isRetryable(err) ||
          Date.now() >= deadline
        )
          throw storeErrorOf(err);
        // Move on to the next member; after a full round, pause briefly (an election is under way).
        if (this.current === index) this.current = (index + 1) % this.connections.length;
        if ((attempt + 1) % this.connections.length === 0) await sleep(Math.min(200 * (attempt + 1), 1_000));
      }
      if (Date.now() >= deadline && lastError) throw storeErrorOf(lastError);
    }
  }

  async range(key: Buffer, options: RangeOptions = {}): Promise<RangeResult> {
    const res = await this.call<{ header: WireHeader; kvs: WireKv[]; more: boolean; count: string }>("kv", "Range", {
      key,
      // Only when ranging: etcd reads a present-but-empty range_end as "every key from key on".
      ...(options.end ? { range_end: options.end } : {}),
      revision: String(options.revision ?? 0),
      limit: String(options.limit ?? 0),
      count_only: options.countOnly ?? false,
    });
    return {
      revision: Number(res.header.revision),
      kvs: res.kvs.map(kvOf),
      more: res.more,
      count: Number(res.count),
    };
  }

  /** Create: If ModRevision(key) == 0 Then Put; the failure branch reads the key. */
  async create(key: Buffer, value: Buffer, lease = "0"): Promise<TxnResult> {
    return this.cas(key, 0, { request_put: { key, value, lease } });
  }

  /** Update: If ModRevision(key) == rev Then Put Else Get. */
  async update(key: Buffer, modRevision: number, value: Buffer, lease = "0"): Promise<TxnResult> {
    return this.cas(key, modRevision, { request_put: { key, value, lease } });
  }

  /** Delete: If ModRevision(key) == rev Then DeleteRange Else Get. */
  async delete(key: Buffer, modRevision: number): Promise<TxnResult> {
    return this.cas(key, modRevision, { request_delete_range: { key, prev_kv: true } });
  }

  private async cas(key: Buffer, modRevision: number, op: object): Promise<TxnResult> {
    const attempts = { count: 0 };
    const res = await this.call<{
      header: WireHeader;
      succeeded: boolean;
      responses: {
        response_range?: { kvs: WireKv[] } | null;
        response_delete_range?: { prev_kvs: WireKv[] } | null;
      }[];
    }>(
      "kv",
      "Txn",
      {
        compare: [{ result: 0, target: 2, key, mod_revision: String(modRevision) }],
        success: [op],
        failure: [{ request_range: { key } }],
      },
      attempts,
    );
    const first = res.responses[0];
    const current = res.succeeded ? undefined : first?.response_range?.kvs[0];
    const deleted = res.succeeded ? first?.response_delete_range?.prev_kvs[0] : undefined;
    return {
      revision: Number(res.header.revision),
      succeeded: res.succeeded,
      current: current ? kvOf(current) : undefined,
      deleted: deleted ? kvOf(deleted) : undefined,
      retried: attempts.count > 1,
    };
  }

  /** A raw transaction (the compactor's CAS on its bookkeeping key). */
  async txn(request: object): Promise<{
    revision: number;
    succeeded: boolean;
    responses: { response_range?: { kvs: WireKv[] } | null }[];
  }> {
    const res = await this.call<{
      header: WireHeader;
      succeeded: boolean;
      responses: { response_range?: { kvs: WireKv[] } | null }[];
    }>("kv", "Txn", request);
    return { revision: Number(res.header.revision), succeeded: res.succeeded, responses: res.responses };
  }

  async compact(revision: number): Promise<void> {
    await this.call("kv", "Compact", { revision: String(revision), physical: false });
  }

  async leaseGrant(ttlSeconds: number): Promise<string> {
    const res = await this.call<{ ID: string; error: string }>("lease", "LeaseGrant", {
      TTL: String(ttlSeconds),
      ID: "0",
    });
    if (res.error) throw new StoreError(res.error, "other");
    return res.ID;
  }

  /**
   * Asks each endpoint for its status; true when at least one member reports a leader. The
   * readiness check uses it: no leader means no quorum, and writes would hang.
   */
  async storeHealthy(timeoutMs = 2_000): Promise<{ ok: boolean; detail: string }> {
    const results = await Promise.all(
      this.connections.map(
        (c) =>
          new Promise<string>((resolve) => {
            (c.maintenance as unknown as Record<string, Unary>).Status?.call(
              c.maintenance,
              {},
              { deadline: Date.now() + timeoutMs },
              (err, res) => {
                if (err) resolve(`${c.endpoint}: ${err.details || err.message}`);
                else resolve((res as { leader: string }).leader !== "0" ? "" : `${c.endpoint}: no leader`);
              },
            );
          }),
      ),
    );
    if (results.some((r) => r === "")) {
      // A member with a leader must also be able to serve a linearizable read (quorum reachable).
      try {
        const healthy = this.connections.findIndex((_c, i) => results[i] === "");
        await this.call("kv", "Range", { key: Buffer.from("health"), limit: "1" }, undefined, healthy, timeoutMs);
        return { ok: true, detail: "" };
      } catch (e) {
        return { ok: false, detail: (e as Error).message };
      }
    }
    return { ok: false, detail: results.join("; ") };
  }

  /**
   * Watches [key, end) from `startRevision`, with previous values and progress notifications.
   * The watch survives member failures: it reopens on the next endpoint from the revision after
   * the last one it delivered. It ends only by `cancel()` or with an error the caller must see
   * (a compacted start revision).
   */
  watch(key: Buffer, end: Buffer, startRevision: number, handler: WatchHandler): StoreWatch {
    return new StoreWatch(this, key, end, startRevision, handler);
  }

  /** @internal Opens a raw Watch stream on the current endpoint. */
  openWatchStream(): { stream: grpc.ClientDuplexStream<object, WireWatchResponse>; index: number } {
    const index = this.current;
    const conn = this.connections[index] as Connection;
    const stream = (conn.watch as unknown as { Watch(): grpc.ClientDuplexStream<object, WireWatchResponse> }).Watch();
    return { stream, index };
  }

  /** @internal A watch stream failed on this endpoint: prefer another one next time. */
  endpointFailed(index: number): void {
    if (this.current === index) this.current = (index + 1) % this.connections.length;
  }

  close(): void {
    this.closed = true;
    for (const c of this.connections) {
      c.kv.close();
      c.watch.close();
      c.lease.close();
      c.maintenance.close();
    }
  }
}

export interface WireWatchResponse {
  header: WireHeader | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: { type: number; kv: WireKv | null; prev_kv: WireKv | null }[];
}

export interface WatchHandler {
  /** Events of one store revision or more, in order. */
  onEvents(events: WatchEvent[], revision: number): void;
  /** A progress notification: every event up to `revision` has been delivered. */
  onProgress(revision: number): void;
  /** The watch ended for good (compaction or a non-retryable failure). */
  onError(error: StoreError): void;
}

export class StoreWatch {
  /** The revision after the last delivered event or progress (where a reopened watch starts). */
  private nextRevision: number;
  private stream: grpc.ClientDuplexStream<object, WireWatchResponse> | undefined;
  private cancelled = false;
  private retryDeadline = 0;

  constructor(
    private readonly client: StoreClient,
    private readonly key: Buffer,
    private readonly end: Buffer,
    startRevision: number,
    private readonly handler: WatchHandler,
  ) {
    this.nextRevision = startRevision;
    this.open();
  }

  private open(): void {
    if (this.cancelled) return;
    let opened: ReturnType<StoreClient["openWatchStream"]>;
    try {
      opened = this.client.openWatchStream();
    } catch (e) {
      this.fail(new StoreError((e as Error).message, "unavailable"));
      return;
    }
    const { stream, index } = opened;
    this.stream = stream;
    let finished = false;
    const retry = (why: string) => {
      if (finished) return;
      finished = true;
      stream.cancel();
      if (this.cancelled) return;
      this.client.endpointFailed(index);
      if (this.retryDeadline === 0) this.retryDeadline = Date.now() + 30_000;
      if (Date.now() > this.retryDeadline) {
        this.fail(new StoreError(`the store watch failed: ${why}`, "unavailable"));
        return;
      }
      setTimeout(() => this.open(), 200);
    };
    stream.on("data", (r: WireWatchResponse) => {
      if (finished || this.cancelled) return;
      if (r.created && !r.canceled) {
        this.retryDeadline = 0;
        return;
      }
      if (r.canceled || r.compact_revision !== "0") {
        finished = true;
        stream.cancel();
        const compact = Number(r.compact_revision);
        if (compact > 0) this.fail(new StoreError(r.cancel_reason || "compacted", "compacted", compact));
        else if (/no leader|leader changed/.test(r.cancel_reason)) {
          finished = false;
          retry(r.cancel_reason);
        } else this.fail(new StoreError(r.cancel_reason || "the store cancelled the watch", "other"));
        return;
      }
      const revision = Number(r.header?.revision ?? 0);
      if (r.events.length === 0) {
        if (revision >= this.nextRevision) this.nextRevision = revision + 1;
        this.handler.onProgress(revision);
        return;
      }
      const events: WatchEvent[] = [];
      for (const e of r.events) {
        if (!e.kv) continue;
        const kv = kvOf(e.kv);
        if (kv.modRevision < this.nextRevision) continue; // replayed after a reopen
        events.push({ type: e.type === 1 ? "DELETE" : "PUT", kv, prevKv: e.prev_kv ? kvOf(e.prev_kv) : undefined });
      }
      if (events.length === 0) return;
      const last = (events[events.length - 1] as WatchEvent).kv.modRevision;
      this.nextRevision = last + 1;
      this.handler.onEvents(events, last);
    });
    stream.on("error", (e: grpc.ServiceError) => {
      if (this.cancelled) return;
      retry(e.details || e.message);
    });
    stream.on("end", () => retry("the stream ended"));
    stream.write({
      create_request: {
        key: this.key,
        range_end: this.end,
        start_revision: String(this.nextRevision),
        progress_notify: true,
        filters: [],
        prev_kv: true,
        watch_id: "0",
        fragment: false,
      },
    });
  }

  /** Asks the store for a progress notification (a bookmark's source). */
  requestProgress(): void {
    this.stream?.write({ progress_request: {} });
  }

  private fail(error: StoreError): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.handler.onError(error);
  }

  cancel(): void {
    this.cancelled = true;
    this.stream?.cancel();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
