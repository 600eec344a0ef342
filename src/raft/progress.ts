import type { ConfState, NodeId } from "./types.js";

/**
 * The MsgApps in flight to one follower, as the last index each carried: a bounded FIFO ring.
 * When it is full the leader stops sending to that follower until acks free slots (flow control).
 *
 * Worked example, capacity 4. The leader pipelines MsgApps ending at 12, 15, 17:
 *
 *     buffer [12 15 17 __]  start=0 count=3
 *
 * Another one ending at 20 fills it; isFull() pauses replication to this follower:
 *
 *     buffer [12 15 17 20]  start=0 count=4
 *
 * The follower acks index 15 (MsgAppResp index=15). freeLE(15) drops every message ending at or
 * before 15, since an ack covers everything before it:
 *
 *     buffer [__ __ 17 20]  start=2 count=2
 *
 * The next add(23) wraps around to slot 0:
 *
 *     buffer [23 __ 17 20]  start=2 count=3
 */
export class Inflights {
  private start = 0;
  private count = 0;
  private readonly buffer: number[];

  constructor(readonly capacity: number) {
    this.buffer = new Array<number>(capacity).fill(0);
  }

  add(lastIndex: number): void {
    if (this.isFull()) throw new Error("raft: cannot add into a full inflights");
    this.buffer[(this.start + this.count) % this.capacity] = lastIndex;
    this.count++;
  }

  /** Frees every in-flight message whose last index is <= to. */
  freeLE(to: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= to) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest message; a heartbeat response proves the follower is alive, so let one more through. */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.buffer[this.start]!);
  }

  isFull(): boolean {
    return this.count === this.capacity;
  }

  size(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }

  /** The in-flight last indexes, oldest first (for tests and status). */
  toArray(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.buffer[(this.start + i) % this.capacity]!);
    return out;
  }
}

/**
 * How the leader replicates to one follower:
 * - probe: it does not know where the logs agree; sends one MsgApp per heartbeat interval and
 *   waits for the answer (after an election, or after a rejection).
 * - replicate: the logs agree up to `match`; it streams MsgApps optimistically, bounded by the
 *   inflights window.
 * - snapshot: it sent a snapshot and sends nothing else until the follower reports it applied.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

export class Progress {
  /** Highest index known to be replicated on the follower. */
  match = 0;
  /** Index of the next entry to send. */
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round (or leader election). */
  recentActive = false;
  /** In probe state: a probe is outstanding, so wait before sending another. */
  probeSent = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, the follower has at least the snapshot: resume just after it.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an ack up to n; returns whether match moved (a stale or duplicate ack does not). */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** In replicate state the leader assumes a sent MsgApp will land and moves next past it. */
  optimisticUpdate(n: number): void {
    this.next = n + 1;
  }

  /**
   * Handles a rejection of the MsgApp that carried prev index `rejected`. Returns false for a
   * stale rejection (of a message sent before we already moved on), which must be ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      // The pipeline broke (e.g. the follower lost entries): restart right after the known match.
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the answer to the outstanding probe (prev index next-1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Whether the leader must not send this follower more MsgApps right now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.isFull();
      case "snapshot":
        return true;
    }
  }

  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += " learner";
    if (this.isPaused()) s += " paused";
    if (this.pendingSnapshot > 0) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) s += " inactive";
    if (this.inflights.size() > 0) s += ` inflight=${this.inflights.size()}`;
    return s;
  }
}

export type VoteResult = "pending" | "lost" | "won";

/**
 * The leader's per-member progress plus the membership (voters and learners) and the votes of
 * the current election. Quorum is a majority of voters; learners never count.
 */
export class ProgressTracker {
  readonly voters = new Set<NodeId>();
  readonly learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();

  constructor(readonly maxInflight: number) {}

  confState(): ConfState {
    return { voters: sortIds(this.voters), learners: sortIds(this.learners) };
  }

  /** Replaces the membership with cs, keeping progress of members that remain. */
  applyConfState(cs: ConfState, nextIndex: number): void {
    this.voters.clear();
    this.learners.clear();
    for (const id of cs.voters) this.voters.add(id);
    for (const id of cs.learners) if (!this.voters.has(id)) this.learners.add(id);
    for (const id of [...this.progress.keys()]) {
      if (!this.voters.has(id) && !this.learners.has(id)) this.progress.delete(id);
    }
    for (const id of [...this.voters, ...this.learners]) {
      const pr = this.progress.get(id);
      if (pr === undefined) {
        this.progress.set(id, new Progress(nextIndex, this.maxInflight, this.learners.has(id)));
      } else {
        pr.isLearner = this.learners.has(id);
      }
    }
  }

  isVoter(id: NodeId): boolean {
    return this.voters.has(id);
  }

  /** The highest index replicated on a majority of voters (0 with no voters). */
  committed(): number {
    const n = this.voters.size;
    if (n === 0) return 0;
    const matches: number[] = [];
    for (const id of this.voters) matches.push(this.progress.get(id)?.match ?? 0);
    matches.sort((a, b) => b - a);
    // With matches sorted high to low, the (n/2+1)-th highest is on a majority.
    return matches[Math.floor(n / 2)]!;
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Whether `id` answered (yes or no) in the current campaign. */
  hasVoted(id: NodeId): boolean {
    return this.votes.has(id);
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: this.voteResult((id) => this.votes.get(id)) };
  }

  /** Majority decision over the voters, given each voter's yes/no/unknown. */
  voteResult(vote: (id: NodeId) => boolean | undefined): VoteResult {
    const n = this.voters.size;
    if (n === 0) return "won"; // by convention, as etcd: an empty config agrees to anything
    const quorum = Math.floor(n / 2) + 1;
    let yes = 0;
    let missing = 0;
    for (const id of this.voters) {
      const v = vote(id);
      if (v === true) yes++;
      else if (v === undefined) missing++;
    }
    if (yes >= quorum) return "won";
    if (yes + missing >= quorum) return "pending";
    return "lost";
  }

  /** Whether a quorum of voters was recently active (heard from during the last election timeout). */
  quorumActive(self: NodeId): boolean {
    return this.voteResult((id) => (id === self ? true : this.progress.get(id)?.recentActive === true)) === "won";
  }
}

export function sortIds(ids: Iterable<NodeId>): NodeId[] {
  return [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
