import { randomUUID } from "node:crypto";
import { groupVersion, type KObject, type ResourceType } from "./resources.js";
import type { FieldSelector, LabelSelector } from "./selectors.js";
import { ApiError, errors } from "./status.js";
import { type KeyValue, prefixEnd, type StoreClient, StoreError, type StoreWatch } from "./store-client.js";

/**
 * Kubernetes objects on the store, the way kube-apiserver keeps them:
 * - key `<prefix>/<resource>/<namespace>/<name>` (cluster-scoped: `<prefix>/<resource>/<name>`),
 *   value the object as JSON without its resourceVersion (readable with `etcdctl get`);
 * - the object's resourceVersion is the key's mod_revision; a list's is the revision it was read at;
 * - create = Txn(mod_revision == 0 → Put), update = Txn(mod_revision == rv → Put, else Range),
 *   delete = Txn(mod_revision == rv → DeleteRange, else Range);
 * - watch = the store's watch from rv+1 with previous values and progress notifications.
 */

export interface ListOptions {
  readonly labels?: LabelSelector | undefined;
  readonly fields?: FieldSelector | undefined;
  readonly limit?: number;
  readonly continueToken?: string | undefined;
  /** "" or "0": the latest; otherwise a revision (exact when `exact`). */
  readonly resourceVersion?: string | undefined;
  readonly exact?: boolean;
}

export interface ListResult {
  readonly items: KObject[];
  readonly resourceVersion: number;
  readonly continueToken?: string;
  readonly remainingItemCount?: number;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface WatchOptions {
  readonly labels?: LabelSelector | undefined;
  readonly fields?: FieldSelector | undefined;
  readonly resourceVersion?: string | undefined;
}

export interface WatchSink {
  event(type: Exclude<WatchEventType, "BOOKMARK" | "ERROR">, object: KObject): void;
  /** Every event up to `revision` has been sent. */
  progress(revision: number): void;
  error(err: ApiError): void;
}

/** Characters kube-apiserver uses for generateName suffixes (no vowels, no look-alikes). */
const NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export function generateSuffix(): string {
  let out = "";
  for (let i = 0; i < 5; i++) out += NAME_ALPHABET[Math.floor(Math.random() * NAME_ALPHABET.length)];
  return out;
}

export function nowTimestamp(): string {
  return `${new Date().toISOString().slice(0, 19)}Z`;
}

interface ContinueToken {
  readonly v: string;
  readonly rv: number;
  readonly start: string;
}

export function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv, start })).toString("base64url");
}

function decodeContinue(token: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(token, "base64").toString("utf8")) as ContinueToken;
    if (t.v !== "meta.k8s.io/v1" || typeof t.rv !== "number" || typeof t.start !== "string" || t.start.includes(".."))
      throw new Error("bad token");
    return t;
  } catch {
    throw errors.badRequest(
      "continue key is not valid: the continue token is malformed; start the list again without it",
    );
  }
}

const CONTINUE_EXPIRED =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

export class Storage {
  private eventLease: { id: string; grantedAt: number } | undefined;

  constructor(
    readonly store: StoreClient,
    /** --etcd-prefix, without a trailing slash. */
    readonly prefix: string,
    /** --event-ttl in seconds: events are stored under a lease that long. */
    private readonly eventTtlSeconds = 3600,
  ) {}

  key(r: ResourceType, namespace: string, name: string): Buffer {
    return Buffer.from(
      r.namespaced
        ? `${this.prefix}/${r.storagePrefix}/${namespace}/${name}`
        : `${this.prefix}/${r.storagePrefix}/${name}`,
    );
  }

  /** The key prefix of a list: one namespace's objects, or all of them. */
  listPrefix(r: ResourceType, namespace: string | undefined): string {
    return r.namespaced && namespace
      ? `${this.prefix}/${r.storagePrefix}/${namespace}/`
      : `${this.prefix}/${r.storagePrefix}/`;
  }

