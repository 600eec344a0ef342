/**
 * Lab lifecycle timings: time from `lab up TOPOLOGY` to ready (the store has a leader, every API
 * server's /readyz and the endpoint answer), time for `lab down`, and the memory of the whole
 * running lab (every host supervisor and component process; on Docker, every process in the lab's
 * containers) three ways: the plain sum of RSS, the resident pages with shared code counted once,
 * and the host's MemAvailable drop per lab with several labs side by side. Process runtime always;
 * Docker when an engine answers: one cold round (the node image removed first, so it is built)
 * and warm rounds.
 *
 *   npm run bench:lab                      # 5 rounds of stacked-ha per runtime, one of each other topology
 *   LAB_BENCH_ROUNDS=2 npm run bench:lab   # a quick run
 *   LAB_BENCH_SIDE_BY_SIDE=10 npm run bench:lab   # labs side by side for the host-memory figure (5)
 *
 * Runs the built CLI with a private LAB_HOME in a temp dir. Not a test: nothing here asserts a speed.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LAB_CLI, median, removeDir, tempDir } from "./common.js";

type Runtime = "process" | "docker";

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

function rssKb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Every process on the machine with its parent. */
function processTable(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone
    }
  }
  return parents;
}

/**
 * The lab's resident memory counted as the host pays for it: every process's private (anonymous)
 * pages, plus each file-backed region (the Node.js binary and its libraries, mapped by every
 * process of the lab) once, by device, inode and offset. A plain sum of RSS counts that shared
 * code once per process (11 times in stacked-ha).
 */
function residentOnceKb(pids: Iterable<number>): number {
  let anonymous = 0;
  const fileRegions = new Map<string, number>();
  for (const pid of pids) {
    let smaps: string;
    try {
      smaps = fs.readFileSync(`/proc/${pid}/smaps`, "utf8");
    } catch {
      continue; // gone
    }
    let key: string | undefined;
    for (const row of smaps.split("\n")) {
      const header = /^[0-9a-f]+-[0-9a-f]+ \S+ ([0-9a-f]+) (\S+) (\d+)/.exec(row);
      if (header) {
        // By inode, offset and path, not device: each container's overlay mount has its own
        // device number, yet maps the very same image file (and page cache) underneath.
        key = header[3] === "0" ? undefined : `${header[3]}:${header[1]}:${row.slice(header[0].length).trim()}`;
        continue;
      }
      const rss = /^Rss:\s+(\d+) kB/.exec(row);
      if (!rss) continue;
      const kb = Number(rss[1]);
      if (key === undefined) anonymous += kb;
      else fileRegions.set(key, Math.max(fileRegions.get(key) ?? 0, kb));
    }
  }
  let files = 0;
  for (const kb of fileRegions.values()) files += kb;
  return anonymous + files;
}

/** Sum of RSS over the lab's processes: by its directory (process runtime) or its containers' process trees. */
function labRssBytes(name: string, runtime: Runtime): { bytes: number; onceBytes: number; processes: number } {
  const pids = new Set<number>();
  if (runtime === "process") {
    const dir = path.join(home, "labs", name);
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // By command line (supervisors, members, API servers) or by the mark every host process
        // carries in its environment (the load balancer's command line names no lab path).
        if (
          fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir) ||
          fs.readFileSync(`/proc/${entry}/environ`, "utf8").includes(`LAB_HOST_ROOT=${dir}/`)
        )
          pids.add(Number(entry));
      } catch {
        // gone
      }
    }
  } else {
    const ids = spawnSync("docker", ["ps", "-q", "--filter", `label=lab.dev/lab=${name}`], { encoding: "utf8" })
      .stdout.split("\n")
      .filter(Boolean);
    const roots = ids.map((id) =>
      Number(spawnSync("docker", ["inspect", "-f", "{{.State.Pid}}", id], { encoding: "utf8" }).stdout.trim()),
    );
    const parents = processTable();
    for (const r of roots) pids.add(r);
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, ppid] of parents)
        if (!pids.has(pid) && pids.has(ppid)) {
          pids.add(pid);
          grew = true;
        }
    }
  }
  let kb = 0;
  for (const pid of pids) kb += rssKb(pid);
  return { bytes: kb * 1024, onceBytes: residentOnceKb(pids) * 1024, processes: pids.size };
}

interface Round {
  upMs: number;
  downMs: number;
  rssMb: number;
  onceMb: number;
  processes: number;
}

