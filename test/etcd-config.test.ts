import { describe, expect, it } from "vitest";
import { type EtcdConfig, etcdFlagHelp, parseEtcdConfig, UsageError, wantsHelp } from "../src/etcd/config.js";

type Env = Record<string, string | undefined>;

const parse = (argv: string[], env: Env = {}) => parseEtcdConfig(argv, env);
const cfg = (argv: string[], env: Env = {}): EtcdConfig => parse(argv, env).config;
const hrefs = (urls: URL[]): string[] => urls.map((u) => u.href);
const clusterOf = (c: EtcdConfig): Record<string, string[]> =>
  Object.fromEntries([...c.initialCluster].map(([name, urls]) => [name, hrefs(urls)]));

/** The UsageError thrown by parsing, so tests can check every part of its message. */
function usageError(argv: string[], env: Env = {}): UsageError {
  try {
    parseEtcdConfig(argv, env);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error(`expected a UsageError for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

/** Listening explicitly requires advertising explicitly (etcd rule); most tests need both. */
const CLIENT = ["--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379"];

describe("clustering switches", () => {
  it("take etcd 3.4's defaults (pre-vote off, strict reconfiguration check on) and its spellings", () => {
    expect(cfg([]).preVote).toBe(false);
    expect(cfg([]).strictReconfigCheck).toBe(true);
    expect(cfg(["--pre-vote"]).preVote).toBe(true);
    expect(cfg(["--strict-reconfig-check=false"]).strictReconfigCheck).toBe(false);
    expect(cfg([], { ETCD_PRE_VOTE: "true" }).preVote).toBe(true);
    expect(usageError(["--pre-vote=maybe"]).message).toContain("--pre-vote");
    expect(cfg([]).initialElectionTickAdvance).toBe(true);
    expect(cfg(["--initial-election-tick-advance=false"]).initialElectionTickAdvance).toBe(false);
    expect(cfg([], { ETCD_INITIAL_ELECTION_TICK_ADVANCE: "false" }).initialElectionTickAdvance).toBe(false);
  });
});

describe("defaults", () => {
  it("match etcd 3.4", () => {
    const { config, warnings } = parse([]);
    expect(warnings).toEqual([]);
    expect(config.name).toBe("default");
    expect(config.dataDir).toBe("default.etcd");
    expect(hrefs(config.listenClientUrls)).toEqual(["http://localhost:2379/"]);
    expect(hrefs(config.advertiseClientUrls)).toEqual(["http://localhost:2379/"]);
    expect(hrefs(config.listenPeerUrls)).toEqual(["http://localhost:2380/"]);
    expect(hrefs(config.initialAdvertisePeerUrls)).toEqual(["http://localhost:2380/"]);
    expect(clusterOf(config)).toEqual({ default: ["http://localhost:2380/"] });
    expect(config.initialClusterState).toBe("new");
    expect(config.initialClusterToken).toBe("etcd-cluster");
    expect(config.heartbeatIntervalMs).toBe(100);
    expect(config.electionTimeoutMs).toBe(1000);
    expect(config.quotaBackendBytes).toBe(2 * 1024 ** 3);
    expect(config.maxRequestBytes).toBe(1572864);
    expect(config.maxTxnOps).toBe(128);
    expect(config.autoCompactionMode).toBe("periodic");
    expect(config.autoCompactionRetention).toBe("0");
    expect(config.autoCompactionRetentionMs).toBe(0);
    expect(config).not.toHaveProperty("autoCompactionRetentionRevisions");
    expect(config.snapshotCount).toBe(100000);
    expect(config.maxSnapshots).toBe(5);
    expect(config.maxWals).toBe(5);
    expect(config.unsafeNoFsync).toBe(false);
    expect(config.logLevel).toBe("info");
    expect(config.logger).toBe("capnslog");
    expect(config.logOutputs).toEqual(["default"]);
    expect(config.listenMetricsUrls).toEqual([]);
    expect(config.enableV2).toBe(false);
    expect(config.clientCertAuth).toBe(false);
    expect(config.peerClientCertAuth).toBe(false);
    expect(config.experimentalInitialCorruptCheck).toBe(false);
    expect(config.watchProgressNotifyIntervalMs).toBe(10 * 60_000);
    for (const k of ["certFile", "keyFile", "trustedCaFile", "peerCertFile", "peerKeyFile", "peerTrustedCaFile"]) {
      expect(config).not.toHaveProperty(k);
    }
  });

  it("derive data dir and initial cluster from --name and --initial-advertise-peer-urls", () => {
    const c = cfg(["--name", "n1", "--initial-advertise-peer-urls", "http://10.0.0.1:2380,http://10.0.0.2:2380"]);
    expect(c.dataDir).toBe("n1.etcd");
    expect(clusterOf(c)).toEqual({
      n1: ["http://10.0.0.1:2380/", "http://10.0.0.2:2380/"],
    });
    // even for the default name (etcd 3.4 would keep default=http://localhost:2380 and then fail)
    expect(clusterOf(cfg(["--initial-advertise-peer-urls=http://10.0.0.1:2380"]))).toEqual({
      default: ["http://10.0.0.1:2380/"],
    });
  });

  it("use the data dir default for an empty --data-dir, as etcd", () => {
    expect(cfg(["--name=x", "--data-dir="]).dataDir).toBe("x.etcd");
    expect(cfg(["--data-dir", "/var/lib/etcd"]).dataDir).toBe("/var/lib/etcd");
  });

  it("map zero quota and zero snapshot count to the defaults", () => {
    expect(cfg(["--quota-backend-bytes=0"]).quotaBackendBytes).toBe(2 * 1024 ** 3);
    expect(cfg(["--snapshot-count=0"]).snapshotCount).toBe(100000);
  });
});

describe("flag forms", () => {
  it.each([[["--name", "a"]], [["--name=a"]], [["-name", "a"]], [["-name=a"]]])("accepts %j", (argv) => {
    expect(cfg(argv).name).toBe("a");
  });

  it("keeps '=' inside a value and takes any next argument as a value, as Go does", () => {
    expect(cfg(["--initial-cluster-token=a=b"]).initialClusterToken).toBe("a=b");
    expect(cfg(["--name", "--weird"]).name).toBe("--weird");
    expect(cfg(["--name", ""]).name).toBe("");
  });

  it("lets the last repetition win", () => {
    expect(cfg(["--name", "a", "--name", "b"]).name).toBe("b");
    expect(
      hrefs(cfg(["--listen-peer-urls=http://127.0.0.1:1", "--listen-peer-urls=http://127.0.0.1:2"]).listenPeerUrls),
    ).toEqual(["http://127.0.0.1:2/"]);
  });

  it("checks every repetition, not only the last one (Go sets values as it goes)", () => {
    expect(usageError(["--heartbeat-interval=abc", "--heartbeat-interval=100"]).message).toContain(
      "--heartbeat-interval",
    );
  });

  it.each([
    [["--unsafe-no-fsync"], true],
    [["-unsafe-no-fsync"], true],
    [["--unsafe-no-fsync=true"], true],
    [["--unsafe-no-fsync=false"], false],
    [["--unsafe-no-fsync=1"], true],
    [["--unsafe-no-fsync=0"], false],
    [["--unsafe-no-fsync=T"], true],
    [["--unsafe-no-fsync=F"], false],
    [["--unsafe-no-fsync=TRUE"], true],
    [["--unsafe-no-fsync=False"], false],
  ])("bool %j → %s", (argv, expected) => {
    expect(cfg(argv).unsafeNoFsync).toBe(expected);
  });

  it("does not let a bool flag consume the next argument", () => {
    const e = usageError(["--unsafe-no-fsync", "false"]);
    expect(e.message).toContain('unexpected argument "false"');
    expect(e.message).toContain("--unsafe-no-fsync=false");
    expect(cfg(["--unsafe-no-fsync", "--name", "x"])).toMatchObject({
      unsafeNoFsync: true,
      name: "x",
    });
  });

  it("accepts every supported bool flag", () => {
    const c = cfg([
      "--enable-v2",
      "--client-cert-auth",
      "--peer-client-cert-auth",
      "--experimental-initial-corrupt-check=true",
      "--unsafe-no-fsync",
    ]);
    expect(c).toMatchObject({
      enableV2: true,
      clientCertAuth: true,
      peerClientCertAuth: true,
      experimentalInitialCorruptCheck: true,
      unsafeNoFsync: true,
    });
  });

  it("parses integers with Go's base-0 syntax", () => {
    expect(cfg(["--snapshot-count=010"]).snapshotCount).toBe(8);
    expect(cfg(["--heartbeat-interval=0x10", "--election-timeout=1_000"])).toMatchObject({
      heartbeatIntervalMs: 16,
      electionTimeoutMs: 1000,
    });
    expect(cfg(["--max-txn-ops=0b101"]).maxTxnOps).toBe(5);
    expect(cfg(["--max-txn-ops=0o17"]).maxTxnOps).toBe(15);
    expect(cfg(["--max-txn-ops=0x_1F"]).maxTxnOps).toBe(31);
    expect(cfg(["--quota-backend-bytes=-1"]).quotaBackendBytes).toBe(-1);
    expect(cfg(["--quota-backend-bytes=+4096"]).quotaBackendBytes).toBe(4096);
  });

  it("stops at '--' and ignores a trailing one", () => {
    expect(cfg(["--name=a", "--"]).name).toBe("a");
    expect(usageError(["--", "--name=a"]).message).toContain('unexpected argument "--name=a"');
  });

  it("parses all the remaining value flags", () => {
    const c = cfg([
      ...CLIENT,
      "--listen-peer-urls=https://127.0.0.1:2380",
      "--initial-advertise-peer-urls=https://10.0.0.1:2380",
      "--initial-cluster=n1=https://10.0.0.1:2380",
      "--initial-cluster-state=existing",
      "--initial-cluster-token=tok",
      "--max-request-bytes=100",
      "--max-txn-ops=7",
      "--max-snapshots=0",
      "--max-wals=2",
      "--quota-backend-bytes=1048576",
      "--log-level=warn",
      "--logger=zap",
      "--log-outputs=stderr,/var/log/etcd.log",
      "--listen-metrics-urls=http://127.0.0.1:2381,http://[::1]:2381",
      "--cert-file=/c.crt",
      "--key-file=/c.key",
      "--trusted-ca-file=/ca.crt",
      "--peer-cert-file=/p.crt",
      "--peer-key-file=/p.key",
      "--peer-trusted-ca-file=/pca.crt",
      "--experimental-watch-progress-notify-interval=5s",
    ]);
    expect(c).toMatchObject({
      initialClusterState: "existing",
      initialClusterToken: "tok",
      maxRequestBytes: 100,
      maxTxnOps: 7,
      maxSnapshots: 0,
      maxWals: 2,
      quotaBackendBytes: 1048576,
      logLevel: "warn",
      logger: "zap",
      logOutputs: ["stderr", "/var/log/etcd.log"],
      certFile: "/c.crt",
      keyFile: "/c.key",
      trustedCaFile: "/ca.crt",
      peerCertFile: "/p.crt",
      peerKeyFile: "/p.key",
      peerTrustedCaFile: "/pca.crt",
      watchProgressNotifyIntervalMs: 5000,
    });
    expect(hrefs(c.listenMetricsUrls)).toEqual(["http://127.0.0.1:2381/", "http://[::1]:2381/"]);
    expect(clusterOf(c)).toEqual({ n1: ["https://10.0.0.1:2380/"] });
  });

  it("accepts a kubeadm-style etcd static pod command line", () => {
    const { config, warnings } = parse([
      "--advertise-client-urls=https://10.0.0.5:2379",
      "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
      "--client-cert-auth=true",
      "--data-dir=/var/lib/etcd",
      "--experimental-initial-corrupt-check=true",
      "--experimental-watch-progress-notify-interval=5s",
      "--initial-advertise-peer-urls=https://10.0.0.5:2380",
      "--initial-cluster=cp1=https://10.0.0.5:2380",
      "--key-file=/etc/kubernetes/pki/etcd/server.key",
      "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379",
      "--listen-metrics-urls=http://127.0.0.1:2381",
      "--listen-peer-urls=https://10.0.0.5:2380",
      "--name=cp1",
      "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
      "--peer-client-cert-auth=true",
      "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
      "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
      "--snapshot-count=10000",
      "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    ]);
    expect(warnings).toEqual([]);
    expect(config.name).toBe("cp1");
    expect(config.snapshotCount).toBe(10000);
    expect(hrefs(config.listenClientUrls)).toEqual(["https://10.0.0.5:2379/", "https://127.0.0.1:2379/"]);
  });
});

describe("URLs", () => {
  it("splits on commas, trims, sorts and de-duplicates like etcd", () => {
    const c = cfg([
      "--listen-client-urls",
      "http://127.0.0.1:2, http://127.0.0.1:1,http://127.0.0.1:1",
      "--advertise-client-urls=HTTP://Example.COM:2379",
    ]);
    expect(hrefs(c.listenClientUrls)).toEqual(["http://127.0.0.1:1/", "http://127.0.0.1:2/"]);
    expect(hrefs(c.advertiseClientUrls)).toEqual(["http://example.com:2379/"]);
  });

  it("keeps an explicit default port (WHATWG reports it as '')", () => {
    const [u] = cfg(["--listen-peer-urls=http://127.0.0.1:80"]).listenPeerUrls;
    expect(u?.host).toBe("127.0.0.1");
    expect(u?.port).toBe("");
  });

  it("treats an empty list as the default, as etcd 3.4 does", () => {
    expect(hrefs(cfg(["--listen-peer-urls="]).listenPeerUrls)).toEqual(["http://localhost:2380/"]);
    expect(cfg(["--listen-metrics-urls="]).listenMetricsUrls).toEqual([]);
  });

  it("allows localhost, IPv4, IPv6 and port 0 for listening", () => {
    const c = cfg(["--listen-peer-urls=http://localhost:0,http://0.0.0.0:2380,http://[::]:2380"]);
    expect(c.listenPeerUrls).toHaveLength(3);
  });

  it.each([
    ["--listen-client-urls", "foo", "scheme must be http or https"],
    ["--listen-client-urls", "ftp://127.0.0.1:1", "scheme must be http or https"],
    ["--listen-client-urls", "unix://127.0.0.1:1", "unix sockets are not supported"],
    ["--listen-client-urls", "http://127.0.0.1", 'does not have the form "host:port"'],
    ["--listen-client-urls", "http://127.0.0.1:99999", 'does not have the form "host:port"'],
    ["--listen-client-urls", "http://:2379", 'does not have the form "host:port"'],
    ["--listen-client-urls", "http://127.0.0.1:2379/x", "must not contain a path"],
    ["--listen-client-urls", "http://127.0.0.1:2379/", "must not contain a path"],
    ["--listen-client-urls", "http://127.0.0.1:1,,http://127.0.0.1:2", "empty entry"],
    ["--listen-client-urls", "http://example.com:2379", 'IP address or "localhost"'],
    ["--listen-peer-urls", "http://example.com:2380", 'IP address or "localhost"'],
    ["--listen-metrics-urls", "http://example.com:2381", 'IP address or "localhost"'],
    ["--advertise-client-urls", "http://exa mple.com:2379", "host"],
    ["--initial-advertise-peer-urls", "https://10.0.0.1", 'does not have the form "host:port"'],
  ])("%s=%s is rejected (%s)", (flag, value, reason) => {
    const e = usageError([
      `${flag}=${value}`,
      ...(flag === "--listen-client-urls" ? ["--advertise-client-urls=http://127.0.0.1:1"] : []),
    ]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(value)} for ${flag}`);
    expect(e.message).toContain(reason);
    expect(e.message).toContain("lab etcd --help");
  });
});

