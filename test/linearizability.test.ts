import { describe, expect, it } from "vitest";
import { HistoryRecorder } from "../src/check/history.js";
import {
  type CasExpectation,
  type CasOutput,
  type ClientId,
  checkHistory,
  checkRevisionsMonotonic,
  type DeleteOutput,
  type GetOutput,
  type LinearizabilityResult,
  type Operation,
  type PartitionFailure,
  type PutOutput,
} from "../src/check/linearizability.js";
import { Rng } from "./helpers/opgen.js";

// ---------------------------------------------------------------------------------------------------------------------
// Building histories by hand: [invokedAt, returnedAt] spans, a@2 = value "a" with mod revision 2.

type Span = readonly [invokedAt: number, returnedAt: number];

function put(clientId: ClientId, key: string, value: string, [invokedAt, returnedAt]: Span, revision: number) {
  const op: Operation = {
    clientId,
    input: { kind: "put", key, value },
    invokedAt,
    returnedAt,
    outcome: { status: "ok", output: { revision } },
  };
  return op;
}

function get(
  clientId: ClientId,
  key: string,
  [invokedAt, returnedAt]: Span,
  value: string | undefined,
  modRevision: number,
  revision?: number,
) {
  const output = revision === undefined ? { value, modRevision } : { value, modRevision, revision };
  const op: Operation = {
    clientId,
    input: { kind: "get", key },
    invokedAt,
    returnedAt,
    outcome: { status: "ok", output },
  };
  return op;
}

function del(clientId: ClientId, key: string, [invokedAt, returnedAt]: Span, deleted: number, revision: number) {
  const op: Operation = {
    clientId,
    input: { kind: "delete", key },
    invokedAt,
    returnedAt,
    outcome: { status: "ok", output: { deleted, revision } },
  };
  return op;
}

function cas(
  clientId: ClientId,
  key: string,
  expect: CasExpectation,
  value: string,
  [invokedAt, returnedAt]: Span,
  succeeded: boolean,
  revision: number,
) {
  const op: Operation = {
    clientId,
    input: { kind: "cas", key, expect, value },
    invokedAt,
    returnedAt,
    outcome: { status: "ok", output: { succeeded, revision } },
  };
  return op;
}

/** The same operation, but the client never learned its outcome (it gave up at returnedAt). */
const timedOut = (op: Operation): Operation => ({ ...op, outcome: { status: "unknown" } }) as Operation;
/** The same operation, definitely without effect. */
const refused = (op: Operation): Operation => ({ ...op, outcome: { status: "failed" } }) as Operation;

function expectLinearizable(ops: readonly Operation[]): LinearizabilityResult {
  const result = checkHistory(ops);
  expect(result.failures.map((f) => f.explanation)).toEqual([]);
  expect(result.result).toBe("linearizable");
  expect(result.ok).toBe(true);
  return result;
}

function expectNotLinearizable(ops: readonly Operation[]): PartitionFailure {
  const result = checkHistory(ops);
  expect(result.result).toBe("not-linearizable");
  expect(result.ok).toBe(false);
  expect(result.failures).toHaveLength(1);
  return result.failures[0]!;
}

// ---------------------------------------------------------------------------------------------------------------------

