import * as grpc from "@grpc/grpc-js";
import { EtcdError, type EtcdErrorKind } from "../errors.js";
import { WalFailedError } from "../wal/wal.js";

/**
 * The one table that turns domain errors into what etcd 3.4 puts on the wire: a gRPC status code
 * and the message with its "etcdserver: " prefix. etcd clients match on these exact strings.
 */
const CODES: Record<EtcdErrorKind, grpc.status> = {
  Compacted: grpc.status.OUT_OF_RANGE,
  FutureRev: grpc.status.OUT_OF_RANGE,
  NoSpace: grpc.status.RESOURCE_EXHAUSTED,
  KeyNotFound: grpc.status.INVALID_ARGUMENT,
  EmptyKey: grpc.status.INVALID_ARGUMENT,
  ValueProvided: grpc.status.INVALID_ARGUMENT,
  LeaseProvided: grpc.status.INVALID_ARGUMENT,
  DuplicateKey: grpc.status.INVALID_ARGUMENT,
  TooManyOps: grpc.status.INVALID_ARGUMENT,
  RequestTooLarge: grpc.status.INVALID_ARGUMENT,
  LeaseNotFound: grpc.status.NOT_FOUND,
  LeaseExist: grpc.status.FAILED_PRECONDITION,
  LeaseTTLTooLarge: grpc.status.OUT_OF_RANGE,
  TooManyRequests: grpc.status.RESOURCE_EXHAUSTED,
  NoLeader: grpc.status.UNAVAILABLE,
  Stopped: grpc.status.UNAVAILABLE,
  Timeout: grpc.status.UNAVAILABLE,
  LeaderChanged: grpc.status.UNAVAILABLE,
  Unhealthy: grpc.status.UNAVAILABLE,
  MemberExist: grpc.status.FAILED_PRECONDITION,
  PeerURLExist: grpc.status.FAILED_PRECONDITION,
  MemberNotFound: grpc.status.NOT_FOUND,
  MemberBadURLs: grpc.status.INVALID_ARGUMENT,
  MemberNotLearner: grpc.status.FAILED_PRECONDITION,
  LearnerNotReady: grpc.status.FAILED_PRECONDITION,
  TooManyLearners: grpc.status.FAILED_PRECONDITION,
  MemberNotEnoughStarted: grpc.status.FAILED_PRECONDITION,
  NotSupportedForLearner: grpc.status.UNAVAILABLE,
  NotLeader: grpc.status.FAILED_PRECONDITION,
  BadLeaderTransferee: grpc.status.FAILED_PRECONDITION,
  Corrupt: grpc.status.DATA_LOSS,
  StorageFailed: grpc.status.UNAVAILABLE,
  WatcherIdExists: grpc.status.INVALID_ARGUMENT,
  Unimplemented: grpc.status.UNIMPLEMENTED,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
};

// Kinds whose message is already complete (not an etcd "etcdserver:" error).
const UNPREFIXED = new Set<EtcdErrorKind>(["Unimplemented", "InvalidArgument"]);

export function toGrpcError(err: unknown): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  if (err instanceof EtcdError) {
    const details = UNPREFIXED.has(err.kind) ? err.message : `etcdserver: ${err.message}`;
    return { code: CODES[err.kind], details };
  }
  if (err instanceof WalFailedError) {
    return { code: grpc.status.UNAVAILABLE, details: `etcdserver: ${err.message}` };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: grpc.status.INTERNAL, details: `etcdserver: internal error: ${message}` };
}

/** A ServiceError carrying the mapped status, for callbacks and stream.destroy(). */
export function serviceError(err: unknown): grpc.ServiceError {
  const s = toGrpcError(err);
  const e = new Error(s.details) as grpc.ServiceError;
  e.code = s.code;
  e.details = s.details;
  e.metadata = new grpc.Metadata();
  return e;
}
