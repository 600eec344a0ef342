/**
 * A deterministic simulation of a Raft cluster: N RawNodes, each with a MemoryStorage and a tiny
 * application (a hash chain over applied entries), connected by a simulated network that drops,
 * duplicates, delays and reorders messages and can be partitioned (symmetrically or one way).
 * Nodes crash and restart from what they persisted; members are added, promoted and removed;
 * leadership is transferred. One seeded PRNG drives every choice, so a seed replays exactly.
 *
 * Safety properties are checked after every step (tick, message delivery, Ready): election
 * safety, log matching, leader completeness, state-machine safety, and ReadIndex freshness.
 * Liveness is checked after the faults heal.
 */
import {
  bootstrapSnapshot,
  type ConfChange,
  type ConfState,
  decodeConfChange,
  describeMessage,
  type Entry,
  ErrProposalDropped,
  MemoryStorage,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  RaftError,
  RawNode,
  type Ready,
  type Snapshot,
  StateType,
} from "../../src/raft/index.js";
import { mulberry32 } from "../helpers/prng.js";

function mix(h: number, x: number): number {
  let v = (h ^ x) >>> 0;
  v = Math.imul(v ^ (v >>> 16), 0x85ebca6b);
  v = Math.imul(v ^ (v >>> 13), 0xc2b2ae35);
  return (v ^ (v >>> 16)) >>> 0;
}

function hashBytes(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of data) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function entryHash(prev: number, e: Entry): number {
  return mix(mix(mix(mix(prev, e.index), e.term), e.type === "confChange" ? 1 : 0), hashBytes(e.data));
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class SafetyViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SafetyViolation";
  }
}

export interface SimOptions {
  seed: number;
  /** Rounds (ticks) of random faults and traffic before healing. */
  faultRounds?: number;
  /** Keep a trace of events (for replaying a failing seed). */
  trace?: boolean;
}

interface AppSnapshot {
  /** State-machine hash chain at the snapshot index. */
  h: number;
  /** Log prefix hash at the snapshot index (feeds the log-matching check). */
  p: number;
}

/** One simulated member: its durable storage survives crashes; the RawNode and app state do not. */
class SimNode {
  node: RawNode | undefined;
  /** Permanently stopped after being removed from the cluster. */
  decommissioned = false;
  // Application state (volatile: rebuilt from the storage's snapshot on restart).
  appliedIndex = 0;
  stateHash = 0;
  confState: ConfState = { voters: [], learners: [] };
  // Mirror of the persisted log as prefix hashes: prefix[k] is the hash of the log up to index prefixBase + k.
  prefixBase = 0;
  prefix: number[] = [0];
  /** Highest term in which we already checked leader completeness for this node. */
  checkedLeaderTerm = 0;

  constructor(
    readonly id: NodeId,
    readonly storage: MemoryStorage,
  ) {}

  get alive(): boolean {
    return this.node !== undefined;
  }
}

interface InFlight {
  msg: Message;
  deliverAt: number;
}

export class Simulation {
  readonly rng: () => number;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly traceLines: string[] = [];
  private readonly tracing: boolean;
  private now = 0;
  private network: InFlight[] = [];
  /** Directed links that are cut: "from>to". */
  private readonly cut = new Set<string>();
  private dropRate = 0;
  private dupRate = 0;
  /** Chance of a crash at each of a Ready's two crash points (between persist, send and apply). */
  private readyCrashRate = 0.002;
  private maxDelay = 2;
  private nextNodeId = 1n;
  private proposalCounter = 0;
  private readCounter = 0;
  readonly electionTick = 10;
  readonly heartbeatTick = 1;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Leaders tell followers their durable index; followers of a 2-3 voter cluster commit on their own. */
  readonly followerCommit: boolean;
  private readonly maxInflight: number;
  private readonly maxSizePerMsg: number;

