import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { type CommandResult, freePort, LAB_CLI, run, sleep, tempDir } from "./nodes.js";

/**
 * Test helpers for the API server: start `lab apiserver` (the built CLI, as users run it) over a
 * store, talk HTTP to it, and run the real kubectl binaries against it.
 */

export interface RunningApiServer {
  readonly pid: number;
  readonly port: number;
  /** http://127.0.0.1:PORT (plain HTTP) or https://127.0.0.1:PORT. */
  readonly url: string;
  readonly process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export interface ApiServerOptions {
  /** host:port of the store members. */
  readonly etcd: readonly string[];
  readonly extraArgs?: readonly string[];
  /** Serve HTTPS with these flags instead of plain HTTP (the caller passes the TLS flags). */
  readonly secure?: boolean;
  /** The store URLs' scheme (https needs the --etcd-* TLS flags in extraArgs). */
  readonly scheme?: "http" | "https";
  /** Skip waiting for /readyz (for tests of startup failures). */
  readonly noWait?: boolean;
}

export async function startApiServer(options: ApiServerOptions): Promise<RunningApiServer> {
  const port = await freePort();
  const args = [
    LAB_CLI,
    "apiserver",
    `--etcd-servers=${options.etcd.map((e) => `${options.scheme ?? "http"}://${e}`).join(",")}`,
    ...(options.secure
      ? [`--secure-port=${port}`, "--bind-address=127.0.0.1"]
      : ["--secure-port=0", `--insecure-port=${port}`]),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `${options.secure ? "https" : "http"}://127.0.0.1:${port}`;
  const server: RunningApiServer = {
    pid: child.pid as number,
    port,
    url,
    process: child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  if (options.noWait) return server;
  const deadline = Date.now() + 30_000;
  let last = "";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`lab apiserver exited with ${child.exitCode}:\n${out}`);
    try {
      const ready = options.secure ? await httpsReadyz(port) : await fetch(`${url}/readyz`).then((r) => r.status);
      if (ready === 200) return server;
      last = `readyz ${ready}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(50);
  }
  await server.kill();
  throw new Error(`lab apiserver did not become ready (last: ${last}):\n${out}`);
}

/** GET /readyz over TLS without verifying the server (a readiness poll only). */
function httpsReadyz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, path: "/readyz", rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
  });
}

export interface HttpResult {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  readonly json: any;
}

/** One HTTP request; the body is JSON-encoded unless it is a string. */
export async function request(
  url: string,
  method: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" || Buffer.isBuffer(body) ? (body as string) : JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] ??= "application/json";
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A streaming watch: events as they arrive. */
export class WatchClient {
  readonly events: { type: string; object: Record<string, unknown> & { metadata?: Record<string, unknown> } }[] = [];
  private readonly controller = new AbortController();
  private waiters: (() => void)[] = [];
  ended = false;
  status = 0;

  static async open(url: string, headers: Record<string, string> = {}): Promise<WatchClient> {
    const w = new WatchClient();
    const res = await fetch(url, { signal: w.controller.signal, headers });
    w.status = res.status;
    if (!res.ok || !res.body) {
      w.ended = true;
      return w;
    }
    void w.pump(res.body);
    return w;
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl = buffer.indexOf("\n");
        while (nl >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) this.events.push(JSON.parse(line));
          nl = buffer.indexOf("\n");
        }
        this.wake();
      }
    } catch {
      // aborted
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `done(events)` holds; fails after `timeoutMs` with what arrived. */
  async until(done: (events: WatchClient["events"]) => boolean, timeoutMs = 20_000): Promise<WatchClient["events"]> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.events)) {
      if (this.ended) throw new Error(`watch ended; events: ${JSON.stringify(this.events.map((e) => e.type))}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `watch condition not met in ${timeoutMs} ms; events: ${JSON.stringify(this.events.map((e) => [e.type, e.object.metadata?.name]))}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 500));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.events;
  }

  close(): void {
    this.controller.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// kubectl

/** The directory of the kubectl that `kubectl` links to, where kubectl.1.27 … kubectl.1.33 sit. */
export function kubectlDir(): string {
  let bin: string;
  try {
    bin = execFileSync("sh", ["-c", 'readlink -f "$(command -v kubectl)"'], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("kubectl is not installed: the API server tests need kubectl.1.27 and kubectl.1.33 beside it");
  }
  if (!bin)
    throw new Error("kubectl is not on PATH: the API server tests need kubectl.1.27 and kubectl.1.33 beside it");
  return path.dirname(bin);
}

/** The versioned kubectl binary; throws (never skips) when it is missing. */
export function kubectlBinary(version: string): string {
  const p = path.join(kubectlDir(), `kubectl.${version}`);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: the API server tests need kubectl ${version}`);
  return p;
}

export class Kubectl {
  private readonly home = tempDir("kubectl-home");

  constructor(
    readonly version: string,
    readonly server: string,
    private readonly extraArgs: readonly string[] = [],
  ) {
    fs.writeFileSync(path.join(this.home, "config"), "apiVersion: v1\nkind: Config\n");
  }

  run(args: readonly string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<CommandResult> {
    return run(kubectlBinary(this.version), [`--server=${this.server}`, ...this.extraArgs, ...args], {
      timeoutMs: 60_000,
      ...(options.input !== undefined ? { input: options.input } : {}),
      env: {
        HOME: this.home,
        KUBECONFIG: path.join(this.home, "config"),
        KUBECACHEDIR: path.join(this.home, "cache"),
        ...options.env,
      },
    });
  }

  /** Runs and expects success; returns stdout. */
  async ok(args: readonly string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<string> {
    const r = await this.run(args, options);
    if (r.code !== 0)
      throw new Error(`kubectl ${this.version} ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Runs and expects failure; returns stderr. */
  async fails(args: readonly string[], options: { input?: string } = {}): Promise<string> {
    const r = await this.run(args, options);
    if (r.code === 0)
      throw new Error(`kubectl ${this.version} ${args.join(" ")} succeeded, expected failure:\n${r.stdout}`);
    return r.stderr;
  }

  /** Starts `kubectl ... -w` in the background; returns a handle to read its output and stop it. */
  watch(args: readonly string[]): {
    output: () => string;
    stop: () => Promise<void>;
    waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
  } {
    const child = spawn(kubectlBinary(this.version), [`--server=${this.server}`, ...this.extraArgs, ...args], {
      env: {
        ...process.env,
        HOME: this.home,
        KUBECONFIG: path.join(this.home, "config"),
        KUBECACHEDIR: path.join(this.home, "cache"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    return {
      output: () => out,
      stop: async () => {
        if (child.exitCode === null) child.kill("SIGTERM");
        await exited;
      },
      waitFor: async (re, timeoutMs = 20_000) => {
        const deadline = Date.now() + timeoutMs;
        while (!re.test(out)) {
          if (Date.now() > deadline) throw new Error(`kubectl watch output never matched ${re}:\n${out}`);
          if (child.exitCode !== null) throw new Error(`kubectl watch exited:\n${out}`);
          await sleep(50);
        }
      },
    };
  }
}
