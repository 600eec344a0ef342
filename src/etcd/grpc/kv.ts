import type * as grpc from "@grpc/grpc-js";
import { EtcdError } from "../errors.js";
import type { EtcdServer } from "../server/server.js";
import {
  type CompactionRequest,
  type DeleteRangeRequest,
  type InternalRequest,
  int,
  type PutRequest,
  type RangeRequest,
  type RequestOp,
  type ResponseHeader,
  type TxnRequest,
} from "../wire.js";
import type { Metrics } from "./metrics.js";
import { unary } from "./unary.js";

/**
 * The KV service. Request validation that needs no state happens here, as in etcd's v3rpc layer
 * (empty keys, conflicting flags, txn size and duplicate keys); state-dependent checks happen when
 * the command is applied.
 */

// Per-record cost used for the quota check, matching the store's own accounting.
const QUOTA_OVERHEAD = 48;

export function header(server: EtcdServer, revision: number): ResponseHeader {
  return {
    cluster_id: decimal(server.clusterId),
    member_id: decimal(server.memberId),
    revision,
    raft_term: server.raftTerm,
  };
}

/** The decimal texts of the few IDs every header carries (a member's and its cluster's). */
const decimals = new Map<bigint, string>();

function decimal(id: bigint): string {
  let text = decimals.get(id);
  if (text === undefined) {
    if (decimals.size >= 16) decimals.clear();
    text = id.toString();
    decimals.set(id, text);
  }
  return text;
}

export function kvService(server: EtcdServer, metrics: Metrics): grpc.UntypedServiceImplementation {
  const write = async (body: Omit<InternalRequest, "id">, cost: number): Promise<object> => {
    refuseOnLearner(server);
    if (!server.checkQuota(body, cost)) throw new EtcdError("NoSpace");
    const result = await server.propose(body);
    return withHeader(server, result.response, result.revision);
  };

  return {
    Range: unary<RangeRequest>(async (r) => {
      if (r.key.length === 0) throw new EtcdError("EmptyKey");
      metrics.rangeTotal++;
      // Linearizable unless asked otherwise: confirm the leader's commit index first (ReadIndex).
      if (!r.serializable) {
        refuseOnLearner(server);
        await server.linearizableRead();
      }
      const resp = server.range(r);
      return withHeader(server, resp, int(resp.header?.revision));
    }),
    Put: unary<PutRequest>(async (p) => {
      checkPutRequest(p);
      metrics.putTotal++;
      return write({ put: p }, p.key.length + p.value.length + QUOTA_OVERHEAD);
    }),
    DeleteRange: unary<DeleteRangeRequest>(async (d) => {
      if (d.key.length === 0) throw new EtcdError("EmptyKey");
      metrics.deleteTotal++;
      return write({ delete_range: d }, 0);
    }),
    Txn: unary<TxnRequest>(async (t) => {
      checkTxnRequest(t, server.config.maxTxnOps);
      // After every op is checked (as etcd does, to avoid a quadratic blowup on bad requests).
      checkIntervals(t.success);
      checkIntervals(t.failure);
      metrics.txnTotal++;
      if (isReadOnly(t)) {
        // Read-only transactions are served from the applied state without a log entry, as etcd
        // does; linearizable unless every range in them is serializable.
        if (!isSerializable(t)) {
          refuseOnLearner(server);
          await server.linearizableRead();
        }
        return withHeader(server, server.readOnlyTxn(t), server.mvcc.currentRevision);
      }
      return write({ txn: t }, txnCost(t));
    }),
    Compact: unary<CompactionRequest>(async (c) => {
      refuseOnLearner(server);
      const result = await server.propose({ compaction: c });
      return withHeader(server, result.response, result.revision);
    }),
  };
}

/** A learner serves only serializable reads and status, as in etcd. */
export function refuseOnLearner(server: EtcdServer): void {
  if (server.isLearner) throw new EtcdError("NotSupportedForLearner");
}

export function withHeader(server: EtcdServer, response: object, revision: number): object {
  return { ...response, header: header(server, revision) };
}