describe("linearizability: put and get", () => {
  it("accepts a read of the last completed write, and a read of an absent key", () => {
    expectLinearizable([
      get(1, "x", [0, 1], undefined, 0, 1),
      put(1, "x", "a", [2, 3], 2),
      get(2, "x", [4, 5], "a", 2, 2),
    ]);
  });

  it("rejects a stale read after a completed write", () => {
    const stale = get(2, "x", [6, 7], "a", 2);
    const failure = expectNotLinearizable([put(1, "x", "a", [0, 1], 2), put(1, "x", "b", [2, 3], 3), stale]);
    expect(failure.key).toBe("x");
    expect(failure.overdue).toBe(stale);
    expect(failure.unplaceable).toEqual([stale]);
  });

  it("rejects a read of a value that nobody wrote, and a read with the wrong mod revision", () => {
    expectNotLinearizable([put(1, "x", "a", [0, 1], 2), get(2, "x", [2, 3], "z", 2)]);
    expectNotLinearizable([put(1, "x", "a", [0, 1], 2), get(2, "x", [2, 3], "a", 3)]);
  });

  it("lets a read concurrent with a write see the old value or the new one", () => {
    const write = put(1, "x", "b", [2, 6], 3);
    const before = put(1, "x", "a", [0, 1], 2);
    expectLinearizable([before, write, get(2, "x", [3, 4], "a", 2)]);
    expectLinearizable([before, write, get(2, "x", [3, 4], "b", 3)]);
  });

  it("rejects a read that sees the new value, then one that sees the old value again", () => {
    expectNotLinearizable([
      put(1, "x", "a", [0, 1], 2),
      put(1, "x", "b", [2, 10], 3),
      get(2, "x", [3, 4], "b", 3),
      get(2, "x", [5, 6], "a", 2),
    ]);
  });

  it("accepts concurrent writes in either order, the higher revision being the one read afterwards", () => {
    // The order of two concurrent puts is free, but revisions tell which one was applied last.
    expectLinearizable([put(1, "x", "a", [0, 5], 2), put(2, "x", "b", [1, 4], 3), get(3, "x", [6, 7], "b", 3)]);
    expectLinearizable([put(1, "x", "a", [0, 5], 3), put(2, "x", "b", [1, 4], 2), get(3, "x", [6, 7], "a", 3)]);
  });

  it("rejects a lost write: after both concurrent writes completed, a read sees the one with the lower revision", () => {
    expectNotLinearizable([put(1, "x", "a", [0, 5], 2), put(2, "x", "b", [1, 4], 3), get(3, "x", [6, 7], "a", 2)]);
  });

  it("rejects sequential writes whose revisions go backwards", () => {
    expectNotLinearizable([put(1, "x", "a", [0, 1], 5), put(2, "x", "b", [2, 3], 4)]);
  });

  it("rejects a read whose header revision is below a revision already reached", () => {
    expectLinearizable([put(1, "x", "a", [0, 1], 5), get(2, "x", [2, 3], "a", 5, 7)]);
    expectNotLinearizable([put(1, "x", "a", [0, 1], 5), get(2, "x", [2, 3], "a", 5, 4)]);
    // And a write after a read that saw revision 7 must take a later revision.
    expectNotLinearizable([put(1, "x", "a", [0, 1], 5), get(2, "x", [2, 3], "a", 5, 7), put(1, "x", "b", [4, 5], 7)]);
  });

  it("treats operations that touch (one returns when the other is invoked) as concurrent", () => {
    expectLinearizable([put(1, "x", "a", [0, 1], 2), put(1, "x", "b", [2, 5], 3), get(2, "x", [5, 6], "a", 2)]);
    expectNotLinearizable([put(1, "x", "a", [0, 1], 2), put(1, "x", "b", [2, 5], 3), get(2, "x", [5.001, 6], "a", 2)]);
  });

  it("drops failed operations: their effect must never be seen", () => {
    expectLinearizable([refused(put(1, "x", "a", [0, 1], 2)), get(2, "x", [2, 3], undefined, 0)]);
    expectNotLinearizable([refused(put(1, "x", "a", [0, 1], 2)), get(2, "x", [2, 3], "a", 2)]);
    // A failed read's output means nothing.
    expectLinearizable([put(1, "x", "a", [0, 1], 2), refused(get(2, "x", [2, 3], "zzz", 9))]);
  });

  it("starts from the given initial state", () => {
    const read = get(1, "x", [0, 1], "seed", 7);
    expectNotLinearizable([read]);
    const result = checkHistory([read], { initialState: new Map([["x", { value: "seed", modRevision: 7 }]]) });
    expect(result.result).toBe("linearizable");
  });

  it("checks keys separately", () => {
    const result = checkHistory([
      put(1, "x", "a", [0, 1], 2),
      put(1, "y", "b", [2, 3], 3),
      get(2, "x", [4, 5], "a", 2, 3),
      get(2, "y", [4, 5], undefined, 0, 3),
    ]);
    expect(result.keys).toBe(2);
    expect(result.failures.map((f) => f.key)).toEqual(["y"]);
  });
});

