import { existsSync } from "node:fs";
import { isIP } from "node:net";
import { parseDurationMs } from "../etcd/config.js";

/**
 * `lab apiserver` flags: kube-apiserver's names and defaults for what this server supports. All
 * values are checked before anything starts; every problem is reported at once, with what to do.
 */

export class ApiServerUsageError extends Error {
  override name = "ApiServerUsageError";
}

export interface ApiServerConfig {
  /** Store endpoints as host:port, from --etcd-servers. */
  readonly etcdServers: readonly string[];
  readonly etcdTls: boolean;
  readonly etcdCaFile: string | undefined;
  readonly etcdCertFile: string | undefined;
  readonly etcdKeyFile: string | undefined;
  readonly etcdPrefix: string;
  readonly bindAddress: string;
  /** 0: no secure port. */
  readonly securePort: number;
  readonly tlsCertFile: string | undefined;
  readonly tlsPrivateKeyFile: string | undefined;
  readonly clientCaFile: string | undefined;
  readonly tokenAuthFile: string | undefined;
  /** 0: no plain-HTTP port (the default; plain HTTP only when asked for). */
  readonly insecurePort: number;
  readonly insecureBindAddress: string;
  readonly etcdCompactionIntervalMs: number;
  readonly eventTtlSeconds: number;
  /** klog verbosity: 4 and above logs every request. */
  readonly verbosity: number;
}

interface FlagSpec {
  readonly help: string;
  readonly default?: string;
  readonly boolean?: boolean;
}

const FLAGS: Record<string, FlagSpec> = {
  "etcd-servers": {
    help: "Store endpoints (comma-separated URLs, e.g. http://127.0.0.1:2379); the server fails over between them.",
  },
  "etcd-prefix": { help: "The key prefix of every object in the store.", default: "/registry" },
  "etcd-cafile": { help: "CA file that verifies the store's serving certificate (TLS to the store)." },
  "etcd-certfile": { help: "Client certificate for TLS to the store." },
  "etcd-keyfile": { help: "Client key for TLS to the store." },
  "etcd-compaction-interval": { help: "How often the store is compacted (0 disables).", default: "5m0s" },
  "event-ttl": { help: "How long events are kept.", default: "1h0m0s" },
  "bind-address": { help: "Address the secure port listens on.", default: "0.0.0.0" },
  "secure-port": { help: "HTTPS port (0 disables it).", default: "6443" },
  "tls-cert-file": { help: "Serving certificate (PEM) for the secure port." },
  "tls-private-key-file": { help: "Serving key (PEM) for the secure port." },
  "client-ca-file": {
    help: "CA bundle: client certificates it signed authenticate as their CN (user) and O (groups).",
  },
  "token-auth-file": { help: 'Static bearer tokens, CSV lines: token,user,uid[,"group1,group2"].' },
  "insecure-port": {
    help: "Plain-HTTP port without authentication (0, the default, disables it). For local labs only.",
    default: "0",
  },
  "insecure-bind-address": { help: "Address the plain-HTTP port listens on.", default: "127.0.0.1" },
  v: { help: "Log verbosity (4 or more logs every request).", default: "0" },
};

/** kube-apiserver flags that real manifests carry and that mean nothing for a storage-only server. */
const IGNORED = new Set([
  "advertise-address",
  "allow-privileged",
  "authorization-mode",
  "enable-admission-plugins",
  "disable-admission-plugins",
  "enable-bootstrap-token-auth",
  "kubelet-client-certificate",
  "kubelet-client-key",
  "kubelet-preferred-address-types",
  "proxy-client-cert-file",
  "proxy-client-key-file",
  "requestheader-allowed-names",
  "requestheader-client-ca-file",
  "requestheader-extra-headers-prefix",
  "requestheader-group-headers",
  "requestheader-username-headers",
  "service-account-issuer",
  "service-account-key-file",
  "service-account-signing-key-file",
  "service-cluster-ip-range",
  "runtime-config",
  "anonymous-auth",
  "profiling",
  "audit-log-path",
  "audit-policy-file",
  "storage-backend",
  "storage-media-type",
  "watch-cache",
  "endpoint-reconciler-type",
  "apiserver-count",
]);

