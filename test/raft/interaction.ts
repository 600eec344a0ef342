/**
 * Golden-transcript ("interaction") tests for the Raft core: a small deterministic harness that
 * drives a set of RawNodes with MemoryStorage from text commands and prints everything they do,
 * so that a transcript in test/raft/testdata/*.txt reads as a step-by-step account of a scenario.
 * test/raft-interaction.test.ts runs every transcript (LAB_RAFT_REWRITE=1 rewrites them).
 *
 * Transcript format: a case is one or more command lines, a `----` line, then the expected
 * output up to the next blank line ("ok" when a command prints nothing). Lines starting with `#`
 * and blank lines between cases are comments, kept as they are when outputs are rewritten.
 *
 *     # node 1 wins an election
 *     campaign 1
 *     ----
 *     raft: 1 is starting a new election at term 1
 *     ...
 *
 * Commands (ids are member IDs; `(1,2,3)` or `(1 2 3)` is a list):
 *
 *   add-nodes <n> [voters=(..)] [learners=(..)] [index=<i>] [prevote=<bool>] [checkquorum=<bool>]
 *             [max-inflight=<n>] [disable-forwarding=<bool>] [follower-commit=<bool>]
 *       Creates n nodes with the next free IDs. With voters/learners, each starts from a bootstrap
 *       snapshot at `index` (default 1) of term 1 holding that membership, and a hard state of
 *       term 1 (so the first election is for term 2); without, from an empty log (a member-to-be
 *       that will receive a snapshot once it is added).
 *   campaign <id>                         the node starts an election now (pre-vote if enabled)
 *   tick <id> [<count>]                   ticks the node count times (default 1)
 *   set-randomized-election-timeout <id> <ticks>
 *                                         the node's current randomized election timeout, in
 *                                         [10, 20) ticks (until its next term or campaign)
 *   order-election-after-leader-loss <id> <extra>
 *                                         the node times out after exactly 10 + extra ticks (at
 *                                         most 19) until its next term or campaign, as a member
 *                                         does once its leader's connection closed
 *   tick-heartbeat <id>...                ticks each node one heartbeat timeout (1 tick)
 *   tick-election <id>...                 ticks each node one election timeout (10 ticks)
 *   propose <id> <data>                   proposes data at the node (followers forward it)
 *   propose-conf-change <id> <add|add-learner|remove> <member>
 *                                         add of a learner promotes it
 *   read-index <id> <ctx>                 asks for a linearizable read index
 *   transfer-leadership from=<id> to=<id> asks node `from` to hand leadership to `to`
 *   process-ready [<id>...]               handles the Ready of the nodes (default: all that have one)
 *   deliver-msgs [<id>...] [drop=(..)]    delivers the queued messages to the listed nodes and
 *                                         drops those queued for the nodes in drop=; with neither,
 *                                         delivers to every node
 *   stabilize [<id>...]                   handles Readys and delivers messages among the nodes
 *                                         (default all) until nothing is left to do; messages to
 *                                         other nodes stay queued
 *   cut <a> <b>                           drops messages between a and b (both ways)
 *   isolate <id>                          cuts the node off from every other node
 *   heal                                  removes every cut
 *   compact <id> <index>                  snapshots the node's state machine at index (<= applied)
 *                                         and discards its log up to and including index
 *   status <id>                           the node's hard/soft state, membership, and as leader
 *                                         its progress of every member
 *   raft-state                            one line per node: role, term, leader, commit, applied,
 *                                         and whether its own configuration lists it
 *   raft-log <id>                         the node's persisted snapshot and entries
 *   log-level <none|info|debug>           none: only query output and errors; info: also Readys
 *                                         and deliveries; debug (default): also the core's own log
 *
 * Output: `[id] ready (sync)` opens a Ready (sync: it needs a synchronous write), followed by
 * its parts in the order they are handled: `state` (soft state), `snapshot`, `persist` (entries),
 * `hardstate`, `send`, `apply` (committed entries; `conf-state` after an applied conf change),
 * `read-state`. `[id] recv` / `[id] drop` is a delivery to node id. `raft:` lines are the core's
 * own log, `error:` lines a refused request. Entries print as term/index, messages through
 * src/raft/describe.ts.
 *
 * Handling a Ready follows the order that rawnode.ts prescribes: persist (snapshot, entries, hard
 * state), send, apply (snapshot, committed entries; conf changes via applyConfChange), read
 * states, advance(). A message on a cut link is dropped when it is sent and, if the link was cut
 * while it was queued, when it would be delivered.
 *
 * Timing is deterministic: the injected random source returns 0, so every randomized election
 * timeout equals the election tick (10), and `tick-election` makes a follower campaign.
 */
