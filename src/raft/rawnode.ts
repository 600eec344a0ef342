import type { Progress } from "./progress.js";
import { ErrStepLocalMsg, ErrStepPeerNotFound, Raft, type RaftConfig, type RaftError } from "./raft.js";
import {
  type ConfChange,
  type ConfState,
  EMPTY_BYTES,
  EMPTY_HARD_STATE,
  type Entry,
  encodeConfChange,
  type HardState,
  hardStateEqual,
  isEmptyHardState,
  isResponseMessage,
  LOCAL_MESSAGE_TYPES,
  type Message,
  MessageType,
  message,
  type NodeId,
  type ReadState,
  type Snapshot,
  type SnapshotMetadata,
  type SoftState,
} from "./types.js";

/**
 * Everything the application must do after the state machine changed, in this order:
 *
 * 1. Persist, durably and atomically: `snapshot` (if any), then `entries` (appended after
 *    truncating any conflicting suffix), then `hardState` (if any). `mustSync` says whether an
 *    fsync is required (a snapshot, new entries or a new term/vote); a commit-only change may be
 *    written lazily.
 * 2. Only then send `messages`. A message may promise what step 1 wrote (a vote, an ack of
 *    entries); sending it before the write is durable would let a crash break that promise.
 * 3. Apply `snapshot` (if any) to the state machine, then `committedEntries` in order. Conf change
 *    entries are applied by calling RawNode.applyConfChange() at that point. Committed entries may
 *    include entries from `entries` of this same Ready: step 1 made them durable first.
 * 4. Serve `readStates` once the state machine has applied up to their index.
 * 5. Call advance(). No other Ready may be taken before that.
 */
export interface Ready {
  /** Leader or role changed since the last Ready. Not persisted. */
  softState?: SoftState;
  /** Term, vote or commit changed since the last Ready; persist it. */
  hardState?: HardState;
  /** Answers to readIndex() calls. */
  readStates: ReadState[];
  /** Entries to append to stable storage (not yet committed, may be overwritten later). */
  entries: Entry[];
  /** A snapshot from the leader to persist and apply (it replaces the log and the state). */
  snapshot?: Snapshot;
  /** Committed entries to apply to the state machine, oldest first. */
  committedEntries: Entry[];
  /** Messages to send once everything above is durable. */
  messages: Message[];
  /** Whether persisting this Ready needs a synchronous write. */
  mustSync: boolean;
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: Progress["state"];
  isLearner: boolean;
  recentActive: boolean;
  inflight: number;
}

export interface Status {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  leadTransferee: NodeId;
  /** Leader only: each member's replication progress. */
  progress?: Map<NodeId, ProgressStatus>;
  confState: ConfState;
}

export type SnapshotStatus = "finish" | "failure";

/**
 * A thread-unsafe, synchronous Raft node, like etcd's RawNode: the application drives it with
 * tick()/step()/propose() and drains it through ready()/advance(). It performs no I/O and reads
 * no clock; the only source of randomness is config.random.
 */
