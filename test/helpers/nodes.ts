import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { memberArgs } from "../../src/etcd/member-args.js";
import { memberProcessArgs } from "../../src/etcd/node-flags.js";
import { freeLoopbackPort } from "../../src/util/ports.js";

/**
 * Test helpers: start our `lab etcd` (the built CLI, exactly as users run it) or the real etcd
 * 3.4 on free loopback ports, and run the real etcdctl against either.
 */

export const LAB_CLI = path.resolve(import.meta.dirname, "../../dist/src/cli/main.js");
export const REAL_ETCD = "/usr/bin/etcd";
export const ETCDCTL = "/usr/bin/etcdctl";

/** Ports this process handed out: the kernel may offer a released port again at once. */
const handedOutPorts = new Set<number>();

/** A loopback port nothing listens on now, and not one this process handed out before. */
export const freePort = (): Promise<number> => freeLoopbackPort(handedOutPorts);

/**
 * A fresh temporary directory. Its name carries the test run's tag (set by the global setup), so
 * the global teardown removes every directory of the run, whatever the test did with it.
 */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lab-test-${process.env.LAB_TEST_RUN ?? "adhoc"}-${prefix}-`));
}

export interface NodeOptions {
  readonly name?: string;
  /** Reuse a data directory (restart); a fresh temporary one otherwise. */
  readonly dataDir?: string;
  /** Reuse ports (restart); free ones otherwise. */
  readonly clientPort?: number;
  readonly peerPort?: number;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export interface RunningNode {
  readonly kind: "lab" | "etcd";
  readonly name: string;
  readonly pid: number;
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  readonly process: ChildProcess;
  /** Everything the process printed on stdout and stderr so far. */
  output(): string;
  /** SIGTERM, and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL, and wait for exit. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

async function startNode(kind: "lab" | "etcd", options: NodeOptions): Promise<RunningNode> {
  const name = options.name ?? "m1";
  const dataDir = options.dataDir ?? path.join(tempDir(kind), `${name}.etcd`);
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = options.peerPort ?? (await freePort());
  const args = [...memberArgs({ name, dataDir, clientPort, peerPort }), ...(options.extraArgs ?? [])];
  const env = { ...process.env, ...options.env };
  for (const k of Object.keys(env)) if (k.startsWith("ETCD_") && !options.env?.[k]) delete env[k];
  const child =
    kind === "lab"
      ? spawn(process.execPath, memberProcessArgs(LAB_CLI, args), {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        })
      : spawn(REAL_ETCD, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const node: RunningNode = {
    kind,
    name,
    pid: child.pid as number,
    endpoint: `127.0.0.1:${clientPort}`,
    clientPort,
    peerPort,
    dataDir,
    process: child,
    output: () => out,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  try {
    await waitHealthy(node, 20_000);
  } catch (err) {
    await node.kill();
    throw new Error(`${kind} member did not become healthy: ${(err as Error).message}\n--- output ---\n${out}`);
  }
  return node;
}

export function startLab(options: NodeOptions = {}): Promise<RunningNode> {
  return startNode("lab", options);
}

export function startRealEtcd(options: NodeOptions = {}): Promise<RunningNode> {
  return startNode("etcd", options);
}

/** Polls GET /health on the client port (both etcd and ours serve it there). */
export async function waitHealthy(node: RunningNode, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (node.process.exitCode !== null) throw new Error(`exited with code ${node.process.exitCode}`);
    try {
      const body = await httpGet(node.clientPort, "/health");
      if (body.includes('"health":"true"')) return;
      last = body;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`not healthy after ${timeoutMs} ms (last: ${last})`);
}

export function httpGet(port: number, pathname: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: pathname, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real etcdctl (API v3) against one or more endpoints. */
export function etcdctl(
  endpoints: string | readonly string[],
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const eps = typeof endpoints === "string" ? endpoints : endpoints.join(",");
  return run(ETCDCTL, ["--endpoints", eps, "--dial-timeout=3s", "--command-timeout=10s", ...args], {
    ...options,
    env: { ETCDCTL_API: "3", ...options.env },
  });
}

export function run(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}
