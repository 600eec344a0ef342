import * as http from "node:http";
import * as net from "node:net";
import type { Logger } from "../../util/logger.js";
import { serviceDefinitionOf } from "../proto.js";
import type { EtcdServer } from "../server/server.js";
import { CLUSTER_VERSION, SERVER_VERSION } from "../server/server.js";
import { AlarmType } from "../wire.js";
import { kvService } from "./kv.js";
import { leaseService } from "./lease.js";
import { authService, clusterService, healthService, maintenanceService } from "./maintenance.js";
import { Metrics } from "./metrics.js";
import { GrpcServer, type MethodDefinition } from "./server.js";
import { watchService } from "./watch.js";

/**
 * The client-facing listeners. As etcd does with cmux, each client URL serves gRPC and plain
 * HTTP (/health, /version, /metrics) on the same port: the first bytes of a connection decide
 * (an HTTP/2 client preface goes to gRPC, anything else to the HTTP handler). Metrics URLs serve
 * only the HTTP side.
 */

// etcd lets gRPC messages exceed --max-request-bytes by this much, so that its own "request is
// too large" error (rather than gRPC's) answers requests just over the limit.
const GRPC_OVERHEAD_BYTES = 512 * 1024;
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export interface ClientListeners {
  /** The bound addresses, host:port, in the order of the URLs given (port 0 resolved). */
  readonly clientAddresses: string[];
  readonly metricsAddresses: string[];
  close(): Promise<void>;
}

export async function listenClients(server: EtcdServer, logger: Logger): Promise<ClientListeners> {
  const metrics = new Metrics(server.config.metrics);
  const maxReceive = server.config.maxRequestBytes + GRPC_OVERHEAD_BYTES;
  const grpcServer = new GrpcServer({ maxReceiveMessageLength: maxReceive, observer: metrics });
  const add = (service: string, implementation: object): void =>
    grpcServer.addService(
      serviceDefinitionOf(service) as unknown as Record<string, MethodDefinition>,
      implementation as Record<string, never>,
    );
  add("etcdserverpb.KV", kvService(server, metrics));
  add("etcdserverpb.Watch", watchService(server));
  add("etcdserverpb.Lease", leaseService(server));
  add("etcdserverpb.Maintenance", maintenanceService(server));
  add("etcdserverpb.Cluster", clusterService(server));
  add("etcdserverpb.Auth", authService());
  add("grpc.health.v1.Health", healthService(server));

  const answer = httpResponder(server, metrics);
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];

  const clientAddresses: string[] = [];
  for (const url of server.config.listenClientUrls) {
    // noDelay: small gRPC frames must go out at once, not wait for Nagle's algorithm (and the
    // peer's delayed ACK), which would add tens of milliseconds to every request.
    const netServer = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      routeConnection(socket, grpcServer, answer);
    });
    clientAddresses.push(await listen(netServer, url, logger, "client"));
    servers.push(netServer);
  }
  const metricsAddresses: string[] = [];
  for (const url of server.config.listenMetricsUrls) {
    const metricsServer = http.createServer((req, res) => {
      const { status, contentType, body } = answer(req.method ?? "GET", req.url ?? "/", "");
      res.writeHead(status, { "Content-Type": contentType });
      res.end(body);
    });
    metricsAddresses.push(await listen(metricsServer, url, logger, "metrics"));
    servers.push(metricsServer);
  }

  return {
    clientAddresses,
    metricsAddresses,
    async close() {
      for (const s of servers) s.close();
      for (const s of sockets) s.destroy();
      grpcServer.close();
    },
  };
}

/**
 * Sends a new connection to gRPC or to the plain HTTP responder by its first bytes. gRPC gets the
 * socket itself, with the bytes already read put back.
 */
function routeConnection(socket: net.Socket, grpcServer: GrpcServer, answer: HttpResponder): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, HTTP2_PREFACE.length);
    const isHttp2Prefix = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    if (isHttp2Prefix && head.length < HTTP2_PREFACE.length) return; // need more bytes to decide
    if (isHttp2Prefix) {
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      grpcServer.handleConnection(socket);
      return;
    }
    // HTTP/1: wait for the whole request head (and body, if any), answer, close (health probes,
    // curl, Prometheus, the lab's fault admin endpoint).
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (head.length > 16 * 1024) socket.destroy();
      return;
    }
    const lines = head.subarray(0, end).toString("latin1").split("\r\n");
    const [method = "", target = "/"] = lines[0]?.split(" ") ?? [];
    const lengthLine = lines.find((l) => /^content-length:/i.test(l));
    const bodyLength = lengthLine ? Number(lengthLine.slice(lengthLine.indexOf(":") + 1).trim()) : 0;
    if (!Number.isSafeInteger(bodyLength) || bodyLength < 0 || bodyLength > MAX_HTTP_BODY) {
      socket.destroy();
      return;
    }
    if (head.length < end + 4 + bodyLength) return; // the body is still arriving
    socket.off("data", onData);
    const body = head.subarray(end + 4, end + 4 + bodyLength).toString("utf8");
    const { status, contentType, body: reply } = answer(method, target, body);
    const payload = Buffer.from(reply);
    socket.end(
      Buffer.concat([
        Buffer.from(
          `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\nContent-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`,
          "latin1",
        ),
        method === "HEAD" ? Buffer.alloc(0) : payload,
      ]),
    );
  };
  socket.on("data", onData);
}