export function apiServerFlagHelp(): string {
  const lines = [
    "Usage: lab apiserver [flags]",
    "",
    "A Kubernetes-compatible API server (storage only) over the store.",
    "",
    "Flags:",
  ];
  for (const [name, spec] of Object.entries(FLAGS)) {
    const def = spec.default !== undefined ? ` (default ${JSON.stringify(spec.default)})` : "";
    lines.push(`  --${name}`, `        ${spec.help}${def}`);
  }
  lines.push(
    "",
    `Accepted and ignored (kubeadm manifests carry them): ${[...IGNORED].map((f) => `--${f}`).join(", ")}`,
    "",
    "Example (plain HTTP on 127.0.0.1:8080, for a local lab):",
    "  lab apiserver --etcd-servers http://127.0.0.1:2379 --secure-port 0 --insecure-port 8080",
    "",
  );
  return lines.join("\n");
}

function parsePort(name: string, raw: string, problems: string[]): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) {
    problems.push(`--${name}=${raw}: expected a port number from 0 to 65535`);
    return 0;
  }
  return n;
}

/** Turns an --etcd-servers URL into host:port; only http and https URLs are store endpoints. */
function parseEndpoint(raw: string, problems: string[]): { endpoint: string; tls: boolean } | undefined {
  // Parsed by hand: URL() drops a port equal to the scheme's default (http://host:80).
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") {
    problems.push(`--etcd-servers: "${raw}" must use http:// or https://`);
    return undefined;
  }
  const m = /^https?:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+)(?::(\d+))?\/?$/i.exec(raw);
  if (!m) {
    problems.push(
      `--etcd-servers: "${raw}" is not a store URL; write endpoints as http://HOST:PORT or https://HOST:PORT`,
    );
    return undefined;
  }
  const [, host, port] = m as unknown as [string, string, string | undefined];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    problems.push(`--etcd-servers: "${raw}" has a port outside 1-65535`);
    return undefined;
  }
  // IPv6 hosts keep their brackets: gRPC reads "[::1]:2379" as host and port.
  return { endpoint: `${host}:${port ?? "2379"}`, tls: scheme === "https" };
}

