/**
 * A pure Raft core modelled on etcd's raft package: no I/O, no clock, injected randomness.
 * The application drives a RawNode and persists/sends/applies what each Ready hands it.
 */
export { describeEntry, describeMessage, describeReady, describeSnapshot } from "./describe.js";
export { RaftLog, Unstable } from "./log.js";
export { Inflights, Progress, type ProgressState, ProgressTracker, type VoteResult } from "./progress.js";
export {
  CAMPAIGN_TRANSFER,
  ErrProposalDropped,
  ErrStepLocalMsg,
  ErrStepPeerNotFound,
  Raft,
  type RaftConfig,
  RaftError,
} from "./raft.js";
export {
  bootstrapSnapshot,
  type ProgressStatus,
  RawNode,
  type Ready,
  type SnapshotStatus,
  type Status,
} from "./rawnode.js";
export {
  ErrCompacted,
  ErrSnapshotOutOfDate,
  ErrSnapshotTemporarilyUnavailable,
  ErrUnavailable,
  type InitialState,
  MemoryStorage,
  RaftStorageError,
  type Storage,
} from "./storage.js";
export * from "./types.js";
