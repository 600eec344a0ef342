/**
 * Wire and storage types of the Raft core. They follow etcd's raftpb shapes so that a later
 * transport can map them one to one, but they are plain objects: no encoding lives here.
 *
 * Member IDs are `bigint` because etcd member IDs are unsigned 64-bit. Terms and indexes are
 * `number`: they grow by one per election or entry, so 2^53 is out of reach.
 */

/** A member ID. `NONE` (0n) means "nobody" (no leader known, no vote cast). */
export type NodeId = bigint;
export const NONE: NodeId = 0n;

export type EntryType = "normal" | "confChange";

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** For "normal": the application's command (empty for the leader's no-op). For "confChange": an encoded ConfChange. */
  data: Uint8Array;
}

/** What must be durable before a node answers anyone: its term, its vote in that term, and how far it knows the log is committed. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** The membership: voters decide elections and commitment; learners only receive the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({ index: 0, term: 0, confState: Object.freeze({ voters: [], learners: [] }) }),
  data: new Uint8Array(0),
}) as Snapshot;

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

/**
 * A single-server membership change. Promoting a learner is `addNode` for an ID that is
 * currently a learner; demoting a voter to a learner is not supported.
 */
export type ConfChangeType = "addNode" | "addLearnerNode" | "removeNode";

export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to Raft: e.g. the new member's peer URLs. */
  context?: Uint8Array;
}

export enum MessageType {
  /** Local: start an election (the election timer fired, or campaign() was called). */
  MsgHup = "MsgHup",
  /** Local: the leader's heartbeat timer fired. */
  MsgBeat = "MsgBeat",
  /** A proposal; local on the leader, forwarded by followers. */
  MsgProp = "MsgProp",
  MsgApp = "MsgApp",
  MsgAppResp = "MsgAppResp",
  MsgVote = "MsgVote",
  MsgVoteResp = "MsgVoteResp",
  MsgPreVote = "MsgPreVote",
  MsgPreVoteResp = "MsgPreVoteResp",
  MsgSnap = "MsgSnap",
  MsgHeartbeat = "MsgHeartbeat",
  MsgHeartbeatResp = "MsgHeartbeatResp",
  /** Local: the transport could not reach a peer (reportUnreachable). */
  MsgUnreachable = "MsgUnreachable",
  /** Local: the transport finished (or failed) sending a snapshot (reportSnapshot). */
  MsgSnapStatus = "MsgSnapStatus",
  /** Local: the leader's check-quorum timer fired. */
  MsgCheckQuorum = "MsgCheckQuorum",
  MsgTransferLeader = "MsgTransferLeader",
  MsgTimeoutNow = "MsgTimeoutNow",
  MsgReadIndex = "MsgReadIndex",
  MsgReadIndexResp = "MsgReadIndexResp",
}

/** Message types that only ever come from the local node, never from the network. */
export const LOCAL_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set([
  MessageType.MsgHup,
  MessageType.MsgBeat,
  MessageType.MsgUnreachable,
  MessageType.MsgSnapStatus,
  MessageType.MsgCheckQuorum,
]);

export function isResponseMessage(t: MessageType): boolean {
  return (
    t === MessageType.MsgAppResp ||
    t === MessageType.MsgVoteResp ||
    t === MessageType.MsgHeartbeatResp ||
    t === MessageType.MsgPreVoteResp ||
    t === MessageType.MsgReadIndexResp ||
    t === MessageType.MsgUnreachable
  );
}

/**
 * One Raft message. Fields that a type does not use keep their zero value, as in raftpb:
 * `index`/`logTerm` locate the entry before `entries` (MsgApp) or the candidate's last entry
 * (MsgVote); in a response, `index` is the follower's answer.
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  /** On a rejected MsgApp: the follower's guess of where the logs may agree. */
  rejectHint: number;
  /** ReadIndex request context, or CAMPAIGN_TRANSFER on a vote forced by leader transfer. */
  context: Uint8Array;
  /**
   * On a MsgApp without entries that only carries the commit index (or the leader's durable
   * index): a follower that accepts it does not answer. Either its last acknowledgement already
   * covers `index`, or (a durable-index notice) its acknowledgement of the append that carried
   * those entries is on its way; a lost one is recovered through heartbeats, as for any append.
   */
  commitOnly?: boolean;
  /**
   * On a MsgApp to a voter, when {leader, that voter} is a quorum (two or three voters, no
   * membership change in flight): the leader's own log is durable up to here. A follower commits
   * what it holds of that from this leader's term without waiting to be told (see
   * RaftConfig.followerCommit).
   */
  durable?: number;
}

export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/** Builds a message with zero values for everything not given. */
export function message(fields: Partial<Message> & Pick<Message, "type">): Message {
  return {
    from: NONE,
    to: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: EMPTY_BYTES,
    ...fields,
  };
}

export enum StateType {
  Follower = "StateFollower",
  PreCandidate = "StatePreCandidate",
  Candidate = "StateCandidate",
  Leader = "StateLeader",
}

/** Volatile state that the application may want to show or react to; never persisted. */
export interface SoftState {
  lead: NodeId;
  raftState: StateType;
}

/** The answer to a readIndex(ctx) call: reads are linearizable once the node has applied `index`. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

/** Encodes a ConfChange for an entry's data: "type:nodeId[:hex context]". */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const ctx = cc.context !== undefined && cc.context.length > 0 ? `:${Buffer.from(cc.context).toString("hex")}` : "";
  return new TextEncoder().encode(`${cc.type}:${cc.nodeId.toString()}${ctx}`);
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const [type, id, ctx] = new TextDecoder().decode(data).split(":");
  if (type !== "addNode" && type !== "addLearnerNode" && type !== "removeNode") {
    throw new Error(`raft: bad conf change type ${String(type)}`);
  }
  const cc: ConfChange = { type, nodeId: BigInt(id ?? "0") };
  if (ctx !== undefined) cc.context = new Uint8Array(Buffer.from(ctx, "hex"));
  return cc;
}

export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}
