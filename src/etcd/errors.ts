/**
 * Domain errors of the store. Each carries etcd's own message (without the "etcdserver: " prefix
 * that the RPC edge adds) so that clients see exactly what etcd 3.4 prints. The mapping to gRPC
 * status codes lives in one table at the edge: src/etcd/grpc/errors.ts.
 */
export type EtcdErrorKind =
  | "Compacted"
  | "FutureRev"
  | "NoSpace"
  | "KeyNotFound"
  | "EmptyKey"
  | "ValueProvided"
  | "LeaseProvided"
  | "DuplicateKey"
  | "TooManyOps"
  | "RequestTooLarge"
  | "LeaseNotFound"
  | "LeaseExist"
  | "LeaseTTLTooLarge"
  | "TooManyRequests"
  | "NoLeader"
  | "Stopped"
  | "Timeout"
  | "LeaderChanged"
  | "Unhealthy"
  | "MemberExist"
  | "PeerURLExist"
  | "MemberNotFound"
  | "MemberBadURLs"
  | "MemberNotLearner"
  | "LearnerNotReady"
  | "TooManyLearners"
  | "MemberNotEnoughStarted"
  | "NotSupportedForLearner"
  | "NotLeader"
  | "BadLeaderTransferee"
  | "Corrupt"
  | "StorageFailed"
  | "WatcherIdExists"
  | "Unimplemented"
  | "InvalidArgument";

const MESSAGES: Record<Exclude<EtcdErrorKind, "StorageFailed" | "Unimplemented" | "InvalidArgument">, string> = {
  Compacted: "mvcc: required revision has been compacted",
  FutureRev: "mvcc: required revision is a future revision",
  NoSpace: "mvcc: database space exceeded",
  KeyNotFound: "key not found",
  EmptyKey: "key is not provided",
  ValueProvided: "value is provided",
  LeaseProvided: "lease is provided",
  DuplicateKey: "duplicate key given in txn request",
  TooManyOps: "too many operations in txn request",
  RequestTooLarge: "request is too large",
  LeaseNotFound: "requested lease not found",
  LeaseExist: "lease already exists",
  LeaseTTLTooLarge: "too large lease TTL",
  TooManyRequests: "too many requests",
  NoLeader: "no leader",
  Stopped: "server stopped",
  Timeout: "request timed out",
  LeaderChanged: "leader changed",
  Unhealthy: "unhealthy cluster",
  MemberExist: "member ID already exist",
  PeerURLExist: "Peer URLs already exists",
  MemberNotFound: "member not found",
  MemberBadURLs: "given member URLs are invalid",
  MemberNotLearner: "can only promote a learner member",
  LearnerNotReady: "can only promote a learner member which is in sync with leader",
  TooManyLearners: "too many learner members in cluster",
  MemberNotEnoughStarted: "re-configuration failed due to not enough started members",
  NotSupportedForLearner: "rpc not supported for learner",
  NotLeader: "not leader",
  BadLeaderTransferee: "bad leader transferee",
  Corrupt: "corrupt cluster",
  WatcherIdExists: "mvcc: watcher ID exists",
};

export class EtcdError extends Error {
  readonly kind: EtcdErrorKind;
  constructor(kind: EtcdErrorKind, detail?: string) {
    super(detail ?? (MESSAGES as Record<string, string>)[kind] ?? kind);
    this.kind = kind;
    this.name = "EtcdError";
  }
}

export const errCompacted = (): EtcdError => new EtcdError("Compacted");
export const errFutureRev = (): EtcdError => new EtcdError("FutureRev");
