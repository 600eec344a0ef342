import * as fs from "node:fs";
import * as path from "node:path";
import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  ErrProposalDropped,
  type HardState,
  MemoryStorage,
  type Message,
  MessageType,
  NONE,
  RawNode,
  type Ready,
  type Snapshot,
  StateType,
} from "../../raft/index.js";
import type { Logger } from "../../util/logger.js";
import { SlabCopier } from "../../util/slab.js";
import { StableMap } from "../../util/stable-map.js";
import type { EtcdConfig } from "../config.js";
import { EtcdError } from "../errors.js";
import { type KeyValue, MvccStore } from "../mvcc/store.js";
import { decodeInternal, encodeInternal } from "../proto.js";
import { encodePut, isPlainPut } from "../put-codec.js";
import type { MemberImage, SnapshotDelta, StateSnapshot } from "../wal/snapshot.js";
import { decodeSnapshot, encodeSnapshotInSlices, MAX_DELTAS, SnapshotStore } from "../wal/snapshot.js";
import { Wal, type WalEntry, WalFailedError } from "../wal/wal.js";
import { AlarmType, type InternalRequest, type RangeRequest, type RangeResponse, type TxnRequest } from "../wire.js";
import { AlarmStore, Applier, type ApplyResult, requestWrites } from "./applier.js";
import { AutoCompactor } from "./compactor.js";
import { clusterIdFor, hexId, IdGenerator, memberIdFor } from "./ids.js";
import { Lessor } from "./lessor.js";
import { type Member, type MemberChangeContext, Membership } from "./membership.js";
import { snapshotDue } from "./snapshot-schedule.js";
import { WatchHub } from "./watch-hub.js";

/**
 * One store member, replicated with Raft. A write is *proposed*: encoded as a log entry and handed
 * to the Raft node (a follower forwards it to the leader). The Ready loop below persists what Raft
 * hands out in the write-ahead log (group commit: everything proposed while an fsync runs shares the
 * next one), sends messages to peers only once that is durable, and applies committed entries in
 * log order with the deterministic Applier; the member that proposed an entry then answers its
 * client. Linearizable reads go through ReadIndex: the leader confirms it still leads, and the read
 * waits until this member has applied up to the index the leader returned.
 *
 * The Raft core (src/raft) is pure; this class is its application: it owns the clock (ticks), the
 * storage (WAL + snapshots + MemoryStorage) and the network (the peer transport).
 */

export type { Member } from "./membership.js";

/**
 * etcd checks --max-request-bytes against its own log entry, which carries the request ID in a
 * nested header (field 100: 2 tag bytes + 1 length byte around the ID) where ours has a top-level
 * field (1 tag byte): 3 bytes more for the same request. Counting them puts the limit where
 * etcd's is, give or take the byte or two by which either ID's varint length varies
 * (test/etcdctl-known-differences.test.ts).
 */
const ETCD_HEADER_EXTRA_BYTES = 3;

/** Commands proposed together travel in one MsgProp up to about this size (one command always goes). */
const MAX_PROPOSAL_BATCH_BYTES = 1024 * 1024;

/**
 * A Ready pass proposes at most this many queued requests, then yields to the event loop while
 * more wait. Taking all of them (128 clients' worth) made the client and this member take turns:
 * the client sent a burst, waited while the whole burst was written and answered, then answered
 * the burst in one long turn while this member idled. Smaller passes let the first answers leave
 * while the rest are written (measured: the etcd3 client's event loop busy 76% → 88%, puts/s
 * +12–22% at 128 clients on one member).
 */
const MAX_PROPOSALS_PER_PASS = 64;

/** An append that carries no entries: a leader telling a follower its new commit index. */
function isCommitNotice(m: Message): boolean {
  return m.type === MessageType.MsgApp && m.entries.length === 0;
}

/** A notice of the leader's durable index lets a follower commit, and answer its clients, at once. */
function isDurableNotice(m: Message): boolean {
  return isCommitNotice(m) && m.durable !== undefined && m.durable > m.commit;
}

/** Messages a follower passes on to the leader for someone else (no promise about its own log). */
const FORWARDED: ReadonlySet<MessageType> = new Set([MessageType.MsgProp, MessageType.MsgReadIndex]);

/** etcd 3.4's API level, which clients (etcdctl, client libraries) check. */
export const SERVER_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";

interface Waiter {
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: unknown) => void;
  /** performance.now() past which the proposal fails with etcd's "request timed out". */
  readonly deadline: number;
}

interface QueuedProposal {
  readonly id: string;
  readonly data?: Uint8Array;
  readonly confChange?: ConfChange;
}

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

/** The narrow view of the peer transport the server needs (src/etcd/peer). */
export interface PeerLink {
  send(messages: Message[]): void;
  request(to: bigint, kind: string, body: Buffer, timeoutMs: number): Promise<Buffer>;
  addPeer(id: bigint, urls: string[]): void;
  updatePeer(id: bigint, urls: string[]): void;
  removePeer(id: bigint): void;
  close(): Promise<void>;
  /** The fault hook (drop, delay, one-way block per peer), for drills and tests. */
  setFaults(peer: bigint | "all", faults: PeerFaultSettings): void;
  clearFaults(): void;
  faults(): unknown;
  /** Per peer (member ID in hex): what was written to it and read from it, in bytes. */
  stats(): Record<string, { sentBytes: number; receivedBytes: number }>;
  /** Peers with an established connection right now. */
  activePeers(): number;
  /** Whether a message to this peer would be written now (false while its connection is down). */
  reachable(peer: bigint): boolean;
}

export interface PeerFaultSettings {
  drop?: number;
  delayMs?: number;
  blockOutbound?: boolean;
  blockInbound?: boolean;
}

export interface ServerOptions {
  readonly config: EtcdConfig;
  readonly logger: Logger;
  readonly now?: () => number;
  /**
   * Starts the peer transport once the member knows its IDs. The server calls back into the
   * returned link's owner through the handlers it passes.
   */
  readonly connectPeers: (ids: { memberId: bigint; clusterId: bigint }, handlers: PeerHandlers) => Promise<PeerLink>;
  /** For a member joining an existing cluster: asks the peers for the cluster ID and members. */
  readonly discoverCluster?: () => Promise<{ clusterId: bigint; members: MemberImage[] }>;
}

export interface PeerHandlers {
  onMessage(m: Message): void;
  onRequest(from: bigint, kind: string, body: Buffer): Promise<Buffer>;
  onUnreachable(peer: bigint): void;
  onSnapshotStatus(peer: bigint, status: "finish" | "failure"): void;
  onRefused(peer: bigint, reason: string): void;
}