  decode(r: ResourceType, kv: KeyValue): KObject {
    let o: KObject;
    try {
      o = JSON.parse(kv.value.toString("utf8")) as KObject;
    } catch {
      throw errors.internal(`the stored value at ${kv.key.toString()} is not JSON (was it written by another server?)`);
    }
    if (!o || typeof o !== "object" || typeof o.metadata !== "object" || o.metadata === null)
      throw errors.internal(`the stored value at ${kv.key.toString()} is not a Kubernetes object`);
    o.apiVersion = groupVersion(r);
    o.kind = r.kind;
    o.metadata.resourceVersion = String(kv.modRevision);
    return o;
  }

  encode(o: KObject): Buffer {
    const { resourceVersion: _rv, selfLink: _self, ...metadata } = o.metadata;
    return Buffer.from(JSON.stringify({ ...o, metadata }));
  }

  private async leaseFor(r: ResourceType): Promise<string> {
    if (r.plural !== "events" || r.group !== "") return "0";
    const now = Date.now();
    // One lease per minute of events, as kube-apiserver reuses leases: events expire within a minute of their TTL.
    if (!this.eventLease || now - this.eventLease.grantedAt > 60_000) {
      const id = await this.storeCall(() => this.store.leaseGrant(this.eventTtlSeconds + 60));
      this.eventLease = { id, grantedAt: now };
    }
    return this.eventLease.id;
  }

