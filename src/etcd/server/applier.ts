import { SlabCopier } from "../../util/slab.js";
import { EtcdError } from "../errors.js";
import type { KeySpan, KeyValue, MvccStore, RevisionEvents, WriteTxn } from "../mvcc/store.js";
import { keySpan } from "../mvcc/store.js";
import type { AlarmImage } from "../wal/snapshot.js";
import {
  AlarmAction,
  type AlarmMember,
  type AlarmRequest,
  AlarmType,
  bigint,
  type Compare,
  CompareResult,
  CompareTarget,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type InternalRequest,
  int,
  type KeyValueMsg,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseOp,
  SortOrder,
  SortTarget,
  type TxnRequest,
  type TxnResponse,
} from "../wire.js";
import type { Lessor } from "./lessor.js";

/**
 * The state machine: applies one logged command to the MVCC store, the lessor and the alarms.
 * Deterministic by construction (no clock, no randomness, no I/O), so every member that applies
 * the same log reaches the same state, and replaying the log after a crash rebuilds it.
 *
 * Results are etcd's response messages without the header's cluster/member/term fields (the RPC
 * edge fills those); domain failures are thrown as EtcdError.
 */

export interface ApplyResult {
  /** The response message; its header carries only the revision. */
  readonly response: object;
  readonly revision: number;
}

export class AlarmStore {
  private readonly alarms = new Map<string, AlarmMember & { memberId: bigint }>();

  activate(memberId: bigint, alarm: number): AlarmMember {
    const key = `${memberId}:${alarm}`;
    const existing = this.alarms.get(key);
    if (existing) return { memberID: existing.memberID, alarm };
    const m = { memberID: memberId.toString(), alarm, memberId };
    this.alarms.set(key, m);
    return { memberID: m.memberID, alarm };
  }

  deactivate(memberId: bigint, alarm: number): AlarmMember | undefined {
    const key = `${memberId}:${alarm}`;
    const existing = this.alarms.get(key);
    if (!existing) return undefined;
    this.alarms.delete(key);
    return { memberID: existing.memberID, alarm };
  }

  /** All alarms, or those of one type. */
  get(alarm: number = AlarmType.NONE): AlarmMember[] {
    return [...this.alarms.values()]
      .filter((a) => alarm === AlarmType.NONE || a.alarm === alarm)
      .map((a) => ({ memberID: a.memberID, alarm: a.alarm }));
  }

  has(alarm: number): boolean {
    for (const a of this.alarms.values()) if (a.alarm === alarm) return true;
    return false;
  }

  image(): AlarmImage[] {
    return [...this.alarms.values()].map((a) => ({ memberId: a.memberId, alarm: a.alarm }));
  }

  restore(images: readonly AlarmImage[]): void {
    this.alarms.clear();
    for (const a of images) this.activate(a.memberId, a.alarm);
  }
}

export class Applier {
  /** Keys and values stay until compaction: copied apart from short-lived buffers. */
  private readonly copier = new SlabCopier();

  constructor(
    private readonly mvcc: MvccStore,
    private readonly lessor: Lessor,
    private readonly alarms: AlarmStore,
    /** Receives every committed revision's events (the watch hub). */
    private readonly onCommit: (events: RevisionEvents) => void,
  ) {}

  apply(req: InternalRequest): ApplyResult {
    if (req.put) return this.write((txn) => this.put(txn, req.put as PutRequest, true), true);
    if (req.delete_range)
      return this.write((txn) => this.deleteRange(txn, req.delete_range as DeleteRangeRequest), false);
    if (req.txn) return this.txn(req.txn);
    if (req.compaction) {
      this.mvcc.compact(int(req.compaction.revision));
      return this.done({}, this.mvcc.currentRevision);
    }
    if (req.lease_grant) {
      if (this.alarms.has(AlarmType.NOSPACE)) throw new EtcdError("NoSpace");
      const lease = this.lessor.grant(bigint(req.lease_grant.ID), int(req.lease_grant.TTL));
      return this.done({ ID: lease.id.toString(), TTL: lease.ttl, error: "" }, this.mvcc.currentRevision);
    }
    if (req.lease_revoke) return this.leaseRevoke(bigint(req.lease_revoke.ID));
    if (req.alarm) return this.alarm(req.alarm);
    if (req.lease_checkpoint) return this.done({}, this.mvcc.currentRevision);
    throw new EtcdError("InvalidArgument", "etcdserver: unknown request in log entry");
  }

