/**
 * Configuration of `lab etcd [flags]`, read the way etcd 3.4 reads its own: the same flag names,
 * defaults and ETCD_* environment variables, so that real etcd manifests (kubeadm static pods,
 * systemd units) run unchanged. Behaviour below was checked against etcd 3.4.23:
 *
 * - Flags follow Go's `flag` package: `--f v`, `--f=v`, `-f v`, `-f=v`; a bool flag takes a value
 *   only as `--f=v` (`--f false` leaves "false" as a positional argument); the last repetition
 *   wins; a value is checked as soon as it is seen; parsing stops at `--` or the first non-flag.
 * - Every flag can come from ETCD_<NAME> (upper case, '-' → '_'). Setting both the variable and
 *   the flag is fatal in etcd ("conflicting environment variable ... is shadowed"), so it is an
 *   error here too. Unknown and empty ETCD_* variables only produce a warning.
 * - Integers are Go's base-0 syntax (`010` is 8, `0x10` is 16, `1_000` is 1000); bools are Go's
 *   ParseBool set; durations are Go's time.ParseDuration syntax.
 *
 * Where etcd's behaviour is a trap (it would fail later, or silently misread a value) we reject or
 * choose the working reading instead; those spots are commented.
 */
import { isIP } from "node:net";

/** A bad command line or environment. The message says what is wrong and what to do; exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "panic" | "fatal";

export interface EtcdConfig {
  name: string;
  dataDir: string;
  /** Sorted and de-duplicated, as etcd sorts them. WHATWG URLs: `port` is "" for 80/443. */
  listenClientUrls: URL[];
  advertiseClientUrls: URL[];
  listenPeerUrls: URL[];
  initialAdvertisePeerUrls: URL[];
  /** Member name → peer URLs (a name listed several times has several URLs). */
  initialCluster: Map<string, URL[]>;
  initialClusterState: "new" | "existing";
  initialClusterToken: string;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  /** 0 on the command line means the 2 GiB default; negative disables the quota (as etcd). */
  quotaBackendBytes: number;
  maxRequestBytes: number;
  maxTxnOps: number;
  autoCompactionMode: "periodic" | "revision";
  /** As given ("" reads as "0"); "0" turns auto compaction off. */
  autoCompactionRetention: string;
  /** Periodic mode only: a bare integer is hours, otherwise a Go duration. 0 = off. */
  autoCompactionRetentionMs?: number;
  /** Revision mode only. 0 = off. */
  autoCompactionRetentionRevisions?: number;
  snapshotCount: number;
  maxSnapshots: number;
  maxWals: number;
  unsafeNoFsync: boolean;
  /** `--debug` (deprecated in etcd) forces "debug". */
  logLevel: LogLevel;
  logger: "zap" | "capnslog";
  logOutputs: string[];
  listenMetricsUrls: URL[];
  /** `--metrics`: "extensive" adds grpc_server_handling_seconds, a histogram per gRPC method. */
  metrics: "basic" | "extensive";
  /** Accepted for compatibility; lab etcd serves only the v3 API. */
  enableV2: boolean;
  certFile?: string;
  keyFile?: string;
  trustedCaFile?: string;
  clientCertAuth: boolean;
  peerCertFile?: string;
  peerKeyFile?: string;
  peerTrustedCaFile?: string;
  peerClientCertAuth: boolean;
  experimentalInitialCorruptCheck: boolean;
  /** Raft's pre-vote phase (etcd 3.4's default: off). */
  preVote: boolean;
  /** --initial-election-tick-advance: on boot, fast-forward the election clock once peers answer. */
  initialElectionTickAdvance: boolean;
  /** Refuse membership changes that would leave too few started voters (default on). */
  strictReconfigCheck: boolean;
  /** Raft log entries kept behind a snapshot for followers that lag a little (etcd 3.5's flag). */
  snapshotCatchUpEntries: number;
  /** --experimental-watch-progress-notify-interval; may be fractional for sub-ms durations. */
  watchProgressNotifyIntervalMs: number;
}

const HELP_HINT = "See `lab etcd --help`.";
const GiB = 1024 ** 3;
/** etcd's DefaultQuotaBytes and MaxQuotaBytes (beyond it etcd only warns). */
const DEFAULT_QUOTA_BYTES = 2 * GiB;
const MAX_QUOTA_BYTES = 8 * GiB;
/** etcd refuses election timeouts above this (embed.Config.Validate). */
const MAX_ELECTION_MS = 50_000;
const DEFAULT_SNAPSHOT_COUNT = 100_000;
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "panic", "fatal"];

/** A parser's complaint about one value; turned into a UsageError that says where it came from. */
class ValueError extends Error {}

// ---------------------------------------------------------------------------------------------
// Go value syntaxes

const GO_TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const GO_FALSE = new Set(["0", "f", "F", "FALSE", "false", "False"]);

function parseGoBool(raw: string): boolean {
  if (GO_TRUE.has(raw)) return true;
  if (GO_FALSE.has(raw)) return false;
  throw new ValueError("expected true or false (Go also accepts 1, 0, t, f, TRUE, FALSE, True, False)");
}

