import * as path from "node:path";
import { defineConfig } from "vitest/config";

/**
 * The Raft tests are pure (no servers, no build): this config runs them without the project's
 * global setup, e.g. `npx vitest run --config test/raft/vitest.config.ts`.
 */
export default defineConfig({
  test: {
    root: path.resolve(import.meta.dirname, "../.."),
    include: ["test/raft-*.test.ts"],
    testTimeout: 600_000,
  },
});