function round(topology: string, runtime: Runtime): Round {
  const name = `bench-${topology}`;
  const up = lab(["up", topology, "--name", name, "--runtime", runtime]);
  // Let the lab settle (first compaction timers, JIT) before measuring memory.
  spawnSync("sleep", ["2"]);
  const rss = labRssBytes(name, runtime);
  const down = lab(["down", "--name", name]);
  return {
    upMs: up.ms,
    downMs: down.ms,
    rssMb: rss.bytes / 1024 / 1024,
    onceMb: rss.onceBytes / 1024 / 1024,
    processes: rss.processes,
  };
}

function dockerAnswers(): boolean {
  return spawnSync("docker", ["info"], { stdio: "ignore" }).status === 0;
}

function line(label: string, rounds: Round[]): string {
  const n = rounds.length;
  return `| ${label}${n > 1 ? ` (median of ${n})` : ""} | ${(median(rounds.map((r) => r.upMs)) / 1000).toFixed(2)} s | ${(median(rounds.map((r) => r.downMs)) / 1000).toFixed(2)} s | ${median(rounds.map((r) => r.rssMb)).toFixed(0)} MB (${rounds[0]?.processes} processes) | ${median(rounds.map((r) => r.onceMb)).toFixed(0)} MB |`;
}

const SIDE_BY_SIDE = Number(process.env.LAB_BENCH_SIDE_BY_SIDE ?? 5);
const hostCost: string[] = [];

function memAvailableKb(): number {
  return Number(/MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
}

/**
 * What a workshop host pays per lab: MemAvailable before and after starting several stacked-ha
 * labs side by side (settled for a few seconds), divided by their number. Page cache the labs
 * write (logs, data) counts too.
 */
function sideBySide(runtime: Runtime): number {
  spawnSync("sync");
  const before = memAvailableKb();
  const names: string[] = [];
  try {
    for (let i = 0; i < SIDE_BY_SIDE; i++) {
      const name = `bench-side-${i}`;
      lab(["up", "stacked-ha", "--name", name, "--runtime", runtime]);
      names.push(name);
    }
    spawnSync("sleep", ["3"]);
    return (before - memAvailableKb()) / 1024 / SIDE_BY_SIDE;
  } finally {
    for (const n of names) lab(["down", "--name", n]);
  }
}

function main(): void {
  console.log(`machine: ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? "?"}), node ${process.version}`);
  const rows: string[] = [];
  const runtimes: Runtime[] = dockerAnswers() ? ["process", "docker"] : ["process"];
  if (runtimes.length === 1) console.log("no Docker Engine answers: process runtime only");
  try {
    for (const runtime of runtimes) {
      if (runtime === "docker") {
        // Cold: no node image yet, so up builds it.
        const images = spawnSync("docker", ["images", "-q", "--filter", "label=lab.dev/image=node"], {
          encoding: "utf8",
        })
          .stdout.split("\n")
          .filter(Boolean);
        if (images.length > 0) spawnSync("docker", ["rmi", "-f", ...images], { stdio: "ignore" });
        rows.push(line("docker: stacked-ha, cold (image build)", [round("stacked-ha", runtime)]));
      }
      const warm: Round[] = [];
      for (let i = 0; i < ROUNDS; i++) warm.push(round("stacked-ha", runtime));
      rows.push(line(`${runtime}: stacked-ha${runtime === "docker" ? ", warm" : ""}`, warm));
      for (const t of ["stacked-single", "external-single", "external-ha"])
        rows.push(line(`${runtime}: ${t}`, [round(t, runtime)]));
      hostCost.push(`| ${runtime} | ${sideBySide(runtime).toFixed(0)} MB |`);
    }
  } finally {
    for (const n of fs.existsSync(path.join(home, "labs")) ? fs.readdirSync(path.join(home, "labs")) : [])
      spawnSync(process.execPath, [LAB_CLI, "down", "--name", n], { env });
    removeDir(home);
  }
  console.log(
    "\n| runtime: topology | lab up → ready | lab down | RSS of the running lab (sum) | resident, shared code once |\n|---|---|---|---|---|",
  );
  for (const r of rows) console.log(r);
  console.log(
    `\n| runtime | host memory per stacked-ha lab, ${SIDE_BY_SIDE} side by side (MemAvailable drop / ${SIDE_BY_SIDE}) |\n|---|---|`,
  );
  for (const r of hostCost) console.log(r);
}

main();