/**
 * strconv.ParseInt/ParseUint with base 0, which is what Go's flag package uses: optional 0x, 0o,
 * 0b or leading-0 (octal) prefix, and '_' allowed only between digits or right after a prefix.
 */
function parseGoInteger(raw: string, signed: boolean): bigint | undefined {
  let body = raw;
  let negative = false;
  if (signed && (body.startsWith("+") || body.startsWith("-"))) {
    negative = body.startsWith("-");
    body = body.slice(1);
  }
  let base = 10;
  let digits = body;
  let prefixed = false;
  const prefix = /^0([xXbBoO])/.exec(body);
  if (prefix) {
    const p = prefix[1]?.toLowerCase();
    base = p === "x" ? 16 : p === "b" ? 2 : 8;
    digits = body.slice(2);
    prefixed = true;
  } else if (body.length > 1 && body.startsWith("0")) {
    base = 8; // Go reads a leading 0 as octal: "010" is 8
    digits = body.slice(1);
    prefixed = true;
  }
  const underscores = prefixed ? /^_?[0-9a-zA-Z]+(_[0-9a-zA-Z]+)*$/ : /^[0-9a-zA-Z]+(_[0-9a-zA-Z]+)*$/;
  if (!underscores.test(digits)) return undefined;
  const clean = digits.replaceAll("_", "");
  const valid = {
    2: /^[01]+$/,
    8: /^[0-7]+$/,
    10: /^[0-9]+$/,
    16: /^[0-9a-fA-F]+$/,
  }[base];
  if (!valid?.test(clean)) return undefined;
  const radix = { 2: "0b", 8: "0o", 10: "", 16: "0x" }[base] ?? "";
  const value = BigInt(radix + clean);
  return negative ? -value : value;
}

/** A Go unsigned integer flag, limited to what a JS number holds exactly. */
function uintParser(what: string): (raw: string) => number {
  return (raw) => {
    const v = parseGoInteger(raw, false);
    if (v === undefined) throw new ValueError(`expected a non-negative integer (${what})`);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new ValueError(`out of range (${what}, at most ${Number.MAX_SAFE_INTEGER})`);
    return Number(v);
  };
}

function intParser(what: string): (raw: string) => number {
  return (raw) => {
    const v = parseGoInteger(raw, true);
    if (v === undefined) throw new ValueError(`expected an integer (${what})`);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new ValueError(`out of range (${what})`);
    }
    return Number(v);
  };
}

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n, // U+00B5 micro sign
  μs: 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_INT64 = (1n << 63n) - 1n;
const DURATION_HINT = 'a Go duration such as "300ms", "5s", "30m" or "1h30m" (units ns, us, ms, s, m, h)';

/** time.ParseDuration: a sequence of decimal numbers (fractions allowed) each with a unit. */
function parseGoDurationNs(raw: string): bigint {
  // reasons stay short: callers append what is allowed
  let rest = raw;
  let negative = false;
  if (rest.startsWith("+") || rest.startsWith("-")) {
    negative = rest.startsWith("-");
    rest = rest.slice(1);
  }
  if (rest === "0") return 0n; // the only number Go accepts without a unit
  if (rest === "") throw new ValueError("not a duration");
  let total = 0n;
  while (rest !== "") {
    const m = /^([0-9]*)(?:\.([0-9]*))?([^0-9.]*)/.exec(rest);
    const whole = m?.[1] ?? "";
    const frac = m?.[2] ?? "";
    const unit = m?.[3] ?? "";
    if (!m || (whole === "" && frac === "")) throw new ValueError("not a duration");
    if (unit === "") throw new ValueError("missing unit");
    const scale = NS_PER_UNIT[unit];
    if (scale === undefined) throw new ValueError(`unknown unit "${unit}"`);
    total += BigInt(whole || "0") * scale;
    if (frac !== "") total += (BigInt(frac) * scale) / 10n ** BigInt(frac.length);
    if (total > MAX_INT64) throw new ValueError("duration too long (Go durations stop at about 292 years)");
    rest = rest.slice(m[0].length);
  }
  return negative ? -total : total;
}

/** A non-negative Go duration in milliseconds (fractional below 1 ms). */
function nonNegativeDurationMs(raw: string): number {
  const ns = parseGoDurationNs(raw);
  if (ns < 0n) throw new ValueError("must not be negative");
  return Number(ns) / 1e6;
}