export class EtcdServer {
  memberId: bigint;
  clusterId: bigint;
  readonly membership = new Membership();
  readonly mvcc = new MvccStore();
  readonly alarms = new AlarmStore();
  readonly lessor: Lessor;
  readonly watchHub: WatchHub;
  private readonly applier: Applier;
  private ids: IdGenerator;
  private readonly snapshots: SnapshotStore;
  private readonly raftStorage = new MemoryStorage();
  private raw!: RawNode;
  private peers: PeerLink | undefined;
  private wal!: Wal;
  private applied = 0;
  private appliedTerm = 0;
  private snapshotIndex = 0;
  /**
   * The newest snapshot file (saved or being saved): a delta follows on from it. Undefined when
   * the next one must be full.
   */
  private snapshotChain: { index: number; revision: number; deltas: number } | undefined;
  private confState: ConfState = { voters: [], learners: [] };
  private lead: bigint = NONE;
  private role: StateType = StateType.Follower;
  private readonly waiters = new StableMap<string, Waiter>();
  /** Proposals held while no leader is known; submitted when one appears. */
  private queued: QueuedProposal[] = [];
  private readyScheduled = false;
  private readyRunning = false;
  /** Snapshot files being written, in order (saveSnapshot). */
  private snapshotWrites: Promise<void> = Promise.resolve();
  /** The leader whose lost connection already ordered this member's election timeout. */
  private leaderLossOrdered: bigint = NONE;
  /** Proposed entries live in the Raft log until a snapshot lets it be compacted: copied apart. */
  private readonly entryCopier = new SlabCopier();
  /** Reads waiting for the next ReadIndex round. */
  private readsPending: ReadWaiter[] = [];
  /** ReadIndex rounds in flight, by request context. */
  private readonly readsInFlight = new Map<string, ReadWaiter[]>();
  /**
   * A leader's followers whose forwarded proposals are in its log but not yet known to them as
   * committed: follower → the last log index those proposals took. Their clients wait for the
   * commit notice, so it leaves at once instead of after this member's own answers.
   */
  private readonly forwardedUncommitted = new Map<bigint, number>();
  private readCounter = 0;
  /** Waiters for "applied reached index N" (reads after ReadIndex; conf changes). */
  private appliedWaiters: Array<{ index: number; resolve: () => void }> = [];
  private storageError: WalFailedError | undefined;
  private fatal: Error | undefined;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly revoking = new Set<bigint>();
  private readonly compactor: AutoCompactor;
  private published = false;
  /** Times this member saw a new leader (etcd_server_leader_changes_seen_total). */
  leaderChangesSeen = 0;
  /** Called when the member must stop for good (removed from the cluster, refused by peers). */
  onFatal: (err: Error) => void = () => {};

  private constructor(
    readonly config: EtcdConfig,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    const peerUrls = this.ownPeerUrls();
    this.memberId = memberIdFor(peerUrls, config.initialClusterToken);
    const allIds = [...config.initialCluster.values()].map((urls) =>
      memberIdFor(urls.map(urlString), config.initialClusterToken),
    );
    this.clusterId = clusterIdFor(allIds.length > 0 ? allIds : [this.memberId]);
    this.lessor = new Lessor(minLeaseTtl(config), now);
    this.mvcc.setLeaseListener(this.lessor);
    this.watchHub = new WatchHub(this.mvcc, config.watchProgressNotifyIntervalMs, now);
    this.applier = new Applier(this.mvcc, this.lessor, this.alarms, (rev) => this.watchHub.onCommit(rev));
    this.ids = new IdGenerator(this.memberId, now());
    this.compactor = new AutoCompactor(
      config.autoCompactionMode,
      {
        ...(config.autoCompactionRetentionMs !== undefined ? { ms: config.autoCompactionRetentionMs } : {}),
        ...(config.autoCompactionRetentionRevisions !== undefined
          ? { revisions: config.autoCompactionRetentionRevisions }
          : {}),
      },
      now,
    );
    this.snapshots = new SnapshotStore(path.join(config.dataDir, "member", "snap"));
  }