  // ---- global knowledge for the safety checks ----
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** (index/term) -> prefix hash: log matching. */
  private readonly logPrefixAt = new Map<string, number>();
  /** index -> {term, state hash}: state-machine safety; also "known committed" for leader completeness. */
  /**
   * The first application of each index: the entry's term, the state hash after it, and the
   * applying node's term then (`knownBy`), an upper bound on the term in which it was committed.
   */
  private readonly appliedAt = new Map<number, { term: number; hash: number; knownBy: number }>();
  private maxApplied = 0;
  /** Proposed value -> index where it was first applied. */
  private readonly valueIndex = new Map<string, number>();
  /** Pending reads: ctx -> the highest index known applied when the read was issued. */
  private readonly pendingReads = new Map<string, number>();
  readsServed = 0;
  private readonly stopAt = new Map<NodeId, number>();
  stats = { rounds: 0, elections: 0, snapshotsSent: 0, crashes: 0, confChanges: 0, transfers: 0, applied: 0 };

  constructor(readonly options: SimOptions) {
    this.rng = mulberry32(options.seed);
    this.tracing = options.trace ?? false;
    this.preVote = this.rng() < 0.7;
    this.checkQuorum = this.rng() < 0.7;
    this.maxInflight = 1 + Math.floor(this.rng() * 6);
    this.maxSizePerMsg = this.rng() < 0.5 ? 64 + Math.floor(this.rng() * 200) : 1 << 20;
    this.followerCommit = this.rng() < 0.6;
    const n = this.rng() < 0.6 ? 3 : 5;
    const voters: NodeId[] = [];
    for (let i = 0; i < n; i++) voters.push(this.nextNodeId++);
    for (const id of voters) {
      const storage = new MemoryStorage();
      // Bootstrap: every initial member starts from the same snapshot listing the voters.
      storage.applySnapshot({ ...bootstrapSnapshot(voters), data: this.encodeSnap({ h: 0, p: 0 }) });
      storage.setHardState({ term: 1, vote: NONE, commit: 1 });
      const sn = new SimNode(id, storage);
      sn.prefixBase = 1;
      this.nodes.set(id, sn);
      this.start(sn);
    }
    this.trace(
      `seed=${options.seed} nodes=${n} preVote=${this.preVote} checkQuorum=${this.checkQuorum} followerCommit=${this.followerCommit} maxInflight=${this.maxInflight} maxSize=${this.maxSizePerMsg}`,
    );
  }

  trace(line: string | (() => string)): void {
    if (!this.tracing) return;
    this.traceLines.push(`[${this.now}] ${typeof line === "string" ? line : line()}`);
  }