describe("--initial-cluster", () => {
  it("maps names to URLs, allowing a name several times", () => {
    const c = cfg([
      "--name=n1",
      "--initial-cluster",
      "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n1=http://10.0.0.1:2381",
    ]);
    expect(clusterOf(c)).toEqual({
      n1: ["http://10.0.0.1:2380/", "http://10.0.0.1:2381/"],
      n2: ["http://10.0.0.2:2380/"],
    });
  });

  it("skips empty entries and surrounding blanks", () => {
    expect(clusterOf(cfg(["--initial-cluster= a=http://10.0.0.1:2380,, "]))).toEqual({ a: ["http://10.0.0.1:2380/"] });
  });

  it("is not rewritten when given explicitly", () => {
    expect(clusterOf(cfg(["--name=n9", "--initial-cluster=default=http://localhost:2380"]))).toEqual({
      default: ["http://localhost:2380/"],
    });
  });

  it.each([
    ["bogus", "has no '='"],
    ["n1=http://a:2380,bogus", "entry \"bogus\" has no '='"],
    ["n1=foo", "scheme must be http or https"],
    ["n1=", "scheme must be http or https"],
    ["n1=http://a:2380/path", "must not contain a path"],
    ["", "empty"],
    [",", "empty"],
  ])("rejects %j", (value, reason) => {
    const e = usageError([`--initial-cluster=${value}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(value)} for --initial-cluster`);
    expect(e.message).toContain(reason);
  });
});

describe("auto compaction", () => {
  it.each([
    ["1", 3_600_000],
    ["0", 0],
    ["", 0],
    ["+2", 7_200_000],
    ["010", 36_000_000], // Atoi is decimal: ten hours
    ["30m", 1_800_000],
    ["5s", 5000],
    ["1h30m", 5_400_000],
    ["1.5h", 5_400_000],
    [".5s", 500],
    ["0s", 0],
    ["500us", 0.5],
    ["2µs", 0.002],
    ["3μs", 0.003],
    ["10ns", 0.00001],
  ])("periodic retention %j → %d ms", (retention, ms) => {
    const c = cfg([`--auto-compaction-retention=${retention}`]);
    expect(c.autoCompactionRetention).toBe(retention);
    expect(c.autoCompactionRetentionMs).toBeCloseTo(ms, 9);
    expect(c).not.toHaveProperty("autoCompactionRetentionRevisions");
  });

  it("revision mode reads an integer count", () => {
    const c = cfg(["--auto-compaction-mode=revision", "--auto-compaction-retention=1000"]);
    expect(c.autoCompactionMode).toBe("revision");
    expect(c.autoCompactionRetentionRevisions).toBe(1000);
    expect(c).not.toHaveProperty("autoCompactionRetentionMs");
    expect(cfg(["--auto-compaction-mode=revision"]).autoCompactionRetentionRevisions).toBe(0);
  });

  it.each([
    [[], "1.5", "missing unit"],
    [[], "-1", "missing unit"],
    [[], "-5m", "must not be negative"],
    [[], "5x", 'unknown unit "x"'],
    [[], "h", "not a duration"],
    [[], "1h.", "not a duration"],
  ])("periodic rejects %j %j", (extra, retention, reason) => {
    const e = usageError([...extra, `--auto-compaction-retention=${retention}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(retention)} for --auto-compaction-retention`);
    expect(e.message).toContain("non-negative integer (hours)");
    expect(e.message).toContain(reason);
  });

  it.each(["5m", "-1", "1.5"])("revision mode rejects %j (etcd would misread a duration as a count)", (retention) => {
    const e = usageError(["--auto-compaction-mode=revision", `--auto-compaction-retention=${retention}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(retention)} for --auto-compaction-retention`);
    expect(e.message).toContain("non-negative integer (revisions to keep)");
  });

  it.each(["bogus", "", "Periodic"])("rejects --auto-compaction-mode=%j", (mode) => {
    const e = usageError([`--auto-compaction-mode=${mode}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(mode)} for --auto-compaction-mode`);
    expect(e.message).toContain("'periodic', 'revision'");
  });
});

describe("--metrics", () => {
  it("is basic unless extensive is asked for, by flag or ETCD_METRICS", () => {
    expect(cfg([]).metrics).toBe("basic");
    expect(cfg(["--metrics", "extensive"]).metrics).toBe("extensive");
    expect(cfg([], { ETCD_METRICS: "extensive" }).metrics).toBe("extensive");
  });

  // etcd 3.4 takes any other word as basic; a typo here would silently drop the histograms.
  it.each(["extensiv", "", "Extensive"])("rejects --metrics=%j, naming the two levels", (level) => {
    const e = usageError([`--metrics=${level}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(level)} for --metrics`);
    expect(e.message).toContain("'basic', 'extensive'");
  });
});

describe("durations", () => {
  it.each([
    ["10m", 600_000],
    ["0", 0],
    ["1h2m3s4ms", 3_723_004],
    ["+1s", 1000],
  ])("--experimental-watch-progress-notify-interval=%s → %d ms", (value, ms) => {
    expect(cfg([`--experimental-watch-progress-notify-interval=${value}`]).watchProgressNotifyIntervalMs).toBe(ms);
  });

  it.each([
    ["10", "missing unit"],
    ["", "not a duration; expected a Go duration"],
    ["-1s", "must not be negative"],
    ["1d", 'unknown unit "d"'],
    ["3000000h", "too long"],
  ])("rejects %j", (value, reason) => {
    const e = usageError([`--experimental-watch-progress-notify-interval=${value}`]);
    expect(e.message).toContain(
      `invalid value ${JSON.stringify(value)} for --experimental-watch-progress-notify-interval`,
    );
    expect(e.message).toContain(reason);
  });
});

describe("malformed values", () => {
  it.each([
    ["--heartbeat-interval", "abc", "non-negative integer"],
    ["--heartbeat-interval", "-5", "non-negative integer"],
    ["--heartbeat-interval", "+5", "non-negative integer"],
    ["--heartbeat-interval", "1.5", "non-negative integer"],
    ["--election-timeout", "", "non-negative integer"],
    ["--snapshot-count", "08", "non-negative integer"], // leading 0 is octal in Go
    ["--snapshot-count", "1__0", "non-negative integer"],
    ["--snapshot-count", "_10", "non-negative integer"],
    ["--snapshot-count", "10_", "non-negative integer"],
    ["--snapshot-count", "0x", "non-negative integer"],
    ["--max-request-bytes", "99999999999999999999", "out of range"],
    ["--max-txn-ops", "many", "non-negative integer"],
    ["--max-snapshots", "-1", "non-negative integer"],
    ["--max-wals", "x", "non-negative integer"],
    ["--quota-backend-bytes", "2GiB", "expected an integer"],
    ["--initial-cluster-state", "bogus", "'new', 'existing'"],
    ["--initial-cluster-state", "EXISTING", "'new', 'existing'"],
    ["--log-level", "INFO", "'debug', 'info', 'warn', 'error', 'panic', 'fatal'"],
    ["--log-level", "trace", "'debug', 'info'"],
    ["--logger", "bogus", "'zap', 'capnslog'"],
    ["--log-outputs", "stderr,", "comma-separated list"],
    ["--unsafe-no-fsync", "maybe", "expected true or false"],
    ["--enable-v2", "yes", "expected true or false"],
    ["--client-cert-auth", "", "expected true or false"],
  ])("%s=%j", (flag, value, allowed) => {
    const e = usageError([`${flag}=${value}`]);
    expect(e.message).toContain(`invalid value ${JSON.stringify(value)} for ${flag}:`);
    expect(e.message).toContain(allowed);
    expect(e.message).toContain("lab etcd --help");
  });
});

describe("command-line errors", () => {
  it("names an unknown flag and points to --help", () => {
    const e = usageError(["--bogus-flag=1"]);
    expect(e.message).toContain("unknown flag --bogus-flag");
    expect(e.message).toContain("lab etcd --help");
    expect(usageError(["-bogus"]).message).toContain("unknown flag --bogus");
  });

  it("says when an unknown flag is a real etcd flag we do not support", () => {
    const e = usageError(["--wal-dir", "/wal"]);
    expect(e.message).toContain("--wal-dir is an etcd 3.4 flag that lab etcd does not support");
    expect(e.message).toContain("lab etcd --help");
    expect(usageError(["--force-new-cluster"]).message).toContain("does not support");
  });

  it("rejects positional arguments", () => {
    const e = usageError(["foo"]);
    expect(e.message).toContain('unexpected argument "foo"');
    expect(e.message).toContain("takes only flags");
    expect(e.message).toContain("lab etcd --help");
    expect(usageError(["--name=a", "-"]).message).toContain('unexpected argument "-"');
    // Go stops at the first non-flag, so later flags are never looked at
    expect(usageError(["foo", "--bogus"]).message).toContain('unexpected argument "foo"');
  });

  it("rejects a value-taking flag at the end of argv", () => {
    const e = usageError(["--name"]);
    expect(e.message).toContain("flag --name needs a value");
    expect(e.message).toContain("--name=VALUE");
  });

  it.each(["---name", "--=x", "-=x"])("rejects bad flag syntax %j", (arg) => {
    expect(usageError([arg]).message).toContain(`bad flag syntax: ${arg}`);
  });

  it("refuses help flags (the CLI handles them first)", () => {
    expect(usageError(["--help"]).message).toContain("lab etcd --help");
  });

  it("throws only UsageError instances with the UsageError name", () => {
    const e = usageError(["--bogus"]);
    expect(e.name).toBe("UsageError");
    expect(e).toBeInstanceOf(Error);
  });
});

describe("cross-flag checks (as etcd's config validation)", () => {
  it("requires --advertise-client-urls once --listen-client-urls is set", () => {
    const e = usageError(["--listen-client-urls=http://127.0.0.1:2379"]);
    expect(e.message).toContain("--advertise-client-urls is required when --listen-client-urls is set");
    expect(e.message).toContain("e.g. --advertise-client-urls=");
    // even to the default value, and via the environment
    expect(usageError(["--listen-client-urls=http://localhost:2379"]).message).toContain(
      "--advertise-client-urls is required",
    );
    expect(usageError([], { ETCD_LISTEN_CLIENT_URLS: "http://127.0.0.1:1" }).message).toContain(
      "--advertise-client-urls is required when environment variable ETCD_LISTEN_CLIENT_URLS",
    );
    // advertising alone is fine
    expect(cfg(["--advertise-client-urls=http://10.0.0.1:2379"]).listenClientUrls).toHaveLength(1);
  });

  it("requires the election timeout to be 5 heartbeats to 50 s", () => {
    expect(usageError(["--heartbeat-interval=300"]).message).toContain(
      "--election-timeout (1000ms) must be at least 5 times --heartbeat-interval (300ms)",
    );
    expect(usageError(["--election-timeout=50001"]).message).toContain("at most 50000ms");
    expect(usageError(["--heartbeat-interval=0"]).message).toContain("--heartbeat-interval must be > 0");
    expect(usageError(["--election-timeout=0"]).message).toContain("--election-timeout must be > 0");
    expect(cfg(["--heartbeat-interval=200", "--election-timeout=1000"]).heartbeatIntervalMs).toBe(200);
    expect(cfg(["--election-timeout=50000"]).electionTimeoutMs).toBe(50000);
  });

  it("requires key pairs for https listeners and together", () => {
    const https = ["--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"];
    expect(usageError(https).message).toContain(
      "--cert-file and --key-file are required to listen on https://127.0.0.1:2379/",
    );
    expect(usageError(["--listen-peer-urls=https://127.0.0.1:2380"]).message).toContain(
      "--peer-cert-file and --peer-key-file are required",
    );
    expect(usageError(["--cert-file=/c"]).message).toContain(
      "--cert-file and --key-file must be given together (got only --cert-file)",
    );
    expect(usageError(["--peer-key-file=/k"]).message).toContain("(got only --peer-key-file)");
    expect(cfg([...https, "--cert-file=/c", "--key-file=/k"]).certFile).toBe("/c");
  });

  it("warns that TLS settings are unused without an https listener, as etcd does", () => {
    const { warnings } = parse(["--cert-file=/c", "--key-file=/k", "--peer-client-cert-auth"]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain("client TLS settings");
    expect(warnings[1]).toContain("peer TLS settings");
  });
});

describe("warnings", () => {
  it("warns above the 8 GiB quota but keeps the value, as etcd", () => {
    const { config, warnings } = parse(["--quota-backend-bytes=9663676416"]);
    expect(config.quotaBackendBytes).toBe(9663676416);
    expect(warnings).toEqual([expect.stringContaining("exceeds the maximum recommended quota 8589934592")]);
  });

  it("warns that a negative quota disables it", () => {
    expect(parse(["--quota-backend-bytes=-1"]).warnings).toEqual([expect.stringContaining("backend quota disabled")]);
  });

  it("maps the deprecated --debug to log level debug", () => {
    const { config, warnings } = parse(["--debug", "--log-level=warn"]);
    expect(config.logLevel).toBe("debug");
    expect(warnings).toEqual([expect.stringContaining("--debug is deprecated; use --log-level=debug")]);
    expect(cfg(["--debug=false", "--log-level=error"]).logLevel).toBe("error");
  });

  it("notes that --enable-v2 is ignored", () => {
    const { config, warnings } = parse(["--enable-v2=true"]);
    expect(config.enableV2).toBe(true);
    expect(warnings).toEqual([expect.stringContaining("--enable-v2 is ignored")]);
    expect(parse(["--enable-v2=false"]).warnings).toEqual([]);
  });
});

describe("environment", () => {
  it("maps ETCD_<FLAG> with dashes as underscores", () => {
    const { config, warnings } = parse([], {
      ETCD_NAME: "envname",
      ETCD_DATA_DIR: "/data",
      ETCD_SNAPSHOT_COUNT: "5",
      ETCD_INITIAL_CLUSTER_STATE: "existing",
      ETCD_LISTEN_PEER_URLS: "http://127.0.0.1:3380",
      ETCD_UNSAFE_NO_FSYNC: "true",
      ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL: "1m",
      ETCD_AUTO_COMPACTION_RETENTION: "2",
    });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      name: "envname",
      dataDir: "/data",
      snapshotCount: 5,
      initialClusterState: "existing",
      unsafeNoFsync: true,
      watchProgressNotifyIntervalMs: 60_000,
      autoCompactionRetentionMs: 7_200_000,
    });
    expect(hrefs(config.listenPeerUrls)).toEqual(["http://127.0.0.1:3380/"]);
    expect(clusterOf(config)).toEqual({ envname: ["http://localhost:2380/"] });
  });

  it("combines with flags for different settings", () => {
    const c = cfg(["--name=flagname"], {
      ETCD_DATA_DIR: "/d",
      ETCD_INITIAL_CLUSTER: "a=http://10.0.0.1:2380",
    });
    expect(c).toMatchObject({ name: "flagname", dataDir: "/d" });
    expect(clusterOf(c)).toEqual({ a: ["http://10.0.0.1:2380/"] });
  });

  it("refuses a variable shadowed by its flag, as etcd 3.4 does (even when equal or empty)", () => {
    for (const env of [{ ETCD_SNAPSHOT_COUNT: "5" }, { ETCD_SNAPSHOT_COUNT: "7" }, { ETCD_SNAPSHOT_COUNT: "" }]) {
      const e = usageError(["--snapshot-count", "7"], env);
      expect(e.message).toContain("environment variable ETCD_SNAPSHOT_COUNT conflicts with flag --snapshot-count");
      expect(e.message).toContain("Unset ETCD_SNAPSHOT_COUNT or drop --snapshot-count");
    }
    expect(usageError(["-unsafe-no-fsync"], { ETCD_UNSAFE_NO_FSYNC: "false" }).message).toContain(
      "ETCD_UNSAFE_NO_FSYNC conflicts",
    );
  });

  it("warns about unknown ETCD_* variables and continues", () => {
    const { config, warnings } = parse([], {
      ETCD_BOGUS_THING: "1",
      ETCD_name: "lower",
      ETCD_NAME: "x",
    });
    expect(config.name).toBe("x");
    expect(warnings).toEqual([
      "unrecognized environment variable ETCD_BOGUS_THING=1",
      "unrecognized environment variable ETCD_name=lower",
    ]);
  });

  it("ignores empty variables with etcd's warning", () => {
    const { config, warnings } = parse([], { ETCD_NAME: "" });
    expect(config.name).toBe("default");
    expect(warnings).toEqual(["unrecognized environment variable ETCD_NAME= (empty, ignored)"]);
  });

  it("ignores ETCDCTL_*, other variables and undefined entries", () => {
    const { warnings } = parse([], {
      ETCDCTL_API: "3",
      ETCDCTL_ENDPOINTS: "x",
      PATH: "/bin",
      ETCD: "x",
      ETCD_NAME: undefined,
    });
    expect(warnings).toEqual([]);
  });

  it("refuses variables for etcd flags we do not support", () => {
    const e = usageError([], { ETCD_WAL_DIR: "/wal" });
    expect(e.message).toContain("environment variable ETCD_WAL_DIR sets etcd flag --wal-dir");
    expect(e.message).toContain("unset it");
  });

  it("names the variable in value errors", () => {
    const e = usageError([], { ETCD_SNAPSHOT_COUNT: "abc" });
    expect(e.message).toContain('invalid value "abc" for environment variable ETCD_SNAPSHOT_COUNT (--snapshot-count)');
    expect(e.message).toContain("non-negative integer");
    expect(usageError([], { ETCD_ENABLE_V2: "yes" }).message).toContain(
      'invalid value "yes" for environment variable ETCD_ENABLE_V2',
    );
    expect(usageError([], { ETCD_AUTO_COMPACTION_RETENTION: "1.5" }).message).toContain(
      "for environment variable ETCD_AUTO_COMPACTION_RETENTION (--auto-compaction-retention)",
    );
  });
});

describe("wantsHelp", () => {
  it.each([
    [["--help"], true],
    [["-h"], true],
    [["-help"], true],
    [["--h"], true],
    [["--help=false"], true],
    [["--name=x", "--help"], true],
    [["--bogus", "-h"], true],
    [["--unsafe-no-fsync", "-h"], true],
    [[], false],
    [["--name", "--help"], false],
    [["--name", "-h"], false],
    [["--", "--help"], false],
    [["--helpme"], false],
    [["help"], false],
  ])("%j → %s", (argv, expected) => {
    expect(wantsHelp(argv)).toBe(expected);
  });
});

describe("etcdFlagHelp", () => {
  const help = etcdFlagHelp();

  it("lists every supported flag with etcd's defaults, in etcd's layout", () => {
    expect(help).toContain("  lab etcd [flags]");
    expect(help).toContain("Member:\n  --name 'default'\n    Human-readable name for this member.");
    for (const line of [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal help text
      "--data-dir '${name}.etcd'",
      "--listen-client-urls 'http://localhost:2379'",
      "--advertise-client-urls 'http://localhost:2379'",
      "--listen-peer-urls 'http://localhost:2380'",
      "--initial-advertise-peer-urls 'http://localhost:2380'",
      "--initial-cluster 'default=http://localhost:2380'",
      "--initial-cluster-state 'new'",
      "--initial-cluster-token 'etcd-cluster'",
      "--heartbeat-interval '100'",
      "--election-timeout '1000'",
      "--quota-backend-bytes '0'",
      "--max-request-bytes '1572864'",
      "--max-txn-ops '128'",
      "--auto-compaction-mode 'periodic'",
      "--auto-compaction-retention '0'",
      "--snapshot-count '100000'",
      "--unsafe-no-fsync 'false'",
      "--log-level 'info'",
      "--listen-metrics-urls ''",
      "--enable-v2 'false'",
      "--experimental-watch-progress-notify-interval '10m'",
      "--peer-trusted-ca-file ''",
      "--debug 'false'",
    ]) {
      expect(help).toContain(`  ${line}\n`);
    }
  });

  it("explains the environment variables", () => {
    expect(help).toContain("ETCD_DATA_DIR");
  });

  it("documents only flags the parser accepts", () => {
    const flags = [...help.matchAll(/^ {2}--([a-z0-9-]+) '/gm)].map((m) => m[1] ?? "");
    expect(flags.length).toBeGreaterThan(30);
    for (const flag of flags) {
      // a value that every flag type rejects would throw "unknown flag" for an undocumented one
      try {
        parseEtcdConfig([`--${flag}=\u0000`], {});
      } catch (e) {
        expect((e as Error).message).not.toContain("unknown flag");
      }
    }
  });
});
