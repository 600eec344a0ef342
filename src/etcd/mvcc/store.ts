import { crc32c } from "../../util/crc32c.js";
import { errCompacted, errFutureRev } from "../errors.js";
import { SortedKeys } from "./sorted-keys.js";

/**
 * The multi-version key-value store, as etcd's mvcc package defines it: one global revision counter
 * that every write transaction bumps once, per-key create/mod revisions and versions, tombstones for
 * deletes, reads at any revision not yet compacted, and compaction that drops what no read at or
 * after the compaction revision can see.
 *
 * Each key keeps its records (one per revision that touched it) oldest first. A worked example for
 * key "a":
 *
 *     rev 2: put a=1   -> {mod 2, create 2, version 1}
 *     rev 4: put a=2   -> {mod 4, create 2, version 2}
 *     rev 6: delete a  -> tombstone {mod 6, version 0}
 *     rev 8: put a=3   -> {mod 8, create 8, version 1}   (a new "generation" starts)
 *
 *  - range a @5 finds the latest record <= 5: mod 4, value 2.
 *  - range a @7 finds the tombstone at 6: not found.
 *  - compact @5 keeps what a read at 5 or later can see: [mod 4, tomb 6, mod 8].
 *  - compact @7 keeps [mod 8]: the tombstone was the latest record <= 7 and a tombstone hides
 *    nothing that a later read needs, so it goes too (etcd does the same).
 *
 * Alongside, `history` lists the events of every revision from the compaction revision on, in
 * revision order, so watchers that fell behind can catch up without scanning all keys. It is kept
 * for as long as the records, so it is kept small: entry i holds revision historyStart + i, as the
 * one event most revisions have, or an array of a transaction's events (tight, not the transaction's
 * own growing array: an array grown by push holds room for 17 events).
 *
 * All methods are synchronous: the apply loop is the only writer, so a read never sees half of a
 * write transaction.
 */

export interface KeyValue {
  readonly key: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  /** 0 marks a tombstone (deleted key). */
  readonly version: number;
  readonly value: Buffer;
  /** Lease ID; 0n for none. */
  readonly lease: bigint;
}

export interface MvccEvent {
  readonly type: "PUT" | "DELETE";
  /** For DELETE: the key with mod_revision set to the deletion revision, as etcd sends it. */
  readonly kv: KeyValue;
  /** The key's value before this event, when it had one. */
  readonly prevKv: KeyValue | undefined;
}

export interface RevisionEvents {
  readonly revision: number;
  readonly events: MvccEvent[];
}

/** A half-open key interval [start, end); `end` undefined means "to the last key". */
export interface KeySpan {
  readonly start: string;
  readonly end: string | undefined;
  /** True when the span is exactly the one key `start`. */
  readonly single: boolean;
}

/** Builds the key span of an etcd request from its `key` and `range_end` fields. */
export function keySpan(key: Buffer, rangeEnd: Buffer | undefined): KeySpan {
  const start = key.toString("latin1");
  if (!rangeEnd || rangeEnd.length === 0) return { start, end: `${start}\u0000`, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start, end: undefined, single: false };
  return { start, end: rangeEnd.toString("latin1"), single: false };
}

export function spanContains(span: KeySpan, key: string): boolean {
  if (span.single) return key === span.start;
  return key >= span.start && (span.end === undefined || key < span.end);
}

export interface RangeOptions {
  /** Read at this revision; 0 or less means the current one. */
  readonly revision?: number;
  /** At most this many keys, 0 for all. */
  readonly limit?: number;
  readonly countOnly?: boolean;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  /** Keys in the span at that revision, regardless of limit. */
  readonly count: number;
  readonly revision: number;
}

/** Receives lease attachment changes so the lessor can revoke a lease's keys. */
export interface LeaseAttachmentListener {
  attach(lease: bigint, key: string): void;
  detach(lease: bigint, key: string): void;
}

/** What the store retains of each key, for snapshots. */
export interface StoreImage {
  readonly currentRevision: number;
  readonly compactedRevision: number;
  readonly records: KeyValue[];
}