  /** A read outside any write transaction (Range RPC). */
  range(r: RangeRequest): RangeResponse {
    return rangeWith(r, (span, opts) => this.mvcc.range(span, opts));
  }

  private done(response: object, revision: number): ApplyResult {
    return { response: { header: { revision }, ...response }, revision };
  }

  private write(body: (txn: WriteTxn) => object, isPut: boolean): ApplyResult {
    if (isPut && this.alarms.has(AlarmType.NOSPACE)) throw new EtcdError("NoSpace");
    const txn = this.mvcc.write();
    let response: object;
    try {
      response = body(txn);
    } finally {
      this.commit(txn);
    }
    return this.done(response, txn.readRevision);
  }

  private commit(txn: WriteTxn): void {
    const rev = txn.end();
    if (rev.events.length > 0) this.onCommit(rev);
  }

  /** `standalone`: a Put request, which etcd checks for the lease before the previous key. */
  private put(txn: WriteTxn, p: PutRequest, standalone: boolean): PutResponse {
    checkPut(txn, this.lessor, p, standalone);
    const key = p.key.toString("latin1");
    const prev = txn.latest(key);
    const value = p.ignore_value ? (prev as KeyValue).value : p.value;
    const lease = p.ignore_lease ? (prev as KeyValue).lease : bigint(p.lease);
    // Copies: the request's buffers are views into the whole Raft entry. A key that exists keeps
    // the copy its first revision made (records live until compaction, in slabs of their own).
    txn.put(prev ? prev.key : this.copier.copy(p.key), p.ignore_value ? value : this.copier.copy(value), lease);
    const resp: PutResponse = { header: { revision: txn.readRevision } as never };
    if (p.prev_kv && prev) resp.prev_kv = kvToWire(prev);
    return resp;
  }

  private deleteRange(txn: WriteTxn, d: DeleteRangeRequest): DeleteRangeResponse {
    const deleted = txn.deleteRange(keySpan(d.key, d.range_end));
    return {
      header: { revision: txn.readRevision } as never,
      deleted: deleted.length,
      prev_kvs: d.prev_kv ? deleted.map(kvToWire) : [],
    };
  }

  private txn(t: TxnRequest): ApplyResult {
    // As etcd does: choose every branch (nested ones too) against the state before any op runs,
    // check the chosen ops, then run them all in one write transaction (one revision).
    const path = choosePath(t, this.mvcc);
    const hasPut = pathHasPut(t, path);
    if (hasPut && this.alarms.has(AlarmType.NOSPACE)) throw new EtcdError("NoSpace");
    const txn = this.mvcc.write();
    let response: TxnResponse;
    try {
      checkPathRequests(t, path, txn, this.lessor, this.mvcc);
      const cursor = { i: 0 };
      response = this.runTxn(txn, t, path, cursor, false);
    } finally {
      this.commit(txn);
    }
    return this.done(response, txn.readRevision);
  }

  private runTxn(txn: WriteTxn, t: TxnRequest, path: boolean[], cursor: { i: number }, nested: boolean): TxnResponse {
    const succeeded = path[cursor.i++] as boolean;
    const ops = succeeded ? t.success : t.failure;
    const responses: ResponseOp[] = [];
    for (const op of ops) {
      if (op.request_range) {
        const rr = rangeWith(op.request_range, (span, opts) => txn.range(span, opts));
        responses.push({ response_range: rr });
      } else if (op.request_put) {
        responses.push({ response_put: this.put(txn, op.request_put, false) });
      } else if (op.request_delete_range) {
        responses.push({ response_delete_range: this.deleteRange(txn, op.request_delete_range) });
      } else if (op.request_txn) {
        responses.push({ response_txn: this.runTxn(txn, op.request_txn, path, cursor, true) });
      }
    }
    // etcd fills in only the outermost txn's header; a nested one's stays all zeros.
    return { header: { revision: nested ? 0 : txn.readRevision } as never, succeeded, responses };
  }

  private leaseRevoke(id: bigint): ApplyResult {
    const keys = this.lessor.revoke(id);
    const txn = this.mvcc.write();
    try {
      for (const key of keys) txn.deleteRange({ start: key, end: `${key}\u0000`, single: true });
    } finally {
      this.commit(txn);
    }
    return this.done({}, txn.readRevision);
  }

