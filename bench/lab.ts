/**
 * Lab lifecycle timings on the process runtime: time from `lab up TOPOLOGY` to ready (the store
 * has a leader, every API server's /readyz and the load balancer answer), time for `lab down`,
 * and the memory (RSS) of the whole running lab: every host supervisor and component process.
 *
 *   npm run bench:lab                      # 5 rounds of stacked-ha, plus one round of each topology
 *   LAB_BENCH_ROUNDS=2 npm run bench:lab   # a quick run
 *
 * Runs the built CLI with a private LAB_HOME in a temp dir. Not a test: nothing here asserts a speed.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LAB_CLI, median, removeDir, tempDir } from "./common.js";

const ROUNDS = Number(process.env.LAB_BENCH_ROUNDS ?? 5);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error(`LAB_BENCH_ROUNDS must be a whole number >= 1, not ${ROUNDS}`);
const home = tempDir("lab-bench-home");
const env = { ...process.env, LAB_HOME: home };

function lab(args: string[]): { ms: number; stdout: string } {
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [LAB_CLI, ...args], { env, encoding: "utf8", timeout: 180_000 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`lab ${args.join(" ")} failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
  return { ms, stdout: r.stdout };
}

/** Sum of RSS over every process whose command line mentions the lab's directory. */
function labRssBytes(name: string): { bytes: number; processes: number } {
  const dir = path.join(home, "labs", name);
  let bytes = 0;
  let processes = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir)) continue;
      const status = fs.readFileSync(`/proc/${entry}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
      bytes += kb * 1024;
      processes++;
    } catch {
      // gone
    }
  }
  return { bytes, processes };
}

interface Round {
  upMs: number;
  downMs: number;
  rssMb: number;
  processes: number;
}

function round(topology: string): Round {
  const name = `bench-${topology}`;
  const up = lab(["up", topology, "--name", name]);
  // Let the lab settle (first compaction timers, JIT) before measuring memory.
  spawnSync("sleep", ["2"]);
  const rss = labRssBytes(name);
  const down = lab(["down", "--name", name]);
  return { upMs: up.ms, downMs: down.ms, rssMb: rss.bytes / 1024 / 1024, processes: rss.processes };
}

function main(): void {
  console.log(
    `machine: ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? "?"}), node ${process.version}; process runtime`,
  );
  const rows: string[] = [];
  try {
    const ha: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) ha.push(round("stacked-ha"));
    rows.push(
      `| stacked-ha (median of ${ROUNDS}) | ${(median(ha.map((r) => r.upMs)) / 1000).toFixed(2)} s | ${(median(ha.map((r) => r.downMs)) / 1000).toFixed(2)} s | ${median(ha.map((r) => r.rssMb)).toFixed(0)} MB (${ha[0]?.processes} processes) |`,
    );
    for (const t of ["stacked-single", "external-single", "external-ha"]) {
      const r = round(t);
      rows.push(
        `| ${t} | ${(r.upMs / 1000).toFixed(2)} s | ${(r.downMs / 1000).toFixed(2)} s | ${r.rssMb.toFixed(0)} MB (${r.processes} processes) |`,
      );
    }
  } finally {
    for (const n of fs.existsSync(path.join(home, "labs")) ? fs.readdirSync(path.join(home, "labs")) : [])
      spawnSync(process.execPath, [LAB_CLI, "down", "--name", n], { env });
    removeDir(home);
  }
  console.log("\n| topology | lab up → ready | lab down | RSS of the running lab |\n|---|---|---|---|");
  for (const r of rows) console.log(r);
}

main();