// Rough per-record cost of the on-disk form (revision key, protobuf framing, page overhead); the
// "db size" we report grows with every record and shrinks only on defragment, as bbolt's does.
const RECORD_OVERHEAD = 48;
const EMPTY_DB_SIZE = 20 * 1024;

export class MvccStore {
  private readonly byKey = new Map<string, KeyValue[]>();
  private keys = new SortedKeys();
  private history: Array<MvccEvent | readonly MvccEvent[]> = [];
  /** The revision of history[0]. */
  private historyStart = 0;
  private rev = 1;
  private compactRev = 0;
  /** Whether anything was ever compacted (etcd starts at -1, so compacting at 0 is allowed once). */
  private compactedOnce = false;
  private allocatedBytes = EMPTY_DB_SIZE;
  private liveBytes = EMPTY_DB_SIZE;
  private leaseListener: LeaseAttachmentListener | undefined;

  setLeaseListener(listener: LeaseAttachmentListener): void {
    this.leaseListener = listener;
  }

  /** The revision of the last write; a new store starts at 1, as etcd's does. */
  get currentRevision(): number {
    return this.rev;
  }

  get compactedRevision(): number {
    return this.compactRev;
  }

  /** etcd's "first revision" of reads: the compaction revision, or -1 before any compaction. */
  get firstRevision(): number {
    return this.compactedOnce ? this.compactRev : -1;
  }

  /** Size of the backend as a file would have it: grows with writes, shrinks only on defragment. */
  get dbSize(): number {
    return this.allocatedBytes;
  }

  /** Bytes still needed after compaction: what a defragment would shrink the backend to. */
  get dbSizeInUse(): number {
    return this.liveBytes;
  }

  get keyCount(): number {
    return this.keys.size;
  }

  range(span: KeySpan, options: RangeOptions = {}): RangeResult {
    return this.rangeAt(span, this.resolveReadRevision(options.revision ?? 0), options);
  }

  /** Starts a write transaction at revision current+1. Only one may be open at a time. */
  write(): WriteTxn {
    return new WriteTxn(this);
  }

  /**
   * Drops every record that no read at `revision` or later can see. Returns the revisions that
   * were dropped from the watch history so callers can reason about it (mostly for tests).
   */
  compact(revision: number): void {
    if (revision < 0 || (this.compactedOnce && revision <= this.compactRev)) throw errCompacted();
    if (revision > this.rev) throw errFutureRev();
    const emptied: string[] = [];
    for (const [key, records] of this.byKey) {
      const keep = recordsKeptByCompaction(records, revision);
      if (keep === records.length) continue;
      for (let i = 0; i < records.length - keep; i++) this.liveBytes -= recordCost(records[i] as KeyValue);
      records.splice(0, records.length - keep);
      if (records.length === 0) emptied.push(key);
    }
    for (const key of emptied) {
      this.byKey.delete(key);
      this.keys.delete(key);
    }
    this.compactRev = revision;
    this.compactedOnce = true;
    const first = Math.max(0, revision - this.historyStart);
    this.history = first >= this.history.length ? [] : this.history.slice(first);
    this.historyStart += first;
    const head = this.history[0];
    if (head !== undefined && this.historyStart === revision) {
      // A read at the compaction revision still sees its puts; its deletes are gone (as in etcd).
      this.history[0] = packEvents(eventsOf(head).filter((e) => e.type === "PUT"));
    }
  }

  /** Returns the space freed by compaction to the "file", as bbolt's defragment does. */
  defragment(): void {
    this.allocatedBytes = this.liveBytes;
  }

  /**
   * Events of revisions >= fromRevision, oldest first, whole revisions only, stopping once
   * `maxEvents` is reached (a revision is never split). Throws Compacted when the history no
   * longer reaches back to fromRevision.
   */
  eventsSince(fromRevision: number, maxEvents: number): RevisionEvents[] {
    if (fromRevision < this.compactRev) throw errCompacted();
    const out: RevisionEvents[] = [];
    let n = 0;
    for (let i = Math.max(0, fromRevision - this.historyStart); i < this.history.length && n < maxEvents; i++) {
      const events = eventsOf(this.history[i] as MvccEvent | readonly MvccEvent[]);
      out.push({ revision: this.historyStart + i, events });
      n += events.length;
    }
    return out;
  }