  private alarm(a: AlarmRequest): ApplyResult {
    const alarms: AlarmMember[] = [];
    if (a.action === AlarmAction.ACTIVATE) {
      if (a.alarm !== AlarmType.NONE) alarms.push(this.alarms.activate(bigint(a.memberID), a.alarm));
    } else if (a.action === AlarmAction.DEACTIVATE) {
      const m = this.alarms.deactivate(bigint(a.memberID), a.alarm);
      if (m) alarms.push(m);
    } else {
      alarms.push(...this.alarms.get(a.alarm));
    }
    return this.done({ alarms }, this.mvcc.currentRevision);
  }
}

export function kvToWire(kv: KeyValue): KeyValueMsg {
  return {
    key: kv.key,
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: kv.lease === 0n ? 0 : kv.lease.toString(),
  };
}

type RangeFn = (
  span: KeySpan,
  opts: { revision: number; limit: number; countOnly: boolean },
) => {
  kvs: KeyValue[];
  count: number;
  revision: number;
};

/** Range with etcd's limit/sort/filter rules (etcd's applierV3backend.Range). */
function rangeWith(r: RangeRequest, read: RangeFn): RangeResponse {
  const limit = int(r.limit);
  const minMod = int(r.min_mod_revision);
  const maxMod = int(r.max_mod_revision);
  const minCreate = int(r.min_create_revision);
  const maxCreate = int(r.max_create_revision);
  const filtered = minMod !== 0 || maxMod !== 0 || minCreate !== 0 || maxCreate !== 0;
  // Sorting and filtering need every key first; otherwise fetch one extra to learn "more".
  let fetch = r.sort_order !== SortOrder.NONE || filtered ? 0 : limit;
  if (fetch > 0) fetch++;
  const rr = read(keySpan(r.key, r.range_end), { revision: int(r.revision), limit: fetch, countOnly: r.count_only });
  let kvs = rr.kvs;
  if (filtered) {
    kvs = kvs.filter(
      (kv) =>
        (maxMod === 0 || kv.modRevision <= maxMod) &&
        (minMod === 0 || kv.modRevision >= minMod) &&
        (maxCreate === 0 || kv.createRevision <= maxCreate) &&
        (minCreate === 0 || kv.createRevision >= minCreate),
    );
  }
  let order = r.sort_order;
  if (r.sort_target !== SortTarget.KEY && order === SortOrder.NONE) order = SortOrder.ASCEND;
  // Any other sort_order value (not an enum member) is accepted and leaves the keys in key order.
  const sorts = order === SortOrder.ASCEND || order === SortOrder.DESCEND;
  if (sorts && !(r.sort_target === SortTarget.KEY && order === SortOrder.ASCEND)) {
    const cmp = sortComparator(r.sort_target);
    kvs = [...kvs].sort(order === SortOrder.DESCEND ? (a, b) => cmp(b, a) : cmp);
  }
  let more = false;
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    more = true;
  }
  return {
    header: { revision: rr.revision } as never,
    kvs: r.keys_only ? kvs.map((kv) => ({ ...kvToWire(kv), value: EMPTY })) : kvs.map(kvToWire),
    more,
    count: rr.count,
  };
}

const EMPTY = Buffer.alloc(0);

function sortComparator(target: number): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case SortTarget.VERSION:
      return (a, b) => a.version - b.version;
    case SortTarget.CREATE:
      return (a, b) => a.createRevision - b.createRevision;
    case SortTarget.MOD:
      return (a, b) => a.modRevision - b.modRevision;
    case SortTarget.VALUE:
      return (a, b) => Buffer.compare(a.value, b.value);
    default:
      return (a, b) => Buffer.compare(a.key, b.key);
  }
}

/** Every txn's branch in depth-first order, evaluated against the state before the txn. */
function choosePath(t: TxnRequest, mvcc: MvccStore): boolean[] {
  const path: boolean[] = [];
  const walk = (txn: TxnRequest): void => {
    const ok = txn.compare.every((c) => evalCompare(c, mvcc));
    path.push(ok);
    for (const op of ok ? txn.success : txn.failure) if (op.request_txn) walk(op.request_txn);
  };
  walk(t);
  return path;
}

function pathHasPut(t: TxnRequest, path: boolean[]): boolean {
  let i = 0;
  const walk = (txn: TxnRequest): boolean => {
    const ops = path[i++] ? txn.success : txn.failure;
    let has = false;
    for (const op of ops) {
      if (op.request_put) has = true;
      if (op.request_txn && walk(op.request_txn)) has = true;
    }
    return has;
  };
  return walk(t);
}