  /** Opens the data directory, recovers state (snapshot + log), joins the cluster and starts serving. */
  static async start(options: ServerOptions): Promise<EtcdServer> {
    const server = new EtcdServer(options.config, options.logger, options.now ?? Date.now);
    try {
      await server.recover(options);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  // ---- what the RPC layer reads ----

  get members(): Member[] {
    return this.membership.list();
  }

  get raftTerm(): number {
    return this.raw.raft.term;
  }

  /** The committed index, as etcd's Status reports raftIndex. */
  get raftIndex(): number {
    return this.raw.raft.raftLog.committed;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  /** Proposals of this member that failed: refused, timed out, or cut off by a stop or a storage failure. */
  proposalsFailed = 0;

  /** Bytes sent to and received from each peer (member ID in hex), for /metrics. */
  get peerTraffic(): Record<string, { sentBytes: number; receivedBytes: number }> {
    return this.peers?.stats() ?? {};
  }

  /** The write-ahead log's fdatasync durations and bytes written, for /metrics. */
  get walStats(): Pick<Wal, "fsyncSeconds" | "writtenBytes"> {
    return this.wal;
  }

  /** The member this one believes leads (0 when none is known). */
  get leaderId(): bigint {
    return this.lead;
  }

  get isLeader(): boolean {
    return this.role === StateType.Leader;
  }

  get isLearner(): boolean {
    return this.membership.get(this.memberId)?.isLearner ?? false;
  }

  /** The peer transport's fault hook (undefined before the transport starts). */
  get faultHook(): Pick<PeerLink, "setFaults" | "clearFaults" | "faults" | "stats"> | undefined {
    return this.peers;
  }

  get storageFailure(): Error | undefined {
    return this.storageError ?? this.fatal;
  }

  /** etcd's request timeout: 5 s plus two election timeouts. */
  get requestTimeoutMs(): number {
    return 5000 + 2 * this.config.electionTimeoutMs;
  }

  /** Raft's rule for serving reads: the leader has committed an entry of its own term. */
  private leaderCommittedInTerm(): boolean {
    const log = this.raw.raft.raftLog;
    return log.termOrZero(log.committed) === this.raw.raft.term;
  }

  private isSoleVoter(): boolean {
    const voters = this.raw.raft.tracker.confState().voters;
    return voters.length === 1 && voters[0] === this.memberId;
  }

  // ---- start-up ----

  private ownPeerUrls(): string[] {
    return (this.config.initialCluster.get(this.config.name) ?? this.config.initialAdvertisePeerUrls).map(urlString);
  }

  private async recover(options: ServerOptions): Promise<void> {
    const memberDir = path.join(this.config.dataDir, "member");
    const walDir = path.join(memberDir, "wal");
    const fresh = !fs.existsSync(walDir);
    fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });

    const loaded = this.snapshots.loadNewest();
    let snap = loaded?.state;
    if (loaded) this.chainOn(loaded.state, loaded.deltas);
    if (!snap && fresh) {
      if (this.config.initialClusterState === "new") {
        snap = this.bootstrapImage();
        // Durable before anything else, so that a crash right after leaves a consistent member.
        await this.snapshots.save(snap);
        this.chainOn(snap, 0);
      } else {
        await this.joinExisting(options);
      }
    }
    if (snap) {
      this.restoreSnapshot(snap);
      this.raftStorage.applySnapshot(this.raftSnapshotOf(snap, NO_DATA));
      this.log.info("loaded snapshot", { index: snap.index, revision: snap.store.currentRevision });
    } else if (!fresh) {
      throw new Error(
        `the data directory ${this.config.dataDir} has a log but no snapshot; it is damaged. Remove the member (etcdctl member remove), delete the directory and add it again`,
      );
    }
    const self = this.membership.get(this.memberId);
    if (!self && snap) {
      throw new Error(
        `this member (${hexId(this.memberId)}, peer URLs ${this.ownPeerUrls().join(",")}) is not in the cluster recorded in ${this.config.dataDir}; it was removed or the data directory belongs to another member. Delete the directory and add the member again (etcdctl member add)`,
      );
    }

    const { wal, contents } = Wal.open(walDir, {
      fsync: !this.config.unsafeNoFsync,
      skipEntriesThrough: this.applied,
    });
    this.wal = wal;
    for (const w of contents.warnings) this.log.warn(w);
    if (contents.hardState) this.raftStorage.setHardState(toRaftHardState(contents.hardState));
    const entries = contents.entries.filter((e) => e.index > this.applied);
    if (entries.length > 0) this.raftStorage.append(entries.map(toRaftEntry));

    const electionTick = Math.max(2, Math.round(this.config.electionTimeoutMs / this.config.heartbeatIntervalMs));
    this.raw = new RawNode({
      id: this.memberId,
      electionTick,
      heartbeatTick: 1,
      storage: this.raftStorage,
      applied: this.applied,
      // etcd always runs check-quorum; pre-vote follows --pre-vote (off by default in 3.4).
      checkQuorum: true,
      preVote: this.config.preVote,
      // In a cluster of two or three voters a follower commits with the leader's durable copy
      // and its own, so a write it serves is answered a round trip sooner (RaftConfig).
      followerCommit: true,
      random: Math.random,
      logger: (line) => this.log.debug(line),
    });

    const handlers: PeerHandlers = {
      onMessage: (m) => this.stepPeer(m),
      onRequest: (from, kind, body) => this.answerPeer(from, kind, body),
      onUnreachable: (peer) => {
        this.raw.reportUnreachable(peer);
        this.scheduleReady();
      },
      onSnapshotStatus: (peer, status) => {
        this.raw.reportSnapshot(peer, status);
        this.scheduleReady();
      },
      onRefused: (peer, reason) => this.refusedBy(peer, reason),
    };
    this.peers = await options.connectPeers({ memberId: this.memberId, clusterId: this.clusterId }, handlers);
    // The members from the snapshot, or (joining) the ones the peers described.
    for (const m of this.membership.list()) if (m.id !== this.memberId) this.peers.addPeer(m.id, m.peerUrls);

    this.log.info(fresh ? "started a new member" : "restarted member", {
      name: this.config.name,
      "member-id": hexId(this.memberId),
      "cluster-id": hexId(this.clusterId),
      "data-dir": this.config.dataDir,
      "snapshot-index": this.applied,
      // Log entries after the snapshot, applied again as Raft hands them out (bounded by --snapshot-count).
      "replayed-entries": entries.length,
      "last-index": this.raftStorage.lastIndex(),
      voters: this.confState.voters.map(hexId).join(","),
    });

    this.timers.push(
      setInterval(() => this.tick(), this.config.heartbeatIntervalMs),
      setInterval(() => this.revokeExpiredLeases(), 500),
    );
    if (this.compactor.enabled) {
      this.timers.push(setInterval(() => this.autoCompact(), this.compactor.intervalMs));
    }
    for (const t of this.timers) t.unref();
    // A lone voter need not wait for an election timeout to lead.
    if (this.isSoleVoter()) this.raw.campaign();
    else if (this.config.initialElectionTickAdvance) void this.advanceTicksOnceConnected(electionTick);
    this.scheduleReady();
  }

  /** The state of a brand-new cluster: no keys, the members --initial-cluster lists. */
  private bootstrapImage(): StateSnapshot {
    const members: MemberImage[] = [...this.config.initialCluster.entries()].map(([name, urls]) => {
      const peerUrls = urls.map(urlString);
      const id = memberIdFor(peerUrls, this.config.initialClusterToken);
      return { id, name, peerUrls, clientUrls: [], isLearner: false };
    });
    return {
      index: 1,
      term: 1,
      clusterId: this.clusterId,
      members,
      store: { currentRevision: 1, compactedRevision: 0, records: [] },
      leases: [],
      alarms: [],
    };
  }

  /** A member started with --initial-cluster-state existing: learn the cluster from its peers. */
  private async joinExisting(options: ServerOptions): Promise<void> {
    if (!options.discoverCluster) throw new Error("joining an existing cluster needs the peers' addresses");
    const info = await options.discoverCluster();
    const mine = new Set(this.ownPeerUrls());
    const self = info.members.find((m) => m.peerUrls.some((u) => mine.has(u)));
    if (!self) {
      throw new Error(
        `the cluster (${hexId(info.clusterId)}) has no member with peer URLs ${[...mine].join(",")}; add this member first: etcdctl member add ${this.config.name} --peer-urls=${[...mine].join(",")}`,
      );
    }
    this.memberId = self.id;
    this.clusterId = info.clusterId;
    this.ids = new IdGenerator(this.memberId, this.now());
    this.membership.restore(info.members);
  }

  private raftSnapshotOf(image: StateSnapshot, data: Uint8Array): Snapshot {
    return {
      metadata: { index: image.index, term: image.term, confState: Membership.confStateOf(image.members) },
      data,
    };
  }

  private restoreSnapshot(snap: StateSnapshot): void {
    // Leases first: restoring the store re-attaches each live key to its lease.
    this.lessor.restore(snap.leases);
    this.mvcc.restore(snap.store);
    this.alarms.restore(snap.alarms);
    this.membership.restore(snap.members);
    this.clusterId = snap.clusterId;
    this.confState = Membership.confStateOf(snap.members);
    this.applied = snap.index;
    this.appliedTerm = snap.term;
    this.snapshotIndex = snap.index;
  }

  /**
   * --initial-election-tick-advance, as etcd 3.4 does it: once more than one peer answers (within
   * 5 s, polled every 50 ms), fast-forward the election clock to two ticks short of the election
   * timeout, so a booting cluster elects within a few heartbeats instead of a whole timeout. Two
   * ticks stay in hand so that a leader's heartbeat already on its way still arrives in time.
   */
  private async advanceTicksOnceConnected(electionTick: number): Promise<void> {
    for (let waited = 0; waited < 5000 && !this.stopped; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50).unref());
      if (this.stopped || this.peers === undefined) return;
      if (this.peers.activePeers() > 1) {
        // A member that already follows a leader (a restart into a running cluster) keeps its
        // clock: fast-forwarding it could only start a needless election if a heartbeat ran late.
        if (this.lead !== NONE) return;
        for (let i = 0; i < electionTick - 2; i++) this.raw.tick();
        this.log.info("fast-forwarded election ticks", {
          "forward-ticks": electionTick - 2,
          "active-peers": this.peers.activePeers(),
        });
        this.scheduleReady();
        return;
      }
    }
  }

  // ---- the Raft loop ----

  private tick(): void {
    if (this.stopped) return;
    this.expireProposals();
    this.orderElectionAfterLeaderLoss();
    this.raw.tick();
    this.submitQueued();
    this.flushReads();
    this.scheduleReady();
  }

  /**
   * A follower whose connection to its leader closed (the leader's process ended or restarted: its
   * sockets closed with it) campaigns after exactly an election timeout of silence, plus two ticks
   * for each surviving voter with a lower ID, instead of after a randomized timeout of up to twice
   * that. The survivors then go one after the other in a fixed order, without splitting the vote,
   * and the first goes as soon as the others' leases let them vote (they ignore vote requests for
   * an election timeout after their last heartbeat; the candidate asks again each tick). A leader
   * that is alive is disturbed no sooner than before: the clock still counts from its last message.
   * etcd 3.4 waits out the randomized timeout.
   */
  private orderElectionAfterLeaderLoss(): void {
    if (this.role !== StateType.Follower || !this.leaderUnreachable() || this.leaderLossOrdered === this.lead) return;
    this.leaderLossOrdered = this.lead;
    const survivors = this.raw.raft.tracker
      .confState()
      .voters.filter((id) => id !== this.lead)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const rank = survivors.indexOf(this.memberId);
    if (rank < 0) return; // a learner does not campaign
    this.raw.raft.setElectionTimeoutAfterLeaderLoss(2 * rank);
    this.log.info("lost the connection to the leader; ordered the election", {
      leader: hexId(this.lead),
      rank,
      "election-ticks": this.raw.raft.randomizedElectionTimeout,
    });
  }

  /**
   * A follower whose connection to the leader is down (the leader died, or its connection broke
   * and is being redialed) holds proposals and read requests instead of forwarding them: the
   * transport would drop them, and each would hang until its client gave up. Held, they go to
   * the next leader as soon as it is elected, or to this one on the first tick after the
   * connection is back.
   */
  private leaderUnreachable(): boolean {
    return (
      this.lead !== NONE && this.lead !== this.memberId && this.peers !== undefined && !this.peers.reachable(this.lead)
    );
  }

  private stepPeer(m: Message): void {
    if (this.stopped) return;
    const forwarded = m.type === MessageType.MsgProp && this.role === StateType.Leader;
    const lastBefore = forwarded ? this.raw.raft.raftLog.lastIndex() : 0;
    const err = this.raw.step(m);
    if (err !== undefined && err !== ErrProposalDropped)
      this.log.debug("raft refused a message", { error: err.message });
    if (forwarded) {
      const last = this.raw.raft.raftLog.lastIndex();
      if (last > lastBefore) this.forwardedUncommitted.set(m.from, last);
    }
    this.scheduleReady();
  }

  private scheduleReady(): void {
    if (this.readyScheduled || this.stopped) return;
    this.readyScheduled = true;
    setImmediate(() => {
      this.readyScheduled = false;
      void this.runReady();
    });
  }

  /** Drains Readys one at a time: persist, then send, then apply, then advance. */
  private async runReady(): Promise<void> {
    if (this.readyRunning || this.stopped || this.storageError) return;
    this.readyRunning = true;
    try {
      for (;;) {
        // Requests that arrived meanwhile (also during an await below) join the next Ready.
        const moreWaiting = this.submitQueued(true);
        if (this.stopped || this.storageError) break;
        if (!this.raw.hasReady()) {
          if (moreWaiting) continue; // all of this pass had timed out
          break;
        }
        const rd = this.raw.ready();
        await this.handleReady(rd);
        if (this.stopped) return;
        this.raw.advance();
        if (moreWaiting) {
          // Let this pass's answers go out and more requests come in before the next pass.
          this.readyRunning = false;
          this.scheduleReady();
          return;
        }
      }
    } catch (err) {
      this.failStorage(err);
    } finally {
      this.readyRunning = false;
    }
  }

  /** Hands messages to the peers; a snapshot goes by sendCurrentState. */
  private send(messages: Message[]): void {
    let others = messages;
    if (messages.some((m) => m.type === MessageType.MsgSnap)) {
      others = [];
      for (const m of messages) {
        if (m.type === MessageType.MsgSnap) this.sendCurrentState(m);
        else others.push(m);
      }
    }
    if (others.length > 0) this.peers?.send(others);
  }

  /**
   * A snapshot leaves with the state applied now, as etcd merges its snapshot message at send
   * time: Raft's own snapshot is only its metadata (the member keeps no encoded copy of its whole
   * state in memory), and the applied state is at or past it. Encoding runs in slices; the
   * follower's answer, at the higher index, moves its progress past Raft's snapshot.
   */
  private sendCurrentState(m: Message): void {
    const image = this.snapshotImage();
    const confState: ConfState = { voters: [...this.confState.voters], learners: [...this.confState.learners] };
    encodeSnapshotInSlices(image).then(
      (data) => {
        if (this.stopped) return;
        this.log.info("sending a snapshot", { to: hexId(m.to), index: image.index, bytes: data.length });
        this.peers?.send([{ ...m, snapshot: { metadata: { index: image.index, term: image.term, confState }, data } }]);
      },
      (err: unknown) => {
        this.log.warn("could not encode a snapshot for a follower", { to: hexId(m.to), error: String(err) });
        if (!this.stopped) this.raw.reportSnapshot(m.to, "failure");
      },
    );
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.onSoftState(rd.softState.lead, rd.softState.raftState);
    for (const rs of rd.readStates) this.onReadState(Buffer.from(rs.requestCtx).toString("latin1"), rs.index);
    // A leader may send before its own write is durable (Raft thesis 10.2.1): its messages promise
    // nothing about its disk, and a commit index that counts its own unsynced copy only leaves in
    // a later Ready, after this one is persisted. Everyone else persists first (acks and votes
    // must be durable).
    const sendFirst = this.role === StateType.Leader;
    let after = rd.messages;
    if (sendFirst) after = [];
    else if (rd.messages.length > 0 && (rd.entries.length > 0 || rd.hardState || rd.snapshot)) {
      // A follower's forwarded proposals and read requests promise nothing about its disk: they
      // need not wait for this Ready's write either.
      after = rd.messages.filter((m) => !FORWARDED.has(m.type));
      if (after.length < rd.messages.length) this.send(rd.messages.filter((m) => FORWARDED.has(m.type)));
    }
    // A leader's commit notices (appends without entries that only raise the followers' commit
    // index) leave on the next turn of the event loop: the answers this Ready releases go out
    // first. Each notice costs a socket write per follower (and wakes it); sent first, they stood
    // between a one-client put and its answer. Raft tolerates any delay of a message. A notice
    // that commits what a follower forwarded is that follower's clients' answer: it goes at once.
    let commitNotices: Message[] | undefined;
    if (sendFirst && rd.messages.length > 0) {
      const urgent: Message[] = [];
      const notices: Message[] = [];
      for (const m of rd.messages) {
        if (!isCommitNotice(m) || isDurableNotice(m)) urgent.push(m);
        else if (this.answersForwarded(m)) urgent.push(m);
        else notices.push(m);
      }
      if (urgent.length > 0) this.send(urgent);
      if (notices.length > 0) commitNotices = notices;
    }
    // 0. Entries that are committed and already in our log on disk (an earlier Ready wrote them)
    // are applied before this Ready's write, as etcd's apply loop runs beside its log writes: a
    // pipelined leader answers one batch while it writes the next, and an answer no longer waits
    // for a write that only records the new commit index. The rest (committed in the same Ready
    // that brings them, as in a one-member cluster) still waits for the write; so does a
    // membership change and what follows it, and snapshots are taken only after the write.
    let appliedBeforeWrite = false;
    if (!rd.snapshot) {
      const onDisk = this.raftStorage.lastIndex();
      for (const e of rd.committedEntries) {
        if (e.index > onDisk || e.type === "confChange") break;
        this.applyEntry(e);
        appliedBeforeWrite = true;
      }
      if (appliedBeforeWrite) this.notifyApplied();
    }
    const notices = commitNotices;
    if (notices) {
      setImmediate(() => {
        if (!this.stopped) this.send(notices);
      });
    }
    // The answers just released are promise chains, and the socket write of each is queued behind
    // them: run on, this Ready's own write and messages would go first. When the Ready brings no
    // new entries (it only records a commit index, perhaps acking a notice: nobody waits for
    // either), the answers leave first, on this turn of the event loop; the rest follows on the next.
    if (appliedBeforeWrite && rd.entries.length === 0 && !rd.snapshot) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.stopped) return;
    }
    // 1. Persist (a snapshot from the leader first: it replaces the log and the state).
    if (rd.snapshot) await this.installSnapshot(rd.snapshot);
    if (rd.entries.length > 0 || rd.hardState) {
      await this.wal.append(rd.entries, rd.hardState, {
        // Only new entries, a new term or a vote must reach the disk before anything else
        // happens; a commit index alone need not (it is recomputed after a crash).
        sync: rd.mustSync,
      });
    }
    if (rd.hardState) this.raftStorage.setHardState(rd.hardState);
    if (rd.entries.length > 0) this.raftStorage.append(rd.entries);
    // 2. Send, now that what the messages promise is durable.
    if (after.length > 0) this.send(after);
    // 3. Apply.
    for (const e of rd.committedEntries) this.applyEntry(e);
    if (rd.committedEntries.length > 0) {
      this.notifyApplied();
      const { snapshotCount } = this.config;
      if (snapshotDue(this.applied, this.snapshotIndex, snapshotCount, this.memberId, this.confState.voters)) {
        this.saveSnapshot();
      }
    }
  }

  /** Whether a commit notice commits proposals its follower forwarded (and forgets them if so). */
  private answersForwarded(notice: Message): boolean {
    const last = this.forwardedUncommitted.get(notice.to);
    if (last === undefined || notice.commit < last) return false;
    this.forwardedUncommitted.delete(notice.to);
    return true;
  }

  private onSoftState(lead: bigint, role: StateType): void {
    const wasLeader = this.role === StateType.Leader;
    if (role !== StateType.Leader) this.forwardedUncommitted.clear();
    const leaderChanged = lead !== this.lead;
    this.lead = lead;
    this.role = role;
    if (leaderChanged) {
      this.leaderLossOrdered = NONE;
      if (lead !== NONE) this.leaderChangesSeen++;
      this.log.info(lead === NONE ? "lost the leader" : "leader elected", {
        leader: hexId(lead),
        term: this.raw.raft.term,
      });
      // Reads waiting on the old leader's confirmation cannot be trusted to complete.
      for (const waiters of this.readsInFlight.values())
        for (const w of waiters) w.reject(new EtcdError("LeaderChanged"));
      this.readsInFlight.clear();
    }
    if (role === StateType.Leader && !wasLeader) {
      // A new leader gives every lease a full TTL (etcd 3.4), so no lease expires early.
      this.lessor.promote();
    } else if (role !== StateType.Leader && wasLeader) {
      this.lessor.demote();
    }
    this.submitQueued();
    if (lead !== NONE) this.flushReads();
    if (lead !== NONE && !this.published) this.publish();
  }

  /** Proposes this member's name and client URLs, so `member list` shows them (etcd's publish). */
  private publish(): void {
    const self = this.membership.get(this.memberId);
    const clientUrls = this.config.advertiseClientUrls.map(urlString);
    if (self && self.name === this.config.name && sameList(self.clientUrls, clientUrls)) {
      this.published = true;
      return;
    }
    this.published = true;
    this.propose({
      member_attributes: { id: this.memberId.toString(), name: this.config.name, client_urls: clientUrls },
    }).catch((err: unknown) => {
      this.published = false;
      this.log.warn("could not publish this member's attributes; retrying with the next leader", {
        error: String(err),
      });
    });
  }

  private async installSnapshot(snap: Snapshot): Promise<void> {
    const image = decodeSnapshot(Buffer.from(snap.data), "snapshot from the leader");
    // The snapshot's index and term are Raft's, which the image's own fields must match.
    const fixed: StateSnapshot = { ...image, index: snap.metadata.index, term: snap.metadata.term };
    // A snapshot of our own still being written is older: let it land before this one replaces it.
    await this.snapshotWrites;
    await this.snapshots.save(fixed);
    this.chainOn(fixed, 0);
    await this.wal.markSnapshot({ index: snap.metadata.index, term: snap.metadata.term, reset: true });
    // Raft keeps the snapshot's metadata only: a snapshot this member sends later is made then.
    this.raftStorage.applySnapshot({ metadata: snap.metadata, data: NO_DATA });
    this.restoreSnapshot(fixed);
    this.watchHub.storeRestored();
    for (const m of this.membership.list()) if (m.id !== this.memberId) this.peers?.addPeer(m.id, m.peerUrls);
    this.log.info("applied a snapshot from the leader", {
      index: snap.metadata.index,
      revision: fixed.store.currentRevision,
    });
  }

  private applyEntry(e: Entry): void {
    if (e.index <= this.applied) return;
    if (e.type === "confChange") this.applyConfChange(e);
    else if (e.data.length > 0) this.applyNormal(e);
    this.applied = e.index;
    this.appliedTerm = e.term;
  }

  private applyNormal(e: Entry): void {
    // A view, not a copy: what the apply keeps (keys, values) it copies into its own slabs.
    const req = decodeInternal(asBuffer(e.data));
    const waiter = this.waiters.get(String(req.id));
    if (waiter) this.waiters.delete(String(req.id));
    try {
      let result: ApplyResult;
      if (req.member_attributes) result = this.applyMemberAttributes(req.member_attributes);
      else if (req.member_peer_urls) result = this.applyMemberPeerUrls(req.member_peer_urls);
      else result = this.applier.apply(req);
      waiter?.resolve(result);
    } catch (err) {
      // The same deterministic error on every member; only the proposer reports it.
      if (!(err instanceof EtcdError)) throw err;
      waiter?.reject(err);
    }
  }

  private applyMemberAttributes(a: NonNullable<InternalRequest["member_attributes"]>): ApplyResult {
    this.membership.setAttributes(BigInt(a.id), a.name, a.client_urls);
    return { response: {}, revision: this.mvcc.currentRevision };
  }

  private applyMemberPeerUrls(u: NonNullable<InternalRequest["member_peer_urls"]>): ApplyResult {
    const id = BigInt(u.id);
    if (!this.membership.get(id)) throw new EtcdError("MemberNotFound");
    this.membership.setPeerUrls(id, u.peer_urls);
    if (id !== this.memberId) this.peers?.updatePeer(id, u.peer_urls);
    return { response: {}, revision: this.mvcc.currentRevision };
  }

  private applyConfChange(e: Entry): void {
    const cc = decodeConfChange(e.data);
    const ctx = Membership.decodeContext(cc.context);
    const waiter = ctx ? this.waiters.get(ctx.requestId) : undefined;
    if (ctx) this.waiters.delete(ctx.requestId);
    // Checked again at apply time: two changes racing through the log must not both succeed.
    const invalid = this.membership.validate(cc, ctx);
    if (invalid) {
      // Not applied to Raft either: its membership stays as it was on every member.
      waiter?.reject(invalid);
      return;
    }
    this.confState = this.raw.applyConfChange(cc);
    this.membership.apply(cc, ctx);
    if (cc.type === "removeNode") {
      if (cc.nodeId === this.memberId) {
        this.log.error("this member has been removed from the cluster; stopping");
        waiter?.resolve({ response: {}, revision: this.mvcc.currentRevision });
        this.die(new Error("the member has been permanently removed from the cluster"));
        return;
      }
      this.peers?.removePeer(cc.nodeId);
    } else if (cc.nodeId !== this.memberId) {
      const m = this.membership.get(cc.nodeId);
      if (m) this.peers?.addPeer(m.id, m.peerUrls);
    }
    this.log.info("applied a membership change", {
      change: cc.type,
      member: hexId(cc.nodeId),
      voters: this.confState.voters.map(hexId).join(","),
      learners: this.confState.learners.map(hexId).join(","),
    });
    waiter?.resolve({ response: {}, revision: this.mvcc.currentRevision });
  }

  private notifyApplied(): void {
    if (this.appliedWaiters.length === 0) return;
    const ready = this.appliedWaiters.filter((w) => w.index <= this.applied);
    this.appliedWaiters = this.appliedWaiters.filter((w) => w.index > this.applied);
    for (const w of ready) w.resolve();
  }

  private waitApplied(index: number): Promise<void> {
    if (index <= this.applied) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaiters.push({ index, resolve }));
  }

  // ---- proposals ----

  /**
   * Proposes a command; resolves with its result once it is committed and applied here, or rejects
   * with the EtcdError the apply produced, a storage failure, or a timeout (no quorum).
   */
  propose(body: Omit<InternalRequest, "id">): Promise<ApplyResult> {
    const refused = this.refusal();
    if (refused) return this.failProposal(refused);
    const idBits = this.ids.nextId();
    // The entry stays in the Raft log until it is compacted after a snapshot: a put (most of the
    // log) is encoded straight into the slabs kept for such entries; anything else is copied there.
    const put = body.put && isPlainPut(body) ? body.put : undefined;
    const encoded = (put && encodePut(idBits, put, this.allocateEntry)) ?? this.encodeCommand(idBits, body);
    if (encoded.length + ETCD_HEADER_EXTRA_BYTES > this.config.maxRequestBytes) {
      return Promise.reject(new EtcdError("RequestTooLarge"));
    }
    const id = idBits.toString();
    return this.track(id, { id, data: encoded });
  }

  private readonly allocateEntry = (n: number): Buffer => this.entryCopier.allocate(n);

  private encodeCommand(id: bigint, body: Omit<InternalRequest, "id">): Buffer {
    return this.entryCopier.copy(encodeInternal({ ...body, id: id.toString() } as InternalRequest));
  }

  /** Proposes a membership change (MemberAdd/Remove/Promote); resolves once it is applied here. */
  proposeConfChange(cc: Omit<ConfChange, "context">, ctx: Omit<MemberChangeContext, "requestId">): Promise<void> {
    const refused = this.refusal();
    if (refused) return this.failProposal(refused);
    const requestId = this.ids.nextId().toString();
    const change: ConfChange = { ...cc, context: Membership.encodeContext({ ...ctx, requestId }) };
    return this.track(requestId, { id: requestId, confChange: change }).then(() => undefined);
  }

  private failProposal(err: Error): Promise<never> {
    this.proposalsFailed++;
    return Promise.reject(err);
  }

  private refusal(): Error | undefined {
    if (this.stopped) return new EtcdError("Stopped");
    if (this.fatal) return new EtcdError("Stopped");
    if (this.storageError) return this.storageError;
    return undefined;
  }

  private track(id: string, p: QueuedProposal): Promise<ApplyResult> {
    return new Promise<ApplyResult>((resolve, reject) => {
      this.waiters.set(id, { resolve, reject, deadline: performance.now() + this.requestTimeoutMs });
      this.queued.push(p);
      // Proposed from the next Ready pass, together with every other request that arrived in
      // this turn of the event loop: one MsgProp, one append, one message per follower.
      this.scheduleReady();
    });
  }

  /**
   * Hands up to a pass's worth of held proposals to Raft once a leader is known (etcd blocks
   * proposals until then) and reachable; says whether more wait to be proposed at once.
   */
  private submitQueued(fromReady = false): boolean {
    if (this.lead === NONE || this.queued.length === 0 || this.stopped || this.leaderUnreachable()) return false;
    let held = this.queued;
    if (held.length <= MAX_PROPOSALS_PER_PASS) this.queued = [];
    else held = held.splice(0, MAX_PROPOSALS_PER_PASS);
    let dropped: QueuedProposal[] | undefined;
    let batch: QueuedProposal[] = [];
    let commands: Uint8Array[] = [];
    let batchBytes = 0;
    for (const p of held) {
      if (!this.waiters.has(p.id)) continue; // timed out meanwhile
      if (p.data) {
        if (batch.length > 0 && batchBytes + p.data.length > MAX_PROPOSAL_BATCH_BYTES) {
          dropped = this.proposeNow(batch, commands, dropped);
          batch = [];
          commands = [];
          batchBytes = 0;
        }
        batch.push(p);
        commands.push(p.data);
        batchBytes += p.data.length;
        continue;
      }
      if (batch.length > 0) {
        dropped = this.proposeNow(batch, commands, dropped);
        batch = [];
        commands = [];
        batchBytes = 0;
      }
      if (p.confChange) dropped = this.proposeNow([p], p.confChange, dropped);
    }
    if (batch.length > 0) dropped = this.proposeNow(batch, commands, dropped);
    // After a refusal the rest waits for the next tick too, rather than being refused in a loop;
    // the refused ones keep their place ahead of it.
    const moreWaiting = this.queued.length > 0 && dropped === undefined;
    if (dropped) this.queued = [...dropped, ...this.queued];
    if (!fromReady) this.scheduleReady();
    return moreWaiting;
  }

  /**
   * Proposes commands together, or one membership change; returns `dropped`, with the proposals
   * added if Raft does not take them now.
   */
  private proposeNow(
    proposals: QueuedProposal[],
    what: Uint8Array[] | ConfChange,
    dropped: QueuedProposal[] | undefined,
  ): QueuedProposal[] | undefined {
    try {
      if (Array.isArray(what)) this.raw.proposeBatch(what);
      else this.raw.proposeConfChange(what);
      return dropped;
    } catch (err) {
      if (err !== ErrProposalDropped) throw err;
      // Not accepted now (a leader transfer, a pending conf change): try again at the next tick.
      const out = dropped ?? [];
      out.push(...proposals);
      return out;
    }
  }

  // ---- linearizable reads ----

  /** Resolves once this member's applied state includes every write committed before the call. */
  linearizableRead(): Promise<void> {
    // A lone voter whose log failed still holds every committed write: nothing can commit without
    // it, so its applied state stays current and reads go on (writes are refused).
    if (this.storageError && !this.stopped && this.isSoleVoter()) return Promise.resolve();
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    // A lone voter that leads is its own quorum: what it has committed is all there is, so the
    // read only waits for its state machine to catch up with that (no ReadIndex round needed).
    if (this.isLeader && this.isSoleVoter() && this.leaderCommittedInTerm()) {
      return this.waitApplied(this.raw.raft.raftLog.committed);
    }
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        done.reject(new EtcdError("Timeout"));
      }, this.requestTimeoutMs);
      timer.unref();
      let settled = false;
      const done: ReadWaiter = {
        resolve: () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(e);
        },
      };
      this.readsPending.push(done);
      this.flushReads();
    });
  }

  /** One ReadIndex round for every read that arrived since the last one (they share it). */
  private flushReads(): void {
    if (this.readsPending.length === 0 || this.lead === NONE || this.stopped || this.leaderUnreachable()) return;
    const batch = this.readsPending;
    this.readsPending = [];
    const ctx = `r${this.memberId.toString(36)}-${++this.readCounter}`;
    try {
      this.raw.readIndex(Buffer.from(ctx, "latin1"));
    } catch (err) {
      if (err !== ErrProposalDropped) throw err;
      this.readsPending.push(...batch);
      return;
    }
    this.readsInFlight.set(ctx, batch);
    this.scheduleReady();
  }

  private onReadState(ctx: string, index: number): void {
    const batch = this.readsInFlight.get(ctx);
    if (!batch) return;
    this.readsInFlight.delete(ctx);
    void this.waitApplied(index).then(() => {
      for (const w of batch) w.resolve();
    });
    // Reads that arrived while this round ran get the next one.
    this.flushReads();
  }

  // ---- peers ----

  private async answerPeer(from: bigint, kind: string, body: Buffer): Promise<Buffer> {
    switch (kind) {
      case "lease-keepalive": {
        if (!this.isLeader) throw new EtcdError("NotLeader");
        const ttl = this.lessor.renew(BigInt(body.toString("latin1")));
        return Buffer.from(String(ttl), "latin1");
      }
      case "lease-ttl": {
        if (!this.isLeader) throw new EtcdError("NotLeader");
        const id = BigInt(body.toString("latin1"));
        const lease = this.lessor.get(id);
        const answer = lease
          ? { ttl: this.lessor.remaining(id), granted: lease.ttl, keys: [...lease.keys].sort() }
          : { ttl: -1, granted: 0, keys: [] };
        return Buffer.from(JSON.stringify(answer));
      }
      case "learner-ready":
        if (!this.isLeader) throw new EtcdError("NotLeader");
        return Buffer.from(this.learnerReady(BigInt(body.toString("latin1"))) ? "yes" : "no", "latin1");
      case "cluster-info":
        return Buffer.from(
          JSON.stringify({
            clusterId: this.clusterId.toString(),
            members: this.membership.list().map((m) => ({ ...m, id: m.id.toString() })),
          }),
        );
      default:
        throw new Error(`unknown peer request "${kind}" from ${hexId(from)}`);
    }
  }

  private refusedBy(peer: bigint, reason: string): void {
    this.log.error("a peer refused this member", { peer: hexId(peer), reason });
    if (reason.includes("removed"))
      this.die(new Error(`${reason}; delete this member's data directory and add it again`));
  }

  /** Renews a lease on the leader (keep-alives are the leader's business). Returns the TTL (0: gone). */
  async renewLease(id: bigint): Promise<number> {
    if (this.isLeader) return this.lessor.renew(id);
    const leader = await this.waitLeader();
    const answer = await this.askLeader(leader, "lease-keepalive", Buffer.from(id.toString(), "latin1"));
    return Number(answer.toString("latin1"));
  }

  /** A lease's remaining TTL, as the leader sees it. */
  async leaseTimeToLive(id: bigint): Promise<{ ttl: number; granted: number; keys: string[] }> {
    if (this.isLeader) {
      const lease = this.lessor.get(id);
      if (!lease) return { ttl: -1, granted: 0, keys: [] };
      return { ttl: this.lessor.remaining(id), granted: lease.ttl, keys: [...lease.keys].sort() };
    }
    const leader = await this.waitLeader();
    const answer = await this.askLeader(leader, "lease-ttl", Buffer.from(id.toString(), "latin1"));
    return JSON.parse(answer.toString()) as { ttl: number; granted: number; keys: string[] };
  }

  private async askLeader(leader: bigint, kind: string, body: Buffer): Promise<Buffer> {
    if (!this.peers) throw new EtcdError("NoLeader");
    try {
      return await this.peers.request(leader, kind, body, this.requestTimeoutMs);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message.includes("requested lease not found")) throw new EtcdError("LeaseNotFound");
      if (message.includes("not leader")) throw new EtcdError("LeaderChanged");
      throw new EtcdError("Timeout");
    }
  }

  /** Waits (up to an election timeout's worth of ticks) for a known leader. */
  private async waitLeader(): Promise<bigint> {
    const deadline = this.now() + this.config.electionTimeoutMs * 2;
    while (this.lead === NONE) {
      if (this.stopped) throw new EtcdError("Stopped");
      if (this.now() > deadline) throw new EtcdError("NoLeader");
      await new Promise((r) => setTimeout(r, this.config.heartbeatIntervalMs));
    }
    return this.lead;
  }

  /** Hands leadership to `target` (MoveLeader); resolves once it leads. */
  async moveLeader(target: bigint): Promise<void> {
    if (!this.isLeader) throw new EtcdError("NotLeader");
    const m = this.membership.get(target);
    if (!m || m.isLearner) throw new EtcdError("BadLeaderTransferee");
    if (target === this.memberId) return;
    this.raw.transferLeader(target);
    this.scheduleReady();
    const deadline = this.now() + this.requestTimeoutMs;
    while (this.lead !== target) {
      if (this.now() > deadline || this.stopped) throw new EtcdError("Timeout");
      await new Promise((r) => setTimeout(r, this.config.heartbeatIntervalMs));
    }
  }

  /**
   * MemberPromote's precondition, checked by the leader as etcd does: the learner's log must have
   * reached 90% of the leader's commit index.
   */
  async checkLearnerReady(id: bigint): Promise<void> {
    if (!this.isLeader) {
      const leader = await this.waitLeader();
      const answer = await this.askLeader(leader, "learner-ready", Buffer.from(id.toString(), "latin1"));
      if (answer.toString("latin1") !== "yes") throw new EtcdError("LearnerNotReady");
      return;
    }
    if (!this.learnerReady(id)) throw new EtcdError("LearnerNotReady");
  }

  private learnerReady(id: bigint): boolean {
    const st = this.raw.status();
    const pr = st.progress?.get(id);
    return pr !== undefined && pr.match >= st.hardState.commit * 0.9;
  }

  newMemberId(peerUrls: string[]): bigint {
    // As etcd's MemberAdd does: the URLs and the time in seconds (no cluster token), so that
    // removing and re-adding a member gives it a new ID.
    return memberIdFor(peerUrls, String(Math.floor(this.now() / 1000)));
  }

  // ---- the rest of the store ----

  private failStorage(err: unknown): void {
    if (!this.storageError) {
      this.storageError = err instanceof WalFailedError ? err : new WalFailedError(err);
      this.log.error("stopped accepting writes after a storage failure", { error: this.storageError.message });
    }
    this.failWaitingProposals(this.storageError);
  }

  /**
   * Fails the proposals that waited longer than etcd's request timeout; run on every tick. (A timer
   * per proposal cost every write a Timeout object and two closures that lived until its answer:
   * under 128 clients those were the largest share of what each young-generation collection had
   * to move.) Waiters are kept in the order they were made and all share one timeout, so the
   * expired ones are the first ones.
   */
  private expireProposals(): void {
    const now = performance.now();
    const expired = new Set<string>();
    for (const [id, w] of this.waiters) {
      if (w.deadline > now) break;
      this.waiters.delete(id);
      this.proposalsFailed++;
      w.reject(new EtcdError("Timeout"));
      expired.add(id);
    }
    if (expired.size > 0) this.queued = this.queued.filter((q) => !expired.has(q.id));
  }

  /** Every proposal still waiting for its result fails with `err` (and counts as failed). */
  private failWaitingProposals(err: Error): void {
    this.proposalsFailed += this.waiters.size;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  private die(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.failWaitingProposals(new EtcdError("Stopped"));
    // A moment's grace, so that the answer to the request that removed us still goes out.
    setTimeout(() => this.onFatal(err), 500).unref();
  }

  /** A transaction with no writes, served from the applied state without a log entry. */
  readOnlyTxn(t: TxnRequest): object {
    return this.applier.apply({ id: "0", txn: t }).response;
  }

  /** A fresh lease ID, chosen before proposing so every member applies the same one. */
  nextLeaseId(): bigint {
    return this.ids.nextId();
  }

  /** A read at this member's applied state (callers wait for linearizableRead() first unless serializable). */
  range(r: RangeRequest): RangeResponse {
    return this.applier.range(r);
  }

  /**
   * Whether a write of `cost` more bytes fits in the quota; when it does not, raises the NOSPACE
   * alarm (through the log, as etcd does) and returns false.
   */
  checkQuota(req: Omit<InternalRequest, "id">, cost: number): boolean {
    if (!requestWrites(req as InternalRequest)) return true;
    if (this.mvcc.dbSize + cost < this.config.quotaBackendBytes) return true;
    if (!this.alarms.has(AlarmType.NOSPACE)) {
      this.log.warn("database space exceeded; raising the NOSPACE alarm", {
        "db-size": this.mvcc.dbSize,
        "quota-size": this.config.quotaBackendBytes,
      });
      this.propose({ alarm: { action: 1, memberID: this.memberId.toString(), alarm: AlarmType.NOSPACE } }).catch(
        () => {},
      );
    }
    return false;
  }

  /** The leader revokes leases past expiry through the log (their keys' deletion is a normal write). */
  private revokeExpiredLeases(): void {
    if (this.stopped || this.storageError || !this.isLeader) return;
    for (const id of this.lessor.expired()) {
      if (this.revoking.has(id)) continue;
      this.revoking.add(id);
      this.log.debug("revoking expired lease", { lease: id.toString(16) });
      this.propose({ lease_revoke: { ID: id.toString() } })
        .catch(() => {})
        .finally(() => this.revoking.delete(id));
    }
  }

  /** Periodic or revision-based auto compaction, as --auto-compaction-mode asks (the leader proposes it). */
  private autoCompact(): void {
    if (this.stopped || this.storageError || !this.isLeader) return;
    const target = this.compactor.tick(this.mvcc.currentRevision, this.mvcc.compactedRevision);
    if (target === undefined) return;
    this.log.info("auto compaction", { revision: target, mode: this.config.autoCompactionMode });
    this.propose({ compaction: { revision: String(target), physical: false } }).catch((err: unknown) => {
      this.log.warn("auto compaction failed", { error: String(err) });
    });
  }

  /**
   * The applied state as a snapshot (what Maintenance.Snapshot streams), or with only `records`
   * (a delta's) for the store's.
   */
  snapshotImage(records?: KeyValue[]): StateSnapshot {
    const store = records
      ? { currentRevision: this.mvcc.currentRevision, compactedRevision: this.mvcc.compactedRevision, records }
      : this.mvcc.image();
    return {
      index: this.applied,
      term: this.appliedTerm,
      clusterId: this.clusterId,
      members: this.membership.images(),
      store,
      leases: this.lessor.image(),
      alarms: this.alarms.image(),
    };
  }

  /** The applied state as snapshot bytes (Maintenance.Snapshot), encoded without stalling the member. */
  snapshotBytes(): Promise<Buffer> {
    return encodeSnapshotInSlices(this.snapshotImage());
  }

  /**
   * Writes a snapshot of the applied state, tells Raft (for followers too far behind), and lets
   * the log drop what it covers, keeping some entries for followers that lag a little.
   *
   * Mostly a delta: the records written since the previous snapshot file, taken from the store's
   * history in one short turn (see snapshot.ts); in full (~0.4 s of CPU per 100,000 revisions
   * here) every MAX_DELTAS deltas, after a compaction passed the previous snapshot, or when
   * `full` (a defragment). Encoding and writing the file happen in the background, one snapshot
   * after another, while the member goes on serving. Raft gets the snapshot, and the log may drop
   * the entries before it, only once it is encoded; the log records it (and may drop its
   * segments) only once the file is durable: a crash before that restarts from the previous
   * snapshot and the log, which still holds all since.
   */
  private saveSnapshot(full = false): void {
    if (this.storageError || this.stopped) return;
    const captureStarted = performance.now();
    const chain = this.snapshotChain;
    const since = !full && chain && chain.deltas < MAX_DELTAS ? this.mvcc.recordsAfter(chain.revision) : undefined;
    const image: StateSnapshot | SnapshotDelta =
      chain && since
        ? { ...this.snapshotImage(since), follows: chain.index, fromRevision: chain.revision }
        : this.snapshotImage();
    this.chainOn(image, chain && since ? chain.deltas + 1 : 0);
    const confState = this.raw.raft.tracker.confState();
    this.snapshotIndex = image.index;
    const captureMs = Math.round(performance.now() - captureStarted);
    const kind = "follows" in image ? "delta" : "full";
    this.snapshotWrites = this.snapshotWrites
      .then(async () => {
        const encodeStarted = performance.now();
        const data = await encodeSnapshotInSlices(image);
        const encodeMs = Math.round(performance.now() - encodeStarted);
        // Raft already holds this state when nothing was applied since its last snapshot (a
        // defragment rewrites the file only).
        if (image.index > this.raftStorage.snapshot().metadata.index) {
          this.raftStorage.createSnapshot(image.index, confState, NO_DATA);
          // Entries kept behind the snapshot, so that a briefly lagging follower needs no snapshot.
          const compactTo = image.index - this.config.snapshotCatchUpEntries;
          if (compactTo > this.raftStorage.firstIndex()) this.raftStorage.compact(compactTo);
        }
        const writeStarted = performance.now();
        await this.snapshots.save(image, data);
        await this.wal.markSnapshot({ index: image.index, term: image.term });
        this.log.info("saved snapshot", {
          index: image.index,
          revision: image.store.currentRevision,
          kind,
          records: image.store.records.length,
          bytes: data.length,
          // The member pauses only for the capture; the encoding is spread over many turns.
          "capture-ms": captureMs,
          "encode-ms": encodeMs,
          "write-ms": Math.round(performance.now() - writeStarted),
        });
      })
      .catch((err: unknown) => this.failStorage(err));
  }

  /** The next delta follows on from `snapshot`, itself `deltas` deltas after a full one. */
  private chainOn(snapshot: StateSnapshot, deltas: number): void {
    this.snapshotChain = { index: snapshot.index, revision: snapshot.store.currentRevision, deltas };
  }

  /** Returns compacted space (db size falls to what is in use) and rewrites the snapshot. */
  defragment(): void {
    if (this.storageError) throw this.storageError;
    this.mvcc.defragment();
    this.saveSnapshot(true);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.watchHub.close();
    await this.peers?.close().catch(() => {});
    await this.snapshotWrites;
    try {
      await this.wal?.close();
    } catch {
      // Nothing more to save; the log is already as durable as it will be.
    }
    this.failWaitingProposals(new EtcdError("Stopped"));
    for (const batch of [this.readsPending, ...this.readsInFlight.values()]) {
      for (const r of batch) r.reject(new EtcdError("Stopped"));
    }
  }
}

/** What Raft's own snapshots carry: nothing (see sendCurrentState). */
const NO_DATA = new Uint8Array(0);

function urlString(u: URL): string {
  // etcd keeps URLs as given, without the trailing slash URL.toString() would add.
  return u.toString().replace(/\/$/, "");
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The log already copied `data` apart (into its own slabs) while reading: shared, not copied again. */
function toRaftEntry(e: WalEntry): Entry {
  return { index: e.index, term: e.term, type: e.type ?? "normal", data: e.data };
}

function toRaftHardState(h: { term: number; vote: bigint; commit: number }): HardState {
  return { term: h.term, vote: h.vote, commit: h.commit };
}

/** etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds, rounded up. */
export function minLeaseTtl(config: Pick<EtcdConfig, "electionTimeoutMs" | "heartbeatIntervalMs">): number {
  const electionTicks = Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs);
  const ms = Math.floor((3 * electionTicks) / 2) * config.heartbeatIntervalMs;
  return Math.ceil(ms / 1000);
}