  /**
   * A CRC-32C over every record a read at `revision` or earlier could still see, in key then
   * revision order. Equal on every member that applied the same log (Maintenance.HashKV).
   */
  hashKV(revision: number): { hash: number; revision: number; compactRevision: number } {
    const rev = revision <= 0 ? this.rev : revision;
    if (rev > this.rev) throw errFutureRev();
    if (rev < this.compactRev) throw errCompacted();
    let hash = crc32c(Buffer.from(`compact:${this.compactRev}`));
    const scratch = Buffer.alloc(8 * 5);
    this.keys.walk("", undefined, (key) => {
      for (const r of this.byKey.get(key) ?? []) {
        if (r.modRevision > rev) break;
        scratch.writeDoubleLE(r.modRevision, 0);
        scratch.writeDoubleLE(r.createRevision, 8);
        scratch.writeDoubleLE(r.version, 16);
        scratch.writeBigInt64LE(r.lease, 24);
        scratch.writeDoubleLE(r.value.length, 32);
        hash = crc32c(r.key, hash);
        hash = crc32c(scratch, hash);
        hash = crc32c(r.value, hash);
      }
      return true;
    });
    return { hash, revision: this.rev, compactRevision: this.compactRev };
  }

  /**
   * The records written after `revision`, in revision order (a transaction's in its own order),
   * for a delta snapshot; undefined when a compaction passed `revision` (the history that lists
   * them no longer reaches back, and records after it may be gone).
   */
  recordsAfter(revision: number): KeyValue[] | undefined {
    if (revision < this.compactRev || revision + 1 < this.historyStart) return undefined;
    const records: KeyValue[] = [];
    for (let i = Math.max(0, revision + 1 - this.historyStart); i < this.history.length; i++) {
      const entry = this.history[i];
      if (Array.isArray(entry)) for (const e of entry as readonly MvccEvent[]) records.push(e.kv);
      else records.push((entry as MvccEvent).kv);
    }
    return records;
  }

  /** Every retained record, for a snapshot. */
  image(): StoreImage {
    const records: KeyValue[] = [];
    this.keys.walk("", undefined, (key) => {
      for (const r of this.byKey.get(key) ?? []) records.push(r);
      return true;
    });
    return { currentRevision: this.rev, compactedRevision: this.compactRev, records };
  }

  /** Replaces the whole state with a snapshot's. */
  restore(image: StoreImage): void {
    this.byKey.clear();
    this.keys = new SortedKeys();
    this.rev = image.currentRevision;
    this.compactRev = image.compactedRevision;
    this.compactedOnce = image.compactedRevision > 0;
    this.liveBytes = EMPTY_DB_SIZE;
    // The history, filled in place: slot i holds revision historyStart + i, as one event or, for
    // a transaction, an array of them (a Map of arrays per revision cost more than the rest).
    this.historyStart = Math.max(this.compactRev, 1);
    const history: Array<MvccEvent | MvccEvent[] | readonly MvccEvent[]> = new Array(this.rev - this.historyStart + 1);
    let key = "";
    let keyBytes: Buffer | undefined;
    let list: KeyValue[] = [];
    for (const r of image.records) {
      // A key's records come together (oldest first), and often share one key buffer.
      if (r.key !== keyBytes && !(keyBytes !== undefined && r.key.equals(keyBytes))) {
        keyBytes = r.key;
        key = r.key.toString("latin1");
        const known = this.byKey.get(key);
        if (known) list = known;
        else {
          list = [];
          this.byKey.set(key, list);
          this.keys.insert(key);
        }
      }
      const prev = list[list.length - 1];
      list.push(r);
      this.liveBytes += recordCost(r);
      if (r.modRevision >= this.compactRev) {
        const prevKv = prev && prev.version > 0 ? prev : undefined;
        const event: MvccEvent = { type: r.version > 0 ? "PUT" : "DELETE", kv: r, prevKv };
        const slot = r.modRevision - this.historyStart;
        const there = history[slot];
        if (there === undefined) history[slot] = event;
        else if (Array.isArray(there)) (there as MvccEvent[]).push(event);
        else history[slot] = [there as MvccEvent, event];
      }
    }
    this.allocatedBytes = this.liveBytes;
    // Sub-revision order within a revision is not kept in the image; key order stands in for it.
    for (let i = 0; i < history.length; i++) {
      const h = history[i];
      if (h === undefined) history[i] = NO_EVENTS;
      else if (Array.isArray(h) && h.length > 2) history[i] = h.slice(); // tight, as packEvents keeps them
    }
    this.history = history as Array<MvccEvent | readonly MvccEvent[]>;
    if (this.leaseListener) {
      for (const [key, list] of this.byKey) {
        const last = list[list.length - 1];
        if (last && last.version > 0 && last.lease !== 0n) this.leaseListener.attach(last.lease, key);
      }
    }
  }

