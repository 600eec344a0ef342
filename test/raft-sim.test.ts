/**
 * Randomized, deterministic simulation of Raft clusters (see test/raft/sim.ts).
 *
 *   LAB_RAFT_SEED=1234 npx vitest run test/raft-sim.test.ts     replay one seed (with a trace on failure)
 *   LAB_RAFT_SEEDS=100000 npm run sim                            a long run (without the project's global setup)
 *   LAB_RAFT_SEED_START=5000                                    first seed of the range (default 1)
 */
import { describe, expect, test } from "vitest";
import { runSeed, SafetyViolation, type SeedResult, traceSeed } from "./raft/sim.js";

const single = process.env.LAB_RAFT_SEED;
const seedCount = Number(process.env.LAB_RAFT_SEEDS ?? 5000);
const seedStart = Number(process.env.LAB_RAFT_SEED_START ?? 1);
const CHUNK = 250;

function replayCommand(seed: number): string {
  return `LAB_RAFT_SEED=${seed} npx vitest run test/raft-sim.test.ts`;
}

function runOrExplain(seed: number): SeedResult {
  try {
    return runSeed(seed);
  } catch (err) {
    const kind = err instanceof SafetyViolation ? "violation" : "crash";
    throw new Error(
      `raft simulation seed ${seed} failed (${kind}): ${(err as Error).message}\n` +
        `replay: ${replayCommand(seed)}\n--- last trace lines ---\n${traceSeed(seed)}\n${(err as Error).stack ?? ""}`,
    );
  }
}

if (single !== undefined) {
  test(`seed ${single}`, () => {
    const result = runOrExplain(Number(single));
    expect(result.leaderAfter).toBeGreaterThanOrEqual(0);
  });
} else {
  describe(`raft simulation, seeds ${seedStart}..${seedStart + seedCount - 1}`, () => {
    for (let from = seedStart; from < seedStart + seedCount; from += CHUNK) {
      const to = Math.min(from + CHUNK, seedStart + seedCount);
      test(`seeds ${from}..${to - 1}`, { timeout: 600_000 + seedCount * 50 }, () => {
        const totals = {
          elections: 0,
          snapshotsSent: 0,
          crashes: 0,
          confChanges: 0,
          transfers: 0,
          reads: 0,
          applied: 0,
        };
        for (let seed = from; seed < to; seed++) {
          const r = runOrExplain(seed);
          totals.elections += r.stats.elections;
          totals.snapshotsSent += r.stats.snapshotsSent;
          totals.crashes += r.stats.crashes;
          totals.confChanges += r.stats.confChanges;
          totals.transfers += r.stats.transfers;
          totals.reads += r.readsServed;
          totals.applied += r.stats.applied;
        }
        // The faults must actually be exercised, or the run proves little.
        expect(totals.elections).toBeGreaterThan(0);
        expect(totals.snapshotsSent).toBeGreaterThan(0);
        expect(totals.reads).toBeGreaterThan(0);
        if (process.env.LAB_RAFT_VERBOSE) console.log(`seeds ${from}..${to - 1}`, totals);
      });
    }
  });
}