import {
  bootstrapSnapshot,
  type ConfChange,
  type ConfState,
  decodeConfChange,
  describeEntry,
  describeMessage,
  describeSnapshot,
  EMPTY_BYTES,
  MemoryStorage,
  type Message,
  NONE,
  type NodeId,
  RaftError,
  RawNode,
  type Ready,
} from "../../src/raft/index.js";

const ELECTION_TICK = 10;
const HEARTBEAT_TICK = 1;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A mistake in a transcript (unknown command, bad argument): printed as the command's output. */
export class HarnessError extends Error {}

type Level = "none" | "info" | "debug";
const LEVELS: Level[] = ["none", "info", "debug"];

interface Command {
  name: string;
  args: string[];
  kv: Map<string, string>;
}

/** Splits `name a b k=v k=(x,y z)` into positional arguments and key=value pairs. */
export function parseCommand(line: string): Command {
  const tokens: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of line.trim()) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (/\s/.test(ch) && depth === 0) {
      if (cur !== "") tokens.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  if (cur !== "") tokens.push(cur);
  const [name, ...rest] = tokens;
  if (name === undefined) throw new HarnessError("empty command");
  const args: string[] = [];
  const kv = new Map<string, string>();
  for (const t of rest) {
    const eq = t.indexOf("=");
    if (eq > 0) kv.set(t.slice(0, eq), t.slice(eq + 1));
    else args.push(t);
  }
  return { name, args, kv };
}

function parseId(s: string | undefined): NodeId {
  if (s === undefined || !/^[1-9][0-9]*$/.test(s)) throw new HarnessError(`bad node id ${JSON.stringify(s)}`);
  return BigInt(s);
}

function parseInt10(s: string | undefined, what: string): number {
  if (s === undefined || !/^[0-9]+$/.test(s)) throw new HarnessError(`bad ${what} ${JSON.stringify(s)}`);
  return Number(s);
}

function parseList(s: string | undefined): NodeId[] {
  if (s === undefined) return [];
  const inner = s.startsWith("(") && s.endsWith(")") ? s.slice(1, -1) : s;
  return inner
    .split(/[\s,]+/)
    .filter((x) => x !== "")
    .map(parseId);
}

function parseBool(s: string | undefined, what: string): boolean {
  if (s === undefined) return false;
  if (s === "true") return true;
  if (s === "false") return false;
  throw new HarnessError(`bad ${what} ${JSON.stringify(s)}`);
}

function describeConfState(cs: ConfState): string {
  const learners = cs.learners.length > 0 ? ` learners=(${cs.learners.join(" ")})` : "";
  return `voters=(${cs.voters.join(" ")})${learners}`;
}

function cloneCs(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}

/** One member: the RawNode, its durable storage, its inbox, and the membership as the application applied it. */
class Member {
  readonly inbox: Message[] = [];
  /** The membership after each applied snapshot or conf change, oldest first (for compact). */
  readonly confHistory: { index: number; cs: ConfState }[] = [];

  constructor(
    readonly id: NodeId,
    readonly storage: MemoryStorage,
    readonly rn: RawNode,
  ) {
    const snap = storage.snapshot();
    this.confHistory.push({ index: snap.metadata.index, cs: cloneCs(snap.metadata.confState) });
  }

  confStateAt(index: number): ConfState {
    let cs: ConfState = { voters: [], learners: [] };
    for (const h of this.confHistory) if (h.index <= index) cs = h.cs;
    return cs;
  }
}

export class InteractionEnv {
  private readonly members = new Map<NodeId, Member>();
  private readonly cuts = new Set<string>();
  private level: Level = "debug";
  private out: string[] = [];
  private indent = "";

  // ---- output ----

  private print(line: string, level: Level = "info"): void {
    if (LEVELS.indexOf(this.level) < LEVELS.indexOf(level)) return;
    this.out.push(this.indent + line);
  }

  /** Query results and errors: printed at every log level. */
  private always(line: string): void {
    this.out.push(this.indent + line);
  }

  private nested<T>(f: () => T): T {
    const saved = this.indent;
    this.indent += "  ";
    try {
      return f();
    } finally {
      this.indent = saved;
    }
  }

  /** Runs one transcript case (one or more command lines) and returns its output. */
  run(lines: string[]): string {
    this.out = [];
    for (const line of lines) {
      try {
        this.handle(parseCommand(line));
      } catch (err) {
        this.indent = "";
        if (err instanceof HarnessError) this.always(`error: ${err.message}`);
        else throw err;
      }
    }
    return this.out.length === 0 ? "ok" : this.out.join("\n");
  }