  // ---- internals shared with WriteTxn ----

  /** @internal */
  resolveReadRevision(requested: number): number {
    if (requested <= 0) return this.rev;
    if (requested > this.rev) throw errFutureRev();
    if (requested < this.compactRev) throw errCompacted();
    return requested;
  }

  /** @internal */
  rangeAt(span: KeySpan, rev: number, options: RangeOptions): RangeResult {
    const limit = options.limit && options.limit > 0 ? options.limit : Number.POSITIVE_INFINITY;
    const kvs: KeyValue[] = [];
    let count = 0;
    const visit = (key: string): boolean => {
      const kv = latestAt(this.byKey.get(key), rev);
      if (kv) {
        count++;
        if (!options.countOnly && kvs.length < limit) kvs.push(kv);
      }
      return true;
    };
    if (span.single) {
      if (this.byKey.has(span.start)) visit(span.start);
    } else if (span.end === undefined || span.start < span.end) {
      this.keys.walk(span.start, span.end, visit);
    }
    return { kvs, count, revision: this.rev };
  }

  /** @internal */
  latest(key: string): KeyValue | undefined {
    const list = this.byKey.get(key);
    const last = list?.[list.length - 1];
    return last && last.version > 0 ? last : undefined;
  }

  /** @internal */
  appendRecord(key: string, record: KeyValue): void {
    let list = this.byKey.get(key);
    if (!list) {
      list = [];
      this.byKey.set(key, list);
      this.keys.insert(key);
    }
    list.push(record);
    const cost = recordCost(record);
    this.allocatedBytes += cost;
    this.liveBytes += cost;
  }

  /** @internal */
  liveKeysIn(span: KeySpan): string[] {
    const out: string[] = [];
    const visit = (key: string): boolean => {
      if (this.latest(key)) out.push(key);
      return true;
    };
    if (span.single) visit(span.start);
    else if (span.end === undefined || span.start < span.end) this.keys.walk(span.start, span.end, visit);
    return out;
  }

  /** @internal */
  commit(revision: number, events: readonly MvccEvent[]): void {
    this.rev = revision;
    if (this.history.length === 0) this.historyStart = revision;
    this.history.push(packEvents(events));
  }

  /** @internal */
  notifyLease(kind: "attach" | "detach", lease: bigint, key: string): void {
    if (lease === 0n || !this.leaseListener) return;
    this.leaseListener[kind](lease, key);
  }
}

/**
 * One write transaction: every change gets main revision current+1 and increasing sub-revisions;
 * reads inside it see its own earlier writes. `end()` publishes the revision only if something
 * changed, so a transaction that writes nothing does not consume a revision (as in etcd).
 */
export class WriteTxn {
  private readonly revision: number;
  private readonly events: MvccEvent[] = [];
  private ended = false;

  constructor(private readonly store: MvccStore) {
    this.revision = store.currentRevision + 1;
  }

  /** The revision reads inside this transaction see. */
  get readRevision(): number {
    return this.events.length > 0 ? this.revision : this.store.currentRevision;
  }

  get changed(): boolean {
    return this.events.length > 0;
  }

  range(span: KeySpan, options: RangeOptions = {}): RangeResult {
    const requested = options.revision ?? 0;
    const rev =
      requested <= 0 || requested === this.readRevision ? this.readRevision : this.store.resolveReadRevision(requested);
    const result = this.store.rangeAt(span, rev, options);
    return { ...result, revision: this.readRevision };
  }