export function parseApiServerFlags(argv: readonly string[]): { config: ApiServerConfig; warnings: string[] } {
  const values = new Map<string, string>();
  const problems: string[] = [];
  const warnings: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      problems.push(`unexpected argument "${arg}": flags look like --name=value or --name value`);
      continue;
    }
    const name = m[1] as string;
    let value = m[2];
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) {
        problems.push(`--${name} needs a value`);
        continue;
      }
      value = next;
      i++;
    }
    if (IGNORED.has(name)) {
      warnings.push(`--${name} is accepted for compatibility with kube-apiserver and has no effect here`);
      continue;
    }
    if (!FLAGS[name]) {
      problems.push(`unknown flag --${name}; lab apiserver --help lists the supported ones`);
      continue;
    }
    if (values.has(name) && name !== "etcd-servers") warnings.push(`--${name} given twice; the last value wins`);
    values.set(name, name === "etcd-servers" && values.has(name) ? `${values.get(name)},${value}` : value);
  }
  const get = (name: string): string | undefined => values.get(name) ?? FLAGS[name]?.default;
  const file = (name: string): string | undefined => {
    const v = values.get(name);
    if (v === undefined || v === "") return undefined;
    if (!existsSync(v)) problems.push(`--${name}=${v}: no such file`);
    return v;
  };

  const endpoints: string[] = [];
  let etcdTls = false;
  const servers = (values.get("etcd-servers") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (servers.length === 0)
    problems.push("--etcd-servers is required: the store's client URLs, e.g. --etcd-servers=http://127.0.0.1:2379");
  for (const s of servers) {
    const e = parseEndpoint(s, problems);
    if (!e) continue;
    endpoints.push(e.endpoint);
    etcdTls ||= e.tls;
  }
  if (servers.length > 0 && new Set(servers.map((s) => s.startsWith("https:"))).size > 1)
    problems.push("--etcd-servers mixes http:// and https:// endpoints; use one scheme for all");
  const etcdCaFile = file("etcd-cafile");
  const etcdCertFile = file("etcd-certfile");
  const etcdKeyFile = file("etcd-keyfile");
  if ((etcdCertFile === undefined) !== (etcdKeyFile === undefined))
    problems.push("--etcd-certfile and --etcd-keyfile go together: give both or neither");
  if (etcdTls && !etcdCaFile)
    problems.push("https:// store endpoints need --etcd-cafile (the CA that signed the store's certificate)");

  let etcdPrefix = get("etcd-prefix") as string;
  if (!etcdPrefix.startsWith("/")) etcdPrefix = `/${etcdPrefix}`;
  etcdPrefix = etcdPrefix.replace(/\/+$/, "");
  if (etcdPrefix === "") problems.push('--etcd-prefix may not be "/": objects need a prefix such as /registry');

  const bindAddress = get("bind-address") as string;
  if (!isIP(bindAddress)) problems.push(`--bind-address=${bindAddress}: expected an IP address`);
  const insecureBindAddress = get("insecure-bind-address") as string;
  if (!isIP(insecureBindAddress))
    problems.push(`--insecure-bind-address=${insecureBindAddress}: expected an IP address`);
  const securePort = parsePort("secure-port", get("secure-port") as string, problems);
  const insecurePort = parsePort("insecure-port", get("insecure-port") as string, problems);
  const tlsCertFile = file("tls-cert-file");
  const tlsPrivateKeyFile = file("tls-private-key-file");
  if (securePort > 0 && (!tlsCertFile || !tlsPrivateKeyFile))
    problems.push(
      "the secure port needs --tls-cert-file and --tls-private-key-file (or --secure-port=0 with --insecure-port for plain HTTP in a local lab)",
    );
  if (securePort === 0 && insecurePort === 0)
    problems.push("nothing to serve: set --secure-port (HTTPS) or --insecure-port (plain HTTP)");
  if (securePort > 0 && securePort === insecurePort) problems.push("--secure-port and --insecure-port must differ");
  const clientCaFile = file("client-ca-file");
  const tokenAuthFile = file("token-auth-file");
  if (securePort > 0 && !clientCaFile && !tokenAuthFile)
    warnings.push(
      "no --token-auth-file or --client-ca-file: every request to the secure port except health and /version will get 401 Unauthorized",
    );

  const duration = (name: string): number => {
    try {
      return parseDurationMs(get(name) as string);
    } catch (e) {
      problems.push(`--${name}=${get(name)}: ${(e as Error).message}`);
      return 0;
    }
  };
  const etcdCompactionIntervalMs = duration("etcd-compaction-interval");
  const eventTtlMs = duration("event-ttl");
  if (values.has("event-ttl") && eventTtlMs < 1000) problems.push("--event-ttl must be at least 1s");
  const verbosity = Number(get("v"));
  if (!Number.isInteger(verbosity) || verbosity < 0) problems.push(`--v=${get("v")}: expected a non-negative integer`);

  if (problems.length > 0) throw new ApiServerUsageError(problems.join("\n"));
  return {
    config: {
      etcdServers: endpoints,
      etcdTls,
      etcdCaFile,
      etcdCertFile,
      etcdKeyFile,
      etcdPrefix,
      bindAddress,
      securePort,
      tlsCertFile,
      tlsPrivateKeyFile,
      clientCaFile,
      tokenAuthFile,
      insecurePort,
      insecureBindAddress,
      etcdCompactionIntervalMs,
      eventTtlSeconds: Math.max(1, Math.round(eventTtlMs / 1000)),
      verbosity,
    },
    warnings,
  };
}