export function parseDurationMs(raw: string): number {
  try {
    return nonNegativeDurationMs(raw);
  } catch (e) {
    if (e instanceof ValueError) throw new ValueError(`${e.message}; expected ${DURATION_HINT}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// URLs

interface UrlRules {
  /** Listen URLs: etcd binds them, so the host must be an IP address or "localhost". */
  bind: boolean;
}

/**
 * One URL the way etcd's types.NewURLs accepts it (scheme, then exactly "host:port", no path),
 * restricted to http/https: lab etcd does not serve unix sockets.
 */
function parseEtcdUrl(text: string, rules: UrlRules): URL {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(text);
  const scheme = m?.[1]?.toLowerCase(); // Go lower-cases the scheme too
  const authority = m?.[2] ?? "";
  if (scheme !== "http" && scheme !== "https") {
    throw new ValueError(`URL scheme must be http or https (unix sockets are not supported): ${text}`);
  }
  if (/[/?#]/.test(authority)) throw new ValueError(`URL must not contain a path, query or fragment: ${text}`);
  const hp = /^(\[[^\]]+\]|[^:@[\]]+):([0-9]{1,5})$/.exec(authority);
  const host = hp?.[1] ?? "";
  const port = Number(hp?.[2]);
  if (!hp || port > 65535) throw new ValueError(`URL address does not have the form "host:port": ${text}`);
  let url: URL;
  try {
    url = new URL(`${scheme}://${authority}`);
  } catch {
    throw new ValueError(`invalid host in URL: ${text}`);
  }
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  if (rules.bind && bare !== "localhost" && isIP(bare) === 0) {
    throw new ValueError(`expected an IP address or "localhost" in a URL to listen on: ${text}`);
  }
  return url;
}

/** Sorted like etcd (types.URLs.Sort); duplicates dropped because one address binds once. */
function sortUrls(urls: URL[]): URL[] {
  const unique = new Map(urls.map((u) => [u.href, u]));
  return [...unique.values()].sort((a, b) => (a.href < b.href ? -1 : a.href > b.href ? 1 : 0));
}

function splitList(raw: string): string[] {
  return raw.split(",").map((s) => s.trim());
}

/**
 * A comma-separated URL list flag. As in etcd 3.4, an empty value keeps the default list (the
 * flag still counts as set, which matters for the --advertise-client-urls check).
 */
function urlListParser(defaultRaw: string, rules: UrlRules): (raw: string) => URL[] {
  return (raw) => {
    const text = raw.trim() === "" ? defaultRaw : raw;
    if (text === "") return [];
    return sortUrls(
      splitList(text).map((part) => {
        if (part === "") throw new ValueError("empty entry in the comma-separated URL list");
        return parseEtcdUrl(part, rules);
      }),
    );
  };
}

function parseInitialCluster(raw: string): Map<string, URL[]> {
  const cluster = new Map<string, URL[]>();
  // etcd skips empty entries (",,"); we also skip blank ones instead of failing on a stray space
  for (const entry of splitList(raw)) {
    if (entry === "") continue;
    const eq = entry.indexOf("=");
    if (eq < 0)
      throw new ValueError(
        `entry "${entry}" has no '='; expected name=peerURL entries, e.g. n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380`,
      );
    const name = entry.slice(0, eq);
    const url = parseEtcdUrl(entry.slice(eq + 1).trim(), { bind: false });
    cluster.set(name, [...(cluster.get(name) ?? []), url]);
  }
  if (cluster.size === 0) throw new ValueError("empty; expected name=peerURL entries, e.g. n1=http://10.0.0.1:2380");
  for (const [name, urls] of cluster) cluster.set(name, sortUrls(urls));
  return cluster;
}

function oneOf<T extends string>(allowed: readonly T[]): (raw: string) => T {
  return (raw) => {
    const hit = allowed.find((a) => a === raw); // case-sensitive, like etcd
    if (hit === undefined) throw new ValueError(`allowed values: ${allowed.map((a) => `'${a}'`).join(", ")}`);
    return hit;
  };
}

function parseLogOutputs(raw: string): string[] {
  const outputs = splitList(raw);
  if (outputs.some((o) => o === ""))
    throw new ValueError("expected a comma-separated list of 'default', 'stderr', 'stdout' or file paths");
  return outputs;
}

const asString = (raw: string): string => raw;

// ---------------------------------------------------------------------------------------------
// Flag table

type Group =
  | "Member"
  | "Clustering"
  | "Security"
  | "Profiling and Monitoring"
  | "Logging"
  | "Experimental feature"
  | "Unsafe feature"
  | "Deprecated";

interface FlagSpec<T> {
  group: Group;
  /** The default exactly as `etcd --help` prints it; parsed to get the default value. */
  def: string;
  help: string;
  /** Bool flags take a value only as `--flag=value`. */
  bool?: true;
  parse: (raw: string) => T;
}

const spec = <T>(s: FlagSpec<T>): FlagSpec<T> => s;

const FLAGS = {
  name: spec({
    group: "Member",
    def: "default",
    help: "Human-readable name for this member.",
    parse: asString,
  }),
  "data-dir": spec({
    group: "Member",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: etcd prints this default literally
    def: "${name}.etcd",
    help: "Path to the data directory.",
    parse: asString,
  }),
  "snapshot-count": spec({
    group: "Member",
    def: "100000",
    help: "Number of committed transactions to trigger a snapshot to disk (0 means the default).",
    parse: uintParser("a transaction count"),
  }),
  "pre-vote": spec({
    group: "Clustering",
    def: "false",
    bool: true,
    help: "Enable to run an additional Raft election phase.",
    parse: parseGoBool,
  }),
  "initial-election-tick-advance": spec({
    group: "Clustering",
    def: "true",
    bool: true,
    help: "Whether to fast-forward initial election ticks on boot for faster election.",
    parse: parseGoBool,
  }),
  "strict-reconfig-check": spec({
    group: "Clustering",
    def: "true",
    bool: true,
    help: "Reject reconfiguration requests that would cause quorum loss.",
    parse: parseGoBool,
  }),
  "heartbeat-interval": spec({
    group: "Member",
    def: "100",
    help: "Time (in milliseconds) of a heartbeat interval.",
    parse: uintParser("milliseconds"),
  }),
  "election-timeout": spec({
    group: "Member",
    def: "1000",
    help: "Time (in milliseconds) for an election to timeout; at least 5 heartbeats, at most 50000.",
    parse: uintParser("milliseconds"),
  }),
  "listen-peer-urls": spec({
    group: "Member",
    def: "http://localhost:2380",
    help: "List of URLs to listen on for peer traffic.",
    parse: urlListParser("http://localhost:2380", { bind: true }),
  }),
  "listen-client-urls": spec({
    group: "Member",
    def: "http://localhost:2379",
    help: "List of URLs to listen on for client traffic.",
    parse: urlListParser("http://localhost:2379", { bind: true }),
  }),
  "max-snapshots": spec({
    group: "Member",
    def: "5",
    help: "Maximum number of snapshot files to retain (0 is unlimited).",
    parse: uintParser("a file count"),
  }),
  "max-wals": spec({
    group: "Member",
    def: "5",
    help: "Maximum number of wal files to retain (0 is unlimited).",
    parse: uintParser("a file count"),
  }),
  "quota-backend-bytes": spec({
    group: "Member",
    def: "0",
    help: "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB, negative disables).",
    parse: intParser("bytes"),
  }),
  "max-txn-ops": spec({
    group: "Member",
    def: "128",
    help: "Maximum number of operations permitted in a transaction.",
    parse: uintParser("an operation count"),
  }),
  "max-request-bytes": spec({
    group: "Member",
    def: "1572864",
    help: "Maximum client request size in bytes the server will accept.",
    parse: uintParser("bytes"),
  }),

  "initial-advertise-peer-urls": spec({
    group: "Clustering",
    def: "http://localhost:2380",
    help: "List of this member's peer URLs to advertise to the rest of the cluster.",
    parse: urlListParser("http://localhost:2380", { bind: false }),
  }),
  "initial-cluster": spec({
    group: "Clustering",
    def: "default=http://localhost:2380",
    help: "Initial cluster configuration for bootstrapping (name=peerURL,...; default: --name with each --initial-advertise-peer-urls).",
    parse: parseInitialCluster,
  }),
  "initial-cluster-state": spec({
    group: "Clustering",
    def: "new",
    help: "Initial cluster state ('new' or 'existing').",
    parse: oneOf(["new", "existing"] as const),
  }),
  "initial-cluster-token": spec({
    group: "Clustering",
    def: "etcd-cluster",
    help: "Initial cluster token for the etcd cluster during bootstrap.",
    parse: asString,
  }),
  "advertise-client-urls": spec({
    group: "Clustering",
    def: "http://localhost:2379",
    help: "List of this member's client URLs to advertise to the public (required when --listen-client-urls is set).",
    parse: urlListParser("http://localhost:2379", { bind: false }),
  }),
  "auto-compaction-retention": spec({
    group: "Clustering",
    def: "0",
    help: "Auto compaction retention length. 0 means disable auto compaction.",
    parse: asString,
  }),
  "auto-compaction-mode": spec({
    group: "Clustering",
    def: "periodic",
    help: "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
    parse: oneOf(["periodic", "revision"] as const),
  }),
  "enable-v2": spec({
    group: "Clustering",
    def: "false",
    bool: true,
    help: "Accepted for compatibility; lab etcd serves only the v3 API.",
    parse: parseGoBool,
  }),

  "cert-file": spec({
    group: "Security",
    def: "",
    help: "Path to the client server TLS cert file.",
    parse: asString,
  }),
  "key-file": spec({
    group: "Security",
    def: "",
    help: "Path to the client server TLS key file.",
    parse: asString,
  }),
  "client-cert-auth": spec({
    group: "Security",
    def: "false",
    bool: true,
    help: "Enable client cert authentication.",
    parse: parseGoBool,
  }),
  "trusted-ca-file": spec({
    group: "Security",
    def: "",
    help: "Path to the client server TLS trusted CA cert file.",
    parse: asString,
  }),
  "peer-cert-file": spec({
    group: "Security",
    def: "",
    help: "Path to the peer server TLS cert file.",
    parse: asString,
  }),
  "peer-key-file": spec({
    group: "Security",
    def: "",
    help: "Path to the peer server TLS key file.",
    parse: asString,
  }),
  "peer-client-cert-auth": spec({
    group: "Security",
    def: "false",
    bool: true,
    help: "Enable peer client cert authentication.",
    parse: parseGoBool,
  }),
  "peer-trusted-ca-file": spec({
    group: "Security",
    def: "",
    help: "Path to the peer server TLS trusted CA file.",
    parse: asString,
  }),

  "listen-metrics-urls": spec({
    group: "Profiling and Monitoring",
    def: "",
    help: "List of URLs to listen on for the metrics and health endpoints.",
    parse: urlListParser("", { bind: true }),
  }),

  metrics: spec({
    group: "Profiling and Monitoring",
    def: "basic",
    help: "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics.",
    parse: oneOf(["basic", "extensive"] as const),
  }),

  logger: spec({
    group: "Logging",
    def: "capnslog",
    help: "Specify 'zap' or 'capnslog' (accepted for compatibility).",
    parse: oneOf(["zap", "capnslog"] as const),
  }),
  "log-outputs": spec({
    group: "Logging",
    def: "default",
    help: "Comma-separated log targets: 'default', 'stderr', 'stdout' or file paths (accepted for compatibility).",
    parse: parseLogOutputs,
  }),
  "log-level": spec({
    group: "Logging",
    def: "info",
    help: "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
    parse: oneOf(LOG_LEVELS),
  }),

  "experimental-initial-corrupt-check": spec({
    group: "Experimental feature",
    def: "false",
    bool: true,
    help: "Enable to check data corruption before serving any client/peer traffic.",
    parse: parseGoBool,
  }),
  "experimental-snapshot-catchup-entries": spec({
    group: "Experimental feature",
    def: "5000",
    help: "Number of entries for a slow follower to catch up after compacting the raft storage entries.",
    parse: uintParser("an entry count"),
  }),
  "experimental-watch-progress-notify-interval": spec({
    group: "Experimental feature",
    def: "10m",
    help: "Duration of periodical watch progress notification.",
    parse: parseDurationMs,
  }),

  "unsafe-no-fsync": spec({
    group: "Unsafe feature",
    def: "false",
    bool: true,
    help: "Disables fsync, unsafe, will cause data loss.",
    parse: parseGoBool,
  }),

  debug: spec({
    group: "Deprecated",
    def: "false",
    bool: true,
    help: "Enable debug-level logging. Use '--log-level=debug' instead.",
    parse: parseGoBool,
  }),
};

type FlagName = keyof typeof FLAGS;
type FlagValue<K extends FlagName> = (typeof FLAGS)[K] extends FlagSpec<infer T> ? T : never;
const FLAG_NAMES = Object.keys(FLAGS) as FlagName[];
const isFlagName = (s: string): s is FlagName => Object.hasOwn(FLAGS, s);

/** etcd 3.4.23 flags (including hidden ones) that lab etcd does not implement: named in errors. */
const UNSUPPORTED_ETCD_FLAGS = new Set([
  "wal-dir",
  "backend-batch-interval",
  "backend-batch-limit",
  "max-concurrent-streams",
  "grpc-keepalive-min-time",
  "grpc-keepalive-interval",
  "grpc-keepalive-timeout",
  "discovery",
  "discovery-fallback",
  "discovery-proxy",
  "discovery-srv",
  "discovery-srv-name",
  "client-crl-file",
  "client-cert-allowed-hostname",
  "auto-tls",
  "peer-cert-allowed-cn",
  "peer-cert-allowed-hostname",
  "peer-auto-tls",
  "peer-crl-file",
  "cipher-suites",
  "cors",
  "host-whitelist",
  "auth-token",
  "bcrypt-cost",
  "auth-token-ttl",
  "enable-pprof",
  "proxy",
  "proxy-failure-wait",
  "proxy-refresh-interval",
  "proxy-dial-timeout",
  "proxy-write-timeout",
  "proxy-read-timeout",
  "experimental-corrupt-check-time",
  "experimental-enable-v2v3",
  "experimental-backend-bbolt-freelist-type",
  "experimental-enable-lease-checkpoint",
  "experimental-enable-lease-checkpoint-persist",
  "experimental-compaction-batch-limit",
  "experimental-peer-skip-client-san-verification",
  "experimental-warning-apply-duration",
  "force-new-cluster",
  "log-package-levels",
  "enable-grpc-gateway",
  "config-file",
  "version",
]);

/** ETCD_ + upper-case flag name with '-' → '_' (etcd's flags.FlagToEnv). */
const envKeyOf = (flag: string): string => `ETCD_${flag.toUpperCase().replaceAll("-", "_")}`;
const ENV_TO_FLAG = new Map<string, FlagName>(FLAG_NAMES.map((f) => [envKeyOf(f), f]));
const ENV_TO_UNSUPPORTED = new Map([...UNSUPPORTED_ETCD_FLAGS].map((f) => [envKeyOf(f), f]));

// ---------------------------------------------------------------------------------------------
// Command line

type Source = { kind: "flag"; text: string } | { kind: "env"; key: string };

interface Setting {
  value: unknown;
  raw: string;
  source: Source;
}

const describe = (flag: string, source: Source): string =>
  source.kind === "flag" ? `--${flag}` : `environment variable ${source.key} (--${flag})`;

function unknownFlagError(name: string): UsageError {
  if (UNSUPPORTED_ETCD_FLAGS.has(name)) {
    return new UsageError(
      `flag --${name} is an etcd 3.4 flag that lab etcd does not support; remove it. See \`lab etcd --help\` for the supported flags.`,
    );
  }
  return new UsageError(`unknown flag --${name}. See \`lab etcd --help\` for the supported flags.`);
}

/** One command-line token classified the way Go's flag package does it. */
type Token =
  | { kind: "flag"; name: string; value: string | undefined; text: string }
  | { kind: "end" } // "--": everything after it is positional
  | { kind: "positional"; text: string };

function classify(arg: string): Token {
  if (arg.length < 2 || !arg.startsWith("-")) return { kind: "positional", text: arg };
  if (arg === "--") return { kind: "end" };
  const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
  if (body === "" || body.startsWith("-") || body.startsWith("=")) {
    throw new UsageError(`bad flag syntax: ${arg}; write flags as --name value or --name=value. ${HELP_HINT}`);
  }
  const eq = body.indexOf("=");
  return eq < 0
    ? { kind: "flag", name: body, value: undefined, text: arg }
    : {
        kind: "flag",
        name: body.slice(0, eq),
        value: body.slice(eq + 1),
        text: arg,
      };
}

const isHelpName = (name: string): boolean => name === "h" || name === "help";

/**
 * True if argv asks for help (`-h`, `--help`, `-help`, also with `=...`, as Go's flag package
 * treats any undefined help flag). The CLI checks this before parseEtcdConfig. Unlike Go we do not
 * stop at an earlier bad flag: someone asking for help should get it.
 */
export function wantsHelp(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    let token: Token;
    try {
      token = classify(arg);
    } catch {
      continue;
    }
    if (token.kind === "end") return false;
    if (token.kind !== "flag") continue;
    if (isHelpName(token.name)) return true;
    // `--name --help` names the member "--help"; skip the value a non-bool flag consumes
    if (token.value === undefined && isFlagName(token.name) && !FLAGS[token.name].bool) i++;
  }
  return false;
}

