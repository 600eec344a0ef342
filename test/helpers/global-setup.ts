import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * Integration tests run the built CLI, as users do. Build it once if it is missing or older than
 * the sources, so `npx vitest run` alone works too.
 */
export default function setup(): () => void {
  const root = path.resolve(import.meta.dirname, "../..");
  const cli = path.join(root, "dist/src/cli/main.js");
  if (!fs.existsSync(cli) || newestSource(path.join(root, "src")) > fs.statSync(cli).mtimeMs) {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  }
  // Tags this run's temporary directories (test/helpers/nodes.ts tempDir; the workers inherit the
  // environment), so the teardown below removes them all. LAB_TEST_KEEP_TMP=1 keeps them.
  const run = randomBytes(4).toString("hex");
  process.env.LAB_TEST_RUN = run;
  return () => {
    if (process.env.LAB_TEST_KEEP_TMP === "1") return;
    for (const entry of fs.readdirSync(os.tmpdir())) {
      if (entry.startsWith(`lab-test-${run}-`))
        fs.rmSync(path.join(os.tmpdir(), entry), { recursive: true, force: true });
    }
  };
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}