export class RawNode {
  /** The state machine. Exposed for inspection by tests and simulators; do not mutate. */
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private pendingReady: Ready | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.raft.softState();
    // The hard state that storage already holds counts as "delivered".
    this.prevHardState = config.storage.initialState().hardState;
    if (isEmptyHardState(this.prevHardState)) this.prevHardState = { ...EMPTY_HARD_STATE };
  }

  /** Advances the logical clock by one tick (drives elections and heartbeats). */
  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (with pre-vote if configured) instead of waiting for the timeout. */
  campaign(): void {
    this.raft.step(message({ type: MessageType.MsgHup }));
  }

  /** Proposes data to be appended to the log. Throws ErrProposalDropped if it cannot be (no leader...). */
  propose(data: Uint8Array): void {
    this.throwIf(
      this.raft.step(
        message({
          type: MessageType.MsgProp,
          from: this.raft.id,
          entries: [{ term: 0, index: 0, type: "normal", data }],
        }),
      ),
    );
  }

  /**
   * Proposes several commands as one MsgProp, so that they travel (and are appended, and
   * replicated) together: one message to the leader and one append per follower instead of one
   * per command. All or none are accepted: on ErrProposalDropped none was.
   */
  proposeBatch(data: readonly Uint8Array[]): void {
    if (data.length === 0) return;
    this.throwIf(
      this.raft.step(
        message({
          type: MessageType.MsgProp,
          from: this.raft.id,
          entries: data.map((d) => ({ term: 0, index: 0, type: "normal" as const, data: d })),
        }),
      ),
    );
  }

  /** Proposes a membership change; once committed, the application applies it with applyConfChange(). */
  proposeConfChange(cc: ConfChange): void {
    const entry: Entry = { term: 0, index: 0, type: "confChange", data: encodeConfChange(cc) };
    this.throwIf(this.raft.step(message({ type: MessageType.MsgProp, from: this.raft.id, entries: [entry] })));
  }

  /** Applies a committed conf change and returns the resulting membership. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * Feeds a message from the network. Returns (does not throw) ErrProposalDropped when a forwarded
   * proposal could not be appended; the transport usually ignores it.
   */
  step(m: Message): RaftError | undefined {
    if (LOCAL_MESSAGE_TYPES.has(m.type)) return ErrStepLocalMsg;
    if (isResponseMessage(m.type) && !this.raft.tracker.progress.has(m.from)) return ErrStepPeerNotFound;
    return this.raft.step(m);
  }

  /**
   * Requests a linearizable read. A ReadState with the same ctx appears in a later Ready; the read
   * may be served once the state machine has applied its index. ctx must be unique per request.
   */
  readIndex(ctx: Uint8Array): void {
    this.throwIf(this.raft.step(message({ type: MessageType.MsgReadIndex, entries: [], context: ctx })));
  }

  /** Asks the leader to hand leadership to `transferee` (works on any member; followers forward). */
  transferLeader(transferee: NodeId): void {
    this.raft.step(message({ type: MessageType.MsgTransferLeader, from: transferee }));
  }

  /** Tells the leader the transport could not reach `id` (so it stops pipelining to it). */
  reportUnreachable(id: NodeId): void {
    this.raft.step(message({ type: MessageType.MsgUnreachable, from: id }));
  }

  /** Tells the leader whether sending a snapshot to `id` finished or failed. */
  reportSnapshot(id: NodeId, status: SnapshotStatus): void {
    this.raft.step(message({ type: MessageType.MsgSnapStatus, from: id, reject: status === "failure" }));
  }

  hasReady(): boolean {
    const r = this.raft;
    const ss = r.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.raftState !== this.prevSoftState.raftState) return true;
    const hs = r.hardState();
    if (!isEmptyHardState(hs) && !hardStateEqual(hs, this.prevHardState)) return true;
    if (r.raftLog.unstableSnapshot() !== undefined) return true;
    if (r.msgs.length > 0 || r.raftLog.unstableEntries().length > 0 || r.raftLog.hasNextCommittedEntries()) return true;
    return r.readStates.length > 0 || r.durableNoticeDue();
  }

  /** Collects what the application must persist, send and apply (see Ready for the order). */
  ready(): Ready {
    if (this.pendingReady !== undefined) throw new Error("raft: ready() called again before advance()");
    const r = this.raft;
    r.stampDurable();
    const rd: Ready = {
      readStates: r.readStates,
      entries: [...r.raftLog.unstableEntries()],
      committedEntries: r.raftLog.nextCommittedEntries(),
      messages: r.msgs,
      mustSync: false,
    };
    const ss = r.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.raftState !== this.prevSoftState.raftState) {
      rd.softState = ss;
      this.prevSoftState = ss;
    }
    const hs = r.hardState();
    if (!isEmptyHardState(hs) && !hardStateEqual(hs, this.prevHardState)) {
      rd.hardState = hs;
      // A new term or vote must be durable before any message goes out; a commit index need not.
      rd.mustSync = hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote;
      this.prevHardState = hs;
    }
    const snap = r.raftLog.unstableSnapshot();
    if (snap !== undefined) {
      rd.snapshot = snap;
      // The snapshot replaces the log, and this Ready's MsgAppResp acknowledges its index: the
      // leader then counts that index as this follower's match and never probes below it. A
      // snapshot written lazily and lost in a crash would leave the follower without entries
      // the leader believes it has: every later MsgApp to it would be rejected, for as long as
      // that leader leads.
      rd.mustSync = true;
    }
    if (rd.entries.length > 0) rd.mustSync = true;
    r.msgs = [];
    r.readStates = [];
    this.pendingReady = rd;
    return rd;
  }

  /** Acknowledges that the last Ready was persisted, sent and applied. */
  advance(): void {
    const rd = this.pendingReady;
    if (rd === undefined) throw new Error("raft: advance() without a ready()");
    this.pendingReady = undefined;
    const log = this.raft.raftLog;
    if (rd.snapshot !== undefined) {
      log.stableSnapTo(rd.snapshot.metadata.index);
      if (rd.snapshot.metadata.index > log.applied) log.appliedTo(rd.snapshot.metadata.index);
    }
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry !== undefined) log.stableTo(lastEntry.index, lastEntry.term);
    const lastCommitted = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastCommitted !== undefined) log.appliedTo(lastCommitted.index);
  }

  status(): Status {
    const r = this.raft;
    const st: Status = {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.raftLog.applied,
      leadTransferee: r.leadTransferee,
      confState: r.tracker.confState(),
    };
    if (r.state === "StateLeader") {
      const progress = new Map<NodeId, ProgressStatus>();
      for (const [id, pr] of r.tracker.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
          inflight: pr.inflights.size(),
        });
      }
      st.progress = progress;
    }
    return st;
  }

  private throwIf(err: RaftError | undefined): void {
    if (err !== undefined) throw err;
  }
}

/** Builds the metadata of an initial snapshot that bootstraps a new cluster with these voters. */
export function bootstrapSnapshot(voters: NodeId[], learners: NodeId[] = [], index = 1, term = 1): Snapshot {
  const metadata: SnapshotMetadata = { index, term, confState: { voters: [...voters], learners: [...learners] } };
  return { metadata, data: EMPTY_BYTES };
}