describe("linearizability: operations of unknown outcome", () => {
  it("accepts a timed-out put whose effect is observed later, after the client gave up", () => {
    expectLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      get(2, "x", [4, 5], "a", 2, 2),
      get(2, "x", [6, 7], "u", 9, 9),
      get(3, "x", [8, 9], "u", 9, 11),
    ]);
  });

  it("accepts a timed-out put whose effect is never observed", () => {
    expectLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      get(2, "x", [4, 5], "a", 2),
      get(2, "x", [6, 7], "a", 2),
    ]);
  });

  it("rejects a timed-out put that is observed, then un-observed with no other write", () => {
    const failure = expectNotLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      get(2, "x", [4, 5], "u", 6),
      get(2, "x", [6, 7], "a", 2),
    ]);
    expect(failure.explanation).toContain('get("x") → "a"@2');
  });

  it("pins the unknown mod revision of a timed-out put to the first one observed", () => {
    const history = [put(1, "x", "a", [0, 1], 2), timedOut(put(1, "x", "u", [2, 3], 0)), get(2, "x", [4, 5], "u", 6)];
    expectLinearizable([...history, get(2, "x", [6, 7], "u", 6)]);
    expectNotLinearizable([...history, get(2, "x", [6, 7], "u", 8)]);
    // Its revision is above every revision reached before it was invoked.
    expectNotLinearizable([
      put(1, "x", "a", [0, 1], 5),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      get(2, "x", [4, 5], "u", 4),
    ]);
  });

  it("lets a timed-out put take effect between later operations, but not before its invocation", () => {
    expectLinearizable([
      timedOut(put(1, "x", "u", [0, 1], 0)),
      put(2, "x", "a", [2, 3], 2),
      get(2, "x", [4, 5], "a", 2),
      get(2, "x", [6, 7], "u", 5),
    ]);
    expectNotLinearizable([get(2, "x", [0, 1], "u", 5), timedOut(put(1, "x", "u", [2, 3], 0))]);
  });

  it("lets a timed-out put explain a successful delete, and a timed-out delete an absent key", () => {
    expectNotLinearizable([del(2, "x", [4, 5], 1, 3)]);
    expectLinearizable([timedOut(put(1, "x", "u", [0, 1], 0)), del(2, "x", [4, 5], 1, 3)]);
    expectLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(del(1, "x", [2, 3], 0, 0)),
      get(2, "x", [4, 5], undefined, 0),
    ]);
    expectNotLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(del(1, "x", [2, 3], 0, 0)),
      get(2, "x", [4, 5], undefined, 0),
      get(2, "x", [6, 7], "a", 2),
    ]);
  });

  it("applies a timed-out compare-and-swap only when its condition held", () => {
    const setup = put(1, "x", "a", [0, 1], 2);
    expectLinearizable([
      setup,
      timedOut(cas(1, "x", { value: "a" }, "b", [2, 3], true, 0)),
      get(2, "x", [4, 5], "b", 4),
    ]);
    expectNotLinearizable([
      setup,
      timedOut(cas(1, "x", { value: "z" }, "b", [2, 3], true, 0)),
      get(2, "x", [4, 5], "b", 4),
    ]);
  });

  it("pins an unknown mod revision with a compare-and-swap on it", () => {
    // The timed-out put took revision 7, so a swap expecting mod revision 7 succeeds.
    expectLinearizable([
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      cas(2, "x", { modRevision: 7 }, "c", [4, 5], true, 9),
      get(2, "x", [6, 7], "c", 9),
    ]);
    // A failed swap's header revision bounds it. The swap expecting "a" failed, so the timed-out put took effect
    // before it, at revision 10 at most: a read after the swap cannot see it at revision 12.
    const bounded = [
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      cas(3, "x", { value: "a" }, "c", [4, 5], false, 10),
    ];
    expectLinearizable([...bounded, get(2, "x", [6, 7], "u", 9)]);
    expectNotLinearizable([...bounded, get(2, "x", [6, 7], "u", 12)]);
  });

  it("remembers which mod revisions a failed swap ruled out for a timed-out put", () => {
    // The later swap expecting mod revision 5 needs the timed-out put at revision 5; before the failed swap (header 6)
    // it cannot be 5, since that swap expected 5 and failed; after it, it would be above 6.
    const history = (expected: number) => [
      put(1, "x", "a", [0, 1], 2),
      timedOut(put(1, "x", "u", [2, 3], 0)),
      cas(2, "x", { modRevision: 5 }, "c", [4, 5], false, 6),
      cas(3, "x", { modRevision: expected }, "d", [8, 9], true, 7),
    ];
    expectNotLinearizable(history(5));
    expectLinearizable(history(4));
  });

  it("does not multiply the search by which of many identical timed-out operations took effect", () => {
    // Forty timed-out swaps flipping a→b and b→a, then a read of a value nobody wrote. Without treating identical
    // operations as interchangeable, refuting this means trying a huge number of subsets (see the timeout test).
    const ops: Operation[] = [put(0, "x", "a", [0, 1], 2)];
    for (let i = 0; i < 20; i++) {
      ops.push(timedOut(cas(`ab${i}`, "x", { value: "a" }, "b", [2, 3], true, 0)));
      ops.push(timedOut(cas(`ba${i}`, "x", { value: "b" }, "a", [2, 3], true, 0)));
    }
    ops.push(get(0, "x", [10, 11], "c", 50));
    expect(checkHistory(ops).result).toBe("not-linearizable");
    expect(checkHistory([...ops.slice(0, -1), get(0, "x", [10, 11], "b", 50)]).result).toBe("linearizable");
  });

  it("ignores reads of unknown outcome", () => {
    expectLinearizable([put(1, "x", "a", [0, 1], 2), timedOut(get(2, "x", [2, 3], "zzz", 9))]);
  });
});