  private member(id: NodeId): Member {
    const m = this.members.get(id);
    if (m === undefined) throw new HarnessError(`no node ${id}`);
    return m;
  }

  private ids(): NodeId[] {
    return [...this.members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  private idsOrAll(args: string[]): NodeId[] {
    return args.length === 0 ? this.ids() : args.map(parseId);
  }

  private isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.has(`${from}-${to}`);
  }

  private handle(c: Command): void {
    switch (c.name) {
      case "add-nodes":
        this.addNodes(c);
        break;
      case "campaign":
        this.member(parseId(c.args[0])).rn.campaign();
        break;
      case "tick":
        this.tick(parseId(c.args[0]), c.args[1] === undefined ? 1 : parseInt10(c.args[1], "count"));
        break;
      case "set-randomized-election-timeout": {
        const ticks = parseInt10(c.args[1], "ticks");
        if (ticks < ELECTION_TICK || ticks >= 2 * ELECTION_TICK) {
          throw new Error(
            `a randomized election timeout lies in [${ELECTION_TICK}, ${2 * ELECTION_TICK}), not ${ticks}`,
          );
        }
        this.member(parseId(c.args[0])).rn.raft.randomizedElectionTimeout = ticks;
        break;
      }
      case "order-election-after-leader-loss":
        this.member(parseId(c.args[0])).rn.raft.setElectionTimeoutAfterLeaderLoss(parseInt10(c.args[1], "extra ticks"));
        break;
      case "tick-heartbeat":
        for (const id of c.args.map(parseId)) this.tick(id, HEARTBEAT_TICK);
        break;
      case "tick-election":
        for (const id of c.args.map(parseId)) this.tick(id, ELECTION_TICK);
        break;
      case "propose":
        this.propose(c);
        break;
      case "propose-conf-change":
        this.proposeConfChange(c);
        break;
      case "read-index":
        this.readIndex(c);
        break;
      case "transfer-leadership":
        this.member(parseId(c.kv.get("from"))).rn.transferLeader(parseId(c.kv.get("to")));
        break;
      case "process-ready":
        for (const id of this.idsOrAll(c.args)) {
          if (this.member(id).rn.hasReady()) this.processReady(id);
          else if (c.args.length > 0) this.print(`[${id}] no ready`);
        }
        break;
      case "deliver-msgs":
        this.deliverMsgs(c);
        break;
      case "stabilize":
        this.stabilize(this.idsOrAll(c.args));
        break;
      case "cut":
        this.cut(parseId(c.args[0]), parseId(c.args[1]));
        break;
      case "isolate": {
        const a = parseId(c.args[0]);
        for (const b of this.ids()) if (b !== a) this.cut(a, b);
        break;
      }
      case "heal":
        this.cuts.clear();
        break;
      case "compact":
        this.compact(parseId(c.args[0]), parseInt10(c.args[1], "index"));
        break;
      case "status":
        this.status(parseId(c.args[0]));
        break;
      case "raft-state":
        this.raftState();
        break;
      case "raft-log":
        this.raftLog(parseId(c.args[0]));
        break;
      case "log-level": {
        const l = LEVELS.find((x) => x === c.args[0]);
        if (l === undefined) throw new HarnessError(`bad log level ${JSON.stringify(c.args[0])}`);
        this.level = l;
        break;
      }
      default:
        throw new HarnessError(`unknown command ${c.name}`);
    }
  }

  private cut(a: NodeId, b: NodeId): void {
    this.member(a);
    this.member(b);
    this.cuts.add(`${a}-${b}`);
    this.cuts.add(`${b}-${a}`);
  }

  // ---- commands ----

  private addNodes(c: Command): void {
    const n = parseInt10(c.args[0], "node count");
    const voters = parseList(c.kv.get("voters"));
    const learners = parseList(c.kv.get("learners"));
    const index = c.kv.has("index") ? parseInt10(c.kv.get("index"), "index") : 1;
    const preVote = parseBool(c.kv.get("prevote"), "prevote");
    const checkQuorum = parseBool(c.kv.get("checkquorum"), "checkquorum");
    const disableProposalForwarding = parseBool(c.kv.get("disable-forwarding"), "disable-forwarding");
    const followerCommit = parseBool(c.kv.get("follower-commit"), "follower-commit");
    const maxInflightMsgs = c.kv.has("max-inflight") ? parseInt10(c.kv.get("max-inflight"), "max-inflight") : 256;
    const existing = this.ids();
    let next = (existing[existing.length - 1] ?? 0n) + 1n;
    for (let i = 0; i < n; i++, next++) {
      const id = next;
      const storage = new MemoryStorage();
      if (voters.length > 0) {
        storage.applySnapshot(bootstrapSnapshot(voters, learners, index, 1));
        storage.setHardState({ term: 1, vote: NONE, commit: index });
      }
      const rn = new RawNode({
        id,
        electionTick: ELECTION_TICK,
        heartbeatTick: HEARTBEAT_TICK,
        storage,
        maxInflightMsgs,
        checkQuorum,
        preVote,
        disableProposalForwarding,
        followerCommit,
        // Every randomized election timeout is exactly ELECTION_TICK: transcripts stay readable.
        random: () => 0,
        logger: (line) => this.print(`raft: ${line}`, "debug"),
      });
      this.members.set(id, new Member(id, storage, rn));
      const snap = storage.snapshot();
      this.print(
        voters.length > 0
          ? `${id}: new node from snapshot ${describeSnapshot(snap)}`
          : `${id}: new node with an empty log`,
      );
    }
  }

  private tick(id: NodeId, count: number): void {
    const rn = this.member(id).rn;
    for (let i = 0; i < count; i++) rn.tick();
  }

  /** Proposals and reads may be refused (no leader, transfer in progress...): print, don't fail. */
  private catchDropped(f: () => void): void {
    try {
      f();
    } catch (err) {
      if (err instanceof RaftError) this.always(`error: ${err.message}`);
      else throw err;
    }
  }

  private propose(c: Command): void {
    const rn = this.member(parseId(c.args[0])).rn;
    const data = c.args[1];
    if (data === undefined) throw new HarnessError("propose needs data");
    this.catchDropped(() => rn.propose(enc.encode(data)));
  }

  private readIndex(c: Command): void {
    const rn = this.member(parseId(c.args[0])).rn;
    const ctx = c.args[1];
    if (ctx === undefined) throw new HarnessError("read-index needs a context");
    this.catchDropped(() => rn.readIndex(enc.encode(ctx)));
  }

  private proposeConfChange(c: Command): void {
    const rn = this.member(parseId(c.args[0])).rn;
    const kinds: Record<string, ConfChange["type"]> = {
      add: "addNode",
      "add-learner": "addLearnerNode",
      remove: "removeNode",
    };
    const type = kinds[c.args[1] ?? ""];
    if (type === undefined) throw new HarnessError(`bad conf change ${JSON.stringify(c.args[1])}`);
    const cc: ConfChange = { type, nodeId: parseId(c.args[2]) };
    this.catchDropped(() => rn.proposeConfChange(cc));
  }

  /** Persists, sends and applies one Ready, printing each step. */
  private processReady(id: NodeId): void {
    const m = this.member(id);
    const rd: Ready = m.rn.ready();
    this.print(`[${id}] ready${rd.mustSync ? " (sync)" : ""}`);
    this.nested(() => {
      if (rd.softState !== undefined) this.print(`state ${rd.softState.raftState} lead=${rd.softState.lead}`);
      // 1. Persist.
      if (rd.snapshot !== undefined) {
        m.storage.applySnapshot(rd.snapshot);
        this.print(`snapshot ${describeSnapshot(rd.snapshot)}`);
      }
      if (rd.entries.length > 0) m.storage.append(rd.entries);
      for (const e of rd.entries) this.print(`persist ${describeEntry(e)}`);
      if (rd.hardState !== undefined) {
        m.storage.setHardState(rd.hardState);
        const hs = rd.hardState;
        this.print(`hardstate term=${hs.term} vote=${hs.vote} commit=${hs.commit}`);
      }
      // 2. Send.
      for (const msg of rd.messages) {
        if (this.isCut(msg.from, msg.to)) {
          this.print(`send ${describeMessage(msg)} (dropped: link cut)`);
        } else {
          this.print(`send ${describeMessage(msg)}`);
          // Messages to a node that does not exist (yet) wait in a queue that nothing reads.
          this.members.get(msg.to)?.inbox.push(msg);
        }
      }
      // 3. Apply.
      if (rd.snapshot !== undefined) {
        const meta = rd.snapshot.metadata;
        m.confHistory.push({ index: meta.index, cs: cloneCs(meta.confState) });
      }
      for (const e of rd.committedEntries) {
        this.print(`apply ${describeEntry(e)}`);
        if (e.type !== "confChange") continue;
        const cs = this.nested(() => m.rn.applyConfChange(decodeConfChange(e.data)));
        m.confHistory.push({ index: e.index, cs: cloneCs(cs) });
        this.print(`conf-state ${describeConfState(cs)}`);
      }
      // 4. Reads.
      for (const rs of rd.readStates) this.print(`read-state index=${rs.index} ctx=${dec.decode(rs.requestCtx)}`);
      m.rn.advance();
    });
  }

  private deliverTo(id: NodeId, drop: boolean): boolean {
    const m = this.member(id);
    const msgs = m.inbox.splice(0);
    for (const msg of msgs) {
      if (drop || this.isCut(msg.from, msg.to)) {
        this.print(`[${id}] drop ${describeMessage(msg)}${drop ? "" : " (link cut)"}`);
        continue;
      }
      this.print(`[${id}] recv ${describeMessage(msg)}`);
      const err = this.nested(() => m.rn.step(msg));
      if (err !== undefined) this.nested(() => this.always(`error: ${err.message}`));
    }
    return msgs.length > 0;
  }

  private deliverMsgs(c: Command): void {
    const drop = parseList(c.kv.get("drop"));
    const ids = c.args.length === 0 && drop.length === 0 ? this.ids() : c.args.map(parseId);
    for (const id of drop) this.deliverTo(id, true);
    for (const id of ids) this.deliverTo(id, false);
  }

  private stabilize(ids: NodeId[]): void {
    for (;;) {
      let busy = false;
      for (const id of ids) {
        if (this.member(id).rn.hasReady()) {
          this.processReady(id);
          busy = true;
        }
      }
      for (const id of ids) if (this.deliverTo(id, false)) busy = true;
      if (!busy) return;
    }
  }

  private compact(id: NodeId, index: number): void {
    const m = this.member(id);
    const applied = m.rn.raft.raftLog.applied;
    if (index > applied) throw new HarnessError(`cannot compact ${id} at ${index}: only ${applied} is applied`);
    m.storage.createSnapshot(index, m.confStateAt(index), EMPTY_BYTES);
    m.storage.compact(index);
    this.raftLog(id);
  }

  private status(id: NodeId): void {
    const r = this.member(id).rn.raft;
    const st = this.member(id).rn.status();
    const hs = st.hardState;
    this.always(
      `${id}: ${st.softState.raftState} term=${hs.term} vote=${hs.vote} commit=${hs.commit} applied=${st.applied} lead=${st.softState.lead}`,
    );
    this.always(`config ${describeConfState(st.confState)}`);
    if (st.leadTransferee !== NONE) this.always(`transferring leadership to ${st.leadTransferee}`);
    if (st.progress === undefined) return;
    for (const [pid, pr] of [...r.tracker.progress].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      this.always(`progress ${pid}: ${pr.toString()}`);
    }
  }

  private raftState(): void {
    for (const id of this.ids()) {
      const r = this.member(id).rn.raft;
      const role = r.tracker.voters.has(id) ? "voter" : r.tracker.learners.has(id) ? "learner" : "non-member";
      this.always(
        `${id}: ${r.state} term=${r.term} lead=${r.lead} commit=${r.raftLog.committed} applied=${r.raftLog.applied} (${role})`,
      );
    }
  }

  /** The node's persisted log: its snapshot, then its entries. */
  private raftLog(id: NodeId): void {
    const s = this.member(id).storage;
    const snap = s.snapshot();
    if (snap.metadata.index > 0) this.always(`snapshot ${describeSnapshot(snap)}`);
    const ents = s.lastIndex() >= s.firstIndex() ? s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity) : [];
    if (ents.length === 0) this.always("no entries");
    for (const e of ents) this.always(describeEntry(e));
  }
}

/**
 * Runs a transcript and returns it with every expected output replaced by the actual one; the
 * text is unchanged when every case passes. Throws on a malformed transcript.
 */
export function runTranscript(text: string, env: InteractionEnv = new InteractionEnv()): string {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "" || line.startsWith("#")) {
      out.push(line);
      i++;
      continue;
    }
    const start = i + 1;
    const commands: string[] = [];
    while (i < lines.length && lines[i] !== "----") commands.push(lines[i++]!);
    if (i >= lines.length) throw new Error(`transcript line ${start}: command without a "----" line`);
    i++; // "----"
    while (i < lines.length && lines[i]!.trim() !== "") i++; // the old expected output
    const actual = env.run(commands);
    if (actual.split("\n").some((l) => l.trim() === "")) {
      throw new Error(`transcript line ${start}: output has a blank line, which the format cannot hold`);
    }
    out.push(...commands, "----", actual);
  }
  return `${out.join("\n")}\n`;
}
