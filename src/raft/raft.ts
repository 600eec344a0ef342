import { RaftLog } from "./log.js";
import { ProgressTracker, sortIds } from "./progress.js";
import { ReadOnly } from "./read-only.js";
import { ErrCompacted, ErrSnapshotTemporarilyUnavailable, ErrUnavailable, type Storage } from "./storage.js";
import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  type HardState,
  isEmptyHardState,
  isEmptySnapshot,
  type Message,
  MessageType,
  message,
  NONE,
  type NodeId,
  type ReadState,
  type SoftState,
  StateType,
} from "./types.js";

export interface RaftConfig {
  /** This node's member ID; must not be 0. */
  id: NodeId;
  /** Ticks a follower waits without hearing from a leader before it campaigns. The actual timeout is randomized in [electionTick, 2*electionTick). */
  electionTick: number;
  /** Ticks between leader heartbeats; must be smaller than electionTick. */
  heartbeatTick: number;
  storage: Storage;
  /** The last index the application applied before a restart (0 for "as of the storage's snapshot"). */
  applied?: number;
  /** Byte budget of entries per MsgApp (at least one entry is always sent). */
  maxSizePerMsg?: number;
  /** How many MsgApps may be in flight to one follower in replicate state. */
  maxInflightMsgs?: number;
  /** The leader steps down if it did not hear from a quorum within an election timeout; followers in lease ignore vote requests. */
  checkQuorum?: boolean;
  /** Candidates first ask whether they could win (without raising terms), so a partitioned node cannot disrupt the cluster when it returns. */
  preVote?: boolean;
  /** Followers drop proposals instead of forwarding them to the leader. */
  disableProposalForwarding?: boolean;
  /**
   * With two or three voters, the leader and any one follower are a quorum. The leader then
   * tells each follower how far its own log is durable (Message.durable, on its appends, or in a
   * notice once its write is done), and a follower commits what it holds of that on its own:
   * a write served by a follower is answered one round trip sooner, without waiting for the
   * leader to hear the follower's acknowledgement and send back the commit index. The leader
   * sends no commit notice to a follower that commits on its own, and its read index covers
   * what any follower may have committed that way. Followers honour Message.durable whatever
   * this says.
   */
  followerCommit?: boolean;
  /** Uniform random number in [0, 1). Injected so that simulations are deterministic. */
  random: () => number;
  /** Receives one line per notable decision (role changes, rejected votes...). */
  logger?: (line: string) => void;
}

export class RaftError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RaftError";
  }
}

/** The proposal was not appended (no leader known, leader transfer in progress, a conf change pending...). Retry later. */
export const ErrProposalDropped = new RaftError("raft proposal dropped");
/** step() was given a message type that only the node itself may generate. */
export const ErrStepLocalMsg = new RaftError("raft: cannot step raft local message");
/** step() was given a response from a node that is not in the configuration. */
export const ErrStepPeerNotFound = new RaftError("raft: cannot step as peer not found");

/** Marks a MsgVote forced by leader transfer: it bypasses followers' leader lease. */
export const CAMPAIGN_TRANSFER: Uint8Array = new TextEncoder().encode("CampaignTransfer");

type CampaignType = "preElection" | "election" | "transfer";

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function voteRespType(t: MessageType): MessageType {
  return t === MessageType.MsgVote ? MessageType.MsgVoteResp : MessageType.MsgPreVoteResp;
}

