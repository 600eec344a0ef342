import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Integration tests run the built CLI, as users do. Build it once if it is missing or older than
 * the sources, so `npx vitest run` alone works too.
 */
export default function setup(): void {
  const root = path.resolve(import.meta.dirname, "../..");
  const cli = path.join(root, "dist/src/cli/main.js");
  if (!fs.existsSync(cli) || newestSource(path.join(root, "src")) > fs.statSync(cli).mtimeMs) {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  }
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}
