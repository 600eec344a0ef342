/**
 * Golden transcripts of tricky Raft scenarios (see test/raft/interaction.ts for the command
 * language). Each file in test/raft/testdata runs in a fresh environment and must reproduce its
 * expected outputs exactly.
 *
 *   npx vitest run --config test/raft/vitest.config.ts test/raft-interaction.test.ts
 *   LAB_RAFT_REWRITE=1 npx vitest run --config test/raft/vitest.config.ts test/raft-interaction.test.ts
 *
 * The second form rewrites the expected outputs with what the code does now: review the diff
 * (git diff test/raft/testdata) before committing it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { expect, test } from "vitest";
import { runTranscript } from "./raft/interaction.js";

const dir = path.join(import.meta.dirname, "raft", "testdata");
const rewrite = process.env.LAB_RAFT_REWRITE === "1";
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith(".txt"))
  .sort();

test("there are transcripts", () => {
  expect(files.length).toBeGreaterThan(0);
});

for (const file of files) {
  test(file, () => {
    const p = path.join(dir, file);
    const expected = fs.readFileSync(p, "utf8");
    const actual = runTranscript(expected);
    if (rewrite) {
      if (actual !== expected) fs.writeFileSync(p, actual);
      return;
    }
    expect(actual, `${file}: rerun with LAB_RAFT_REWRITE=1 to update it, then review the diff`).toBe(expected);
  });
}