function parseValue(flag: FlagName, raw: string, source: Source): unknown {
  try {
    return FLAGS[flag].parse(raw);
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    throw new UsageError(
      `invalid value ${JSON.stringify(raw)} for ${describe(flag, source)}: ${e.message}. ${HELP_HINT}`,
    );
  }
}

function readArgv(argv: readonly string[]): Map<FlagName, Setting> {
  const settings = new Map<FlagName, Setting>();
  let lastBareBool: string | undefined; // for the `--bool false` hint
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const token = classify(arg);
    if (token.kind !== "flag") {
      const extra = token.kind === "end" ? argv[i + 1] : arg;
      if (extra === undefined) break; // a trailing "--" is harmless
      const hint =
        lastBareBool !== undefined && (GO_TRUE.has(extra) || GO_FALSE.has(extra))
          ? ` A bool flag takes its value only with '=': write ${lastBareBool}=${extra}.`
          : "";
      throw new UsageError(
        `unexpected argument ${JSON.stringify(extra)}: lab etcd takes only flags.${hint} ${HELP_HINT}`,
      );
    }
    const { name } = token;
    if (isHelpName(name)) throw new UsageError(`${token.text} asks for help: run \`lab etcd --help\`.`);
    if (!isFlagName(name)) throw unknownFlagError(name);
    let raw = token.value;
    lastBareBool = undefined;
    if (raw === undefined) {
      if (FLAGS[name].bool) {
        raw = "true";
        lastBareBool = `--${name}`;
      } else {
        const next = argv[i + 1];
        // Go takes the next argument whatever it looks like, even "--other"
        if (next === undefined)
          throw new UsageError(`flag --${name} needs a value: write --${name}=VALUE. ${HELP_HINT}`);
        raw = next;
        i++;
      }
    }
    const source: Source = { kind: "flag", text: token.text };
    settings.set(name, { value: parseValue(name, raw, source), raw, source }); // last one wins
  }
  return settings;
}