/**
 * The Raft state machine. Pure: it only changes in step() and tick(), and its outputs (messages,
 * entries to persist, read states) accumulate until the RawNode hands them out in a Ready.
 * Behaviour per role lives in stepLeader / stepCandidate / stepFollower, chosen by become*().
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  state: StateType = StateType.Follower;
  isLearner = false;
  readonly raftLog: RaftLog;
  readonly tracker: ProgressTracker;

  /** Outgoing messages, handed out by the next Ready. */
  msgs: Message[] = [];
  readStates: ReadState[] = [];

  /** Leader only: the target of an ongoing leader transfer. */
  leadTransferee: NodeId = NONE;
  /** Leader only: the index of the latest conf change proposed; another may not be proposed until it is applied. */
  pendingConfIndex = 0;
  private readonly readOnly = new ReadOnly();
  /** ReadIndex requests that arrived before this leader committed an entry of its own term. */
  private pendingReadIndexMessages: Message[] = [];
  /**
   * Leader only (followerCommit): per follower, the index it commits on its own once it has
   * accepted what was sent to it, i.e. the lesser of the durable index we told it and the end of
   * the append that carried it (only indexes of this term count: see commitWithLeader).
   */
  private readonly durableTold = new Map<NodeId, number>();
  /**
   * Leader only: the highest durableTold value recorded this term, kept when a follower's entry is
   * dropped (it may have committed already): a read index must cover it.
   */
  private durableToldMax = 0;
  /** Follower only: our log matches this term's leader's up to here (the end of the last append we accepted from it). */
  private leaderMatch = 0;

  /** Ticks since the last election timeout reset (followers) or check-quorum round (leader). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  randomizedElectionTimeout = 0;
  /** What the campaign in progress (as candidate or pre-candidate) asks for, to ask again each tick. */
  private campaignType: CampaignType = "election";

  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  private readonly disableProposalForwarding: boolean;
  private readonly followerCommit: boolean;
  private readonly maxMsgSize: number;
  private readonly random: () => number;
  private readonly logger: (line: string) => void;
  private stepByRole: (m: Message) => RaftError | undefined;

  constructor(c: RaftConfig) {
    if (c.id === NONE) throw new Error("raft: cannot use none as id");
    if (c.heartbeatTick <= 0) throw new Error("raft: heartbeat tick must be greater than 0");
    if (c.electionTick <= c.heartbeatTick) throw new Error("raft: election tick must be greater than heartbeat tick");
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum ?? false;
    this.preVote = c.preVote ?? false;
    this.disableProposalForwarding = c.disableProposalForwarding ?? false;
    this.followerCommit = c.followerCommit ?? false;
    this.maxMsgSize = c.maxSizePerMsg ?? 1024 * 1024;
    this.random = c.random;
    this.logger = c.logger ?? (() => {});
    this.raftLog = new RaftLog(c.storage);
    this.tracker = new ProgressTracker(c.maxInflightMsgs ?? 256);
    this.stepByRole = this.stepFollower;

    const { hardState, confState } = c.storage.initialState();
    this.tracker.applyConfState(confState, this.raftLog.lastIndex() + 1);
    this.isLearner = this.tracker.learners.has(this.id);
    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.raftLog.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.raftLog.committed || hs.commit > this.raftLog.lastIndex()) {
      throw new Error(
        `raft: ${this.id} state.commit ${hs.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  private log(line: string): void {
    this.logger(`${this.id} ${line}`);
  }

  softState(): SoftState {
    return { lead: this.lead, raftState: this.state };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  /** A voter that is in the configuration; only those may campaign. */
  promotable(): boolean {
    return this.tracker.voters.has(this.id);
  }

  // ---- sending ----

  private send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (
      m.type === MessageType.MsgVote ||
      m.type === MessageType.MsgVoteResp ||
      m.type === MessageType.MsgPreVote ||
      m.type === MessageType.MsgPreVoteResp
    ) {
      // Vote messages carry the term they are about (a pre-vote is for a future term).
      if (m.term === 0) throw new Error(`raft: term should be set when sending ${m.type}`);
    } else if (m.type !== MessageType.MsgProp && m.type !== MessageType.MsgReadIndex) {
      // Proposals and read requests are forwarded as term-less "local" messages, as in etcd.
      m.term = this.term;
    }
    this.msgs.push(m);
  }

  /** Sends a MsgApp (or a MsgSnap) to a follower if its progress allows; returns whether it sent one. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    let prevTerm: number;
    let ents: Entry[];
    try {
      prevTerm = this.raftLog.term(pr.next - 1);
      ents = this.raftLog.entries(pr.next, this.maxMsgSize);
    } catch (err) {
      if (err !== ErrCompacted && err !== ErrUnavailable) throw err;
      return this.maybeSendSnapshot(to);
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    const m = message({
      type: MessageType.MsgApp,
      to,
      index: pr.next - 1,
      logTerm: prevTerm,
      entries: ents,
      commit: this.raftLog.committed,
    });
    // Nothing to append and nothing in flight: the follower acknowledged everything this names,
    // so its answer would repeat that (a commit notice after each commit would cost it a send and
    // the leader a message to handle, for every write).
    if (ents.length === 0 && pr.state === "replicate" && pr.match === pr.next - 1) m.commitOnly = true;
    this.send(m);
    if (pr.state === "replicate" && ents.length > 0) {
      const last = ents[ents.length - 1]!.index;
      pr.optimisticUpdate(last);
      pr.inflights.add(last);
    } else if (pr.state === "probe") {
      pr.probeSent = true;
    }
    return true;
  }

  private maybeSendSnapshot(to: NodeId): boolean {
    const pr = this.tracker.progress.get(to)!;
    // A snapshot is big; only send it to a follower we know is alive.
    if (!pr.recentActive) return false;
    let snap: ReturnType<RaftLog["snapshot"]>;
    try {
      snap = this.raftLog.snapshot();
    } catch (err) {
      if (err === ErrSnapshotTemporarilyUnavailable) return false;
      throw err;
    }
    if (isEmptySnapshot(snap)) throw new Error("raft: need non-empty snapshot");
    this.log(`sends snapshot [index: ${snap.metadata.index}, term: ${snap.metadata.term}] to ${to} [${pr}]`);
    pr.becomeSnapshot(snap.metadata.index);
    this.send(message({ type: MessageType.MsgSnap, to, snapshot: snap }));
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | undefined): void {
    // Never tell a follower to commit past what it is known to have: it may not have those entries.
    const commit = Math.min(this.tracker.progress.get(to)!.match, this.raftLog.committed);
    const m = message({ type: MessageType.MsgHeartbeat, to, commit });
    if (ctx !== undefined) m.context = ctx;
    this.send(m);
  }

  private forEachPeer(f: (id: NodeId) => void): void {
    for (const id of sortIds(this.tracker.progress.keys())) if (id !== this.id) f(id);
  }

  bcastAppend(): void {
    this.forEachPeer((id) => this.sendAppend(id));
  }

  /** After the commit index moved: tell every follower, except those that commit it on their own. */
  private bcastCommit(): void {
    const committed = this.raftLog.committed;
    this.forEachPeer((id) => {
      const pr = this.tracker.progress.get(id)!;
      if (pr.state === "replicate" && (this.durableTold.get(id) ?? 0) >= committed) this.maybeSendAppend(id, false);
      else this.sendAppend(id);
    });
  }

  // ---- follower commit (see RaftConfig.followerCommit) ----

  /** Whether {this leader, any one voter} is a quorum now and stays one while the notice travels. */
  private followerCommitApplies(): boolean {
    return (
      this.followerCommit &&
      this.state === StateType.Leader &&
      this.tracker.voters.has(this.id) &&
      this.tracker.voters.size <= 3 &&
      // A membership change in flight may change the quorum before the follower acts.
      this.pendingConfIndex <= this.raftLog.applied
    );
  }

  /** What follower `id` could commit on its own if told our durable index `durable` now; 0 if nothing new. */
  private followerCommitReach(id: NodeId, durable: number): number {
    const pr = this.tracker.progress.get(id);
    if (pr === undefined || pr.state !== "replicate" || !this.tracker.voters.has(id)) return 0;
    const reach = Math.min(durable, pr.next - 1);
    if (reach <= (this.durableTold.get(id) ?? 0) || this.raftLog.termOrZero(reach) !== this.term) return 0;
    return reach;
  }

  /** Whether a follower is owed a notice of our durable index (the RawNode asks before a Ready). */
  durableNoticeDue(): boolean {
    if (!this.followerCommitApplies()) return false;
    const durable = this.raftLog.durableLastIndex();
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id && this.followerCommitReach(id, durable) > 0) return true;
    }
    return false;
  }

  /**
   * Called as a Ready is collected, so the value is what the previous Readys made durable: stamps
   * our durable index on this term's appends to voters, and sends an entry-less, unanswered
   * notice to each replicating voter that has not been told as far as it could commit.
   */
  stampDurable(): void {
    if (!this.followerCommitApplies()) return;
    const durable = this.raftLog.durableLastIndex();
    if (durable === 0) return;
    for (const m of this.msgs) {
      if (m.type !== MessageType.MsgApp || m.term !== this.term || !this.tracker.voters.has(m.to)) continue;
      m.durable = durable;
      const reach = Math.min(durable, m.index + m.entries.length);
      if (reach > (this.durableTold.get(m.to) ?? 0) && this.raftLog.termOrZero(reach) === this.term) {
        this.noteDurableTold(m.to, reach);
      }
    }
    this.forEachPeer((id) => {
      const reach = this.followerCommitReach(id, durable);
      if (reach === 0) return;
      const next = this.tracker.progress.get(id)!.next;
      this.send(
        message({
          type: MessageType.MsgApp,
          to: id,
          index: next - 1,
          logTerm: this.raftLog.term(next - 1),
          commit: this.raftLog.committed,
          commitOnly: true,
          durable,
        }),
      );
      this.noteDurableTold(id, reach);
    });
  }

  private noteDurableTold(id: NodeId, reach: number): void {
    this.durableTold.set(id, reach);
    if (reach > this.durableToldMax) this.durableToldMax = reach;
  }

  /**
   * Follower: the leader's log is durable up to `durable`, and ours matches it up to leaderMatch
   * (and is durable before anything committed is applied: Ready persists first). So everything up
   * to the lesser is on a quorum. Like the leader, count only an entry of the current term: that
   * commits everything before it (§5.4.2); an older term's entry on a quorum may still be replaced.
   */
  private commitWithLeader(durable: number): void {
    if (this.isLearner) return;
    const c = Math.min(durable, this.leaderMatch);
    if (c > this.raftLog.committed && this.raftLog.termOrZero(c) === this.term) this.raftLog.commitTo(c);
  }

  private bcastHeartbeat(ctx?: Uint8Array): void {
    const c = ctx ?? this.readOnly.lastPendingContext();
    this.forEachPeer((id) => this.sendHeartbeat(id, c));
  }

  // ---- role changes ----

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const last = this.raftLog.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      pr.becomeProbe();
      pr.match = id === this.id ? last : 0;
      pr.next = last + 1;
      pr.recentActive = false;
    }
    this.pendingConfIndex = 0;
    this.readOnly.reset();
    this.pendingReadIndexMessages = [];
    this.durableTold.clear();
    this.durableToldMax = 0;
    this.leaderMatch = 0;
  }

  /**
   * Until the next reset (a new term, a leader heard from, a campaign), time out after exactly the
   * election timeout plus `extraTicks` instead of the randomized timeout; capped, as that one is,
   * below twice the election timeout. For a follower whose host knows its leader is gone (see
   * EtcdServer.orderElectionAfterLeaderLoss): its clock still counts from the leader's last
   * message, so a leader that is alive is not disturbed any sooner than by an election timeout.
   */
  setElectionTimeoutAfterLeaderLoss(extraTicks: number): void {
    if (!Number.isInteger(extraTicks) || extraTicks < 0) {
      throw new RangeError(`extra election ticks must be a non-negative integer, not ${extraTicks}`);
    }
    this.randomizedElectionTimeout = Math.min(2 * this.electionTimeout - 1, this.electionTimeout + extraTicks);
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.stepByRole = this.stepFollower;
    this.reset(term);
    this.lead = lead;
    this.state = StateType.Follower;
    this.log(`became follower at term ${this.term}`);
  }

  becomePreCandidate(): void {
    if (this.state === StateType.Leader) throw new Error("raft: invalid transition [leader -> pre-candidate]");
    // Deliberately no reset(): a pre-candidate keeps its term and vote, so failing costs nothing.
    this.stepByRole = this.stepCandidate;
    this.tracker.resetVotes();
    this.lead = NONE;
    this.state = StateType.PreCandidate;
    this.log(`became pre-candidate at term ${this.term}`);
  }

  becomeCandidate(): void {
    if (this.state === StateType.Leader) throw new Error("raft: invalid transition [leader -> candidate]");
    this.stepByRole = this.stepCandidate;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = StateType.Candidate;
    this.log(`became candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    if (this.state === StateType.Follower) throw new Error("raft: invalid transition [follower -> leader]");
    this.stepByRole = this.stepLeader;
    this.reset(this.term);
    this.lead = this.id;
    this.state = StateType.Leader;
    const self = this.tracker.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Any uncommitted tail may hold a conf change: do not allow another until it is applied.
    this.pendingConfIndex = this.raftLog.lastIndex();
    // The no-op entry of the new term: committing it commits everything before (§5.4.2).
    this.appendEntries([{ term: 0, index: 0, type: "normal", data: new Uint8Array(0) }]);
    this.log(`became leader at term ${this.term}`);
  }

  private appendEntries(ents: Entry[]): void {
    let li = this.raftLog.lastIndex();
    const stamped = ents.map((e) => ({ ...e, term: this.term, index: ++li }));
    li = this.raftLog.append(stamped);
    // The leader counts itself as having the entries; Ready makes it persist them before any
    // follower hears of them, so a quorum of acks is always a quorum of durable copies.
    this.tracker.progress.get(this.id)?.maybeUpdate(li);
    this.maybeCommit();
  }

  private maybeCommit(): boolean {
    if (!this.raftLog.maybeCommit(this.tracker.committed(), this.term)) return false;
    this.releasePendingReadIndexMessages();
    return true;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.termOrZero(this.raftLog.committed) === this.term;
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ---- ticks ----

  tick(): void {
    if (this.state === StateType.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(message({ type: MessageType.MsgHup, from: this.id }));
      return;
    }
    // Ask again whoever has not answered. A voter still in its leader lease ignores a vote request
    // without a word (see step()); asked once only, a candidate that timed out first after its
    // leader died (while the other survivors were a tick short of their lease) would wait out a
    // whole new election timeout, and the survivor timing out next would split the vote with it.
    // Asked again each tick, the voter grants the vote as soon as its lease runs out.
    if (this.state === StateType.Candidate || this.state === StateType.PreCandidate) {
      this.sendVoteRequests(this.campaignType, "unanswered");
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(message({ type: MessageType.MsgCheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout has failed; accept proposals again.
      if (this.state === StateType.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.state !== StateType.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(message({ type: MessageType.MsgBeat, from: this.id }));
    }
  }

  // ---- elections ----

  private hup(t: CampaignType): void {
    if (this.state === StateType.Leader) {
      this.log("ignoring MsgHup because already leader");
      return;
    }
    if (!this.promotable()) {
      this.log("is unpromotable and can not campaign");
      return;
    }
    // A committed but unapplied conf change may remove us or change the quorum: wait for it.
    if (this.raftLog.nextCommittedEntries().some((e) => e.type === "confChange")) {
      this.log("cannot campaign: there are unapplied configuration changes");
      return;
    }
    this.log(`is starting a new election at term ${this.term}`);
    this.campaign(t);
  }

  private campaign(t: CampaignType): void {
    if (t === "preElection") this.becomePreCandidate();
    else this.becomeCandidate();
    const voteMsg = t === "preElection" ? MessageType.MsgPreVote : MessageType.MsgVote;
    if (this.poll(this.id, voteRespType(voteMsg), true) === "won") {
      // A single-voter cluster wins at once.
      if (t === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    this.campaignType = t;
    this.sendVoteRequests(t, "all");
  }

  /** Sends this campaign's vote requests: to every other voter, or to those that have not answered yet. */
  private sendVoteRequests(t: CampaignType, to: "all" | "unanswered"): void {
    const preVote = t === "preElection";
    const voteMsg = preVote ? MessageType.MsgPreVote : MessageType.MsgVote;
    // A pre-vote asks for the term we would have, without moving to it.
    const term = preVote ? this.term + 1 : this.term;
    const lastIndex = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    const isVoteRequest = (m: Message) => m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote;
    // Requests not handed out yet (ticks without a Ready in between): a new campaign supersedes
    // them, and one waiting request per voter is enough.
    if (to === "all") this.msgs = this.msgs.filter((m) => !isVoteRequest(m));
    const waiting = new Set(this.msgs.filter(isVoteRequest).map((m) => m.to));
    for (const id of sortIds(this.tracker.voters)) {
      if (id === this.id) continue;
      if (to === "unanswered" && (this.tracker.hasVoted(id) || waiting.has(id))) continue;
      const verb = to === "all" ? "sent" : "re-sent";
      this.log(`[logterm: ${lastTerm}, index: ${lastIndex}] ${verb} ${voteMsg} request to ${id} at term ${this.term}`);
      const m = message({ type: voteMsg, to: id, term, index: lastIndex, logTerm: lastTerm });
      if (t === "transfer") m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  private poll(id: NodeId, t: MessageType, granted: boolean): "won" | "lost" | "pending" {
    this.log(`received ${t} ${granted ? "" : "rejection "}from ${id} at term ${this.term}`);
    this.tracker.recordVote(id, granted);
    const { granted: g, rejected, result } = this.tracker.tallyVotes();
    if (id !== this.id) this.log(`has received ${g} ${t} votes and ${rejected} vote rejections`);
    return result;
  }

  // ---- step ----

  /** Feeds one message (from the network or local) into the state machine. */
  step(m: Message): RaftError | undefined {
    if (m.term === 0) {
      // local message (or a forwarded proposal / read request)
    } else if (m.term > this.term) {
      if (m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a leader within the election timeout: this candidate is disruptive
          // (e.g. just back from a partition). Do not let it raise our term.
          this.log(
            `[logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${this.vote}] ignored ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: lease is not expired (remaining ticks: ${this.electionTimeout - this.electionElapsed})`,
          );
          return undefined;
        }
      }
      if (m.type === MessageType.MsgPreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.MsgPreVoteResp && !m.reject) {
        // The pre-candidate moves to the term only when it wins the pre-vote.
      } else {
        this.log(`received a ${m.type} with higher term from ${m.from} [term: ${m.term}]`);
        const isFromLeader =
          m.type === MessageType.MsgApp || m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgSnap;
        this.becomeFollower(m.term, isFromLeader ? m.from : NONE);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgApp)
      ) {
        // A stale leader (e.g. from the minority side of a partition). With check-quorum or
        // pre-vote our term rose without it hearing about it, so tell it our term, or it would
        // never step down while we would never hear from a leader that can win.
        this.send(message({ type: MessageType.MsgAppResp, to: m.from }));
      } else if (m.type === MessageType.MsgPreVote) {
        // Reject, so a pre-candidate with a stale term learns of our term.
        this.log(`rejected ${m.type} from ${m.from} at term ${this.term}: lower term ${m.term}`);
        this.send(message({ type: MessageType.MsgPreVoteResp, to: m.from, term: this.term, reject: true }));
      } else {
        this.log(`ignored a ${m.type} message with lower term from ${m.from} [term: ${m.term}]`);
      }
      return undefined;
    }

    switch (m.type) {
      case MessageType.MsgHup:
        this.hup(this.preVote ? "preElection" : "election");
        return undefined;
      case MessageType.MsgVote:
      case MessageType.MsgPreVote: {
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.MsgPreVote && m.term > this.term);
        const desc = `[logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${this.vote}] %s ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`;
        if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
          this.log(desc.replace("%s", "cast"));
          // The response carries the candidate's term so that it counts even for a pre-vote.
          this.send(message({ type: voteRespType(m.type), to: m.from, term: m.term }));
          if (m.type === MessageType.MsgVote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.log(desc.replace("%s", "rejected"));
          this.send(message({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true }));
        }
        return undefined;
      }
      default:
        return this.stepByRole(m);
    }
  }

  private stepLeader = (m: Message): RaftError | undefined => {
    switch (m.type) {
      case MessageType.MsgBeat:
        this.bcastHeartbeat();
        return undefined;
      case MessageType.MsgCheckQuorum:
        if (!this.tracker.quorumActive(this.id)) {
          this.log("stepped down to follower since quorum is not active");
          this.becomeFollower(this.term, NONE);
        }
        // Every member must prove itself active again within the next election timeout.
        for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false;
        return undefined;
      case MessageType.MsgProp:
        return this.leaderPropose(m);
      case MessageType.MsgReadIndex:
        this.leaderReadIndex(m);
        return undefined;
    }

    const pr = this.tracker.progress.get(m.from);
    if (pr === undefined) return undefined;
    switch (m.type) {
      case MessageType.MsgAppResp: {
        pr.recentActive = true;
        if (m.reject) {
          // The follower's hint is where it might agree; with its term we can skip a whole term back.
          let nextProbe = m.rejectHint;
          if (m.logTerm > 0) nextProbe = this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
          if (pr.maybeDecrTo(m.index, nextProbe)) {
            this.log(
              `received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) from ${m.from} for index ${m.index}`,
            );
            if (pr.state === "replicate") pr.becomeProbe();
            // It did not take what carried our durable index: tell it the commit index again.
            this.durableTold.delete(m.from);
            this.sendAppend(m.from);
          }
          return undefined;
        }
        const wasPaused = pr.isPaused();
        if (!pr.maybeUpdate(m.index)) return undefined;
        if (pr.state === "probe") {
          pr.becomeReplicate();
        } else if (pr.state === "snapshot" && pr.match + 1 >= this.raftLog.firstIndex()) {
          // The follower caught up through the snapshot (or the log): it can be fed from the log again.
          this.log(`recovered from needing snapshot, resumed sending replication messages to ${m.from} [${pr}]`);
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.state === "replicate") {
          pr.inflights.freeLE(m.index);
        }
        if (this.maybeCommit()) {
          this.bcastCommit();
        } else if (wasPaused) {
          this.sendAppend(m.from);
        }
        // Fill the pipeline up to the inflight limit.
        while (this.maybeSendAppend(m.from, false)) {}
        if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
          this.log(`sent MsgTimeoutNow to ${m.from} after received MsgAppResp`);
          this.sendTimeoutNow(m.from);
        }
        return undefined;
      }
      case MessageType.MsgHeartbeatResp: {
        pr.recentActive = true;
        pr.probeSent = false;
        // The follower is alive: let one more MsgApp through a full window.
        if (pr.state === "replicate" && pr.inflights.isFull()) pr.inflights.freeFirstOne();
        if (pr.match < this.raftLog.lastIndex()) this.sendAppend(m.from);
        if (m.context.length === 0) return undefined;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (acks === undefined) return undefined;
        if (this.tracker.voteResult((id) => (acks.has(id) ? true : undefined)) !== "won") return undefined;
        for (const rs of this.readOnly.advance(m.context)) this.respondToReadIndex(rs.request, rs.index);
        return undefined;
      }
      case MessageType.MsgSnapStatus:
        if (pr.state !== "snapshot") return undefined;
        if (m.reject) pr.pendingSnapshot = 0;
        this.log(
          `snapshot ${m.reject ? "failed" : "succeeded"}, resumed sending replication messages to ${m.from} [${pr}]`,
        );
        pr.becomeProbe();
        // Wait for the follower's next response before probing, instead of probing at once.
        pr.probeSent = true;
        return undefined;
      case MessageType.MsgUnreachable:
        // The pipeline to it is broken: fall back to one probe at a time.
        if (pr.state === "replicate") pr.becomeProbe();
        this.durableTold.delete(m.from);
        return undefined;
      case MessageType.MsgTransferLeader: {
        if (pr.isLearner) {
          this.log(`is learner. Ignored transferring leadership`);
          return undefined;
        }
        const transferee = m.from;
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) {
            this.log(
              `[term ${this.term}] transfer leadership to ${transferee} is in progress, ignores request to same node`,
            );
            return undefined;
          }
          this.log(`[term ${this.term}] abort previous transferring leadership to ${this.leadTransferee}`);
          this.abortLeaderTransfer();
        }
        if (transferee === this.id) {
          this.log("is already leader. Ignored transferring leadership to self");
          return undefined;
        }
        this.log(`[term ${this.term}] starts to transfer leadership to ${transferee}`);
        // The transfer must finish within an election timeout (tickHeartbeat aborts it).
        this.electionElapsed = 0;
        this.leadTransferee = transferee;
        if (pr.match === this.raftLog.lastIndex()) {
          this.log(`sends MsgTimeoutNow to ${transferee} immediately as ${transferee} already has up-to-date log`);
          this.sendTimeoutNow(transferee);
        } else {
          this.sendAppend(transferee);
        }
        return undefined;
      }
    }
    return undefined;
  };

  private leaderPropose(m: Message): RaftError | undefined {
    if (m.entries.length === 0) throw new Error("raft: stepped empty MsgProp");
    if (!this.tracker.progress.has(this.id)) {
      // We were removed from the configuration while leading.
      return ErrProposalDropped;
    }
    if (this.leadTransferee !== NONE) {
      this.log(`[term ${this.term}] transfer leadership to ${this.leadTransferee} is in progress; dropping proposal`);
      return ErrProposalDropped;
    }
    let confIndex = this.pendingConfIndex;
    for (let i = 0; i < m.entries.length; i++) {
      if (m.entries[i]!.type !== "confChange") continue;
      if (confIndex > this.raftLog.applied) {
        // One membership change at a time: the previous one must be applied first.
        this.log(
          `proposal of conf change ignored since pending unapplied configuration [index ${confIndex}, applied ${this.raftLog.applied}]`,
        );
        return ErrProposalDropped;
      }
      confIndex = this.raftLog.lastIndex() + i + 1;
    }
    this.pendingConfIndex = confIndex;
    this.appendEntries(m.entries);
    this.bcastAppend();
    return undefined;
  }

  private leaderReadIndex(m: Message): void {
    if (this.tracker.voters.size <= 1 && this.tracker.voters.has(this.id)) {
      // A single voter is its own quorum.
      this.respondToReadIndex(m, this.raftLog.committed);
      return;
    }
    // A new leader does not know the commit index until it commits an entry of its own term.
    if (!this.committedEntryInCurrentTerm()) {
      this.pendingReadIndexMessages.push(m);
      return;
    }
    this.handleReadIndex(m);
  }

  private handleReadIndex(m: Message): void {
    // A follower may have committed (and answered a write) past our commit index on its own: a
    // linearizable read must see that write too, so it waits until we have committed as far.
    this.readOnly.addRequest(Math.max(this.raftLog.committed, this.durableToldMax), m);
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeat(m.context);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) this.handleReadIndex(m);
  }

  private respondToReadIndex(req: Message, index: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, requestCtx: req.context });
    } else {
      this.send(message({ type: MessageType.MsgReadIndexResp, to: req.from, index, context: req.context }));
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(message({ type: MessageType.MsgTimeoutNow, to }));
  }

  private stepCandidate = (m: Message): RaftError | undefined => {
    // A pre-candidate only counts pre-votes; a late MsgVoteResp from an earlier candidacy is ignored.
    const myVoteResp = this.state === StateType.PreCandidate ? MessageType.MsgPreVoteResp : MessageType.MsgVoteResp;
    switch (m.type) {
      case MessageType.MsgProp:
        this.log(`no leader at term ${this.term}; dropping proposal`);
        return ErrProposalDropped;
      case MessageType.MsgApp:
        this.becomeFollower(m.term, m.from); // a leader of our term exists
        this.handleAppendEntries(m);
        return undefined;
      case MessageType.MsgHeartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return undefined;
      case MessageType.MsgSnap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return undefined;
      case myVoteResp: {
        const result = this.poll(m.from, m.type, !m.reject);
        if (result === "won") {
          if (this.state === StateType.PreCandidate) {
            this.campaign("election");
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === "lost") {
          // A rejection with a higher term already made us a follower in step().
          this.becomeFollower(this.term, NONE);
        }
        return undefined;
      }
      case MessageType.MsgTimeoutNow:
        this.log(`[term ${this.term} state ${this.state}] ignored MsgTimeoutNow from ${m.from}`);
        return undefined;
    }
    return undefined;
  };

  private stepFollower = (m: Message): RaftError | undefined => {
    switch (m.type) {
      case MessageType.MsgProp:
        if (this.lead === NONE) {
          this.log(`no leader at term ${this.term}; dropping proposal`);
          return ErrProposalDropped;
        }
        if (this.disableProposalForwarding) {
          this.log(`not forwarding to leader ${this.lead} at term ${this.term}; dropping proposal`);
          return ErrProposalDropped;
        }
        this.send({ ...m, to: this.lead });
        return undefined;
      case MessageType.MsgApp:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return undefined;
      case MessageType.MsgHeartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return undefined;
      case MessageType.MsgSnap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return undefined;
      case MessageType.MsgTransferLeader:
        if (this.lead === NONE) {
          this.log(`no leader at term ${this.term}; dropping leader transfer msg`);
          return undefined;
        }
        this.send({ ...m, to: this.lead });
        return undefined;
      case MessageType.MsgTimeoutNow:
        // The leader hands over: campaign now, without pre-vote, bypassing followers' leases.
        this.log(`[term ${this.term}] received MsgTimeoutNow from ${m.from} and starts an election to get leadership`);
        this.hup("transfer");
        return undefined;
      case MessageType.MsgReadIndex:
        if (this.lead === NONE) {
          this.log(`no leader at term ${this.term}; dropping index reading msg`);
          return ErrProposalDropped;
        }
        this.send({ ...m, to: this.lead });
        return undefined;
      case MessageType.MsgReadIndexResp:
        this.readStates.push({ index: m.index, requestCtx: m.context });
        return undefined;
    }
    return undefined;
  };

  private handleAppendEntries(m: Message): void {
    if (m.index < this.raftLog.committed) {
      // Everything up to our commit index already matches the leader's log.
      this.send(message({ type: MessageType.MsgAppResp, to: m.from, index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      if (lastNew > this.leaderMatch) this.leaderMatch = lastNew;
      if (m.durable !== undefined) this.commitWithLeader(m.durable);
      // A commit-only append names what the leader knows we hold: answering would repeat it.
      if (m.commitOnly && lastNew === m.index) return;
      this.send(message({ type: MessageType.MsgAppResp, to: m.from, index: lastNew }));
      return;
    }
    // Tell the leader where our log might agree with its log, and the term there.
    const hint = this.raftLog.findConflictByTerm(Math.min(m.index, this.raftLog.lastIndex()), m.logTerm);
    this.log(
      `[logterm: ${this.raftLog.termOrZero(m.index)}, index: ${m.index}] rejected MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    );
    this.send(
      message({
        type: MessageType.MsgAppResp,
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit);
    this.send(message({ type: MessageType.MsgHeartbeatResp, to: m.from, context: m.context }));
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (snap === undefined) return;
    if (this.restore(snap)) {
      this.log(
        `[commit: ${this.raftLog.committed}] restored snapshot [index: ${snap.metadata.index}, term: ${snap.metadata.term}]`,
      );
      this.send(message({ type: MessageType.MsgAppResp, to: m.from, index: this.raftLog.lastIndex() }));
    } else {
      this.log(
        `[commit: ${this.raftLog.committed}] ignored snapshot [index: ${snap.metadata.index}, term: ${snap.metadata.term}]`,
      );
      this.send(message({ type: MessageType.MsgAppResp, to: m.from, index: this.raftLog.committed }));
    }
  }

  /** Installs a snapshot from the leader; returns false if it is stale or our log already has it. */
  private restore(snap: ReturnType<RaftLog["snapshot"]>): boolean {
    if (snap.metadata.index <= this.raftLog.committed) return false;
    if (this.state !== StateType.Follower) {
      // Defensive: only a leader of our term sends snapshots, and that made us a follower.
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    if (this.raftLog.matchTerm(snap.metadata.index, snap.metadata.term)) {
      // We have the entry the snapshot ends at: just fast-forward the commit index.
      this.log(`fast-forwarded commit to snapshot [index: ${snap.metadata.index}, term: ${snap.metadata.term}]`);
      this.raftLog.commitTo(snap.metadata.index);
      return false;
    }
    this.raftLog.restore(snap);
    // The snapshot's membership replaces ours, and all progress starts over.
    this.tracker.progress.clear();
    this.tracker.applyConfState(snap.metadata.confState, this.raftLog.lastIndex() + 1);
    this.isLearner = this.tracker.learners.has(this.id);
    return true;
  }

  // ---- membership ----

  /**
   * Applies a committed conf change to the membership and returns the new ConfState. The
   * application calls this when it applies the entry, on every node.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const voters = new Set(this.tracker.voters);
    const learners = new Set(this.tracker.learners);
    switch (cc.type) {
      case "addNode":
        learners.delete(cc.nodeId); // promotes a learner
        voters.add(cc.nodeId);
        break;
      case "addLearnerNode":
        if (!voters.has(cc.nodeId)) learners.add(cc.nodeId); // demoting a voter is not supported
        break;
      case "removeNode":
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
        break;
    }
    const known = new Set(this.tracker.progress.keys());
    this.tracker.applyConfState({ voters: [...voters], learners: [...learners] }, this.raftLog.lastIndex() + 1);
    this.isLearner = this.tracker.learners.has(this.id);
    const cs = this.tracker.confState();
    if (this.state !== StateType.Leader) return cs;
    if (!this.tracker.voters.has(this.id)) {
      // The leader was removed: step down so that the remaining voters elect a leader among
      // themselves (it stops heartbeating, so they time out).
      this.log(`stepping down: removed from the configuration at term ${this.term}`);
      this.becomeFollower(this.term, NONE);
      return cs;
    }
    // A smaller quorum may commit more; new members need their first MsgApp. A new member's
    // progress starts at next = lastIndex+1, so it has no entries to send: probe it with an empty
    // MsgApp (sendIfEmpty), or it would wait for the next heartbeat or proposal to be noticed.
    if (this.maybeCommit()) this.bcastAppend();
    else this.forEachPeer((id) => this.maybeSendAppend(id, !known.has(id)));
    if (this.leadTransferee !== NONE && !this.tracker.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** Decodes and applies a conf change entry (convenience for applications). */
  applyConfChangeEntry(e: Entry): ConfState {
    return this.applyConfChange(decodeConfChange(e.data));
  }
}