describe("linearizability: compare-and-swap and delete", () => {
  const setup = put(1, "x", "a", [0, 1], 2);

  it("on value: succeeds when the value matched, fails when it did not", () => {
    expectLinearizable([setup, cas(2, "x", { value: "a" }, "b", [2, 3], true, 3), get(3, "x", [4, 5], "b", 3)]);
    expectLinearizable([setup, cas(2, "x", { value: "z" }, "b", [2, 3], false, 2), get(3, "x", [4, 5], "a", 2)]);
    expectNotLinearizable([setup, cas(2, "x", { value: "z" }, "b", [2, 3], true, 3)]);
    expectNotLinearizable([setup, cas(2, "x", { value: "a" }, "b", [2, 3], false, 2)]);
  });

  it("on value: only one of two concurrent swaps from the same value can succeed", () => {
    expectNotLinearizable([
      setup,
      cas(2, "x", { value: "a" }, "b", [2, 5], true, 3),
      cas(3, "x", { value: "a" }, "c", [2, 5], true, 4),
    ]);
    expectLinearizable([
      setup,
      cas(2, "x", { value: "a" }, "b", [2, 5], true, 3),
      cas(3, "x", { value: "a" }, "c", [2, 5], false, 3),
      get(1, "x", [6, 7], "b", 3),
    ]);
  });

  it("on absence: creates the key only if it does not exist", () => {
    expectLinearizable([cas(1, "x", { value: undefined }, "a", [0, 1], true, 2), get(2, "x", [2, 3], "a", 2)]);
    expectLinearizable([cas(1, "x", { modRevision: 0 }, "a", [0, 1], true, 2)]);
    expectNotLinearizable([setup, cas(2, "x", { value: undefined }, "b", [2, 3], true, 3)]);
    expectNotLinearizable([setup, cas(2, "x", { modRevision: 0 }, "b", [2, 3], true, 3)]);
  });

  it("on mod revision: succeeds only against the current mod revision", () => {
    const then = put(1, "x", "b", [2, 3], 3);
    expectLinearizable([
      setup,
      then,
      cas(2, "x", { modRevision: 3 }, "c", [4, 5], true, 4),
      get(3, "x", [6, 7], "c", 4),
    ]);
    expectLinearizable([setup, then, cas(2, "x", { modRevision: 2 }, "c", [4, 5], false, 3)]);
    expectNotLinearizable([setup, then, cas(2, "x", { modRevision: 2 }, "c", [4, 5], true, 4)]);
    expectNotLinearizable([setup, then, cas(2, "x", { modRevision: 3 }, "c", [4, 5], false, 3)]);
  });

  it("delete: reports one key deleted when present, none when absent, and the key reads absent after it", () => {
    expectLinearizable([
      setup,
      del(2, "x", [2, 3], 1, 3),
      get(3, "x", [4, 5], undefined, 0, 3),
      del(2, "x", [6, 7], 0, 3),
      put(1, "x", "b", [8, 9], 4),
    ]);
    expectNotLinearizable([setup, del(2, "x", [2, 3], 0, 2)]);
    expectNotLinearizable([del(2, "x", [0, 1], 1, 2)]);
    expectNotLinearizable([setup, del(2, "x", [2, 3], 1, 3), get(3, "x", [4, 5], "a", 2)]);
    // Deleting takes a new revision; deleting nothing does not.
    expectNotLinearizable([setup, del(2, "x", [2, 3], 1, 2)]);
  });
});

