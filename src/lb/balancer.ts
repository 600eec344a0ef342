import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { type Logger, silentLogger } from "../util/logger.js";

/**
 * The lab's load balancer: a TCP proxy in front of several Kubernetes API servers, as kind's HA
 * load balancer is. It proxies bytes, not HTTP, so TLS passes through untouched and clients see
 * (and verify) the API servers' own certificates. Each backend's `/readyz` is polled; new
 * connections go round-robin to the backends that answered 200 last time.
 */

export interface Backend {
  host: string;
  port: number;
}

export interface BalancerOptions {
  listenHost: string;
  /** 0 picks a free port; read it back from {@link LoadBalancer.port}. */
  listenPort: number;
  backends: readonly Backend[];
  /** Default "/readyz". */
  healthPath?: string;
  /** Default 1000. */
  healthIntervalMs?: number;
  /** Default 1000. */
  healthTimeoutMs?: number;
  /**
   * Default true: the check is an HTTPS GET that does not verify the certificate (the load
   * balancer does not hold the cluster CA). false: plain HTTP.
   */
  healthTls?: boolean;
  /** How long a connection attempt to a backend may take before the next one is tried. Default 5000. */
  connectTimeoutMs?: number;
  logger?: Logger;
}

export interface BackendStatus {
  backend: string;
  healthy: boolean;
  lastError: string;
  active: number;
  total: number;
}

/** How often a backend that has not yet passed a check is checked. */
const BOOT_CHECK_INTERVAL_MS = 200;

interface BackendState {
  readonly backend: Backend;
  readonly name: string;
  /** undefined until the first check or connection attempt has told. */
  healthy: boolean | undefined;
  lastError: string;
  active: number;
  total: number;
  /** Bumped on every connect failure, so a check that began before one cannot overrule it. */
  failures: number;
  timer: NodeJS.Timeout | undefined;
  check: http.ClientRequest | undefined;
  /** Has passed a check since the balancer started (until then it is checked more often). */
  everHealthy: boolean;
  /**
   * One kept-alive connection for this backend's checks: a fresh TLS handshake every second per
   * backend would cost the balancer and the API server CPU for nothing.
   */
  readonly checkAgent: http.Agent;
}

interface Proxied {
  readonly client: net.Socket;
  upstream: net.Socket | undefined;
  /** The pipes are set up; from then on only an error on one side tears down the other. */
  spliced: boolean;
}

