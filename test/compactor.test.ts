import { describe, expect, it } from "vitest";
import { AutoCompactor } from "../src/etcd/server/compactor.js";

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe("auto compaction", () => {
  it("is off for a zero retention", () => {
    const c = clock();
    expect(new AutoCompactor("periodic", { ms: 0 }, c.now).enabled).toBe(false);
    expect(new AutoCompactor("revision", { revisions: 0 }, c.now).enabled).toBe(false);
  });

  it("periodic: every period, compacts to the revision current one retention ago", () => {
    const c = clock();
    const compactor = new AutoCompactor("periodic", { ms: 10_000 }, c.now);
    expect(compactor.intervalMs).toBe(1000);
    const decisions: (number | undefined)[] = [];
    // One write per second: the revision is 100 + seconds elapsed.
    for (let s = 1; s <= 25; s++) {
      c.advance(1000);
      decisions.push(compactor.tick(100 + s, 0));
    }
    // Nothing before one period; at 10 s, the revision of 10 s ago is not known yet (first sample
    // is at 1 s); at 11 s it is the sample from 1 s; then again one period later.
    const fired = decisions.map((d, i) => [i + 1, d]).filter(([, d]) => d !== undefined);
    expect(fired).toEqual([
      [11, 101],
      [21, 111],
    ]);
  });

  it("periodic: caps the period at one hour for long retentions", () => {
    const c = clock();
    const compactor = new AutoCompactor("periodic", { ms: 24 * 3600_000 }, c.now);
    expect(compactor.intervalMs).toBe(360_000);
  });

  it("periodic: never goes backwards or repeats a compaction", () => {
    const c = clock();
    const compactor = new AutoCompactor("periodic", { ms: 2000 }, c.now);
    let fired = 0;
    for (let s = 1; s <= 20; s++) {
      c.advance(500);
      if (compactor.tick(50, 50) !== undefined) fired++; // nothing written since the last compaction
    }
    expect(fired).toBe(0);
  });

  it("revision: keeps the last N revisions, every five minutes", () => {
    const c = clock();
    const compactor = new AutoCompactor("revision", { revisions: 1000 }, c.now);
    expect(compactor.intervalMs).toBe(5 * 60_000);
    expect(compactor.tick(800, 0)).toBeUndefined();
    expect(compactor.tick(5000, 0)).toBe(4000);
    expect(compactor.tick(5000, 4000)).toBeUndefined();
  });
});