const MAX_HTTP_BODY = 64 * 1024;

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  503: "Service Unavailable",
};

type HttpResponse = { status: number; contentType: string; body: string };
type HttpResponder = (method: string, target: string, body: string) => HttpResponse;

function listen(server: net.Server, url: URL, logger: Logger, kind: string): Promise<string> {
  if (url.protocol !== "http:") {
    throw new Error(
      `--listen-${kind}-urls ${url.toString()}: TLS listeners are not supported by this build yet; use an http:// URL`,
    );
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 2379);
  return new Promise<string>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const hint =
        err.code === "EADDRINUSE"
          ? `port ${port} on ${host} is already in use; stop whatever listens there or choose another --listen-${kind}-urls`
          : err.message;
      reject(new Error(`cannot listen on ${url.toString()}: ${hint}`));
    };
    server.once("error", onError);
    server.listen({ host: host === "localhost" ? "127.0.0.1" : host, port }, () => {
      server.off("error", onError);
      const addr = server.address() as net.AddressInfo;
      const shown = addr.family === "IPv6" ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
      logger.info(`serving ${kind} traffic`, { address: shown });
      resolve(shown);
    });
  });
}

/** The plain HTTP endpoints etcd serves: /health, /version, /metrics. */
function httpResponder(server: EtcdServer, metrics: Metrics): HttpResponder {
  return (method, target, body) => {
    const url = new URL(target, "http://localhost");
    if (url.pathname === "/lab/faults") return answerFaults(server, method, body);
    if (method !== "GET" && method !== "HEAD") {
      return { status: 405, contentType: "text/plain", body: "method not allowed\n" };
    }
    if (url.pathname === "/health") {
      const excluded = new Set(url.searchParams.getAll("exclude"));
      // etcd's /health also fails while the member knows no leader (no quorum).
      const failing =
        !!server.storageFailure ||
        server.leaderId === 0n ||
        server.alarms.get().some((a) => !excluded.has(ALARM_NAMES[a.alarm] ?? String(a.alarm)));
      return {
        status: failing ? 503 : 200,
        contentType: "application/json",
        body: JSON.stringify({ health: failing ? "false" : "true" }),
      };
    }
    if (url.pathname === "/version") {
      return {
        status: 200,
        contentType: "application/json",
        body: JSON.stringify({ etcdserver: SERVER_VERSION, etcdcluster: CLUSTER_VERSION }),
      };
    }
    if (url.pathname === "/metrics") {
      return { status: 200, contentType: "text/plain; version=0.0.4", body: metrics.render(server) };
    }
    return { status: 404, contentType: "text/plain", body: "404 page not found\n" };
  };
}

/**
 * The lab's fault hook on the peer transport, for partition drills: GET shows the faults and the
 * per-peer traffic; POST sets faults for one peer (16-hex-digit member ID) or "all"; DELETE clears
 * every fault. Body of a POST: {"peer":"all","drop":0.5,"delayMs":200,"blockOutbound":true,
 * "blockInbound":true} (fields omitted keep no fault).
 */
function answerFaults(server: EtcdServer, method: string, body: string): HttpResponse {
  const json = (status: number, value: unknown): HttpResponse => ({
    status,
    contentType: "application/json",
    body: `${JSON.stringify(value)}\n`,
  });
  const hook = server.faultHook;
  if (!hook) return json(503, { error: "this member has no peer transport" });
  try {
    if (method === "GET") return json(200, { faults: hook.faults(), peers: hook.stats() });
    if (method === "DELETE") {
      hook.clearFaults();
      return json(200, { faults: hook.faults() });
    }
    if (method === "POST" || method === "PUT") {
      const req = JSON.parse(body || "{}") as Record<string, unknown>;
      const { peer, ...faults } = req;
      if (typeof peer !== "string" || !(peer === "all" || /^[0-9a-f]{1,16}$/i.test(peer))) {
        return json(400, { error: 'give "peer": a member ID in hex (as etcdctl member list prints it) or "all"' });
      }
      const unknown = Object.keys(faults).filter(
        (k) => !["drop", "delayMs", "blockOutbound", "blockInbound"].includes(k),
      );
      if (unknown.length > 0) {
        return json(400, {
          error: `unknown fields ${unknown.join(", ")}; allowed: drop, delayMs, blockOutbound, blockInbound`,
        });
      }
      hook.setFaults(peer === "all" ? "all" : BigInt(`0x${peer}`), faults);
      return json(200, { faults: hook.faults() });
    }
    return json(405, { error: "use GET, POST or DELETE" });
  } catch (err) {
    return json(400, { error: err instanceof Error ? err.message : String(err) });
  }
}

const ALARM_NAMES: Record<number, string> = { [AlarmType.NOSPACE]: "NOSPACE", [AlarmType.CORRUPT]: "CORRUPT" };
