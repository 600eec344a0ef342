/**
 * A linearizability checker for histories of single-key operations (put, get, delete, compare-and-swap) recorded by
 * clients of the store while a cluster is being hurt (leaders killed, networks partitioned). Pure: no I/O.
 *
 * What is checked
 * ===============
 * A history is linearizable if every operation that took effect can be given an instant between its invocation and
 * its response such that, applied one at a time in the order of those instants, the operations give the outputs the
 * clients saw. Every operation touches exactly one key, so each key's operations are checked on their own (a history
 * is linearizable exactly when each key's sub-history is), against this sequential model of one etcd key:
 *
 *   state = { value (or absent), modRevision (0 when absent), floor: a lower bound on the store's revision }
 *
 *   put(v) → { revision R }                R > floor (revisions grow with every write); state becomes v@R, floor R.
 *   get → { value, modRevision m, revision H? }
 *                                          value and m equal the state's; H (the header revision, if recorded) is at
 *                                          least floor and at least m; floor becomes max(floor, m, H).
 *   delete → { deleted d, revision R }     d = 1: the key was present, R > floor, the key becomes absent@0, floor R.
 *                                          d = 0: the key was absent, R ≥ floor, floor R (nothing is written).
 *   cas(expect, v) → { succeeded, revision R }
 *                                          expect is { value } (undefined: the key is absent) or { modRevision }.
 *                                          Succeeded: the condition held, R > floor (and R > e when expecting mod
 *                                          revision e), the key becomes v@R, floor R.
 *                                          Failed: the condition did not hold, R ≥ floor, floor R.
 *
 * Revisions are global to the store, so one key's operations only see some of them; the floor is what can be checked
 * per key: writes to a key take increasing revisions, and an operation placed after another cannot observe a lower
 * store revision. Two concurrent puts may be placed in either order, but the one with the higher revision is the one
 * a later read must see.
 *
 * Outcomes. An operation recorded as "failed" definitely did not happen and is dropped, as are reads whose outcome is
 * unknown (they carry no information). Writes whose outcome is "unknown" (timeouts, lost connections) may take effect
 * at any instant after their invocation, or never: their response time is +∞. Their revision is not known, so after
 * one takes effect the key's mod revision is only known to lie in an interval (modLo, modHi]: above the floor at that
 * instant, at most the header revision of a later failed compare-and-swap, and not any revision a failed swap on mod
 * revision expected (modExcluded). A later get pins it to what it saw. The floor still grows by one, as the write did
 * take a new revision.
 *
 * The search, with a worked example (Wing & Gong, with Lowe's memoization, as Porcupine does)
 * ==========================================================================================
 * The key's operations become a doubly-linked list of call and return events sorted by time (at equal times calls
 * come first, so touching operations count as concurrent). The operations that may be linearized next are those whose
 * call comes before the first return in the list: the operation of that return has to be placed before anything that
 * was invoked after it. Take this history of key x (times in ms, a@2 means value a with mod revision 2):
 *
 *   A  put x=a → revision 2   [0, 2]          events: A.call B.call A.ret C.call D.call B.ret C.ret D.ret E.call E.ret
 *   B  get x → a@2            [1, 5]
 *   C  put x=b → revision 3   [3, 6]
 *   D  get x → b@3            [4, 7]
 *   E  get x → a@2            [8, 9]          (stale: C finished before E started)
 *
 *   1. Candidates before the first return (A.ret) are A and B, tried in list order. A: put a with 2 > 0 gives a@2,
 *      floor 2. A's call and return are unlinked from the list and (A, the state before it) is pushed on a stack;
 *      scan again from the start.
 *   2. B.call, C.call, D.call come before B.ret. B reads a@2: fits, place it. Then C: put b with 3 > 2: b@3. Then D.
 *   3. Only E is left. It reads a@2 but the key holds b@3: rejected, and the next event is E.ret, a return: E had to
 *      be placed by then, so this order is a dead end. Backtrack: pop D, relink its events, and try the events after
 *      D.call; D.ret is a return, so pop C, and so on. Placing C before B fails too (B would read b@3), and with A, B,
 *      C and D tried in every allowed order the stack empties: not linearizable. The report shows the longest prefix
 *      found (A, B, C, D), the operation that could not be placed after it (E) and why, with call and return times.
 *
 * Memoization: every (set of placed operations, state) reached is remembered (the set as a bitset). If two concurrent
 * gets D and D' both read b@3, the orders C,D,D' and C,D',D reach the same configuration; the second is skipped
 * because everything after it was already explored. States hold no history (only value, revision interval, floor), so
 * equal configurations really have equal futures, which is what makes the skip correct.
 *
 * Operations of unknown outcome have no return event, so they never force a backtrack: the search succeeds once all
 * operations of known outcome are placed (the rest can go last, where nobody sees them).
 *
 * Pruning, each rule sound because whatever it skips has an equivalent that is not skipped:
 * - Floor limits. Floors only grow, so an operation that needs the floor at most L (a write with revision L + 1, an
 *   operation that reports header revision L) can never be placed once the floor passes L. A segment tree keeps the
 *   lowest limit among unplaced operations; a placement that passes it is a dead end at once, instead of when that
 *   operation's return comes up much later. With header revisions recorded this leaves little freedom.
 * - Operations of unknown outcome are tried after the known ones (so a search that never needs one never places one),
 *   are kept in their own list (so scans for known candidates skip them), are not placed where they would change
 *   nothing, and the operation right after one must be able to observe it (a get, a delete with a known result, a
 *   compare-and-swap): an unknown write directly followed by a blind overwrite could as well have been placed last.
 *   That rule depends on the path, so "was the last placed operation of unknown outcome" is part of the memo key.
 * - Identical operations of unknown outcome are interchangeable, so they are placed in invocation order only.
 *   Values that no get reads and no compare-and-swap expects are all the same value to the model ("unread"), which
 *   makes most timed-out writes identical. Otherwise the choice of which timed-out write explains, say, a failed swap
 *   would multiply the configurations to explore.
 * - A configuration also counts as explored when one with the same known operations and state but only a subset of
 *   the unknown ones was explored and failed: the extra ones could have been placed last.
 *
 * The search is still exponential in the worst case; each key gets a time budget and reports "timeout" when it runs
 * out. Failing histories cost the most (every alternative must be refuted), and most of all with many operations of
 * unknown outcome on one key.
 */