function readEnv(
  env: Readonly<Record<string, string | undefined>>,
  settings: Map<FlagName, Setting>,
  warnings: string[],
): void {
  for (const [key, raw] of Object.entries(env)) {
    // "ETCD_" (with the underscore) leaves ETCDCTL_* to etcdctl, exactly as etcd does
    if (raw === undefined || !key.startsWith("ETCD_")) continue;
    const flag = ENV_TO_FLAG.get(key);
    if (flag !== undefined && settings.get(flag)?.source.kind === "flag") {
      // etcd 3.4 exits here (even for an empty variable or an equal value)
      throw new UsageError(
        `environment variable ${key} conflicts with flag --${flag}: etcd refuses to let one shadow the other. Unset ${key} or drop --${flag}.`,
      );
    }
    if (raw === "") {
      // etcd ignores empty variables and reports them as unrecognized
      warnings.push(`unrecognized environment variable ${key}= (empty, ignored)`);
      continue;
    }
    if (flag !== undefined) {
      const source: Source = { kind: "env", key };
      settings.set(flag, { value: parseValue(flag, raw, source), raw, source });
      continue;
    }
    const unsupported = ENV_TO_UNSUPPORTED.get(key);
    if (unsupported !== undefined) {
      // etcd would act on it; ignoring it silently could e.g. put the WAL somewhere unexpected
      throw new UsageError(
        `environment variable ${key} sets etcd flag --${unsupported}, which lab etcd does not support; unset it. ${HELP_HINT}`,
      );
    }
    warnings.push(`unrecognized environment variable ${key}=${raw}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/**
 * Parses `lab etcd` flags and ETCD_* environment variables into a validated config, plus
 * warnings (unrecognized ETCD_* variables, ignored or risky settings) for the CLI to print.
 * Throws UsageError for anything etcd 3.4 would reject, and for a few traps it would not.
 */
export function parseEtcdConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { config: EtcdConfig; warnings: string[] } {
  const warnings: string[] = [];
  const settings = readArgv(argv);
  readEnv(env, settings, warnings);

  const isSet = (flag: FlagName): boolean => settings.has(flag);
  const get = <K extends FlagName>(flag: K): FlagValue<K> =>
    (settings.has(flag) ? settings.get(flag)?.value : FLAGS[flag].parse(FLAGS[flag].def)) as FlagValue<K>;
  const where = (flag: FlagName): string => {
    const s = settings.get(flag);
    return s ? describe(flag, s.source) : `--${flag}`;
  };
  const fail = (message: string): never => {
    throw new UsageError(`${message} ${HELP_HINT}`);
  };

  const name = get("name");
  // etcd applies the default whenever the value is empty, even if given explicitly
  const dataDir = get("data-dir") === "" || !isSet("data-dir") ? `${name}.etcd` : get("data-dir");

  const initialAdvertisePeerUrls = get("initial-advertise-peer-urls");
  // etcd 3.4 only rewrites the default for a non-default --name and otherwise keeps
  // default=http://localhost:2380, which then fails its bootstrap check against custom
  // advertise URLs; deriving from the advertise URLs is what works and what etcd does otherwise.
  const initialCluster = isSet("initial-cluster")
    ? get("initial-cluster")
    : new Map([[name, initialAdvertisePeerUrls]]);

  const heartbeatIntervalMs = get("heartbeat-interval");
  const electionTimeoutMs = get("election-timeout");
  if (heartbeatIntervalMs === 0) fail(`${where("heartbeat-interval")} must be > 0 (milliseconds).`);
  if (electionTimeoutMs === 0) fail(`${where("election-timeout")} must be > 0 (milliseconds).`);
  if (electionTimeoutMs < 5 * heartbeatIntervalMs) {
    fail(
      `--election-timeout (${electionTimeoutMs}ms) must be at least 5 times --heartbeat-interval (${heartbeatIntervalMs}ms); raise the election timeout or lower the heartbeat.`,
    );
  }
  if (electionTimeoutMs > MAX_ELECTION_MS) {
    fail(
      `${where("election-timeout")} (${electionTimeoutMs}ms) is too long; etcd allows at most ${MAX_ELECTION_MS}ms.`,
    );
  }

  // Listening on chosen addresses while advertising the localhost default misleads clients;
  // etcd 3.4 refuses it, counting any explicit value (flag or env) as "set".
  if (isSet("listen-client-urls") && !isSet("advertise-client-urls")) {
    fail(
      `--advertise-client-urls is required when ${where("listen-client-urls")} is set: give the client URLs other machines should use, e.g. --advertise-client-urls=http://10.0.0.1:2379.`,
    );
  }

  const listenClientUrls = get("listen-client-urls");
  const listenPeerUrls = get("listen-peer-urls");
  const tls = {
    certFile: get("cert-file"),
    keyFile: get("key-file"),
    peerCertFile: get("peer-cert-file"),
    peerKeyFile: get("peer-key-file"),
  };
  checkTls("client", listenClientUrls, tls.certFile, tls.keyFile, get("client-cert-auth"), fail, warnings);
  checkTls("peer", listenPeerUrls, tls.peerCertFile, tls.peerKeyFile, get("peer-client-cert-auth"), fail, warnings);

  let quotaBackendBytes = get("quota-backend-bytes");
  if (quotaBackendBytes === 0) quotaBackendBytes = DEFAULT_QUOTA_BYTES;
  else if (quotaBackendBytes < 0)
    warnings.push(`${where("quota-backend-bytes")} is negative: backend quota disabled (as etcd).`);
  else if (quotaBackendBytes > MAX_QUOTA_BYTES) {
    // etcd keeps the value and only warns
    warnings.push(
      `backend quota ${quotaBackendBytes} exceeds the maximum recommended quota ${MAX_QUOTA_BYTES} (8 GiB).`,
    );
  }

  const autoCompactionMode = get("auto-compaction-mode");
  const autoCompactionRetention = get("auto-compaction-retention");
  const retention = parseRetention(
    autoCompactionMode,
    autoCompactionRetention.trim() === "" ? "0" : autoCompactionRetention,
    where("auto-compaction-retention"),
    fail,
  );

  let logLevel = get("log-level");
  if (get("debug")) {
    warnings.push(`${where("debug")} is deprecated; use --log-level=debug instead.`);
    logLevel = "debug";
  }
  if (get("enable-v2")) warnings.push(`${where("enable-v2")} is ignored: lab etcd serves only the v3 API.`);

  const snapshotCount = get("snapshot-count");
  const config: EtcdConfig = {
    name,
    dataDir,
    listenClientUrls,
    advertiseClientUrls: get("advertise-client-urls"),
    listenPeerUrls,
    initialAdvertisePeerUrls,
    initialCluster,
    initialClusterState: get("initial-cluster-state"),
    initialClusterToken: get("initial-cluster-token"),
    heartbeatIntervalMs,
    electionTimeoutMs,
    quotaBackendBytes,
    maxRequestBytes: get("max-request-bytes"),
    maxTxnOps: get("max-txn-ops"),
    autoCompactionMode,
    autoCompactionRetention,
    ...retention,
    snapshotCount: snapshotCount === 0 ? DEFAULT_SNAPSHOT_COUNT : snapshotCount, // 0 → default, as etcd
    maxSnapshots: get("max-snapshots"),
    maxWals: get("max-wals"),
    unsafeNoFsync: get("unsafe-no-fsync"),
    logLevel,
    logger: get("logger"),
    logOutputs: get("log-outputs"),
    listenMetricsUrls: get("listen-metrics-urls"),
    metrics: get("metrics"),
    enableV2: get("enable-v2"),
    clientCertAuth: get("client-cert-auth"),
    peerClientCertAuth: get("peer-client-cert-auth"),
    experimentalInitialCorruptCheck: get("experimental-initial-corrupt-check"),
    watchProgressNotifyIntervalMs: get("experimental-watch-progress-notify-interval"),
    snapshotCatchUpEntries: get("experimental-snapshot-catchup-entries"),
    preVote: get("pre-vote"),
    initialElectionTickAdvance: get("initial-election-tick-advance"),
    strictReconfigCheck: get("strict-reconfig-check"),
  };
  // Optional paths are present only when non-empty (exactOptionalPropertyTypes: never undefined).
  if (tls.certFile !== "") config.certFile = tls.certFile;
  if (tls.keyFile !== "") config.keyFile = tls.keyFile;
  if (get("trusted-ca-file") !== "") config.trustedCaFile = get("trusted-ca-file");
  if (tls.peerCertFile !== "") config.peerCertFile = tls.peerCertFile;
  if (tls.peerKeyFile !== "") config.peerKeyFile = tls.peerKeyFile;
  if (get("peer-trusted-ca-file") !== "") config.peerTrustedCaFile = get("peer-trusted-ca-file");
  return { config, warnings };
}

