import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The package's root directory (where package.json, topologies/ and templates/ are), found from
 * this module's location, so the same code works from src/ (tests) and dist/src/ (the CLI).
 */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "lab") return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("cannot find the lab package's root directory (package.json)");
    dir = parent;
  }
}