import { performance } from "node:perf_hooks";

// ------------------------------------------------------------------------------------------------------------------
// History

export type ClientId = string | number;

export interface PutInput {
  readonly kind: "put";
  readonly key: string;
  readonly value: string;
}
export interface GetInput {
  readonly kind: "get";
  readonly key: string;
}
export interface DeleteInput {
  readonly kind: "delete";
  readonly key: string;
}
/**
 * The condition of a compare-and-swap. `{ value: undefined }` holds when the key is absent (in etcd one writes that
 * as mod_revision == 0, which `{ modRevision: 0 }` also means: a value compare on a missing key always fails there).
 */
export type CasExpectation = { readonly value: string | undefined } | { readonly modRevision: number };
export interface CasInput {
  readonly kind: "cas";
  readonly key: string;
  readonly expect: CasExpectation;
  /** Put when the condition holds. */
  readonly value: string;
}
export type OperationInput = PutInput | GetInput | DeleteInput | CasInput;

/** `revision`: the response header's revision, the revision of the write itself. */
export interface PutOutput {
  readonly revision: number;
}
/** `modRevision` is 0 when the key is absent; `revision` is the response header's revision, if recorded. */
export interface GetOutput {
  readonly value: string | undefined;
  readonly modRevision: number;
  readonly revision?: number;
}
export interface DeleteOutput {
  readonly deleted: number;
  readonly revision: number;
}
export interface CasOutput {
  readonly succeeded: boolean;
  readonly revision: number;
}

export type OutputOf<I extends OperationInput> = I extends PutInput
  ? PutOutput
  : I extends GetInput
    ? GetOutput
    : I extends DeleteInput
      ? DeleteOutput
      : CasOutput;

/**
 * "failed": the operation definitely had no effect (refused before it was sent, or an error that guarantees it).
 * "unknown": it may or may not have taken effect (timeout, connection lost).
 */
export type Outcome<O> =
  | { readonly status: "ok"; readonly output: O }
  | { readonly status: "failed" }
  | { readonly status: "unknown" };

export interface OperationRecord<I extends OperationInput> {
  readonly clientId: ClientId;
  readonly input: I;
  /** Monotonic clock, any unit (milliseconds when printed). */
  readonly invokedAt: number;
  /** When the client got the answer (or gave up: ignored for an unknown outcome, which may take effect any time). */
  readonly returnedAt: number;
  readonly outcome: Outcome<OutputOf<I>>;
}

export type Operation =
  | OperationRecord<PutInput>
  | OperationRecord<GetInput>
  | OperationRecord<DeleteInput>
  | OperationRecord<CasInput>;

// ------------------------------------------------------------------------------------------------------------------
// Results

export interface CheckOptions {
  /** Search budget per key, in milliseconds (default 10 000). A key that exhausts it is reported as "timeout". */
  timeoutMs?: number;
  /** Keys that exist when the history starts; every other key starts absent. */
  initialState?: ReadonlyMap<string, { readonly value: string; readonly modRevision: number }>;
}

export interface PartitionFailure {
  readonly key: string;
  /** For humans: the longest linearizable prefix found, then the operations that could not be placed after it. */
  readonly explanation: string;
  /** The key's operations that were checked (failed operations and reads of unknown outcome are left out). */
  readonly operations: readonly Operation[];
  /** The longest linearizable prefix the search found, in linearization order. */
  readonly longestPrefix: readonly Operation[];
  /** The operations that could have come next after that prefix, none of which could be placed. */
  readonly unplaceable: readonly Operation[];
  /** The operation whose response came before any of them could be placed (one of `unplaceable`). */
  readonly overdue: Operation;
}

export interface LinearizabilityResult {
  readonly ok: boolean;
  /** "not-linearizable" when some key fails, even if others timed out; "timeout" when no key failed but some ran out. */
  readonly result: "linearizable" | "not-linearizable" | "timeout";
  /** How many keys (partitions) were checked. */
  readonly keys: number;
  readonly failures: readonly PartitionFailure[];
  readonly timedOutKeys: readonly string[];
}

// ------------------------------------------------------------------------------------------------------------------
// The sequential model of one key

/**
 * Values are interned per key: ABSENT, UNREAD, or an index into the key's value names. Every value that no get of the
 * key reads and no compare-and-swap of the key expects is UNREAD: such values are only ever compared with values that
 * are read or expected, so telling them apart would only multiply states.
 */
const ABSENT = 0;
const UNREAD = 1;
const NONE: readonly number[] = [];

interface KeyState {
  readonly value: number;
  /** The key's mod revision m satisfies modLo < m <= modHi (modHi = modLo + 1 when it is known exactly). */
  readonly modLo: number;
  readonly modHi: number;
  /** Revisions inside the interval that the mod revision is known not to be (sorted; empty unless it is unknown). */
  readonly modExcluded: readonly number[];
  /** The store's revision at this point is at least this. */
  readonly floor: number;
}

type InternedExpectation =
  | { readonly on: "value"; readonly value: number }
  | { readonly on: "modRevision"; readonly modRevision: number };

/** An operation in model terms; `undefined` results mean the outcome is unknown. */
type Action =
  | { readonly kind: "put"; readonly value: number; readonly revision: number | undefined }
  | {
      readonly kind: "get";
      readonly value: number;
      readonly modRevision: number;
      readonly revision: number | undefined;
    }
  | { readonly kind: "delete"; readonly result: DeleteOutput | undefined }
  | {
      readonly kind: "cas";
      readonly expect: InternedExpectation;
      readonly value: number;
      readonly result: CasOutput | undefined;
    };

const writtenState = (value: number, revision: number): KeyState => ({
  value,
  modLo: revision - 1,
  modHi: revision,
  modExcluded: NONE,
  floor: revision,
});

const absentState = (floor: number): KeyState => ({ value: ABSENT, modLo: -1, modHi: 0, modExcluded: NONE, floor });

/** A write of unknown revision: it took the next revision, at least, and nobody knows which. */
const writtenAtUnknownRevision = (s: KeyState, value: number): KeyState => ({
  value,
  modLo: s.floor,
  modHi: Number.POSITIVE_INFINITY,
  modExcluded: NONE,
  floor: s.floor + 1,
});