  private pick<T>(items: T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.rng() * items.length)];
  }

  private encodeSnap(s: AppSnapshot): Uint8Array {
    return enc.encode(JSON.stringify(s));
  }

  private decodeSnap(data: Uint8Array): AppSnapshot {
    return JSON.parse(dec.decode(data)) as AppSnapshot;
  }

  // ---- node lifecycle ----

  /** Starts (or restarts) a node from its storage; the application state comes from the storage's snapshot. */
  private start(sn: SimNode): void {
    const snap = sn.storage.snapshot();
    const app = snap.metadata.index > 0 ? this.decodeSnap(snap.data) : { h: 0, p: 0 };
    sn.appliedIndex = snap.metadata.index;
    sn.stateHash = app.h;
    sn.confState = { voters: [...snap.metadata.confState.voters], learners: [...snap.metadata.confState.learners] };
    sn.checkedLeaderTerm = 0;
    sn.node = new RawNode({
      id: sn.id,
      electionTick: this.electionTick,
      heartbeatTick: this.heartbeatTick,
      storage: sn.storage,
      applied: snap.metadata.index,
      maxSizePerMsg: this.maxSizePerMsg,
      maxInflightMsgs: this.maxInflight,
      checkQuorum: this.checkQuorum,
      preVote: this.preVote,
      followerCommit: this.followerCommit,
      random: this.rng,
      ...(this.tracing ? { logger: (line: string) => this.trace(line) } : {}),
    });
  }

  crash(sn: SimNode): void {
    if (!sn.alive) return;
    this.trace(`CRASH ${sn.id}`);
    this.stats.crashes++;
    sn.node = undefined;
  }

  restart(sn: SimNode): void {
    if (sn.alive || sn.decommissioned) return;
    this.trace(`RESTART ${sn.id}`);
    this.start(sn);
  }

  private addFreshNode(): SimNode {
    const sn = new SimNode(this.nextNodeId++, new MemoryStorage());
    this.nodes.set(sn.id, sn);
    this.start(sn);
    this.trace(`NEW NODE ${sn.id}`);
    return sn;
  }

  // ---- network ----

  partitionSymmetric(groupA: NodeId[]): void {
    const a = new Set(groupA);
    for (const x of this.nodes.keys()) {
      for (const y of this.nodes.keys()) if (a.has(x) !== a.has(y)) this.cut.add(`${x}>${y}`);
    }
    this.trace(`PARTITION {${groupA.join(",")}} | rest`);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
    this.trace(`CUT ${from} -> ${to}`);
  }

  isolate(id: NodeId): void {
    for (const x of this.nodes.keys()) {
      if (x === id) continue;
      this.cut.add(`${x}>${id}`);
      this.cut.add(`${id}>${x}`);
    }
    this.trace(`ISOLATE ${id}`);
  }

  healNetwork(): void {
    this.cut.clear();
    this.trace("HEAL network");
  }

  private send(m: Message): void {
    if (this.rng() < this.dropRate) {
      this.trace(() => `drop ${describeMessage(m)}`);
      this.afterLoss(m);
      return;
    }
    const copies = this.rng() < this.dupRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.rng() < 0.7 ? 0 : Math.floor(this.rng() * (this.maxDelay + 1));
      this.network.push({ msg: m, deliverAt: this.now + delay });
    }
  }

  /** The transport's feedback to the sender, as etcd's rafthttp gives it. */
  private afterLoss(m: Message): void {
    const sender = this.nodes.get(m.from)?.node;
    if (sender === undefined) return;
    if (m.type === MessageType.MsgSnap) sender.reportSnapshot(m.to, "failure");
    else if (m.type === MessageType.MsgApp && this.rng() < 0.5) sender.reportUnreachable(m.to);
  }

  /** Delivers every message that is due, in random order; returns whether anything happened. */
  private deliverDue(): boolean {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const f of this.network) (f.deliverAt <= this.now ? due : later).push(f);
    this.network = later;
    if (due.length === 0) return false;
    // Reorder: shuffle what is due.
    for (let i = due.length - 1; i > 0; i--) {
      const j = Math.floor(this.rng() * (i + 1));
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    for (const { msg } of due) this.deliver(msg);
    return true;
  }

  private deliver(m: Message): void {
    const target = this.nodes.get(m.to);
    if (target?.node === undefined || this.cut.has(`${m.from}>${m.to}`)) {
      this.afterLoss(m);
      return;
    }
    this.trace(() => `deliver ${describeMessage(m)}`);
    const err = target.node.step(m);
    if (err !== undefined && err !== ErrProposalDropped && !(err instanceof RaftError)) throw err;
    if (m.type === MessageType.MsgSnap) {
      this.stats.snapshotsSent++;
      this.nodes.get(m.from)?.node?.reportSnapshot(m.to, "finish");
    }
    this.checkNode(target);
  }

  // ---- the application: persisting, sending and applying a Ready ----

  private handleReady(sn: SimNode): void {
    const rn = sn.node!;
    const rd: Ready = rn.ready();
    // 1. Persist.
    if (rd.snapshot !== undefined) {
      sn.storage.applySnapshot(rd.snapshot);
      this.persistedSnapshot(sn, rd.snapshot);
    }
    if (rd.entries.length > 0) {
      sn.storage.append(rd.entries);
      this.persistedEntries(sn, rd.entries);
    }
    if (rd.hardState !== undefined) sn.storage.setHardState(rd.hardState);
    // Crash after the write but before anything was sent.
    if (this.rng() < this.readyCrashRate) {
      this.crash(sn);
      return;
    }
    // 2. Send.
    for (const m of rd.messages) this.send(m);
    // Crash after sending but before applying.
    if (this.rng() < this.readyCrashRate) {
      this.crash(sn);
      return;
    }
    // 3. Apply.
    if (rd.snapshot !== undefined) {
      const app = this.decodeSnap(rd.snapshot.data);
      sn.appliedIndex = rd.snapshot.metadata.index;
      sn.stateHash = app.h;
      sn.confState = {
        voters: [...rd.snapshot.metadata.confState.voters],
        learners: [...rd.snapshot.metadata.confState.learners],
      };
    }
    for (const e of rd.committedEntries) this.apply(sn, e);
    // 4. Reads.
    for (const rs of rd.readStates) {
      const ctx = dec.decode(rs.requestCtx);
      const minIndex = this.pendingReads.get(ctx);
      if (minIndex === undefined) continue; // a duplicate answer
      this.pendingReads.delete(ctx);
      if (rs.index < minIndex) {
        throw new SafetyViolation(
          `read ${ctx} on ${sn.id} got index ${rs.index} but ${minIndex} was applied before it was issued`,
        );
      }
      this.readsServed++;
    }
    rn.advance();
    this.checkNode(sn);
  }

  private persistedSnapshot(sn: SimNode, snap: Snapshot): void {
    const app = this.decodeSnap(snap.data);
    this.checkLogPrefix(snap.metadata.index, snap.metadata.term, app.p, sn.id);
    sn.prefixBase = snap.metadata.index;
    sn.prefix = [app.p];
  }

  private persistedEntries(sn: SimNode, entries: Entry[]): void {
    for (const e of entries) {
      if (e.index <= sn.prefixBase) continue;
      const pos = e.index - sn.prefixBase;
      if (pos > sn.prefix.length) throw new SafetyViolation(`node ${sn.id} persisted a gap before index ${e.index}`);
      sn.prefix.length = pos;
      const h = entryHash(sn.prefix[pos - 1]!, e);
      sn.prefix.push(h);
      this.checkLogPrefix(e.index, e.term, h, sn.id);
    }
  }

  /** Log matching: two logs with an entry of the same index and term agree on everything up to it. */
  private checkLogPrefix(index: number, term: number, hash: number, id: NodeId): void {
    const key = `${index}/${term}`;
    const seen = this.logPrefixAt.get(key);
    if (seen === undefined) this.logPrefixAt.set(key, hash);
    else if (seen !== hash)
      throw new SafetyViolation(`log matching violated at index ${index} term ${term} on node ${id}`);
  }

  private apply(sn: SimNode, e: Entry): void {
    if (e.index !== sn.appliedIndex + 1) {
      throw new SafetyViolation(`node ${sn.id} applied index ${e.index} after ${sn.appliedIndex}`);
    }
    sn.stateHash = entryHash(sn.stateHash, e);
    sn.appliedIndex = e.index;
    const seen = this.appliedAt.get(e.index);
    if (seen === undefined) {
      this.appliedAt.set(e.index, { term: e.term, hash: sn.stateHash, knownBy: sn.node?.raft.term ?? e.term });
      this.maxApplied = Math.max(this.maxApplied, e.index);
      this.stats.applied++;
    } else if (seen.term !== e.term || seen.hash !== sn.stateHash) {
      throw new SafetyViolation(
        `state machine safety violated: node ${sn.id} applied ${e.term}/${e.index} but ${seen.term}/${e.index} was applied elsewhere (or states differ)`,
      );
    }
    if (e.type === "confChange") {
      const cc = decodeConfChange(e.data);
      sn.confState = sn.node!.applyConfChange(cc);
      this.trace(
        () =>
          `${sn.id} applied conf change ${cc.type} ${cc.nodeId} -> voters=(${sn.confState.voters.join(" ")}) learners=(${sn.confState.learners.join(" ")})`,
      );
      if (cc.type === "removeNode" && !this.stopAt.has(cc.nodeId)) {
        // Operators shut a removed member down soon after its removal commits.
        this.stopAt.set(cc.nodeId, this.now + Math.floor(this.rng() * 3 * this.electionTick));
      }
    } else if (e.data.length > 0) {
      const value = dec.decode(e.data);
      if (!this.valueIndex.has(value)) this.valueIndex.set(value, e.index);
    }
  }

  /** Election safety on every step; leader completeness whenever a node has just become leader. */
  private checkNode(sn: SimNode): void {
    const r = sn.node?.raft;
    if (r === undefined || r.state !== StateType.Leader) return;
    const known = this.leaderOfTerm.get(r.term);
    if (known === undefined) this.leaderOfTerm.set(r.term, sn.id);
    else if (known !== sn.id)
      throw new SafetyViolation(`election safety violated: ${known} and ${sn.id} both lead term ${r.term}`);
    if (sn.checkedLeaderTerm === r.term) return;
    sn.checkedLeaderTerm = r.term;
    this.stats.elections++;
    this.trace(`LEADER ${sn.id} term ${r.term}`);
    const log = r.raftLog;
    const first = log.firstIndex();
    for (let i = Math.max(first, 1); i <= this.maxApplied; i++) {
      const committed = this.appliedAt.get(i);
      // Leader completeness binds leaders of later terms than the commit: a stale leader of an
      // older term (elected before the entry was committed) need not have it.
      if (committed === undefined || committed.knownBy >= r.term) continue;
      if (log.termOrZero(i) !== committed.term) {
        throw new SafetyViolation(
          `leader completeness violated: leader ${sn.id} of term ${r.term} lacks committed entry ${committed.term}/${i}`,
        );
      }
    }
  }

  // ---- driving ----

  live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.alive);
  }

  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.live()) {
      const r = n.node!.raft;
      if (r.state === StateType.Leader && (best === undefined || r.term > best.node!.raft.term)) best = n;
    }
    return best;
  }

  /** Runs every node's Ready and every due message until the cluster is quiet for this tick. */
  private settle(): void {
    for (let iter = 0; iter < 100; iter++) {
      let busy = false;
      for (const n of this.live()) {
        if (n.node!.hasReady()) {
          this.handleReady(n);
          busy = true;
        }
      }
      if (this.deliverDue()) busy = true;
      if (!busy) return;
    }
  }

  /** One round: random events, a tick on every live node, then settle. */
  round(faults: boolean): void {
    this.now++;
    this.stats.rounds++;
    if (faults) this.injectEvents();
    else this.trafficEvents(0.2);
    for (const [id, at] of this.stopAt) {
      const n = this.nodes.get(id);
      if (at <= this.now && n !== undefined && !n.decommissioned) {
        this.trace(`DECOMMISSION ${id}`);
        n.decommissioned = true;
        n.node = undefined;
      }
    }
    for (const n of this.live()) {
      n.node!.tick();
      this.checkNode(n);
    }
    this.settle();
  }

  private propose(at: SimNode | undefined): string | undefined {
    if (at?.node === undefined) return undefined;
    const value = `v${++this.proposalCounter}${"x".repeat(Math.floor(this.rng() * 40))}`;
    try {
      at.node.propose(enc.encode(value));
      this.trace(`PROPOSE ${value.slice(0, 8)} at ${at.id}`);
      return value;
    } catch (err) {
      if (err === ErrProposalDropped) return undefined;
      throw err;
    }
  }

  private trafficEvents(proposalRate: number): void {
    if (this.rng() < proposalRate) this.propose(this.pick(this.live()));
    if (this.rng() < 0.04) this.readIndex(this.pick(this.live()));
  }

  private readIndex(at: SimNode | undefined): void {
    if (at?.node === undefined) return;
    const ctx = `r${++this.readCounter}`;
    try {
      at.node.readIndex(enc.encode(ctx));
      this.pendingReads.set(ctx, this.maxApplied);
    } catch (err) {
      if (err !== ErrProposalDropped) throw err;
    }
  }

  private injectEvents(): void {
    const r = this.rng();
    this.trafficEvents(0.35);
    const live = this.live();
    const all = [...this.nodes.values()].filter((n) => !n.decommissioned);
    if (r < 0.02) {
      const ids = all.map((n) => n.id).filter(() => this.rng() < 0.5);
      if (ids.length > 0 && ids.length < all.length) this.partitionSymmetric(ids);
    } else if (r < 0.03) {
      const a = this.pick(all);
      const b = this.pick(all);
      if (a !== undefined && b !== undefined && a !== b) this.cutOneWay(a.id, b.id);
    } else if (r < 0.04) {
      const a = this.pick(all);
      if (a !== undefined) this.isolate(a.id);
    } else if (r < 0.07) {
      this.healNetwork();
    } else if (r < 0.085) {
      const victim = this.rng() < 0.5 ? this.leader() : this.pick(live);
      if (victim !== undefined) this.crash(victim);
    } else if (r < 0.11) {
      const down = all.filter((n) => !n.alive);
      const n = this.pick(down);
      if (n !== undefined) this.restart(n);
    } else if (r < 0.12) {
      this.dropRate = this.pick([0, 0, 0.05, 0.2]) ?? 0;
      this.dupRate = this.pick([0, 0.05, 0.2]) ?? 0;
      this.maxDelay = this.pick([0, 2, 5]) ?? 2;
      this.trace(`NET drop=${this.dropRate} dup=${this.dupRate} maxDelay=${this.maxDelay}`);
    } else if (r < 0.15) {
      const n = this.pick(live);
      if (n !== undefined) this.compact(n);
    } else if (r < 0.165) {
      this.changeMembership();
    } else if (r < 0.175) {
      const lead = this.leader();
      const target = this.pick(all.filter((n) => lead?.node?.raft.tracker.voters.has(n.id)));
      if (lead?.node !== undefined && target !== undefined) {
        this.trace(`TRANSFER ${lead.id} -> ${target.id}`);
        this.stats.transfers++;
        lead.node.transferLeader(target.id);
      }
    } else if (r < 0.18) {
      this.pick(live)?.node?.campaign();
    }
  }

  /** Snapshots the application at its applied index and compacts the log behind it. */
  compact(sn: SimNode): void {
    const first = sn.storage.firstIndex();
    if (sn.appliedIndex < sn.storage.snapshot().metadata.index + 2) return;
    const data = this.encodeSnap({ h: sn.stateHash, p: sn.prefix[sn.appliedIndex - sn.prefixBase]! });
    sn.storage.createSnapshot(sn.appliedIndex, sn.confState, data);
    const keep = Math.floor(this.rng() * 4);
    sn.storage.compact(Math.max(first, sn.appliedIndex - keep));
    this.trace(`COMPACT ${sn.id} to ${sn.appliedIndex}`);
  }

  private changeMembership(): void {
    const lead = this.leader();
    if (lead?.node === undefined) return;
    const cs = lead.node.raft.tracker.confState();
    const total = cs.voters.length + cs.learners.length;
    const r = this.rng();
    let cc: ConfChange | undefined;
    if (r < 0.3 && total < 6) {
      cc = { type: "addLearnerNode", nodeId: this.addFreshNode().id };
    } else if (r < 0.45 && total < 6) {
      cc = { type: "addNode", nodeId: this.addFreshNode().id };
    } else if (r < 0.7 && cs.learners.length > 0) {
      cc = { type: "addNode", nodeId: this.pick(cs.learners)! };
    } else if (r < 0.85 && cs.voters.length > 3) {
      // Sometimes the leader itself.
      cc = { type: "removeNode", nodeId: this.rng() < 0.3 ? lead.id : this.pick(cs.voters)! };
    } else if (cs.learners.length > 0) {
      cc = { type: "removeNode", nodeId: this.pick(cs.learners)! };
    }
    if (cc === undefined) return;
    try {
      lead.node.proposeConfChange(cc);
      this.stats.confChanges++;
      this.trace(`CONF CHANGE ${cc.type} ${cc.nodeId} proposed at ${lead.id}`);
    } catch (err) {
      if (err !== ErrProposalDropped) throw err;
    }
  }

  /** Ends all faults: network healed and clean, crashed members restarted. */
  heal(): void {
    this.healNetwork();
    this.dropRate = 0;
    this.dupRate = 0;
    this.readyCrashRate = 0;
    this.maxDelay = 1;
    for (const n of this.nodes.values()) this.restart(n);
  }

  /**
   * After healing: a leader must emerge within `maxRounds`, and a new proposal must then be
   * applied by every member of the final configuration.
   */
  checkLiveness(maxRounds: number): { leaderAfter: number; committedAfter: number } {
    const startRound = this.now;
    let leaderAfter = -1;
    let value: string | undefined;
    let proposedAt = -1;
    while (this.now - startRound < maxRounds) {
      this.round(false);
      const lead = this.leader();
      if (lead === undefined) continue;
      if (leaderAfter < 0) leaderAfter = this.now - startRound;
      const index = value === undefined ? undefined : this.valueIndex.get(value);
      if (index === undefined) {
        // (Re)propose if nothing was proposed yet or it was lost (e.g. a leader change).
        if (value === undefined || this.now - proposedAt > 3 * this.electionTick) {
          value = this.propose(lead);
          proposedAt = this.now;
        }
        continue;
      }
      if (lead.appliedIndex < index) continue;
      const members = [...lead.confState.voters, ...lead.confState.learners];
      if (members.every((id) => (this.nodes.get(id)?.appliedIndex ?? -1) >= index)) {
        return { leaderAfter, committedAfter: this.now - startRound };
      }
    }
    const state = [...this.nodes.values()]
      .map((n) => {
        const r = n.node?.raft;
        return `${n.id}:${r === undefined ? (n.decommissioned ? "decommissioned" : "down") : `${r.state} term=${r.term} lead=${r.lead} last=${r.raftLog.lastIndex()} commit=${r.raftLog.committed}`} applied=${n.appliedIndex}`;
      })
      .join("; ");
    throw new SafetyViolation(
      `liveness: ${leaderAfter < 0 ? "no leader" : `value ${value} not applied everywhere`} within ${maxRounds} ticks after healing [${state}]`,
    );
  }
}

export interface SeedResult {
  seed: number;
  stats: Simulation["stats"];
  readsServed: number;
  leaderAfter: number;
  committedAfter: number;
}

/** Runs one seed: random faults, then heal and check liveness. Throws SafetyViolation on a bug. */
export function runSeed(seed: number, options: { faultRounds?: number; trace?: boolean } = {}): SeedResult {
  const sim = new Simulation({ seed, ...options });
  return runSim(sim, options.faultRounds ?? 200);
}

/** Replays a seed with tracing on and returns its last trace lines (for a failure report). */
export function traceSeed(seed: number, lines = 80, faultRounds = 200): string {
  const sim = new Simulation({ seed, trace: true });
  try {
    runSim(sim, faultRounds);
  } catch {
    // expected: the same failure, deterministically
  }
  return sim.traceLines.slice(-lines).join("\n");
}

export function runSim(sim: Simulation, faultRounds: number): SeedResult {
  for (let i = 0; i < faultRounds; i++) sim.round(true);
  sim.heal();
  const { leaderAfter, committedAfter } = sim.checkLiveness(60 * sim.electionTick);
  return { seed: sim.options.seed, stats: sim.stats, readsServed: sim.readsServed, leaderAfter, committedAfter };
}