/**
 * etcd reads a bare non-negative integer as hours (periodic) or revisions, anything else as a Go
 * duration. In revision mode etcd would take "5m" as 300000000000 revisions; we refuse instead.
 */
function parseRetention(
  mode: "periodic" | "revision",
  raw: string,
  where: string,
  fail: (message: string) => never,
): { autoCompactionRetentionMs: number } | { autoCompactionRetentionRevisions: number } {
  const integer = /^[+-]?[0-9]+$/.test(raw) ? Number(raw) : undefined; // Go's Atoi: decimal only
  if (mode === "revision") {
    if (integer === undefined || integer < 0 || !Number.isSafeInteger(integer)) {
      fail(
        `invalid value ${JSON.stringify(raw)} for ${where}: with --auto-compaction-mode=revision it must be a non-negative integer (revisions to keep), e.g. 1000.`,
      );
    }
    return { autoCompactionRetentionRevisions: integer ?? 0 };
  }
  if (integer !== undefined && integer >= 0) return { autoCompactionRetentionMs: integer * 3_600_000 };
  try {
    return { autoCompactionRetentionMs: nonNegativeDurationMs(raw) };
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    return fail(
      `invalid value ${JSON.stringify(raw)} for ${where}: ${e.message}; expected a non-negative integer (hours) or ${DURATION_HINT}.`,
    );
  }
}