const sameState = (a: KeyState, b: KeyState): boolean =>
  a.value === b.value &&
  a.modLo === b.modLo &&
  a.modHi === b.modHi &&
  a.floor === b.floor &&
  a.modExcluded.length === b.modExcluded.length &&
  a.modExcluded.every((m, i) => m === b.modExcluded[i]);

/** Whether the mod revision may be m. */
const modMayBe = (s: KeyState, m: number): boolean => m > s.modLo && m <= s.modHi && !s.modExcluded.includes(m);

/** A state whose mod revision is in (modLo, modHi] minus `excluded`, with the ends trimmed of excluded revisions. */
function withModRange(s: KeyState, modLo: number, modHi: number, excluded: readonly number[], floor: number): KeyState {
  let lo = modLo;
  let hi = modHi;
  while (hi > lo + 1 && excluded.includes(hi)) hi--;
  while (hi > lo + 1 && excluded.includes(lo + 1)) lo++;
  const inside = excluded.filter((m) => m > lo + 1 && m < hi);
  return { value: s.value, modLo: lo, modHi: hi, modExcluded: inside.length === 0 ? NONE : inside, floor };
}

/** Whether a compare-and-swap's condition holds in a state whose mod revision may be known only as an interval. */
function casCondition(s: KeyState, expect: InternedExpectation): "true" | "false" | "either" {
  if (expect.on === "value") return s.value === expect.value ? "true" : "false";
  const m = expect.modRevision;
  if (!modMayBe(s, m)) return "false";
  return s.modHi === s.modLo + 1 ? "true" : "either";
}

/** An operation that overwrites the key without looking at it, and reports nothing about what it overwrote. */
const isBlindWrite = (a: Action): boolean => a.kind === "put" || (a.kind === "delete" && a.result === undefined);

/**
 * Applies one operation; undefined when its output is impossible in state `s`. With `why`, says why in words
 * (only used to write explanations, so the hot path builds no strings).
 */
function step(s: KeyState, a: Action, names: readonly string[], why?: string[]): KeyState | undefined {
  const reject = (reason: () => string): undefined => {
    why?.push(reason());
    return undefined;
  };
  const held = () => `the key held ${describeState(s, names)}`;
  switch (a.kind) {
    case "put": {
      if (a.revision === undefined) return writtenAtUnknownRevision(s, a.value);
      const r = a.revision;
      if (r <= s.floor) return reject(() => `its revision ${r} is not above revision ${s.floor}, already reached`);
      return writtenState(a.value, r);
    }
    case "get": {
      const m = a.modRevision;
      if (s.value !== a.value || !modMayBe(s, m)) {
        return reject(() => `it read ${describeValueAt(a.value, m, names)} but ${held()}`);
      }
      let floor = Math.max(s.floor, m);
      if (a.revision !== undefined) {
        const h = a.revision;
        if (h < s.floor) return reject(() => `its header revision ${h} is below revision ${s.floor}, already reached`);
        if (h < m) return reject(() => `its header revision ${h} is below the mod revision ${m} it read`);
        floor = Math.max(floor, h);
      }
      return { value: s.value, modLo: m - 1, modHi: m, modExcluded: NONE, floor };
    }
    case "delete": {
      if (a.result === undefined) return s.value === ABSENT ? s : absentState(s.floor + 1);
      const { deleted, revision: r } = a.result;
      if (deleted === 1) {
        if (s.value === ABSENT) return reject(() => `it deleted the key but the key was absent`);
        if (r <= s.floor) return reject(() => `its revision ${r} is not above revision ${s.floor}, already reached`);
        return absentState(r);
      }
      if (deleted === 0) {
        if (s.value !== ABSENT) return reject(() => `it deleted nothing but ${held()}`);
        if (r < s.floor) return reject(() => `its header revision ${r} is below revision ${s.floor}, already reached`);
        return absentState(r);
      }
      return reject(() => `a delete of one key cannot delete ${deleted} keys`);
    }
    case "cas": {
      const condition = casCondition(s, a.expect);
      // When a swap on mod revision e succeeds, the store had reached e: that pins a mod revision known only as an
      // interval, and the swap's own revision is above it.
      const reached = a.expect.on === "modRevision" ? Math.max(s.floor, a.expect.modRevision) : s.floor;
      if (a.result === undefined) {
        return condition === "false" ? s : writtenAtUnknownRevision({ ...s, floor: reached }, a.value);
      }
      const { succeeded, revision: r } = a.result;
      if (succeeded) {
        if (condition === "false") {
          return reject(
            () => `it succeeded but its condition (${describeExpectation(a.expect, names)}) was false: ${held()}`,
          );
        }
        if (r <= reached) return reject(() => `its revision ${r} is not above revision ${reached}, already reached`);
        return writtenState(a.value, r);
      }
      if (r < s.floor) return reject(() => `its header revision ${r} is below revision ${s.floor}, already reached`);
      // The header revision bounds a mod revision that is only known as an interval.
      const bounded = withModRange(s, s.modLo, Math.min(s.modHi, r), s.modExcluded, r);
      if (casCondition(bounded, a.expect) === "true") {
        return reject(() => `it failed but its condition (${describeExpectation(a.expect, names)}) held: ${held()}`);
      }
      if (a.expect.on === "modRevision" && bounded.modHi > bounded.modLo + 1) {
        // So the mod revision is not the expected one.
        const excluded = [...bounded.modExcluded, a.expect.modRevision].sort((x, y) => x - y);
        return withModRange(bounded, bounded.modLo, bounded.modHi, excluded, r);
      }
      return bounded;
    }
  }
}

/**
 * The highest floor at which the operation can still be placed: a write needs its revision above the floor, an
 * operation that reports a header revision needs it at or above the floor. Floors only grow along a linearization, so
 * once the floor passes an unplaced operation's limit, that operation can never be placed. (A get without a recorded
 * header revision has no limit.)
 */
