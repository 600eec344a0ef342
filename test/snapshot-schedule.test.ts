import { describe, expect, it } from "vitest";
import { snapshotDue, snapshotPhase } from "../src/etcd/server/snapshot-schedule.js";

/** The applied indexes (one entry at a time, up to `until`) at which a member snapshots. */
function snapshotsOf(count: number, member: bigint, voters: bigint[], until: number): number[] {
  const taken: number[] = [];
  let last = 0;
  for (let applied = 1; applied <= until; applied++) {
    if (snapshotDue(applied, last, count, member, voters)) {
      taken.push(applied);
      last = applied;
    }
  }
  return taken;
}

describe("when a member snapshots", () => {
  const voters = [0x9n, 0x2n, 0x5n]; // sorted by ID: 2, 5, 9

  it("takes turns among voters, each a quarter of the count over the voters after the one before", () => {
    expect(snapshotsOf(40, 0x2n, voters, 130)).toEqual([40, 80, 120]);
    expect(snapshotsOf(40, 0x5n, voters, 130)).toEqual([43, 83, 123]);
    expect(snapshotsOf(40, 0x9n, voters, 130)).toEqual([46, 86, 126]);
    expect(snapshotPhase(100_000, 0x9n, voters)).toBe(16_666);
  });

  it("snapshots as etcd does when alone, as a learner, or with a count too small to spread", () => {
    expect(snapshotsOf(40, 0x7n, [0x7n], 130)).toEqual([40, 80, 120]);
    expect(snapshotsOf(40, 0x7n, voters, 130)).toEqual([40, 80, 120]);
    expect(snapshotsOf(5, 0x9n, voters, 16)).toEqual([5, 10, 15]);
  });

  it("after a snapshot taken out of turn (one installed from the leader), waits for its window", () => {
    // Installed at 55: not at 95 (a whole count later, but outside [83, 86) + 40k), at 123.
    expect(snapshotDue(94, 55, 40, 0x5n, voters)).toBe(false);
    expect(snapshotDue(95, 55, 40, 0x5n, voters)).toBe(false);
    expect(snapshotDue(122, 55, 40, 0x5n, voters)).toBe(false);
    expect(snapshotDue(123, 55, 40, 0x5n, voters)).toBe(true);
    expect(snapshotDue(125, 55, 40, 0x5n, voters)).toBe(true);
    expect(snapshotDue(126, 55, 40, 0x5n, voters)).toBe(false);
  });

  it("never waits more than twice the count, when applied entries jump over its window", () => {
    expect(snapshotDue(107, 43, 40, 0x5n, voters)).toBe(false);
    expect(snapshotDue(122, 43, 40, 0x5n, voters)).toBe(false);
    expect(snapshotDue(127, 43, 40, 0x5n, voters)).toBe(true);
    // Jumps of 7 entries from 43 land on 85 (in [83, 86)); jumps of 13 miss both windows and
    // snapshot at 134, the first index two counts on.
    const steps = (from: number, by: number): number | undefined => {
      for (let applied = from + by; applied < from + 200; applied += by)
        if (snapshotDue(applied, from, 40, 0x5n, voters)) return applied;
      return undefined;
    };
    expect(steps(43, 7)).toBe(85);
    expect(steps(43, 13)).toBe(134);
  });
});