export class LoadBalancer {
  private readonly states: BackendState[];
  private readonly connections = new Set<Proxied>();
  private readonly logger: Logger;
  private readonly healthPath: string;
  private readonly healthIntervalMs: number;
  private readonly healthTimeoutMs: number;
  private readonly healthTls: boolean;
  private readonly connectTimeoutMs: number;
  private next = 0;
  private stopped = false;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly server: net.Server,
    o: BalancerOptions,
  ) {
    if (o.backends.length === 0) throw new Error("the load balancer needs at least one backend");
    this.logger = o.logger ?? silentLogger;
    this.healthPath = o.healthPath ?? "/readyz";
    this.healthIntervalMs = o.healthIntervalMs ?? 1000;
    this.healthTimeoutMs = o.healthTimeoutMs ?? 1000;
    this.healthTls = o.healthTls ?? true;
    this.connectTimeoutMs = o.connectTimeoutMs ?? 5000;
    this.states = o.backends.map((b) => ({
      backend: { host: b.host, port: b.port },
      name: formatAddress(b.host, b.port),
      healthy: undefined,
      everHealthy: false,
      lastError: "",
      active: 0,
      total: 0,
      failures: 0,
      timer: undefined,
      check: undefined,
      checkAgent: this.healthTls
        ? new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false })
        : new http.Agent({ keepAlive: true, maxSockets: 1 }),
    }));
  }

  static async start(o: BalancerOptions): Promise<LoadBalancer> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const lb = new LoadBalancer(server, o);
    server.on("connection", (socket) => lb.accept(socket));
    for (const s of lb.states) lb.runCheck(s);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: o.listenHost, port: o.listenPort }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      await lb.stop();
      throw err;
    }
    server.on("error", (err) => lb.logger.error("listener error", { error: err.message }));
    lb.logger.info("load balancer listening", {
      address: formatAddress(o.listenHost, lb.port),
      backends: lb.states.map((s) => s.name),
    });
    return lb;
  }

  get port(): number {
    const a = this.server.address();
    return a !== null && typeof a === "object" ? a.port : 0;
  }

  /** Per backend: healthy?, last error, active connections, total connections. */
  status(): BackendStatus[] {
    return this.states.map((s) => ({
      backend: s.name,
      healthy: s.healthy === true,
      lastError: s.lastError,
      active: s.active,
      total: s.total,
    }));
  }

  /** Closes the listener, ends every proxied connection and stops the health checks. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopped = true;
    for (const s of this.states) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = undefined;
      s.check?.destroy();
      s.check = undefined;
      s.checkAgent.destroy();
    }
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream?.destroy();
    }
    this.connections.clear();
    this.stopping = closed.then(() => this.logger.info("load balancer stopped"));
    return this.stopping;
  }

  // --- proxying ---------------------------------------------------------------------------

  private accept(client: net.Socket): void {
    if (this.stopped) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    client.setKeepAlive(true, 30_000);
    const conn: Proxied = { client, upstream: undefined, spliced: false };
    this.connections.add(conn);
    const from = formatAddress(client.remoteAddress ?? "?", client.remotePort ?? 0);
    // Errors before the pipes exist (a reset while paused) must not crash the process.
    client.on("error", (err) => this.logger.debug("client connection error", { client: from, error: err.message }));
    client.once("close", (hadError) => {
      this.connections.delete(conn);
      // A clean close means both directions have ended (the pipes end the other side in turn);
      // destroying the upstream then could drop bytes it has not flushed yet.
      if (!conn.spliced || hadError) conn.upstream?.destroy();
    });
    this.tryBackends(conn, this.attemptOrder(), 0, from);
  }

  /**
   * Round-robin among the healthy backends; after them (or instead of them, when none is known
   * healthy, as at start before the first check) every other backend, so a connection is only
   * refused when no backend accepts it.
   */
  private attemptOrder(): BackendState[] {
    const n = this.states.length;
    const rotated: BackendState[] = [];
    for (let i = 0; i < n; i++) rotated.push(this.states[(this.next + i) % n]!);
    const healthy = rotated.filter((s) => s.healthy === true);
    const rest = rotated.filter((s) => s.healthy !== true);
    const first = healthy[0] ?? rest[0]!;
    this.next = (this.states.indexOf(first) + 1) % n;
    return [...healthy, ...rest];
  }

  private tryBackends(conn: Proxied, order: readonly BackendState[], i: number, from: string): void {
    const { client } = conn;
    if (this.stopped || client.destroyed) return;
    const state = order[i];
    if (state === undefined) {
      this.logger.warn("no backend accepted the connection; closing it", { client: from });
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: state.backend.host, port: state.backend.port, allowHalfOpen: true });
    conn.upstream = upstream;
    let connected = false;
    let gaveUp = false;
    const timer = setTimeout(
      () => upstream.destroy(new Error(`connect timed out after ${this.connectTimeoutMs}ms`)),
      this.connectTimeoutMs,
    );
    upstream.on("error", (err) => {
      if (connected) {
        this.logger.debug("backend connection error", { client: from, backend: state.name, error: err.message });
        client.destroy();
        return;
      }
      if (gaveUp) return;
      gaveUp = true;
      clearTimeout(timer);
      if (conn.upstream === upstream) conn.upstream = undefined;
      upstream.destroy();
      if (this.stopped || client.destroyed) return;
      state.failures++;
      this.setHealth(state, false, `connect: ${err.message}`);
      // The client never saw this attempt: hand its connection to the next backend.
      this.tryBackends(conn, order, i + 1, from);
    });
    upstream.once("close", () => clearTimeout(timer));
    upstream.once("connect", () => {
      clearTimeout(timer);
      connected = true;
      if (this.stopped || client.destroyed) {
        upstream.destroy();
        return;
      }
      this.splice(conn, upstream, state, from);
    });
  }

  private splice(conn: Proxied, upstream: net.Socket, state: BackendState, from: string): void {
    const { client } = conn;
    upstream.setNoDelay(true);
    upstream.setKeepAlive(true, 30_000);
    conn.spliced = true;
    state.active++;
    state.total++;
    this.logger.debug("proxying", { client: from, backend: state.name });
    upstream.once("close", (hadError) => {
      state.active--;
      if (hadError) client.destroy();
    });
    // pipe() ends the other side's writable half when one side's readable half ends, and both
    // sockets allow half-open connections, so a FIN travels through without cutting the reply.
    client.pipe(upstream);
    upstream.pipe(client);
  }

  // --- health checks ----------------------------------------------------------------------

  private runCheck(state: BackendState): void {
    state.timer = undefined;
    if (this.stopped) return;
    const failuresAtStart = state.failures;
    let done = false;
    const finish = (ok: boolean, error: string): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      state.check = undefined;
      if (this.stopped) return;
      // A connection that failed while this check was in flight is newer news than its 200.
      if (!(ok && state.failures !== failuresAtStart)) this.setHealth(state, ok, error);
      if (state.healthy === true) state.everHealthy = true;
      // A backend still booting is checked more often, so the endpoint opens soon after it is ready.
      const next = state.everHealthy ? this.healthIntervalMs : Math.min(this.healthIntervalMs, BOOT_CHECK_INTERVAL_MS);
      state.timer = setTimeout(() => this.runCheck(state), next);
    };
    const request = this.healthTls ? https.request : http.request;
    const req = request({
      host: state.backend.host,
      port: state.backend.port,
      path: this.healthPath,
      method: "GET",
      agent: state.checkAgent,
      headers: { accept: "text/plain, */*" },
    });
    state.check = req;
    const deadline = setTimeout(
      () => req.destroy(new Error(`timed out after ${this.healthTimeoutMs}ms`)),
      this.healthTimeoutMs,
    );
    req.on("error", (err) => finish(false, `${this.healthPath}: ${err.message}`));
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (body.length < 512) body += chunk;
      });
      res.on("error", (err) => finish(false, `${this.healthPath}: ${err.message}`));
      res.on("close", () => finish(false, `${this.healthPath}: the connection closed before the response ended`));
      res.on("end", () => {
        if (res.statusCode === 200) finish(true, "");
        else {
          const text = body.trim().replace(/\s+/g, " ").slice(0, 200);
          finish(false, `${this.healthPath}: HTTP ${res.statusCode}${text ? `: ${text}` : ""}`);
        }
        // The socket goes back to the agent for the next check.
      });
    });
    req.end();
  }

  private setHealth(state: BackendState, healthy: boolean, error: string): void {
    const was = state.healthy;
    state.healthy = healthy;
    if (!healthy) state.lastError = error;
    if (was === healthy) return;
    if (healthy) this.logger.info("backend is healthy", { backend: state.name });
    else this.logger.warn("backend is unhealthy", { backend: state.name, error });
  }
}

/** host:port, with IPv6 literals bracketed. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}
