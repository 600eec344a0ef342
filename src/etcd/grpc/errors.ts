import { EtcdError, type EtcdErrorKind } from "../errors.js";
import { WalFailedError } from "../wal/wal.js";
import { GrpcStatus, type GrpcStatusCode } from "./status.js";

/**
 * The one table that turns domain errors into what etcd 3.4 puts on the wire: a gRPC status code
 * and the message with its "etcdserver: " prefix. etcd clients match on these exact strings.
 */
const CODES: Record<EtcdErrorKind, GrpcStatusCode> = {
  Compacted: GrpcStatus.OUT_OF_RANGE,
  FutureRev: GrpcStatus.OUT_OF_RANGE,
  NoSpace: GrpcStatus.RESOURCE_EXHAUSTED,
  KeyNotFound: GrpcStatus.INVALID_ARGUMENT,
  EmptyKey: GrpcStatus.INVALID_ARGUMENT,
  ValueProvided: GrpcStatus.INVALID_ARGUMENT,
  LeaseProvided: GrpcStatus.INVALID_ARGUMENT,
  DuplicateKey: GrpcStatus.INVALID_ARGUMENT,
  TooManyOps: GrpcStatus.INVALID_ARGUMENT,
  RequestTooLarge: GrpcStatus.INVALID_ARGUMENT,
  LeaseNotFound: GrpcStatus.NOT_FOUND,
  LeaseExist: GrpcStatus.FAILED_PRECONDITION,
  LeaseTTLTooLarge: GrpcStatus.OUT_OF_RANGE,
  TooManyRequests: GrpcStatus.RESOURCE_EXHAUSTED,
  NoLeader: GrpcStatus.UNAVAILABLE,
  Stopped: GrpcStatus.UNAVAILABLE,
  Timeout: GrpcStatus.UNAVAILABLE,
  LeaderChanged: GrpcStatus.UNAVAILABLE,
  Unhealthy: GrpcStatus.UNAVAILABLE,
  MemberExist: GrpcStatus.FAILED_PRECONDITION,
  PeerURLExist: GrpcStatus.FAILED_PRECONDITION,
  MemberNotFound: GrpcStatus.NOT_FOUND,
  MemberBadURLs: GrpcStatus.INVALID_ARGUMENT,
  MemberNotLearner: GrpcStatus.FAILED_PRECONDITION,
  LearnerNotReady: GrpcStatus.FAILED_PRECONDITION,
  TooManyLearners: GrpcStatus.FAILED_PRECONDITION,
  MemberNotEnoughStarted: GrpcStatus.FAILED_PRECONDITION,
  NotSupportedForLearner: GrpcStatus.UNAVAILABLE,
  NotLeader: GrpcStatus.FAILED_PRECONDITION,
  BadLeaderTransferee: GrpcStatus.FAILED_PRECONDITION,
  Corrupt: GrpcStatus.DATA_LOSS,
  StorageFailed: GrpcStatus.UNAVAILABLE,
  WatcherIdExists: GrpcStatus.INVALID_ARGUMENT,
  Unimplemented: GrpcStatus.UNIMPLEMENTED,
  InvalidArgument: GrpcStatus.INVALID_ARGUMENT,
};

// Kinds whose message is already complete (not an etcd "etcdserver:" error).
const UNPREFIXED = new Set<EtcdErrorKind>(["Unimplemented", "InvalidArgument"]);

export function toGrpcError(err: unknown): { code: GrpcStatusCode; details: string } {
  if (err instanceof EtcdError) {
    const details = UNPREFIXED.has(err.kind) ? err.message : `etcdserver: ${err.message}`;
    return { code: CODES[err.kind], details };
  }
  if (err instanceof WalFailedError) {
    return { code: GrpcStatus.UNAVAILABLE, details: `etcdserver: ${err.message}` };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: GrpcStatus.INTERNAL, details: `etcdserver: internal error: ${message}` };
}

/** An error carrying the mapped status (grpc-js's ServiceError shape), for callbacks and stream.destroy(). */
export function serviceError(err: unknown): Error & { code: GrpcStatusCode; details: string } {
  const s = toGrpcError(err);
  return Object.assign(new Error(s.details), s);
}