  /** Store errors become API errors here, in one place. */
  async storeCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ApiError) throw e;
      if (e instanceof StoreError) {
        switch (e.kind) {
          case "too-large":
            throw errors.tooLarge(1572864);
          case "unavailable":
            throw errors.timeout(`the store did not answer in time: ${e.message}`);
          default:
            throw errors.internal(e.message);
        }
      }
      throw e;
    }
  }

  async get(r: ResourceType, namespace: string, name: string): Promise<KObject> {
    const res = await this.storeCall(() => this.store.range(this.key(r, namespace, name)));
    const kv = res.kvs[0];
    if (!kv) throw errors.notFound(r, name);
    return this.decode(r, kv);
  }

  async tryGet(r: ResourceType, namespace: string, name: string): Promise<KObject | undefined> {
    try {
      return await this.get(r, namespace, name);
    } catch (e) {
      if (e instanceof ApiError && e.code === 404) return undefined;
      throw e;
    }
  }

  async list(r: ResourceType, namespace: string | undefined, options: ListOptions = {}): Promise<ListResult> {
    const prefix = this.listPrefix(r, namespace);
    let key = prefix;
    let revision = 0;
    const end = prefixEnd(Buffer.from(prefix));
    if (options.continueToken) {
      const t = decodeContinue(options.continueToken);
      key = prefix + t.start;
      revision = t.rv;
    } else if (options.resourceVersion && options.resourceVersion !== "0" && options.exact) {
      revision = Number(options.resourceVersion);
      if (!Number.isInteger(revision) || revision < 0)
        throw errors.badRequest(`invalid resource version: ${options.resourceVersion}`);
    }
    const limit = options.limit && options.limit > 0 ? options.limit : 0;
    const filtered = Boolean(options.labels?.requirements.length || options.fields?.requirements.length);
    const items: KObject[] = [];
    let lastKey: Buffer | undefined;
    let more = false;
    let cursor = Buffer.from(key);
    for (;;) {
      let res: Awaited<ReturnType<StoreClient["range"]>>;
      try {
        res = await this.store.range(cursor, { end, revision, limit: limit > 0 ? limit - items.length + 1 : 0 });
      } catch (e) {
        if (e instanceof StoreError && e.kind === "compacted") {
          if (options.continueToken) {
            throw new ApiError(410, "Expired", CONTINUE_EXPIRED);
          }
          throw errors.tooOldResourceVersion(revision, 0);
        }
        if (e instanceof StoreError && e.kind === "future-revision")
          throw errors.timeout(`Too large resource version: ${revision}, current: unknown`);
        return this.storeCall(() => Promise.reject(e));
      }
      if (revision === 0) revision = res.revision;
      let i = 0;
      for (; i < res.kvs.length; i++) {
        const kv = res.kvs[i] as KeyValue;
        if (limit > 0 && items.length === limit) {
          more = true;
          break;
        }
        lastKey = kv.key;
        const o = this.decode(r, kv);
        if (!filtered || matches(r, o, options)) items.push(o);
      }
      if (more) break;
      if (!res.more || !lastKey) break;
      cursor = Buffer.concat([lastKey, Buffer.from([0])]);
    }
    if (!more || !lastKey) return { items, resourceVersion: revision };
    const nextKey = Buffer.concat([lastKey, Buffer.from([0])]);
    const start = nextKey.subarray(Buffer.byteLength(prefix)).toString("utf8");
    const result: ListResult = { items, resourceVersion: revision, continueToken: encodeContinue(revision, start) };
    if (filtered) return result;
    const counted = await this.storeCall(() => this.store.range(nextKey, { end, revision, countOnly: true }));
    return { ...result, remainingItemCount: counted.count };
  }

  /**
   * Stores a new object (metadata already prepared); fails with AlreadyExists. A retried create
   * that finds its own object (same uid) counts as done.
   */
  async create(r: ResourceType, o: KObject): Promise<KObject> {
    const name = String(o.metadata.name);
    const key = this.key(r, String(o.metadata.namespace ?? ""), name);
    const lease = await this.leaseFor(r);
    const value = this.encode(o);
    const res = await this.storeCall(() => this.store.create(key, value, lease));
    if (!res.succeeded) {
      if (res.current && this.decode(r, res.current).metadata.uid === o.metadata.uid)
        return this.decode(r, res.current);
      throw errors.alreadyExists(r, name);
    }
    return { ...o, metadata: { ...o.metadata, resourceVersion: String(res.revision) } };
  }

  /**
   * Replaces the object at `expectedRevision` (0: whatever is there now). A write that changes
   * nothing is skipped, as kube-apiserver does: the resourceVersion stays.
   */
  async update(r: ResourceType, current: KObject, next: KObject): Promise<KObject> {
    const name = String(next.metadata.name);
    const key = this.key(r, String(next.metadata.namespace ?? ""), name);
    const value = this.encode(next);
    if (value.equals(this.encode(current))) return current;
    const lease = await this.leaseFor(r);
    const rv = Number(current.metadata.resourceVersion);
    const res = await this.storeCall(() => this.store.update(key, rv, value, lease));
    if (!res.succeeded) {
      if (!res.current) throw errors.notFound(r, name);
      // A retried write that already landed reads back exactly what we wrote.
      if (res.current.value.equals(value)) return this.decode(r, res.current);
      throw errors.modified(r, name);
    }
    return { ...next, metadata: { ...next.metadata, resourceVersion: String(res.revision) } };
  }

  /** Deletes at the object's current resourceVersion; Conflict when it changed meanwhile. */
  async delete(r: ResourceType, current: KObject): Promise<KObject> {
    const name = String(current.metadata.name);
    const key = this.key(r, String(current.metadata.namespace ?? ""), name);
    const rv = Number(current.metadata.resourceVersion);
    const res = await this.storeCall(() => this.store.delete(key, rv));
    if (!res.succeeded) {
      // Gone after a retried delete: the earlier attempt deleted it.
      if (!res.current && res.retried) return current;
      if (!res.current) throw errors.notFound(r, name);
      throw errors.modified(r, name);
    }
    return current;
  }

  /**
   * Reads, transforms and writes back, retrying when another writer got there first (patches and
   * status updates, which do not name a resourceVersion, behave this way in kube-apiserver).
   */
  async guaranteedUpdate(
    r: ResourceType,
    namespace: string,
    name: string,
    transform: (current: KObject) => Promise<KObject> | KObject,
    write: (current: KObject, next: KObject) => Promise<KObject>,
  ): Promise<KObject> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(r, namespace, name);
      const next = await transform(structuredClone(current));
      try {
        return await write(current, next);
      } catch (e) {
        const retry = e instanceof ApiError && e.reason === "Conflict" && attempt < 8 && !pinsVersion(current, next);
        if (!retry) throw e;
      }
    }
  }

  /**
   * Watches a resource (one namespace or all) from `resourceVersion`. With "" or "0" the current
   * state comes first as ADDED events. Returns a function that stops the watch.
   */
  async watch(
    r: ResourceType,
    namespace: string | undefined,
    options: WatchOptions,
    sink: WatchSink,
  ): Promise<{ stop: () => void; requestProgress: () => void }> {
    const prefix = this.listPrefix(r, namespace);
    let start: number;
    const rv = options.resourceVersion ?? "";
    if (rv === "" || rv === "0") {
      const listed = await this.list(r, namespace, { labels: options.labels, fields: options.fields });
      for (const o of listed.items) sink.event("ADDED", o);
      start = listed.resourceVersion + 1;
    } else {
      const n = Number(rv);
      if (!Number.isInteger(n) || n < 0) throw errors.badRequest(`invalid resource version: ${rv}`);
      start = n + 1;
    }
    const filtered = Boolean(options.labels?.requirements.length || options.fields?.requirements.length);
    const requested = start - 1;
    let watch: StoreWatch | undefined;
    watch = this.store.watch(Buffer.from(prefix), prefixEnd(Buffer.from(prefix)), start, {
      onEvents: (events) => {
        for (const e of events) {
          try {
            const cur = e.type === "PUT" ? this.decode(r, e.kv) : undefined;
            const prev = e.prevKv ? this.decode(r, e.prevKv) : undefined;
            if (e.type === "DELETE") {
              if (!prev) continue;
              prev.metadata.resourceVersion = String(e.kv.modRevision);
              if (!filtered || matches(r, prev, options)) sink.event("DELETED", prev);
              continue;
            }
            if (!cur) continue;
            const created = e.kv.createRevision === e.kv.modRevision;
            const curMatch = !filtered || matches(r, cur, options);
            const prevMatch = !created && prev !== undefined && (!filtered || matches(r, prev, options));
            if (curMatch && prevMatch) sink.event("MODIFIED", cur);
            else if (curMatch) sink.event("ADDED", cur);
            else if (prevMatch) sink.event("DELETED", cur);
          } catch (err) {
            if (err instanceof ApiError) sink.error(err);
          }
        }
      },
      onProgress: (revision) => sink.progress(revision),
      onError: (err) => {
        if (err.kind === "compacted") sink.error(errors.tooOldResourceVersion(requested, err.compactRevision));
        else sink.error(errors.internal(err.message));
      },
    });
    return {
      stop: () => {
        watch?.cancel();
        watch = undefined;
      },
      requestProgress: () => watch?.requestProgress(),
    };
  }
}

function pinsVersion(current: KObject, next: KObject): boolean {
  const want = next.metadata.resourceVersion;
  return typeof want === "string" && want !== "" && want !== current.metadata.resourceVersion;
}

/** Whether an object passes a list or watch's label and field selectors. */
export function matches(
  r: ResourceType,
  o: KObject,
  options: { labels?: LabelSelector | undefined; fields?: FieldSelector | undefined },
): boolean {
  if (options.labels && !options.labels.matches(o.metadata.labels as Record<string, unknown> | undefined)) return false;
  if (options.fields) {
    const get = (field: string): string => {
      if (field === "metadata.name") return String(o.metadata.name ?? "");
      if (field === "metadata.namespace") return String(o.metadata.namespace ?? "");
      return r.fields?.[field]?.(o) ?? "";
    };
    if (!options.fields.matches(get)) return false;
  }
  return true;
}

export function newUid(): string {
  return randomUUID();
}