/** etcd refuses https listeners without a key pair and a lone cert or key; it warns on unused TLS. */
function checkTls(
  kind: "client" | "peer",
  listen: URL[],
  certFile: string,
  keyFile: string,
  certAuth: boolean,
  fail: (message: string) => never,
  warnings: string[],
): void {
  const p = kind === "peer" ? "peer-" : "";
  const https = listen.filter((u) => u.protocol === "https:");
  if ((certFile === "") !== (keyFile === "")) {
    fail(
      `--${p}cert-file and --${p}key-file must be given together (got ${certFile === "" ? `only --${p}key-file` : `only --${p}cert-file`}).`,
    );
  }
  if (https.length > 0 && certFile === "") {
    fail(
      `--${p}cert-file and --${p}key-file are required to listen on ${https[0]?.href ?? "https"} (${kind} URL with https scheme); give them or use http.`,
    );
  }
  if (https.length === 0 && (certFile !== "" || certAuth)) {
    warnings.push(
      `${kind} TLS settings (--${p}cert-file/--${p}key-file/--${p}client-cert-auth) are ignored: no ${kind} listen URL uses https.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Help

/** Usage text in etcd's `--help` layout, listing only the flags lab etcd supports. */
export function etcdFlagHelp(): string {
  const lines = [
    "Usage:",
    "",
    "  lab etcd [flags]",
    "    Start an etcd-compatible store node. Flags, defaults and ETCD_* environment",
    "    variables follow etcd 3.4.",
    "",
    "  lab etcd -h | --help",
    "    Show this help.",
    "",
    "Flags are written --name value, --name=value, -name value or -name=value; a bool flag",
    "alone means true, and takes another value only as --flag=false.",
    "Every flag can also be set by ETCD_<FLAG> (upper case, '-' as '_'), e.g. ETCD_DATA_DIR;",
    "setting both the variable and the flag is an error, as in etcd.",
  ];
  let group: Group | undefined;
  for (const flag of FLAG_NAMES) {
    const s = FLAGS[flag];
    if (s.group !== group) {
      group = s.group;
      lines.push("", `${group}:`);
    }
    lines.push(`  --${flag} '${s.def}'`, `    ${s.help}`);
  }
  return `${lines.join("\n")}\n`;
}
