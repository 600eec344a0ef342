import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type BalancerOptions, LoadBalancer } from "../src/lb/balancer.js";
import { freePort, LAB_CLI, run } from "./helpers/nodes.js";
import { createPki, type TestPki } from "./helpers/pki.js";

/**
 * The load balancer against real HTTPS backends on 127.0.0.1: round-robin over the healthy ones,
 * /readyz failures and refused connections taking a backend out, recovery putting it back, and
 * the `lab lb` command.
 */

const CAP_MS = 20_000;

let pki: TestPki | undefined;
let tlsKey: Buffer;
let tlsCert: Buffer;

/** An HTTPS "API server": /readyz answers 200 (500 when not ready), /who its id, /stream a slow chunked body. */
class TestBackend {
  ready = true;
  port = 0;
  private server: https.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly id: string) {}

  async open(): Promise<void> {
    const server = https.createServer({ key: tlsKey, cert: tlsCert }, (req, res) => {
      if (req.url === "/readyz") {
        res.writeHead(this.ready ? 200 : 500, { "content-type": "text/plain" });
        res.end(this.ready ? "ok" : "[-]etcd failed: not ready\nreadyz check failed");
      } else if (req.url === "/who") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(this.id);
      } else if (req.url?.startsWith("/stream")) {
        const count = Number(new URL(req.url, "https://x").searchParams.get("n") ?? "20");
        res.writeHead(200, { "content-type": "text/plain" });
        let sent = 0;
        const timer = setInterval(() => {
          res.write(`${this.id}:${sent}\n`);
          sent++;
          if (sent >= count) {
            clearInterval(timer);
            res.end();
          }
        }, 50);
        res.on("close", () => clearInterval(timer));
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    server.on("connection", (s: net.Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: this.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts every open connection; open() again brings it back on the same port. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  get isOpen(): boolean {
    return this.server !== undefined;
  }

  get address(): { host: string; port: number } {
    return { host: "127.0.0.1", port: this.port };
  }
}

function get(port: number, pathname: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: pathname, rejectUnauthorized: false, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.setTimeout(CAP_MS, () => req.destroy(new Error(`no answer from ${pathname} in ${CAP_MS}ms`)));
    req.on("error", reject);
  });
}

async function who(port: number): Promise<string> {
  const r = await get(port, "/who");
  expect(r.status).toBe(200);
  return r.body;
}

async function spread(port: number, requests: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < requests; i++) {
    const id = await who(port);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, capMs = CAP_MS): Promise<void> {
  const deadline = Date.now() + capMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function healthOf(lb: LoadBalancer, b: TestBackend): boolean {
  return lb.status().find((s) => s.backend === `127.0.0.1:${b.port}`)?.healthy === true;
}

function statusOf(lb: LoadBalancer, b: TestBackend) {
  const s = lb.status().find((x) => x.backend === `127.0.0.1:${b.port}`);
  if (!s) throw new Error(`no status for backend ${b.id}`);
  return s;
}

/** Resolves when the socket closes; rejects if it is still open after the cap (a hung connection). */
function closedWithin(socket: net.Socket, capMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection was still open after ${capMs}ms`));
    }, capMs);
    socket.on("error", () => {});
    socket.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const backends = [new TestBackend("a"), new TestBackend("b"), new TestBackend("c")];
const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
const balancers: LoadBalancer[] = [];

async function startLb(o: Partial<BalancerOptions> & Pick<BalancerOptions, "backends">): Promise<LoadBalancer> {
  const lb = await LoadBalancer.start({ listenHost: "127.0.0.1", listenPort: 0, healthIntervalMs: 100, ...o });
  balancers.push(lb);
  return lb;
}

async function allHealthy(lb: LoadBalancer): Promise<void> {
  await waitFor("every backend to be healthy", () => lb.status().every((s) => s.healthy));
}

beforeAll(() => {
  // The serving certificate the API servers get: issued by a throwaway CA for 127.0.0.1.
  pki = createPki();
  tlsKey = fs.readFileSync(pki.serverKey);
  tlsCert = fs.readFileSync(pki.serverCert);
});

afterAll(async () => {
  for (const be of backends) await be.close();
  if (pki) fs.rmSync(pki.dir, { recursive: true, force: true });
});

beforeEach(async () => {
  for (const be of backends) {
    be.ready = true;
    if (!be.isOpen) await be.open();
  }
});

afterEach(async () => {
  for (const lb of balancers.splice(0)) await lb.stop();
});

describe("LoadBalancer", () => {
  it("spreads new connections round-robin over the healthy backends, passing TLS through", async () => {
    const lb = await startLb({ backends: backends.map((x) => x.address) });
    await allHealthy(lb);
    const counts = await spread(lb.port, 30);
    for (const be of backends) expect(counts.get(be.id) ?? 0, `requests answered by ${be.id}`).toBeGreaterThan(0);
    expect([...counts.values()].reduce((x, y) => x + y, 0)).toBe(30);
    // The client saw the backends' own certificate, not one of the load balancer's.
    const peerCert = await new Promise<string>((resolve, reject) => {
      const req = https.get(
        { host: "127.0.0.1", port: lb.port, path: "/who", rejectUnauthorized: false, agent: false },
        (res) => {
          const cert = (res.socket as import("node:tls").TLSSocket).getPeerCertificate();
          res.resume();
          res.on("end", () => resolve(String(cert.subject?.CN ?? "")));
        },
      );
      req.on("error", reject);
    });
    expect(peerCert).toBe("kube-apiserver");
    const status = lb.status();
    expect(status.map((s) => s.backend)).toEqual(backends.map((x) => `127.0.0.1:${x.port}`));
    for (const s of status) expect(s.total).toBeGreaterThan(0);
  });

  it("takes a backend whose /readyz fails out of rotation after a check, and puts it back when it passes", async () => {
    const lb = await startLb({ backends: backends.map((x) => x.address) });
    await allHealthy(lb);
    b.ready = false;
    await waitFor("b to be marked unhealthy", () => !healthOf(lb, b));
    expect(statusOf(lb, b).lastError).toContain("HTTP 500");
    const counts = await spread(lb.port, 20);
    expect(counts.get("b") ?? 0).toBe(0);
    expect(counts.get("a") ?? 0).toBeGreaterThan(0);
    expect(counts.get("c") ?? 0).toBeGreaterThan(0);

    b.ready = true;
    await waitFor("b to be healthy again", () => healthOf(lb, b));
    const after = await spread(lb.port, 20);
    expect(after.get("b") ?? 0).toBeGreaterThan(0);
  });

  it("skips a closed backend at once, by its refused connection, before any further check", async () => {
    // One check at start and none after: only the failed connect can tell the balancer.
    const lb = await startLb({ backends: backends.map((x) => x.address), healthIntervalMs: 600_000 });
    await allHealthy(lb);
    await c.close();
    const counts = await spread(lb.port, 12); // every request succeeds: the client never sees the refusal
    expect(counts.get("c") ?? 0).toBe(0);
    expect((counts.get("a") ?? 0) + (counts.get("b") ?? 0)).toBe(12);
    const cs = statusOf(lb, c);
    expect(cs.healthy).toBe(false);
    expect(cs.lastError).toMatch(/connect.*ECONNREFUSED/);
  });

  it("sends traffic to a backend again once it is back and healthy", async () => {
    const lb = await startLb({ backends: backends.map((x) => x.address) });
    await allHealthy(lb);
    await c.close();
    await waitFor("c to be marked unhealthy", () => !healthOf(lb, c));
    expect((await spread(lb.port, 6)).get("c") ?? 0).toBe(0);
    await c.open(); // same port
    await waitFor("c to be healthy again", () => healthOf(lb, c));
    expect((await spread(lb.port, 15)).get("c") ?? 0).toBeGreaterThan(0);
  });

  it("closes the client connection when every backend is down", async () => {
    const lb = await startLb({ backends: backends.map((x) => x.address) });
    await allHealthy(lb);
    for (const be of backends) await be.close();
    // A raw TCP connection is closed, not left hanging.
    const socket = net.connect({ host: "127.0.0.1", port: lb.port });
    await closedWithin(socket, CAP_MS);
    // An HTTPS client gets an error, not a hang.
    await expect(get(lb.port, "/who")).rejects.toThrow();
    for (const s of lb.status()) {
      expect(s.healthy).toBe(false);
      expect(s.lastError).not.toBe("");
    }
    // And never-started backends (nothing listening at all) behave the same.
    const lb2 = await startLb({
      backends: [
        { host: "127.0.0.1", port: await freePort() },
        { host: "127.0.0.1", port: await freePort() },
      ],
    });
    await closedWithin(net.connect({ host: "127.0.0.1", port: lb2.port }), CAP_MS);
  });

  it("keeps a long-lived streamed response flowing", async () => {
    const lb = await startLb({ backends: [a.address] });
    await allHealthy(lb);
    const chunks: string[] = [];
    let activeDuringStream = 0;
    let encoding: string | undefined;
    const n = 40; // 2 s at one chunk per 50 ms
    await new Promise<void>((resolve, reject) => {
      const req = https.get(
        { host: "127.0.0.1", port: lb.port, path: `/stream?n=${n}`, rejectUnauthorized: false, agent: false },
        (res) => {
          encoding = res.headers["transfer-encoding"];
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            chunks.push(d);
            activeDuringStream = Math.max(activeDuringStream, statusOf(lb, a).active);
          });
          res.on("end", resolve);
          res.on("error", reject);
        },
      );
      req.setTimeout(CAP_MS, () => req.destroy(new Error("the stream stalled")));
      req.on("error", reject);
    });
    const lines = chunks.join("").trim().split("\n");
    expect(encoding).toBe("chunked");
    expect(lines).toEqual(Array.from({ length: n }, (_, i) => `a:${i}`));
    expect(activeDuringStream).toBe(1);
    await waitFor("the connection to be counted as closed", () => statusOf(lb, a).active === 0);
  });

  it("passes a half-close through both ways (plain TCP; with no healthy backend it still tries them)", async () => {
    // An echo server that answers "bye" after the client's FIN: the reply must still reach the client.
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on("data", (d) => s.write(d));
      s.on("end", () => s.end("|bye"));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => echo.listen({ host: "127.0.0.1", port: 0 }, r));
    try {
      const port = (echo.address() as net.AddressInfo).port;
      const lb = await startLb({
        backends: [{ host: "127.0.0.1", port }],
        healthTls: false,
        healthIntervalMs: 600_000,
      });
      const received = await new Promise<string>((resolve, reject) => {
        const sock = net.connect({ host: "127.0.0.1", port: lb.port, allowHalfOpen: true }, () => {
          sock.write("hello");
          sock.end();
        });
        let data = "";
        sock.setEncoding("utf8");
        sock.on("data", (d: string) => {
          data += d;
        });
        sock.on("end", () => resolve(data));
        sock.on("error", reject);
        sock.setTimeout(CAP_MS, () => sock.destroy(new Error("no end from the echo server")));
      });
      expect(received).toBe("hello|bye");
    } finally {
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });

  it("stop() ends proxied connections and closes the listener", async () => {
    const lb = await startLb({ backends: [a.address] });
    await allHealthy(lb);
    const port = lb.port;
    const ended = new Promise<string>((resolve) => {
      const req = https.get(
        { host: "127.0.0.1", port, path: "/stream?n=10000", rejectUnauthorized: false, agent: false },
        (res) => {
          res.once("data", () => void lb.stop());
          res.on("error", () => resolve("error"));
          res.on("close", () => resolve("closed"));
          res.on("end", () => resolve("end"));
        },
      );
      req.on("error", () => resolve("error"));
    });
    expect(["error", "closed"]).toContain(await ended);
    await lb.stop();
    await expect(
      new Promise((resolve, reject) => {
        const s = net.connect({ host: "127.0.0.1", port }, () => {
          s.destroy();
          resolve("connected");
        });
        s.on("error", reject);
      }),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe("lab lb", () => {
  let child: ChildProcess | undefined;

  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    child = undefined;
  });

  it("proxies to its backends, logs health changes as JSON lines and stops on SIGTERM with 0", async () => {
    const proc = spawn(
      process.execPath,
      [LAB_CLI, "lb", "--listen", "127.0.0.1:0", "--backend", `127.0.0.1:${a.port}`, "--health-interval", "100ms"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child = proc;
    let stderr = "";
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    const lines = (): Record<string, unknown>[] =>
      stderr
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>);

    await waitFor("the listening log line", () => lines().some((l) => l.msg === "load balancer listening"));
    const listening = lines().find((l) => l.msg === "load balancer listening")!;
    const port = Number(String(listening.address).split(":").pop());
    expect(port).toBeGreaterThan(0);
    expect(listening.backends).toEqual([`127.0.0.1:${a.port}`]);

    await waitFor("the backend to be reported healthy", () =>
      lines().some((l) => l.msg === "backend is healthy" && l.backend === `127.0.0.1:${a.port}`),
    );
    expect(await who(port)).toBe("a");
    expect(await who(port)).toBe("a");

    a.ready = false;
    await waitFor("the backend to be reported unhealthy", () =>
      lines().some((l) => l.msg === "backend is unhealthy" && String(l.error).includes("HTTP 500")),
    );
    for (const l of lines()) {
      expect(l.component).toBe("lb");
      expect(typeof l.ts).toBe("string");
      expect(["debug", "info", "warn", "error"]).toContain(l.level);
    }

    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(lines().some((l) => l.msg === "received signal; shutting down" && l.signal === "SIGTERM")).toBe(true);
  });

  it("refuses bad arguments with exit code 2, saying what to write", async () => {
    const lab = (args: string[]) => run(process.execPath, [LAB_CLI, ...args], { timeoutMs: 15_000 });

    const noBackend = await lab(["lb", "--listen", "127.0.0.1:6443"]);
    expect(noBackend.code).toBe(2);
    expect(noBackend.stderr).toContain("--backend");
    expect(noBackend.stderr).toMatch(/e\.g\. --backend \S+:\d+/);

    const nothing = await lab(["lb"]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/--listen is required.*e\.g\. --listen 127\.0\.0\.1:6443/);

    const badListen = await lab(["lb", "--listen", "nonsense", "--backend", "127.0.0.1:6443"]);
    expect(badListen.code).toBe(2);
    expect(badListen.stderr).toContain('--listen "nonsense"');
    expect(badListen.stderr).toContain("HOST:PORT");

    const badPort = await lab(["lb", "--listen", "127.0.0.1:6443", "--backend", "10.0.0.2:99999"]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain("out of range");

    const badInterval = await lab([
      "lb",
      "--listen",
      "127.0.0.1:6443",
      "--backend",
      "10.0.0.2:6443",
      "--health-interval",
      "5",
    ]);
    expect(badInterval.code).toBe(2);
    expect(badInterval.stderr).toMatch(/--health-interval "5".*e\.g\. --health-interval 1s/);

    const unknown = await lab(["lb", "--frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("lab lb --help");

    const help = await lab(["lb", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--backend HOST:PORT");
    const top = await lab(["--help"]);
    expect(top.stdout).toContain("lab lb [flags]");
  });
});