function floorLimit(a: Action): number {
  switch (a.kind) {
    case "put":
      return a.revision === undefined ? Number.POSITIVE_INFINITY : a.revision - 1;
    case "get":
      return a.revision ?? Number.POSITIVE_INFINITY;
    case "delete":
      if (a.result === undefined) return Number.POSITIVE_INFINITY;
      return a.result.deleted === 1 ? a.result.revision - 1 : a.result.revision;
    case "cas":
      if (a.result === undefined) return Number.POSITIVE_INFINITY;
      return a.result.succeeded ? a.result.revision - 1 : a.result.revision;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// Preparing a key's operations

interface PreparedOperation {
  /** Position in the caller's array, printed as #index. */
  readonly index: number;
  readonly operation: Operation;
  readonly action: Action;
  readonly outcomeUnknown: boolean;
  readonly blindWrite: boolean;
  readonly floorLimit: number;
  /** Position in the key's bitset of placed operations. */
  readonly bit: number;
  /**
   * For an operation of unknown outcome: the bit of the previous identical one (same action, invoked no later), or
   * -1. Identical operations of unknown outcome are interchangeable, so they are only placed in invocation order:
   * otherwise each choice of which one explains something would be a different configuration to explore.
   */
  readonly twinBefore: number;
}

interface Partition {
  readonly key: string;
  readonly operations: readonly PreparedOperation[];
  /** Interned values: names[id] for id >= 1. */
  readonly names: readonly string[];
  readonly initial: KeyState;
}

function preparePartition(
  key: string,
  entries: ReadonlyArray<{ readonly operation: Operation; readonly index: number }>,
  initial: { readonly value: string; readonly modRevision: number } | undefined,
): Partition {
  const readOrExpected = new Set<string>();
  for (const { operation } of entries) {
    if (operation.outcome.status === "ok" && operation.input.kind === "get") {
      const read = (operation.outcome.output as GetOutput).value;
      if (read !== undefined) readOrExpected.add(read);
    }
    if (operation.input.kind === "cas" && "value" in operation.input.expect) {
      const expected = operation.input.expect.value;
      if (expected !== undefined) readOrExpected.add(expected);
    }
  }
  const names: string[] = ["(absent)", "(unread)"];
  const ids = new Map<string, number>();
  const intern = (value: string | undefined): number => {
    if (value === undefined) return ABSENT;
    if (!readOrExpected.has(value)) return UNREAD;
    let id = ids.get(value);
    if (id === undefined) {
      id = names.length;
      names.push(value);
      ids.set(value, id);
    }
    return id;
  };
  const lastTwin = new Map<string, number>();
  const byInvocation = entries
    .map((entry, bit) => ({ ...entry, bit }))
    .sort((a, b) => a.operation.invokedAt - b.operation.invokedAt || a.bit - b.bit);
  const operations: PreparedOperation[] = new Array(entries.length);
  for (const { operation, index, bit } of byInvocation) {
    const action = toAction(operation, intern);
    const outcomeUnknown = operation.outcome.status === "unknown";
    let twinBefore = -1;
    if (outcomeUnknown) {
      const identity = JSON.stringify(action);
      twinBefore = lastTwin.get(identity) ?? -1;
      lastTwin.set(identity, bit);
    }
    operations[bit] = {
      index,
      operation,
      action,
      outcomeUnknown,
      blindWrite: isBlindWrite(action),
      floorLimit: floorLimit(action),
      bit,
      twinBefore,
    };
  }
  const initialState =
    initial === undefined ? absentState(0) : writtenState(intern(initial.value), initial.modRevision);
  return { key, operations, names, initial: initialState };
}

function toAction(op: Operation, intern: (value: string | undefined) => number): Action {
  const output = op.outcome.status === "ok" ? op.outcome.output : undefined;
  // Input and output kinds match by construction of Operation; TypeScript cannot narrow both from input.kind.
  switch (op.input.kind) {
    case "put":
      return { kind: "put", value: intern(op.input.value), revision: (output as PutOutput | undefined)?.revision };
    case "get": {
      const got = output as GetOutput;
      return { kind: "get", value: intern(got.value), modRevision: got.modRevision, revision: got.revision };
    }
    case "delete":
      return { kind: "delete", result: output as DeleteOutput | undefined };
    case "cas": {
      const e = op.input.expect;
      const expect: InternedExpectation =
        "modRevision" in e
          ? { on: "modRevision", modRevision: e.modRevision }
          : { on: "value", value: intern(e.value) };
      return { kind: "cas", expect, value: intern(op.input.value), result: output as CasOutput | undefined };
    }
  }
}

/** Throws on a malformed record, naming it: a checker that silently accepts nonsense would hide recorder bugs. */
function validate(op: Operation, index: number): void {
  function fail(problem: string): never {
    throw new TypeError(`operation #${index} (${describeCall(op)}): ${problem}`);
  }
  if (!Number.isFinite(op.invokedAt)) fail("invokedAt is not a finite number");
  if (op.outcome.status === "unknown") return;
  if (!Number.isFinite(op.returnedAt)) fail("returnedAt is not a finite number");
  if (op.returnedAt < op.invokedAt) fail(`returned at ${op.returnedAt}, before it was invoked at ${op.invokedAt}`);
  if (op.outcome.status !== "ok") return;
  const output = op.outcome.output as unknown as Record<string, unknown> | undefined;
  if (output === undefined || output === null) fail("an ok outcome without output");
  const integer = (field: string, optional = false) => {
    const v = output[field];
    if (optional && v === undefined) return;
    if (!Number.isSafeInteger(v)) fail(`output.${field} is not an integer: ${String(v)}`);
  };
  switch (op.input.kind) {
    case "put":
      integer("revision");
      break;
    case "get":
      integer("modRevision");
      integer("revision", true);
      if (output.value !== undefined && typeof output.value !== "string") fail("output.value is not a string");
      break;
    case "delete":
      integer("deleted");
      integer("revision");
      break;
    case "cas":
      integer("revision");
      if (typeof output.succeeded !== "boolean") fail("output.succeeded is not a boolean");
      break;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// The search

/** A call or return event in a doubly-linked list; a list's head is a sentinel with no operation. */
interface EventNode {
  readonly op: PreparedOperation | undefined;
  readonly isCall: boolean;
  readonly time: number;
  /** A call's return event; operations of unknown outcome have none. */
  match: EventNode | undefined;
  prev: EventNode | undefined;
  next: EventNode | undefined;
}

interface EventLists {
  /** Calls and returns of the operations of known outcome, by time. */
  readonly known: EventNode;
  /** Calls of the operations of unknown outcome, by time: kept apart so that scans for known candidates skip them. */
  readonly unknown: EventNode;
}

function buildEventLists(ops: readonly PreparedOperation[]): EventLists {
  const events: Array<{ time: number; isCall: boolean; op: PreparedOperation }> = [];
  for (const op of ops) {
    events.push({ time: op.operation.invokedAt, isCall: true, op });
    if (!op.outcomeUnknown) events.push({ time: op.operation.returnedAt, isCall: false, op });
  }
  // Calls before returns at equal times: operations that touch count as concurrent (the clock cannot order them).
  events.sort((x, y) => x.time - y.time || Number(y.isCall) - Number(x.isCall) || x.op.bit - y.op.bit);
  const sentinel = (): EventNode => ({
    op: undefined,
    isCall: false,
    time: Number.NEGATIVE_INFINITY,
    match: undefined,
    prev: undefined,
    next: undefined,
  });
  const lists = { known: sentinel(), unknown: sentinel() };
  const tails = { known: lists.known, unknown: lists.unknown };
  const calls = new Map<number, EventNode>();
  for (const { time, isCall, op } of events) {
    const list = op.outcomeUnknown ? "unknown" : "known";
    const node: EventNode = { op, isCall, time, match: undefined, prev: tails[list], next: undefined };
    tails[list].next = node;
    tails[list] = node;
    if (isCall) calls.set(op.bit, node);
    else calls.get(op.bit)!.match = node;
  }
  return lists;
}

function unlink(node: EventNode): void {
  node.prev!.next = node.next;
  if (node.next !== undefined) node.next.prev = node.prev;
}

/** Reinserts a node removed by `unlink`; nodes must be relinked in the reverse order of their removal. */
function relink(node: EventNode): void {
  node.prev!.next = node;
  if (node.next !== undefined) node.next.prev = node;
}

/** Takes a placed operation's call and return out of the list. */
function lift(call: EventNode): void {
  unlink(call);
  if (call.match !== undefined) unlink(call.match);
}

function unlift(call: EventNode): void {
  if (call.match !== undefined) relink(call.match);
  relink(call);
}

const hasBit = (bits: Uint32Array, i: number): boolean => (bits[i >>> 5]! & (1 << (i & 31))) !== 0;
const setBit = (bits: Uint32Array, i: number) => {
  bits[i >>> 5]! |= 1 << (i & 31);
};
const clearBit = (bits: Uint32Array, i: number) => {
  bits[i >>> 5]! &= ~(1 << (i & 31));
};

function mix(h: number, x: number): number {
  const mixed = Math.imul(h ^ (x | 0), 0x01000193);
  return Math.imul(mixed ^ ((x / 0x100000000) | 0), 0x01000193);
}

function hashState(s: KeyState): number {
  let h = 0x811c9dc5;
  h = mix(h, s.value);
  h = mix(h, s.modLo);
  h = mix(h, s.modHi === Number.POSITIVE_INFINITY ? -2 : s.modHi);
  h = mix(h, s.floor);
  for (const m of s.modExcluded) h = mix(h, m);
  return h >>> 0;
}

/** xorshift32: fixed seed so that runs are reproducible. */
function randomWords(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

interface ExploredEntry {
  readonly placed: Uint32Array;
  readonly state: KeyState;
  readonly afterUnknown: boolean;
}

/**
 * Lowe's memo: configurations (placed operations, state) already explored. Every entry is either on the current
 * path or failed. Hashed on the known-outcome operations and the state only (a Zobrist hash of the bitset, updated
 * as operations are placed and removed), so that a configuration can be matched by one that placed fewer operations
 * of unknown outcome: if that one failed, so does this one, since those operations could have been placed last.
 * (Such a match is never on the current path: every effective unknown write raises the floor.)
 */
class ExploredConfigurations {
  private readonly buckets = new Map<number, ExploredEntry[]>();

  constructor(private readonly knownMask: Uint32Array) {}

  covers(hash: number, placed: Uint32Array, state: KeyState, afterUnknown: boolean): boolean {
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) return false;
    for (const entry of bucket) {
      // An entry explored after an unknown operation had fewer choices, so it says nothing about one without.
      if (entry.afterUnknown && !afterUnknown) continue;
      if (sameState(entry.state, state) && this.sameKnownAndFewerUnknown(entry.placed, placed)) return true;
    }
    return false;
  }

  add(hash: number, placed: Uint32Array, state: KeyState, afterUnknown: boolean): void {
    const entry = { placed: placed.slice(), state, afterUnknown };
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) this.buckets.set(hash, [entry]);
    else bucket.push(entry);
  }

  private sameKnownAndFewerUnknown(explored: Uint32Array, placed: Uint32Array): boolean {
    for (let w = 0; w < placed.length; w++) {
      const e = explored[w]!;
      // Differences are allowed only where `placed` has an extra unknown-outcome operation.
      if (((e ^ placed[w]!) & (this.knownMask[w]! | e)) !== 0) return false;
    }
    return true;
  }
}

/** The lowest floor limit among the operations not placed yet: a segment tree over the key's operations. */
class UnplacedFloorLimits {
  private readonly leaves: number;
  private readonly tree: Float64Array;

  constructor(private readonly ops: readonly PreparedOperation[]) {
    let leaves = 1;
    while (leaves < ops.length) leaves *= 2;
    this.leaves = leaves;
    this.tree = new Float64Array(2 * leaves).fill(Number.POSITIVE_INFINITY);
    for (const op of ops) this.tree[leaves + op.bit] = op.floorLimit;
    for (let i = leaves - 1; i >= 1; i--) this.tree[i] = Math.min(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }

  lowest(): number {
    return this.tree[1]!;
  }

  placed(bit: number): void {
    this.update(bit, Number.POSITIVE_INFINITY);
  }

  unplaced(bit: number): void {
    this.update(bit, this.ops[bit]!.floorLimit);
  }

  private update(bit: number, limit: number): void {
    let i = this.leaves + bit;
    this.tree[i] = limit;
    for (i >>= 1; i >= 1; i >>= 1) this.tree[i] = Math.min(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }
}

interface Frame {
  readonly node: EventNode;
  readonly op: PreparedOperation;
  readonly stateBefore: KeyState;
  readonly hashBefore: number;
  readonly afterUnknownBefore: boolean;
  /** The first return when an operation of unknown outcome was placed (the bound of the pass to resume). */
  readonly frontier: EventNode | undefined;
}

interface DeadEnd {
  readonly prefix: ReadonlyArray<{ readonly op: PreparedOperation; readonly stateAfter: KeyState }>;
  readonly state: KeyState;
  readonly afterUnknown: boolean;
  readonly candidates: readonly PreparedOperation[];
  readonly overdue: PreparedOperation;
}

type SearchResult =
  | { readonly kind: "linearizable" }
  | { readonly kind: "timeout" }
  | { readonly kind: "not-linearizable"; readonly deadEnd: DeadEnd };

function searchPartition(partition: Partition, deadline: number): SearchResult {
  const ops = partition.operations;
  const names = partition.names;
  const lists = buildEventLists(ops);
  const words = Math.max(1, Math.ceil(ops.length / 32));
  const placed = new Uint32Array(words);
  const knownMask = new Uint32Array(words);
  const zobrist = new Uint32Array(ops.length);
  const random = randomWords(0x9e3779b9);
  let knownCount = 0;
  for (const op of ops) {
    if (op.outcomeUnknown) continue;
    knownCount++;
    setBit(knownMask, op.bit);
    zobrist[op.bit] = random();
  }
  const explored = new ExploredConfigurations(knownMask);
  const limits = new UnplacedFloorLimits(ops);
  const stack: Frame[] = [];
  let state = partition.initial;
  let hash = 0;
  let afterUnknown = false;
  let placedKnown = 0;
  // Each scan of the candidates makes two passes: known outcomes first (up to the first return, the frontier), so
  // that a search that never needs an unknown write never places one; then unknown outcomes invoked by then.
  let unknownPass = false;
  let frontier: EventNode | undefined;
  let deadEnd: DeadEnd | undefined;
  let node = lists.known.next;
  let iterations = 0;

  while (placedKnown < knownCount) {
    if ((++iterations & 0x3ff) === 0 && performance.now() > deadline) return { kind: "timeout" };

    if (!unknownPass) {
      // Known operations remain, so a return event lies ahead: this pass always stops at one.
      if (node === undefined) throw new Error("linearizability: internal error, scanned past the last event");
      if (!node.isCall) {
        frontier = node;
        unknownPass = true;
        node = lists.unknown.next;
        continue;
      }
    } else if (node === undefined || node.time > frontier!.time) {
      // Every candidate was tried: the frontier's operation cannot be placed in time after this prefix.
      if (deadEnd === undefined || stack.length > deadEnd.prefix.length) {
        deadEnd = snapshotDeadEnd(lists, frontier!, stack, state, afterUnknown);
      }
      const frame = stack.pop();
      if (frame === undefined) return { kind: "not-linearizable", deadEnd };
      clearBit(placed, frame.op.bit);
      state = frame.stateBefore;
      hash = frame.hashBefore;
      afterUnknown = frame.afterUnknownBefore;
      unknownPass = frame.op.outcomeUnknown;
      frontier = frame.frontier;
      if (!frame.op.outcomeUnknown) placedKnown--;
      limits.unplaced(frame.op.bit);
      unlift(frame.node);
      node = frame.node.next;
      continue;
    }

    const op = node.op!;
    const twinWaiting = op.twinBefore >= 0 && !hasBit(placed, op.twinBefore);
    // Placing an operation with a limit raises the floor to at least that limit (+1 for a write), which strands any
    // unplaced operation with a lower one: of those with limits, only the ones with the lowest can come next.
    const strandsLowest = op.floorLimit !== Number.POSITIVE_INFINITY && op.floorLimit > limits.lowest();
    if (!twinWaiting && !strandsLowest && !(afterUnknown && op.blindWrite)) {
      const next = step(state, op.action, names);
      // An unknown operation that would change nothing here is as well placed last.
      if (next !== undefined && !(op.outcomeUnknown && sameState(next, state))) {
        setBit(placed, op.bit);
        limits.placed(op.bit);
        const nextHash = (hash ^ zobrist[op.bit]!) >>> 0;
        const memoKey = (nextHash ^ hashState(next)) >>> 0;
        // A dead end as soon as the floor passes what some unplaced operation needs, not when its return comes up.
        const strandsAnother = limits.lowest() < next.floor;
        if (!strandsAnother && !explored.covers(memoKey, placed, next, op.outcomeUnknown)) {
          explored.add(memoKey, placed, next, op.outcomeUnknown);
          stack.push({ node, op, stateBefore: state, hashBefore: hash, afterUnknownBefore: afterUnknown, frontier });
          state = next;
          hash = nextHash;
          afterUnknown = op.outcomeUnknown;
          if (!op.outcomeUnknown) placedKnown++;
          lift(node);
          node = lists.known.next;
          unknownPass = false;
          continue;
        }
        clearBit(placed, op.bit);
        limits.unplaced(op.bit);
      }
    }
    node = node.next;
  }
  return { kind: "linearizable" };
}

function snapshotDeadEnd(
  lists: EventLists,
  frontier: EventNode,
  stack: readonly Frame[],
  state: KeyState,
  afterUnknown: boolean,
): DeadEnd {
  const candidates: PreparedOperation[] = [];
  for (let n = lists.known.next; n !== undefined && n !== frontier; n = n.next) candidates.push(n.op!);
  for (let n = lists.unknown.next; n !== undefined && n.time <= frontier.time; n = n.next) candidates.push(n.op!);
  const prefix = stack.map((frame, i) => ({ op: frame.op, stateAfter: stack[i + 1]?.stateBefore ?? state }));
  return { prefix, state, afterUnknown, candidates, overdue: frontier.op! };
}

// ------------------------------------------------------------------------------------------------------------------
// Entry point

/**
 * Checks that the history is linearizable, key by key, under the model described at the top of this file.
 * Operations with outcome "failed", and gets with outcome "unknown", are dropped. Throws a TypeError on a malformed
 * record (non-finite times, a response before its invocation, an ok outcome without the fields of its kind).
 */
export function checkHistory(ops: readonly Operation[], options: CheckOptions = {}): LinearizabilityResult {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const byKey = new Map<string, Array<{ operation: Operation; index: number }>>();
  let origin = Number.POSITIVE_INFINITY;
  ops.forEach((operation, index) => {
    validate(operation, index);
    origin = Math.min(origin, operation.invokedAt);
    const status = operation.outcome.status;
    if (status === "failed" || (status === "unknown" && operation.input.kind === "get")) return;
    append(byKey, operation.input.key, { operation, index });
  });

  const failures: PartitionFailure[] = [];
  const timedOutKeys: string[] = [];
  for (const key of [...byKey.keys()].sort()) {
    const partition = preparePartition(key, byKey.get(key)!, options.initialState?.get(key));
    const outcome = searchPartition(partition, performance.now() + timeoutMs);
    if (outcome.kind === "timeout") timedOutKeys.push(key);
    if (outcome.kind === "not-linearizable") failures.push(describeFailure(partition, outcome.deadEnd, origin));
  }
  const result = failures.length > 0 ? "not-linearizable" : timedOutKeys.length > 0 ? "timeout" : "linearizable";
  return { ok: result === "linearizable", result, keys: byKey.size, failures, timedOutKeys };
}

function append<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

// ------------------------------------------------------------------------------------------------------------------
// Revisions seen by clients

export interface RevisionCheckOptions {
  /** Also check across clients in real time (default true). */
  realTime?: boolean;
  /** Messages kept (default 50); a last line says how many more there were. */
  maxViolations?: number;
}

/**
 * Checks the store revisions that completed operations report, across all keys:
 *
 * - per client: an operation cannot report a lower revision than one reported by an earlier operation of the same
 *   client that returned before it was invoked (for a sequential client: every earlier operation);
 * - real time (unless `realTime: false`): the same across clients: if A returned before B was invoked (strictly
 *   earlier; equal times count as concurrent), B's revision is at least A's. Operations already reported by the
 *   per-client check are not reported again.
 *
 * The revision reported is the response header's: put, delete and cas always have one, a get only if recorded. A get
 * without it still bounds later operations from below by the mod revision it read (the header revision is at least
 * that). Failed and unknown outcomes report nothing.
 */
export function checkRevisionsMonotonic(
  ops: readonly Operation[],
  options: RevisionCheckOptions = {},
): { ok: boolean; violations: string[] } {
  const maxViolations = options.maxViolations ?? 50;
  const observations: RevisionObservation[] = [];
  ops.forEach((op, index) => {
    if (op.outcome.status !== "ok") return;
    const output = op.outcome.output as Partial<PutOutput & GetOutput>;
    const exact = output.revision;
    const lowerBound = exact ?? output.modRevision;
    if (lowerBound !== undefined) observations.push({ op, index, exact, lowerBound });
  });
  let origin = Number.POSITIVE_INFINITY;
  for (const op of ops) origin = Math.min(origin, op.invokedAt);
  const messages: string[] = [];
  const reported = new Set<number>();

  const byClient = new Map<ClientId, RevisionObservation[]>();
  for (const o of observations) append(byClient, o.op.clientId, o);
  for (const [clientId, list] of byClient) {
    for (const { later, earlier } of revisionsGoingBack(list)) {
      reported.add(later.index);
      messages.push(
        `client ${clientId}: ${describeObservation(later, origin, "invoked")} observed revision ${later.exact}, ` +
          `but its earlier ${describeObservation(earlier, origin, "returned")} had observed ${earlier.lowerBound}`,
      );
    }
  }
  if (options.realTime ?? true) {
    for (const { later, earlier } of revisionsGoingBack(observations)) {
      if (reported.has(later.index)) continue;
      messages.push(
        `real time: ${describeObservation(later, origin, "invoked")} by client ${later.op.clientId} observed ` +
          `revision ${later.exact}, but ${describeObservation(earlier, origin, "returned")} by client ` +
          `${earlier.op.clientId} had already observed ${earlier.lowerBound}`,
      );
    }
  }
  const violations = messages.slice(0, maxViolations);
  if (messages.length > maxViolations) violations.push(`... and ${messages.length - maxViolations} more`);
  return { ok: messages.length === 0, violations };
}

interface RevisionObservation {
  readonly op: Operation;
  readonly index: number;
  /** The header revision, when known. */
  readonly exact: number | undefined;
  /** What later operations must observe at least. */
  readonly lowerBound: number;
}

/**
 * Sweeps operations in invocation order, keeping the highest revision among those that returned strictly before the
 * current one was invoked, and yields each operation whose revision is below it (with the operation that set it).
 */
function* revisionsGoingBack(
  list: readonly RevisionObservation[],
): Generator<{ later: RevisionObservation; earlier: RevisionObservation }> {
  const byInvocation = [...list].sort((a, b) => a.op.invokedAt - b.op.invokedAt || a.index - b.index);
  const byReturn = [...list].sort((a, b) => a.op.returnedAt - b.op.returnedAt || a.index - b.index);
  let returned = 0;
  let highest: RevisionObservation | undefined;
  for (const later of byInvocation) {
    for (; returned < byReturn.length && byReturn[returned]!.op.returnedAt < later.op.invokedAt; returned++) {
      const candidate = byReturn[returned]!;
      if (highest === undefined || candidate.lowerBound > highest.lowerBound) highest = candidate;
    }
    if (highest !== undefined && later.exact !== undefined && later.exact < highest.lowerBound) {
      yield { later, earlier: highest };
    }
  }
}

function describeObservation(o: RevisionObservation, origin: number, time: "invoked" | "returned"): string {
  const at = time === "invoked" ? o.op.invokedAt : o.op.returnedAt;
  return `#${o.index} ${describeCall(o.op)} (${time} at ${formatTime(at - origin)})`;
}

// ------------------------------------------------------------------------------------------------------------------
// Descriptions

const MAX_PREFIX_LINES = 20;
const MAX_UNKNOWN_LINES = 10;

function formatTime(t: number): string {
  return `${t.toFixed(3)}ms`;
}

function quote(value: string): string {
  const s = JSON.stringify(value);
  return s.length > 42 ? `${s.slice(0, 38)}…"` : s;
}

function describeValue(value: number, names: readonly string[]): string {
  if (value === ABSENT) return "absent";
  return value === UNREAD ? "(a value nobody reads)" : quote(names[value]!);
}

function describeValueAt(value: number, modRevision: number, names: readonly string[]): string {
  if (value === ABSENT && modRevision === 0) return "absent";
  return `${describeValue(value, names)}@${modRevision}`;
}

function describeState(s: KeyState, names: readonly string[]): string {
  const floor = `store revision ≥ ${s.floor}`;
  if (s.modHi === s.modLo + 1) return `${describeValueAt(s.value, s.modHi, names)} (${floor})`;
  const bounds = s.modHi === Number.POSITIVE_INFINITY ? `> ${s.modLo}` : `in ${s.modLo + 1}..${s.modHi}`;
  const range = s.modExcluded.length === 0 ? bounds : `${bounds} but not ${s.modExcluded.join(", ")}`;
  return `${describeValue(s.value, names)}@? (mod revision unknown, ${range}; ${floor})`;
}

function describeExpectation(e: InternedExpectation, names: readonly string[]): string {
  if (e.on === "modRevision") return `mod revision == ${e.modRevision}`;
  return e.value === ABSENT ? "key absent" : `value == ${describeValue(e.value, names)}`;
}

function describeCall(op: Operation): string {
  const input = op.input;
  const key = quote(input.key);
  switch (input.kind) {
    case "put":
      return `put(${key}, ${quote(input.value)})`;
    case "get":
      return `get(${key})`;
    case "delete":
      return `delete(${key})`;
    case "cas": {
      const e = input.expect;
      const condition =
        "modRevision" in e
          ? `mod revision == ${e.modRevision}`
          : e.value === undefined
            ? "absent"
            : `value == ${quote(e.value)}`;
      return `cas(${key}, if ${condition} then put ${quote(input.value)})`;
    }
  }
}

function describeResult(op: Operation): string {
  if (op.outcome.status !== "ok") return op.outcome.status === "failed" ? "failed" : "unknown outcome";
  const output = op.outcome.output;
  switch (op.input.kind) {
    case "put":
      return `revision ${(output as PutOutput).revision}`;
    case "get": {
      const got = output as GetOutput;
      const read =
        got.value === undefined ? `absent (mod revision ${got.modRevision})` : `${quote(got.value)}@${got.modRevision}`;
      return got.revision === undefined ? read : `${read}, revision ${got.revision}`;
    }
    case "delete": {
      const deleted = output as DeleteOutput;
      return `deleted ${deleted.deleted}, revision ${deleted.revision}`;
    }
    case "cas": {
      const swapped = output as CasOutput;
      return `${swapped.succeeded ? "succeeded" : "failed"}, revision ${swapped.revision}`;
    }
  }
}

/**
 * One line for an operation: `client 3: put("x", "a") → revision 12`, with its call and return times relative to
 * `origin` when given.
 */
export function describeOperation(op: Operation, origin?: number): string {
  const text = `client ${op.clientId}: ${describeCall(op)} → ${describeResult(op)}`;
  if (origin === undefined) return text;
  const returned = op.outcome.status === "unknown" ? "?" : formatTime(op.returnedAt - origin);
  return `${text}  [${formatTime(op.invokedAt - origin)} → ${returned}]`;
}

function describeFailure(partition: Partition, deadEnd: DeadEnd, origin: number): PartitionFailure {
  const { names } = partition;
  const line = (op: PreparedOperation) => `#${op.index} ${describeOperation(op.operation, origin)}`;
  const unknownCount = partition.operations.filter((op) => op.outcomeUnknown).length;
  const lines: string[] = [
    `key ${quote(partition.key)}: ${partition.operations.length} operations` +
      (unknownCount > 0 ? ` (${unknownCount} of unknown outcome)` : "") +
      " cannot be linearized.",
    `Initial state: ${describeState(partition.initial, names)}.`,
    `Longest linearizable prefix found: ${deadEnd.prefix.length} operations, in linearization order:`,
  ];
  const shown = deadEnd.prefix.slice(-MAX_PREFIX_LINES);
  if (shown.length < deadEnd.prefix.length) lines.push(`  ... ${deadEnd.prefix.length - shown.length} earlier`);
  for (const { op, stateAfter } of shown) {
    lines.push(`  ${line(op)}`, `      then ${describeState(stateAfter, names)}`);
  }
  lines.push("None of the operations that could come next can be placed:");
  const pendingUnknown = deadEnd.candidates.filter((op) => op.outcomeUnknown);
  for (const op of [
    ...deadEnd.candidates.filter((c) => !c.outcomeUnknown),
    ...pendingUnknown.slice(0, MAX_UNKNOWN_LINES),
  ]) {
    lines.push(`  ${line(op)}`, `      ${whyNotPlaced(op, deadEnd, partition)}`);
  }
  if (pendingUnknown.length > MAX_UNKNOWN_LINES) {
    lines.push(`  ... and ${pendingUnknown.length - MAX_UNKNOWN_LINES} more operations of unknown outcome`);
  }
  const overdue = deadEnd.overdue;
  lines.push(
    `and #${overdue.index} (client ${overdue.operation.clientId}) returned at ` +
      `${formatTime(overdue.operation.returnedAt - origin)}, so one of them had to take effect before then.`,
  );
  return {
    key: partition.key,
    explanation: lines.join("\n"),
    operations: partition.operations.map((op) => op.operation),
    longestPrefix: deadEnd.prefix.map(({ op }) => op.operation),
    unplaceable: deadEnd.candidates.map((op) => op.operation),
    overdue: overdue.operation,
  };
}

function whyNotPlaced(op: PreparedOperation, deadEnd: DeadEnd, partition: Partition): string {
  const { names } = partition;
  const why: string[] = [];
  const next = step(deadEnd.state, op.action, names, why);
  if (next === undefined) return `impossible here: ${why.join("; ")}`;
  if (op.outcomeUnknown && sameState(next, deadEnd.state)) return "outcome unknown, and it would change nothing here";
  const placed = new Set(deadEnd.prefix.map((p) => p.op.bit));
  if (op.twinBefore >= 0 && !placed.has(op.twinBefore)) {
    return `an identical operation of unknown outcome invoked earlier, #${partition.operations[op.twinBefore]!.index}, stands for it`;
  }
  if (deadEnd.afterUnknown && op.blindWrite) {
    return "it would overwrite, unseen, the operation of unknown outcome just placed (as if that one came last)";
  }
  const stranded = partition.operations.find(
    (other) => other !== op && !placed.has(other.bit) && other.floorLimit < next.floor,
  );
  if (stranded !== undefined) {
    return (
      `possible here (then ${describeState(next, names)}), but then #${stranded.index} could never be placed: ` +
      `it needs the store revision to be at most ${stranded.floorLimit} when it takes effect`
    );
  }
  return `possible here (then ${describeState(next, names)}), but every way on from there was already explored`;
}