function checkPutRequest(p: PutRequest): void {
  if (p.key.length === 0) throw new EtcdError("EmptyKey");
  if (p.ignore_value && p.value.length !== 0) throw new EtcdError("ValueProvided");
  if (p.ignore_lease && int(p.lease) !== 0) throw new EtcdError("LeaseProvided");
}

/**
 * etcd's checkTxnRequest: op counts and per-op checks, nested txns included. As in etcd, a nested
 * txn may only use what its parent left of the limit (max minus the parent's largest list). The
 * Txn handler then checks that no key is written twice in one branch (checkIntervals).
 */
export function checkTxnRequest(t: TxnRequest, maxTxnOps: number): void {
  const opc = Math.max(t.compare.length, t.success.length, t.failure.length);
  if (opc > maxTxnOps) throw new EtcdError("TooManyOps");
  for (const c of t.compare) if (c.key.length === 0) throw new EtcdError("EmptyKey");
  for (const op of [...t.success, ...t.failure]) checkOp(op, maxTxnOps - opc);
}

function checkOp(op: RequestOp, maxTxnOps: number): void {
  if (op.request_range) {
    if (op.request_range.key.length === 0) throw new EtcdError("EmptyKey");
  } else if (op.request_put) checkPutRequest(op.request_put);
  else if (op.request_delete_range) {
    if (op.request_delete_range.key.length === 0) throw new EtcdError("EmptyKey");
  } else if (op.request_txn) checkTxnRequest(op.request_txn, maxTxnOps);
  // A RequestOp with no request set: etcd answers "key not found".
  else throw new EtcdError("KeyNotFound");
}

interface Interval {
  readonly start: string;
  /** Exclusive; an interval whose end is not above its start holds no key. */
  readonly end: string;
}

function intervalOf(key: Buffer, rangeEnd: Buffer): Interval {
  const start = key.toString("latin1");
  if (rangeEnd.length === 0) return { start, end: `${start}\u0000` };
  // etcd's check takes range_end literally here: a from-key delete ("\0") is the interval
  // [key, "\0"), which holds no key, so it never conflicts with a put (though it deletes keys).
  return { start, end: rangeEnd.toString("latin1") };
}

function hits(dels: readonly Interval[], key: string): boolean {
  return dels.some((d) => key >= d.start && key < d.end);
}

/**
 * Rejects a branch that puts one key twice, or puts a key that the same branch deletes, looking
 * into nested transactions (whose then/else branches may each put the same key, as only one runs).
 * Returns the keys put and the ranges deleted, for the enclosing level.
 */
function checkIntervals(ops: readonly RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const op of ops) {
    if (op.request_delete_range) dels.push(intervalOf(op.request_delete_range.key, op.request_delete_range.range_end));
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (!op.request_txn) continue;
    const then = checkIntervals(op.request_txn.success);
    const otherwise = checkIntervals(op.request_txn.failure);
    for (const k of then.puts) {
      if (puts.has(k) || hits(dels, k)) throw new EtcdError("DuplicateKey");
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if ((puts.has(k) && !then.puts.has(k)) || hits(dels, k)) throw new EtcdError("DuplicateKey");
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (!op.request_put) continue;
    const k = op.request_put.key.toString("latin1");
    if (puts.has(k) || hits(dels, k)) throw new EtcdError("DuplicateKey");
    puts.add(k);
  }
  return { puts, dels };
}

function isReadOnly(t: TxnRequest): boolean {
  return [...t.success, ...t.failure].every(
    (op) => !op.request_put && !op.request_delete_range && (!op.request_txn || isReadOnly(op.request_txn)),
  );
}

function isSerializable(t: TxnRequest): boolean {
  return [...t.success, ...t.failure].every(
    (op) => (!op.request_range || op.request_range.serializable) && (!op.request_txn || isSerializable(op.request_txn)),
  );
}

function txnCost(t: TxnRequest): number {
  let cost = 0;
  for (const op of [...t.success, ...t.failure]) {
    if (op.request_put) cost += op.request_put.key.length + op.request_put.value.length + QUOTA_OVERHEAD;
    if (op.request_txn) cost += txnCost(op.request_txn);
  }
  return cost;
}