function evalCompare(c: Compare, mvcc: MvccStore): boolean {
  const { kvs } = mvcc.range(keySpan(c.key, c.range_end));
  if (kvs.length === 0) {
    // A value compare on a missing key always fails: gRPC cannot tell "" from missing.
    if (c.target === CompareTarget.VALUE) return false;
    return compareKv(c, undefined);
  }
  return kvs.every((kv) => compareKv(c, kv));
}

function compareKv(c: Compare, kv: KeyValue | undefined): boolean {
  let r: number;
  switch (c.target) {
    case CompareTarget.VALUE:
      r = Buffer.compare(kv?.value ?? EMPTY, c.value ?? EMPTY);
      break;
    case CompareTarget.CREATE:
      r = Math.sign((kv?.createRevision ?? 0) - int(c.create_revision));
      break;
    case CompareTarget.MOD:
      r = Math.sign((kv?.modRevision ?? 0) - int(c.mod_revision));
      break;
    case CompareTarget.LEASE: {
      const a = kv?.lease ?? 0n;
      const b = bigint(c.lease);
      r = a < b ? -1 : a > b ? 1 : 0;
      break;
    }
    case CompareTarget.VERSION:
      r = Math.sign((kv?.version ?? 0) - int(c.version));
      break;
    default:
      // Not a CompareTarget: etcd compares nothing (as equal).
      r = 0;
  }
  switch (c.result) {
    case CompareResult.EQUAL:
      return r === 0;
    case CompareResult.NOT_EQUAL:
      return r !== 0;
    case CompareResult.GREATER:
      return r > 0;
    case CompareResult.LESS:
      return r < 0;
    default:
      // Not a CompareResult: etcd counts the compare as holding.
      return true;
  }
}

/**
 * The state-dependent checks of a put: etcd's checkRequestPut for puts in a txn (previous key, then
 * lease), and the other order for a standalone Put (applierV3backend.Put looks up the lease first).
 */
function checkPut(
  view: { latest(key: string): KeyValue | undefined },
  lessor: Lessor,
  p: PutRequest,
  leaseFirst = false,
): void {
  const lease = bigint(p.lease);
  const checkLease = (): void => {
    if (!p.ignore_lease && lease !== 0n && !lessor.has(lease)) throw new EtcdError("LeaseNotFound");
  };
  if (leaseFirst) checkLease();
  if (p.ignore_value || p.ignore_lease) {
    if (!view.latest(p.key.toString("latin1"))) throw new EtcdError("KeyNotFound");
  }
  checkLease();
}

/**
 * Checks the ops of the chosen branches before any of them runs, so a txn is all or nothing. As
 * etcd does: every put on the path first, then every range's revision, the latter against etcd's
 * "first revision" (the compaction revision, or -1 before any compaction, so that a negative
 * revision counts as compacted once anything was compacted).
 */
function checkPathRequests(t: TxnRequest, path: boolean[], txn: WriteTxn, lessor: Lessor, mvcc: MvccStore): void {
  const walk = (visit: (op: RequestOp) => void): void => {
    let i = 0;
    const step = (t2: TxnRequest): void => {
      const ops: RequestOp[] = path[i++] ? t2.success : t2.failure;
      for (const op of ops) {
        if (op.request_txn) step(op.request_txn);
        else visit(op);
      }
    };
    step(t);
  };
  walk((op) => {
    if (op.request_put) checkPut(txn, lessor, op.request_put);
  });
  const firstRev = mvcc.firstRevision;
  walk((op) => {
    if (!op.request_range) return;
    const rev = int(op.request_range.revision);
    if (rev === 0) return;
    if (rev > mvcc.currentRevision) throw new EtcdError("FutureRev");
    if (rev < firstRev) throw new EtcdError("Compacted");
  });
}

/** True when the command would write keys (for the NOSPACE check made before proposing). */
export function requestWrites(req: InternalRequest): boolean {
  if (req.put || req.lease_grant) return true;
  if (req.txn) {
    const walk = (t: TxnRequest): boolean =>
      [...t.success, ...t.failure].some((op) => !!op.request_put || (!!op.request_txn && walk(op.request_txn)));
    return walk(req.txn);
  }
  return false;
}