  latest(key: string): KeyValue | undefined {
    return this.store.latest(key);
  }

  put(keyBytes: Buffer, value: Buffer, lease: bigint): { kv: KeyValue; prevKv: KeyValue | undefined } {
    const key = keyBytes.toString("latin1");
    const prev = this.store.latest(key);
    const kv: KeyValue = {
      key: keyBytes,
      createRevision: prev ? prev.createRevision : this.revision,
      modRevision: this.revision,
      version: prev ? prev.version + 1 : 1,
      value,
      lease,
    };
    this.store.appendRecord(key, kv);
    if (prev && prev.lease !== lease) this.store.notifyLease("detach", prev.lease, key);
    if (lease !== 0n && prev?.lease !== lease) this.store.notifyLease("attach", lease, key);
    this.events.push({ type: "PUT", kv, prevKv: prev });
    return { kv, prevKv: prev };
  }

  /** Deletes every live key in the span; returns the deleted values. */
  deleteRange(span: KeySpan): KeyValue[] {
    const deleted: KeyValue[] = [];
    for (const key of this.store.liveKeysIn(span)) {
      const prev = this.store.latest(key) as KeyValue;
      const tombstone: KeyValue = {
        key: prev.key,
        createRevision: 0,
        modRevision: this.revision,
        version: 0,
        value: EMPTY,
        lease: 0n,
      };
      this.store.appendRecord(key, tombstone);
      this.store.notifyLease("detach", prev.lease, key);
      this.events.push({ type: "DELETE", kv: tombstone, prevKv: prev });
      deleted.push(prev);
    }
    return deleted;
  }

  /** Publishes the transaction; returns its events (empty when nothing changed). */
  end(): RevisionEvents {
    if (this.ended) throw new Error("write transaction ended twice");
    this.ended = true;
    if (this.events.length > 0) this.store.commit(this.revision, this.events);
    return { revision: this.events.length > 0 ? this.revision : this.store.currentRevision, events: this.events };
  }
}

const EMPTY = Buffer.alloc(0);
const NO_EVENTS: readonly MvccEvent[] = Object.freeze([]);

/** A revision's events as the history keeps them: the event alone, or a tight copy of several. */
function packEvents(events: readonly MvccEvent[]): MvccEvent | readonly MvccEvent[] {
  if (events.length === 1) return events[0] as MvccEvent;
  return events.length === 0 ? NO_EVENTS : events.slice();
}

function eventsOf(entry: MvccEvent | readonly MvccEvent[]): MvccEvent[] {
  return (Array.isArray(entry) ? entry : [entry]) as MvccEvent[];
}

function recordCost(r: KeyValue): number {
  return r.key.length + r.value.length + RECORD_OVERHEAD;
}

/** The record a read at `rev` sees, or undefined when the key did not exist then. */
function latestAt(records: KeyValue[] | undefined, rev: number): KeyValue | undefined {
  if (!records || records.length === 0) return undefined;
  // Records are in revision order; most reads are at the current revision, so check the tail first.
  const last = records[records.length - 1] as KeyValue;
  let found: KeyValue | undefined;
  if (last.modRevision <= rev) found = last;
  else {
    let lo = 0;
    let hi = records.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((records[mid] as KeyValue).modRevision <= rev) lo = mid;
      else hi = mid - 1;
    }
    const candidate = records[lo] as KeyValue;
    found = candidate.modRevision <= rev ? candidate : undefined;
  }
  return found && found.version > 0 ? found : undefined;
}

/** How many of a key's records (oldest first) a compaction at `rev` keeps: the newest ones. */
export function recordsKeptByCompaction(records: readonly KeyValue[], rev: number): number {
  // Index of the latest record <= rev: everything before it is invisible to reads at >= rev.
  let idx = -1;
  for (let i = records.length - 1; i >= 0; i--) {
    if ((records[i] as KeyValue).modRevision <= rev) {
      idx = i;
      break;
    }
  }
  if (idx < 0) return records.length;
  const latestVisible = records[idx] as KeyValue;
  const drop = latestVisible.version === 0 ? idx + 1 : idx;
  return records.length - drop;
}