describe("linearizability: explanations", () => {
  it("prints the longest linearizable prefix and the operation that cannot follow it, with times", () => {
    // The worked example at the top of src/check/linearizability.ts.
    const A = put("A", "x", "a", [0, 2], 2);
    const B = get("B", "x", [1, 5], "a", 2);
    const C = put("C", "x", "b", [3, 6], 3);
    const D = get("D", "x", [4, 7], "b", 3);
    const E = get("E", "x", [8, 9], "a", 2);
    const failure = expectNotLinearizable([A, B, C, D, E]);
    expect(failure.longestPrefix).toEqual([A, B, C, D]);
    expect(failure.unplaceable).toEqual([E]);
    expect(failure.overdue).toBe(E);
    const text = failure.explanation;
    expect(text).toContain('key "x": 5 operations cannot be linearized');
    expect(text).toContain("Longest linearizable prefix found: 4 operations");
    expect(text).toContain('#4 client E: get("x") → "a"@2  [8.000ms → 9.000ms]');
    expect(text).toContain('it read "a"@2 but the key held "b"@3');
    expect(text).toContain("returned at 9.000ms");
    // The prefix is printed in linearization order.
    expect(text.indexOf("#0 client A")).toBeLessThan(text.indexOf("#2 client C"));
  });

  it("rejects malformed records, naming them", () => {
    expect(() => checkHistory([put(1, "x", "a", [5, 4], 2)])).toThrow(/#0 .*before it was invoked/);
    const noRevision = {
      ...put(1, "x", "a", [0, 1], 2),
      outcome: { status: "ok", output: {} },
    } as unknown as Operation;
    expect(() => checkHistory([noRevision])).toThrow(/output\.revision is not an integer/);
  });

  it("gives up with 'timeout' instead of searching forever", () => {
    // Twenty-four timed-out puts of distinct values, each read by one of twenty-four concurrent gets (without header
    // revisions, which would pin their order), then a stale read: proving that no order works means trying a huge
    // number of subsets of (put, get) pairs.
    const ops: Operation[] = [];
    for (let i = 0; i < 24; i++) {
      ops.push(timedOut(put(`writer${i}`, "x", `v${i}`, [1, 2], 0)));
      ops.push(get(`reader${i}`, "x", [10, 20], `v${i}`, 100 + i));
    }
    ops.push(get(0, "x", [30, 31], "v0", 100));
    ops.push(put(0, "y", "fine", [0, 1], 1));
    const result = checkHistory(ops, { timeoutMs: 50 });
    expect(result.result).toBe("timeout");
    expect(result.ok).toBe(false);
    expect(result.timedOutKeys).toEqual(["x"]);
    expect(result.failures).toEqual([]);
  });
});

describe("revision monotonicity", () => {
  it("accepts a history whose revisions never go back, and concurrent operations in any order", () => {
    const result = checkRevisionsMonotonic([
      put(1, "x", "a", [0, 1], 5),
      get(1, "y", [2, 3], undefined, 0, 5),
      put(2, "z", "b", [0, 10], 9),
      get(3, "x", [4, 8], "a", 5, 6),
    ]);
    expect(result).toEqual({ ok: true, violations: [] });
  });

  it("reports a client whose revisions go back", () => {
    const result = checkRevisionsMonotonic([
      put(1, "x", "a", [0, 1], 5),
      put(1, "y", "b", [2, 3], 7),
      get(1, "x", [4, 5], "a", 5, 6),
    ]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([
      'client 1: #2 get("x") (invoked at 4.000ms) observed revision 6, but its earlier #1 put("y", "b") ' +
        "(returned at 3.000ms) had observed 7",
    ]);
  });

  it("reports, in real time, an operation that sees an older revision than one that returned before it began", () => {
    const ops = [put(1, "x", "a", [0, 1], 10), get(2, "y", [2, 3], undefined, 0, 8)];
    const result = checkRevisionsMonotonic(ops);
    expect(result.ok).toBe(false);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toMatch(/^real time: #1 get\("y"\) .* by client 2 observed revision 8, .*client 1/);
    expect(checkRevisionsMonotonic(ops, { realTime: false }).ok).toBe(true);
    // Concurrent: fine.
    expect(checkRevisionsMonotonic([put(1, "x", "a", [0, 2], 10), get(2, "y", [2, 3], undefined, 0, 8)]).ok).toBe(true);
  });

  it("uses a read's mod revision as a lower bound when its header revision was not recorded", () => {
    const result = checkRevisionsMonotonic([get(1, "x", [0, 1], "a", 10), put(2, "y", "b", [2, 3], 9)]);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toContain("had already observed 10");
  });

  it("ignores failed and unknown outcomes", () => {
    const result = checkRevisionsMonotonic([
      refused(put(1, "x", "a", [0, 1], 50)),
      timedOut(put(1, "x", "a", [2, 3], 60)),
      put(1, "x", "a", [4, 5], 5),
    ]);
    expect(result.ok).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// Randomized histories: a real sequential execution of an in-memory KV, seen through random concurrency windows.

interface GeneratorConfig {
  readonly clients: number;
  readonly keys: number;
  readonly operations: number;
  /** Share of operations whose client times out; half of those take effect anyway (possibly after the timeout). */
  readonly unknownRate: number;
  /** Share of operations refused without effect. */
  readonly failRate: number;
}

/**
 * Each client runs operations one after another; each operation takes effect at an instant inside its window (an
 * unknown one possibly after its client gave up). Applying them in the order of those instants to a sequential KV
 * with a global revision gives the outputs, so the history is linearizable by construction.
 */
function generateHistory(seed: number, config: GeneratorConfig): Operation[] {
  const rng = new Rng(seed);
  type Draft = {
    clientId: number;
    kind: "put" | "get" | "delete" | "cas";
    key: string;
    value: string;
    invokedAt: number;
    effectAt: number;
    returnedAt: number;
    status: "ok" | "failed" | "unknown";
    applied: boolean;
    operation?: Operation;
  };
  const clock = Array.from({ length: config.clients }, () => rng.float() * 2);
  const drafts: Draft[] = [];
  for (let i = 0; i < config.operations; i++) {
    const clientId = i % config.clients;
    const invokedAt = clock[clientId]! + rng.float() * 2;
    const status = rng.chance(config.unknownRate) ? "unknown" : rng.chance(config.failRate) ? "failed" : "ok";
    const effectAt = invokedAt + rng.float() * (status === "unknown" ? 20 : 3);
    const returnedAt = status === "unknown" ? invokedAt + 3 : effectAt + rng.float() * 3;
    clock[clientId] = returnedAt;
    drafts.push({
      clientId,
      kind: rng.weighted([
        [35, "put"],
        [35, "get"],
        [10, "delete"],
        [20, "cas"],
      ] as const),
      key: `k${rng.int(0, config.keys - 1)}`,
      value: `v${i}`,
      invokedAt,
      effectAt,
      returnedAt,
      status,
      applied: status === "ok" || (status === "unknown" && rng.chance(0.5)),
    });
  }

  const store = new Map<string, { value: string; modRevision: number }>();
  const writtenValues = new Map<string, string[]>();
  let revision = 1;
  for (const d of [...drafts].sort((a, b) => a.effectAt - b.effectAt)) {
    const base = { clientId: d.clientId, invokedAt: d.invokedAt, returnedAt: d.returnedAt };
    const outcome = <O>(output: O) => (d.status === "ok" ? { status: "ok" as const, output } : { status: d.status });
    const current = store.get(d.key);
    switch (d.kind) {
      case "put":
        if (d.applied) {
          store.set(d.key, { value: d.value, modRevision: ++revision });
          writtenValues.set(d.key, [...(writtenValues.get(d.key) ?? []), d.value]);
        }
        d.operation = { ...base, input: { kind: "put", key: d.key, value: d.value }, outcome: outcome({ revision }) };
        break;
      case "get":
        d.operation = {
          ...base,
          input: { kind: "get", key: d.key },
          outcome: outcome({ value: current?.value, modRevision: current?.modRevision ?? 0, revision }),
        };
        break;
      case "delete": {
        const deleted = d.applied && current !== undefined ? 1 : 0;
        if (deleted === 1) {
          store.delete(d.key);
          revision++;
        }
        d.operation = { ...base, input: { kind: "delete", key: d.key }, outcome: outcome({ deleted, revision }) };
        break;
      }
      case "cas": {
        // The client's expectation: often the current state (so swaps succeed), sometimes a stale one.
        const older = writtenValues.get(d.key) ?? [];
        const expect: CasExpectation = rng.chance(0.5)
          ? { value: rng.chance(0.7) ? current?.value : older.length > 0 ? rng.pick(older) : "never" }
          : { modRevision: rng.chance(0.7) ? (current?.modRevision ?? 0) : rng.int(0, revision) };
        const holds =
          "modRevision" in expect
            ? expect.modRevision === (current?.modRevision ?? 0)
            : expect.value === current?.value;
        const succeeded = d.applied && holds;
        if (succeeded) {
          store.set(d.key, { value: d.value, modRevision: ++revision });
          writtenValues.set(d.key, [...older, d.value]);
        }
        d.operation = {
          ...base,
          input: { kind: "cas", key: d.key, expect, value: d.value },
          outcome: outcome({ succeeded, revision }),
        };
        break;
      }
    }
  }
  return drafts.map((d) => d.operation!);
}

const okOutput = (op: Operation) => (op.outcome.status === "ok" ? op.outcome.output : undefined);

/** Known writes that gave a key a new mod revision: put, delete of one key, successful swap. */
function knownWriteRevision(op: Operation): number | undefined {
  const output = okOutput(op);
  if (output === undefined || op.input.kind === "get") return undefined;
  if ("deleted" in output && output.deleted !== 1) return undefined;
  if ("succeeded" in output && !output.succeeded) return undefined;
  return (output as { revision: number }).revision;
}

/**
 * Stale reads: a get changed to return what an earlier put wrote, although another write to the key with a higher
 * revision had returned before the get was invoked. Never linearizable: the key's mod revision at the get is at least
 * that write's, and revisions are unique (values too, in generated histories).
 */
function staleReadMutations(ops: readonly Operation[], limit: number): Array<{ history: Operation[]; key: string }> {
  const mutations: Array<{ history: Operation[]; key: string }> = [];
  ops.forEach((read, readIndex) => {
    const seen = okOutput(read);
    if (mutations.length >= limit || read.input.kind !== "get" || seen === undefined) return;
    const key = read.input.key;
    const sameKey = ops.filter((op) => op.input.key === key);
    const overwrittenBefore = (m: number) =>
      sameKey.some((w) => w.returnedAt < read.invokedAt && (knownWriteRevision(w) ?? 0) > m);
    const stalePut = sameKey.find(
      (p) =>
        p.input.kind === "put" &&
        knownWriteRevision(p) !== undefined &&
        knownWriteRevision(p) !== (seen as { modRevision: number }).modRevision &&
        overwrittenBefore(knownWriteRevision(p)!),
    );
    if (stalePut === undefined || stalePut.input.kind !== "put") return;
    const history = [...ops];
    history[readIndex] = {
      ...read,
      input: { kind: "get", key },
      outcome: {
        status: "ok",
        output: {
          ...(seen as { revision?: number }),
          value: stalePut.input.value,
          modRevision: knownWriteRevision(stalePut)!,
        },
      },
    };
    mutations.push({ history, key });
  });
  return mutations;
}

/** Reads from the future: a get changed to return what a put invoked after the get returned wrote. */
function futureReadMutations(ops: readonly Operation[], limit: number): Array<{ history: Operation[]; key: string }> {
  const mutations: Array<{ history: Operation[]; key: string }> = [];
  ops.forEach((read, readIndex) => {
    if (mutations.length >= limit || read.input.kind !== "get" || read.outcome.status !== "ok") return;
    const key = read.input.key;
    const laterPut = ops.find(
      (p) =>
        p.input.kind === "put" && p.input.key === key && p.invokedAt > read.returnedAt && okOutput(p) !== undefined,
    );
    if (laterPut === undefined || laterPut.input.kind !== "put") return;
    const history = [...ops];
    // Without a header revision, so that only the order can give it away.
    history[readIndex] = {
      ...read,
      input: { kind: "get", key },
      outcome: { status: "ok", output: { value: laterPut.input.value, modRevision: knownWriteRevision(laterPut)! } },
    };
    mutations.push({ history, key });
  });
  return mutations;
}

describe("linearizability: randomized histories", () => {
  const small: GeneratorConfig = { clients: 6, keys: 3, operations: 150, unknownRate: 0.05, failRate: 0.05 };

  it("accepts histories of a real sequential execution seen through concurrency windows", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const history = generateHistory(seed, small);
      const result = checkHistory(history);
      expect({ seed, failures: result.failures.map((f) => f.explanation) }).toEqual({ seed, failures: [] });
      expect(result.result).toBe("linearizable");
      expect(checkRevisionsMonotonic(history)).toEqual({ ok: true, violations: [] });
    }
  });

  it("rejects the same histories with one read made stale", () => {
    let checked = 0;
    for (let seed = 1; seed <= 20; seed++) {
      for (const { history, key } of staleReadMutations(generateHistory(seed, small), 3)) {
        const result = checkHistory(history);
        expect({ seed, result: result.result }).toEqual({ seed, result: "not-linearizable" });
        expect(result.failures.map((f) => f.key)).toEqual([key]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(30);
  });

  it("rejects the same histories with one read seeing a write invoked after it returned", () => {
    let checked = 0;
    for (let seed = 1; seed <= 20; seed++) {
      for (const { history, key } of futureReadMutations(generateHistory(seed, small), 3)) {
        const result = checkHistory(history);
        expect({ seed, result: result.result }).toEqual({ seed, result: "not-linearizable" });
        expect(result.failures.map((f) => f.key)).toEqual([key]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(30);
  });

  it("rejects a generated history whose recorded revisions go back for a client", () => {
    const history = generateHistory(7, small);
    // Make a late put of client 0 report a revision below one its client saw earlier.
    let index = history.length - 1;
    while (!(history[index]!.clientId === 0 && history[index]!.input.kind === "put" && okOutput(history[index]!)))
      index--;
    const op = history[index]!;
    history[index] = { ...op, outcome: { status: "ok", output: { revision: 1 } } } as Operation;
    const result = checkRevisionsMonotonic(history);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toMatch(new RegExp(`^client 0: #${index} put`));
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// An independent oracle for small histories.

/** A completed operation's output as one bag of optional fields. */
type AnyOutput = Partial<PutOutput & GetOutput & DeleteOutput & CasOutput>;
const outputOf = (op: Operation): AnyOutput | undefined => (op.outcome.status === "ok" ? op.outcome.output : undefined);

/**
 * Brute force, written independently of the checker: tries every order of the operations that respects real time
 * (operations of unknown outcome optional), on a store with a concrete revision counter, trying every revision a
 * write of unknown outcome could have taken.
 */
function linearizableByBruteForce(history: readonly Operation[]): boolean {
  const ops = history.filter(
    (op) => outputOf(op) !== undefined || (op.outcome.status === "unknown" && op.input.kind !== "get"),
  );
  const known = ops.filter((op) => outputOf(op) !== undefined);
  const revisionsSeen = ops.flatMap((op) => {
    const { revision, modRevision } = outputOf(op) ?? {};
    const expected = op.input.kind === "cas" && "modRevision" in op.input.expect ? op.input.expect.modRevision : 0;
    return [revision ?? 0, modRevision ?? 0, expected];
  });
  // Any revision above every one seen behaves alike, but writes of unknown outcome in a row each need a higher one.
  const highestRevision = Math.max(0, ...revisionsSeen) + ops.length + 1;
  type Store = { value: string | undefined; modRevision: number; revision: number };

  const successors = (op: Operation, s: Store): Store[] => {
    const out = outputOf(op);
    const writes = (value: string | undefined, revision: number): Store[] =>
      revision > s.revision ? [{ value, modRevision: value === undefined ? 0 : revision, revision }] : [];
    const writesAtAnyRevision = (value: string | undefined): Store[] => {
      const stores: Store[] = [];
      for (let r = s.revision + 1; r <= highestRevision; r++) stores.push(...writes(value, r));
      return stores;
    };
    const reads = (revision: number | undefined): Store[] =>
      revision === undefined ? [s] : revision >= s.revision ? [{ ...s, revision }] : [];
    switch (op.input.kind) {
      case "put":
        return out === undefined ? writesAtAnyRevision(op.input.value) : writes(op.input.value, out.revision!);
      case "get":
        return out!.value === s.value && out!.modRevision === s.modRevision ? reads(out!.revision) : [];
      case "delete":
        if (out === undefined) return s.value === undefined ? [s] : writesAtAnyRevision(undefined);
        if (out.deleted === 1) return s.value === undefined ? [] : writes(undefined, out.revision!);
        return out.deleted === 0 && s.value === undefined ? reads(out.revision) : [];
      case "cas": {
        const e = op.input.expect;
        const holds = "modRevision" in e ? e.modRevision === s.modRevision : e.value === s.value;
        if (out === undefined) return holds ? writesAtAnyRevision(op.input.value) : [s];
        if (out.succeeded !== holds) return [];
        return holds ? writes(op.input.value, out.revision!) : reads(out.revision);
      }
    }
  };

  const placed = new Set<Operation>();
  const search = (store: Store): boolean => {
    if (known.every((op) => placed.has(op))) return true;
    for (const op of ops) {
      if (placed.has(op)) continue;
      // Every operation that returned before this one was invoked must come first.
      const mustWait = known.some((other) => !placed.has(other) && other.returnedAt < op.invokedAt);
      if (mustWait) continue;
      placed.add(op);
      for (const next of successors(op, store)) if (search(next)) return true;
      placed.delete(op);
    }
    return false;
  };
  return search({ value: undefined, modRevision: 0, revision: 0 });
}

/** A small random history of key "x": random windows and outputs from small domains, so both verdicts occur. */
function smallRandomHistory(rng: Rng, maxOperations: number, unknownWeight: number): Operation[] {
  const ops: Operation[] = [];
  const count = rng.int(3, maxOperations);
  const value = () => rng.pick(["a", "b", "c"]);
  const revision = () => rng.int(1, 6);
  for (let i = 0; i < count; i++) {
    const invokedAt = rng.int(0, 12);
    const returnedAt = invokedAt + rng.int(0, 6);
    const status = rng.weighted([
      [70, "ok"],
      [unknownWeight, "unknown"],
      [8, "failed"],
    ] as const);
    const base = { clientId: i, invokedAt, returnedAt };
    const outcome = <O>(output: O) => (status === "ok" ? { status, output } : { status });
    switch (
      rng.weighted([
        [30, "put"],
        [35, "get"],
        [15, "delete"],
        [20, "cas"],
      ] as const)
    ) {
      case "put":
        ops.push({
          ...base,
          input: { kind: "put", key: "x", value: value() },
          outcome: outcome({ revision: revision() }),
        });
        break;
      case "get": {
        const absent = rng.chance(0.25);
        const r = revision();
        const output = { value: absent ? undefined : value(), modRevision: absent ? 0 : r };
        ops.push({
          ...base,
          input: { kind: "get", key: "x" },
          outcome: outcome(rng.chance(0.5) ? { ...output, revision: Math.max(r, revision()) } : output),
        });
        break;
      }
      case "delete":
        ops.push({
          ...base,
          input: { kind: "delete", key: "x" },
          outcome: outcome({ deleted: rng.int(0, 1), revision: revision() }),
        });
        break;
      case "cas": {
        const expect: CasExpectation = rng.chance(0.5)
          ? { value: rng.chance(0.2) ? undefined : value() }
          : { modRevision: rng.int(0, 6) };
        ops.push({
          ...base,
          input: { kind: "cas", key: "x", expect, value: value() },
          outcome: outcome({ succeeded: rng.chance(0.5), revision: revision() }),
        });
        break;
      }
    }
  }
  return ops;
}

describe("linearizability: agreement with brute force", () => {
  it("gives the verdict of an exhaustive search over all orders on thousands of small random histories", () => {
    const verdicts = { linearizable: 0, "not-linearizable": 0 };
    const disagreements: string[] = [];
    for (let seed = 1; seed <= 3000; seed++) {
      // A third of the histories with many operations of unknown outcome, where the pruning rules matter most.
      const history = smallRandomHistory(new Rng(seed), seed % 3 === 0 ? 8 : 7, seed % 3 === 0 ? 50 : 22);
      const expected = linearizableByBruteForce(history) ? "linearizable" : "not-linearizable";
      const result = checkHistory(history).result;
      if (result !== expected)
        disagreements.push(`seed ${seed}: ${result}, expected ${expected}: ${JSON.stringify(history)}`);
      verdicts[expected]++;
    }
    expect(disagreements).toEqual([]);
    // Both verdicts are well represented, or the comparison would prove little.
    expect(verdicts.linearizable).toBeGreaterThan(300);
    expect(verdicts["not-linearizable"]).toBeGreaterThan(300);
  });
});

describe("linearizability: performance sanity", () => {
  it("checks 5,000 operations over 10 keys from 20 clients, with timeouts and refusals", () => {
    const history = generateHistory(2024, {
      clients: 20,
      keys: 10,
      operations: 5_000,
      unknownRate: 0.02,
      failRate: 0.02,
    });
    const result = checkHistory(history);
    expect(result.failures.map((f) => f.explanation)).toEqual([]);
    expect(result.result).toBe("linearizable");
    expect(result.keys).toBe(10);
  });

  it("checks 3,000 operations on one key from 20 clients, and finds a stale read among them", () => {
    const history = generateHistory(99, { clients: 20, keys: 1, operations: 3_000, unknownRate: 0.01, failRate: 0.02 });
    expect(checkHistory(history).result).toBe("linearizable");
    const [mutation] = staleReadMutations(history.slice().reverse(), 1);
    expect(checkHistory(mutation!.history).result).toBe("not-linearizable");
  });
});

describe("history recorder", () => {
  it("records invocations and outcomes with the given monotonic clock", () => {
    let now = 100;
    const recorder = new HistoryRecorder(() => now);
    const write = recorder.invoke(1, { kind: "put", key: "x", value: "a" });
    now = 101;
    const read = recorder.invoke(2, { kind: "get", key: "x" });
    now = 102;
    write.ok({ revision: 2 });
    now = 103;
    read.ok({ value: "a", modRevision: 2, revision: 2 });
    const swap = recorder.invoke(1, { kind: "cas", key: "x", expect: { value: "a" }, value: "b" });
    now = 104;
    swap.unknown();
    recorder.invoke(2, { kind: "delete", key: "x" }).fail();
    const stillInFlight = recorder.invoke(3, { kind: "put", key: "x", value: "c" });
    now = 110;
    expect(recorder.size).toBe(5);
    expect(recorder.operations()).toEqual([
      put(1, "x", "a", [100, 102], 2),
      get(2, "x", [101, 103], "a", 2, 2),
      timedOut(cas(1, "x", { value: "a" }, "b", [103, 104], true, 0)),
      refused(del(2, "x", [104, 104], 0, 0)),
      // Still in flight when the history is taken: unknown outcome.
      timedOut(put(3, "x", "c", [104, 110], 0)),
    ]);
    expect(checkHistory(recorder.operations()).result).toBe("linearizable");
    stillInFlight.ok({ revision: 3 });
    expect(recorder.operations()[4]!.outcome).toEqual({ status: "ok", output: { revision: 3 } });
  });

  it("refuses a second outcome, and a client with two operations in flight", () => {
    const recorder = new HistoryRecorder(() => 0);
    const pending = recorder.invoke("c", { kind: "get", key: "x" });
    expect(() => recorder.invoke("c", { kind: "get", key: "y" })).toThrow(/still in flight/);
    pending.fail();
    expect(() => pending.ok({ value: undefined, modRevision: 0 })).toThrow(/already resolved/);
  });
});
