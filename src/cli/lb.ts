import { type Backend, formatAddress, LoadBalancer } from "../lb/balancer.js";
import { createLogger, type LogLevel } from "../util/logger.js";

/**
 * `lab lb [flags]`: the lab's TCP load balancer in front of several API servers, in the
 * foreground, until SIGTERM or SIGINT.
 */

const HELP = `Usage: lab lb --listen HOST:PORT --backend HOST:PORT [--backend HOST:PORT ...] [flags]

A TCP load balancer for Kubernetes API servers: TLS passes through untouched, new connections go
round-robin to the backends whose health check last answered 200.

Flags:
  --listen HOST:PORT        where to accept connections, e.g. 127.0.0.1:6443 (port 0 picks a free one)
  --backend HOST:PORT       an API server; repeat the flag (or separate with commas) for several
  --health-path PATH        the health check path (default /readyz)
  --health-interval DUR     time between checks of one backend, e.g. 1s or 500ms (default 1s)
  --health-timeout DUR      how long one check may take (default 1s)
  --plain-http-health       check over plain HTTP instead of HTTPS (HTTPS does not verify the certificate)
  --log-level LEVEL         debug, info, warn or error (default info)
  -h, --help                this text
`;

export class LbUsageError extends Error {}

export interface LbConfig {
  listen: Backend;
  backends: Backend[];
  healthPath: string;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  healthTls: boolean;
  logLevel: LogLevel;
}

const VALUE_FLAGS = new Set([
  "--listen",
  "--backend",
  "--health-path",
  "--health-interval",
  "--health-timeout",
  "--log-level",
]);
const BOOL_FLAGS = new Set(["--plain-http-health"]);

export function parseLbFlags(argv: readonly string[]): LbConfig {
  let listen: Backend | undefined;
  const backends: Backend[] = [];
  let healthPath = "/readyz";
  let healthIntervalMs = 1000;
  let healthTimeoutMs = 1000;
  let healthTls = true;
  let logLevel: LogLevel = "info";

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      throw new LbUsageError(`unexpected argument "${arg}"; every setting is a flag, e.g. --backend ${arg}`);
    }
    const eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    let value: string | undefined;
    if (BOOL_FLAGS.has(flag)) {
      if (eq >= 0) {
        const v = arg.slice(eq + 1);
        if (v !== "true" && v !== "false") throw new LbUsageError(`${flag} takes no value (or =true / =false)`);
        value = v;
      } else value = "true";
    } else if (VALUE_FLAGS.has(flag)) {
      if (eq >= 0) value = arg.slice(eq + 1);
      else {
        value = argv[i + 1];
        if (value === undefined || value.startsWith("--"))
          throw new LbUsageError(`${flag} needs a value, e.g. ${flag} ${example(flag)}`);
        i++;
      }
    } else {
      throw new LbUsageError(`unknown flag ${flag}; run lab lb --help for the list`);
    }

    switch (flag) {
      case "--listen":
        listen = parseHostPort(flag, value, true);
        break;
      case "--backend":
        for (const part of value.split(",")) {
          if (part.trim() === "") continue;
          backends.push(parseHostPort(flag, part.trim(), false));
        }
        break;
      case "--health-path":
        if (!value.startsWith("/") || /\s/.test(value))
          throw new LbUsageError(
            `--health-path "${value}": write a path that starts with /, e.g. --health-path /readyz`,
          );
        healthPath = value;
        break;
      case "--health-interval":
        healthIntervalMs = parseDuration(flag, value);
        break;
      case "--health-timeout":
        healthTimeoutMs = parseDuration(flag, value);
        break;
      case "--plain-http-health":
        healthTls = value !== "true";
        break;
      case "--log-level":
        if (value !== "debug" && value !== "info" && value !== "warn" && value !== "error")
          throw new LbUsageError(`--log-level "${value}": write debug, info, warn or error`);
        logLevel = value;
        break;
    }
  }
  if (listen === undefined)
    throw new LbUsageError("--listen is required: where to accept connections, e.g. --listen 127.0.0.1:6443");
  if (backends.length === 0)
    throw new LbUsageError(
      "at least one --backend is required: an API server to forward to, e.g. --backend 10.0.0.2:6443 (repeat it for more)",
    );
  return { listen, backends, healthPath, healthIntervalMs, healthTimeoutMs, healthTls, logLevel };
}

function example(flag: string): string {
  switch (flag) {
    case "--listen":
      return "127.0.0.1:6443";
    case "--backend":
      return "10.0.0.2:6443";
    case "--health-path":
      return "/readyz";
    case "--log-level":
      return "info";
    default:
      return "1s";
  }
}

/** HOST:PORT, with IPv6 literals in brackets ([::1]:6443). */
function parseHostPort(flag: string, value: string, isListen: boolean): Backend {
  const bad = (why: string): LbUsageError =>
    new LbUsageError(`${flag} "${value}": ${why}; write HOST:PORT, e.g. ${flag} ${example(flag)}`);
  let host: string;
  let portText: string;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close < 0 || value[close + 1] !== ":") throw bad("an IPv6 address in brackets must be followed by :PORT");
    host = value.slice(1, close);
    portText = value.slice(close + 2);
  } else {
    const colon = value.lastIndexOf(":");
    if (colon < 0) throw bad("there is no port");
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(":")) throw bad("put an IPv6 address in brackets");
  }
  // ":6443" listens on every interface, as Go's net.Listen does.
  if (host === "" && isListen) host = "0.0.0.0";
  if (host === "" || /[\s/[\]@]/.test(host)) throw bad("the host is missing or malformed");
  if (!/^\d+$/.test(portText)) throw bad(`"${portText}" is not a port number`);
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !isListen)) throw bad(`port ${port} is out of range`);
  return { host, port };
}

/** A duration like 1s, 500ms, 1.5s or 2m (a unit is required). */
function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value.trim());
  const scale = m ? { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"] : 0;
  const ms = m ? Math.round(Number(m[1]) * scale) : Number.NaN;
  if (!Number.isFinite(ms) || ms < 1)
    throw new LbUsageError(`${flag} "${value}": write a positive duration with a unit, e.g. ${flag} 1s or 500ms`);
  return ms;
}

export async function runLoadBalancer(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP);
    return 0;
  }
  let config: LbConfig;
  try {
    config = parseLbFlags(argv);
  } catch (err) {
    if (err instanceof LbUsageError) {
      process.stderr.write(`lab lb: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, { component: "lb" });
  let lb: LoadBalancer;
  try {
    lb = await LoadBalancer.start({
      listenHost: config.listen.host,
      listenPort: config.listen.port,
      backends: config.backends,
      healthPath: config.healthPath,
      healthIntervalMs: config.healthIntervalMs,
      healthTimeoutMs: config.healthTimeoutMs,
      healthTls: config.healthTls,
      logger,
    });
  } catch (err) {
    process.stderr.write(
      `lab lb: cannot listen on ${formatAddress(config.listen.host, config.listen.port)}: ${
        err instanceof Error ? err.message : String(err)
      }\n`,
    );
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      logger.info("received signal; shutting down", { signal });
      void lb.stop().then(() => resolve(0));
    };
    const onTerm = (): void => shutdown("SIGTERM");
    const onInt = (): void => shutdown("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
  });
}
