import { Histogram } from "../../util/histogram.js";
import type { EtcdServer } from "../server/server.js";
import type { CallKind, CallObserver } from "./server.js";
import type { GrpcStatusCode } from "./status.js";

/** Status codes as grpc-go names them in the grpc_code label (codes.Code's String()). */
const CODE_NAMES = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/** Prometheus' default buckets, which go-grpc-prometheus' handling-time histogram uses. */
const HANDLING_SECONDS_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One gRPC method's counters. */
class CallCounters {
  started = 0;
  received = 0;
  sent = 0;
  /** Calls ended, by status code. */
  readonly handled = new Map<GrpcStatusCode, number>();
  constructor(readonly handlingSeconds: Histogram | undefined) {}
}

/**
 * Prometheus text exposition for /metrics, using etcd's metric names where etcd has the metric,
 * so dashboards and alert rules written for etcd read ours. The grpc_server_* families are
 * go-grpc-prometheus' (as etcd exports them): started, handled by code, messages received and
 * sent, labelled with the method, service and call type; with `--metrics extensive`, also the
 * handling time of every call (grpc_server_handling_seconds), which etcd's own alert on slow
 * requests reads.
 */
export class Metrics implements CallObserver {
  putTotal = 0;
  deleteTotal = 0;
  rangeTotal = 0;
  txnTotal = 0;
  private readonly calls = new Map<CallKind, CallCounters>();

  constructor(private readonly level: "basic" | "extensive" = "basic") {}

  started(kind: CallKind): void {
    this.counters(kind).started++;
  }

  received(kind: CallKind): void {
    this.counters(kind).received++;
  }

  sent(kind: CallKind): void {
    this.counters(kind).sent++;
  }

  handled(kind: CallKind, code: GrpcStatusCode, seconds: number): void {
    const c = this.counters(kind);
    c.handled.set(code, (c.handled.get(code) ?? 0) + 1);
    c.handlingSeconds?.observe(seconds);
  }

  private counters(kind: CallKind): CallCounters {
    let c = this.calls.get(kind);
    if (c === undefined) {
      c = new CallCounters(this.level === "extensive" ? new Histogram(HANDLING_SECONDS_BOUNDS) : undefined);
      this.calls.set(kind, c);
    }
    return c;
  }

  /** The grpc_server_* families, series in a stable order (service, then method). */
  private renderCalls(out: string[]): void {
    const calls = [...this.calls].sort(
      ([a], [b]) => a.service.localeCompare(b.service) || a.method.localeCompare(b.method),
    );
    const labels = (k: CallKind): string =>
      `grpc_method="${k.method}",grpc_service="${k.service}",grpc_type="${k.type}"`;
    const counter = (name: string, help: string, value: (c: CallCounters) => number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [k, c] of calls) out.push(`${name}{${labels(k)}} ${value(c)}`);
    };
    counter("grpc_server_started_total", "Total number of RPCs started on the server.", (c) => c.started);
    out.push(
      "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.",
      "# TYPE grpc_server_handled_total counter",
    );
    for (const [k, c] of calls) {
      for (const [code, n] of [...c.handled].sort(([a], [b]) => a - b)) {
        out.push(`grpc_server_handled_total{grpc_code="${CODE_NAMES[code] ?? `Code(${code})`}",${labels(k)}} ${n}`);
      }
    }
    counter(
      "grpc_server_msg_received_total",
      "Total number of RPC stream messages received on the server.",
      (c) => c.received,
    );
    counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", (c) => c.sent);
    if (this.level !== "extensive") return;
    out.push(
      "# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      "# TYPE grpc_server_handling_seconds histogram",
    );
    for (const [k, c] of calls)
      out.push(...(c.handlingSeconds?.samples("grpc_server_handling_seconds", labels(k)) ?? []));
  }

  render(server: EtcdServer): string {
    const out: string[] = [];
    const gauge = (name: string, help: string, value: number | string, type = "gauge"): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    };
    gauge(
      "etcd_server_has_leader",
      "Whether or not a leader exists. 1 is existence, 0 is not.",
      server.leaderId === 0n ? 0 : 1,
    );
    gauge(
      "etcd_server_is_leader",
      "Whether or not this member is a leader. 1 if is, 0 otherwise.",
      server.leaderId === server.memberId ? 1 : 0,
    );
    gauge(
      "etcd_server_leader_changes_seen_total",
      "The number of leader changes seen.",
      server.leaderChangesSeen,
      "counter",
    );
    gauge(
      "etcd_server_proposals_committed_total",
      "The total number of consensus proposals committed.",
      server.raftIndex,
    );
    gauge(
      "etcd_server_proposals_applied_total",
      "The total number of consensus proposals applied.",
      server.appliedIndex,
    );
    gauge(
      "etcd_server_proposals_pending",
      "The current number of pending proposals to commit.",
      server.raftIndex - server.appliedIndex,
    );
    gauge(
      "etcd_server_proposals_failed_total",
      "The total number of failed proposals seen.",
      server.proposalsFailed,
      "counter",
    );
    // Labelled with the member ID as etcd prints it (hex without leading zeros).
    const traffic = Object.entries(server.peerTraffic)
      .map(([peer, t]) => [BigInt(`0x${peer}`).toString(16), t] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    out.push(
      "# HELP etcd_network_peer_sent_bytes_total The total number of bytes sent to peers.",
      "# TYPE etcd_network_peer_sent_bytes_total counter",
      ...traffic.map(([peer, t]) => `etcd_network_peer_sent_bytes_total{To="${peer}"} ${t.sentBytes}`),
      "# HELP etcd_network_peer_received_bytes_total The total number of bytes received from peers.",
      "# TYPE etcd_network_peer_received_bytes_total counter",
      ...traffic.map(([peer, t]) => `etcd_network_peer_received_bytes_total{From="${peer}"} ${t.receivedBytes}`),
    );
    gauge(
      "etcd_server_quota_backend_bytes",
      "Current backend storage quota size in bytes.",
      server.config.quotaBackendBytes,
    );
    gauge(
      "etcd_mvcc_db_total_size_in_bytes",
      "Total size of the underlying database physically allocated in bytes.",
      server.mvcc.dbSize,
    );
    gauge(
      "etcd_mvcc_db_total_size_in_use_in_bytes",
      "Total size of the underlying database logically in use in bytes.",
      server.mvcc.dbSizeInUse,
    );
    gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", server.mvcc.keyCount);
    gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", server.mvcc.currentRevision);
    gauge(
      "etcd_debugging_mvcc_compact_revision",
      "The revision of the last compaction in store.",
      server.mvcc.compactedRevision,
    );
    gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", server.watchHub.watcherCount);
    gauge(
      "etcd_debugging_mvcc_slow_watcher_total",
      "Total number of unsynced slow watchers.",
      server.watchHub.unsyncedCount,
    );
    out.push(
      ...server.walStats.fsyncSeconds.render(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by the write-ahead log.",
      ),
    );
    gauge(
      "etcd_disk_wal_write_bytes_total",
      "Total number of bytes written to the write-ahead log.",
      server.walStats.writtenBytes,
      "counter",
    );
    gauge("etcd_debugging_lease_total", "The number of current leases.", server.lessor.size);
    gauge("etcd_mvcc_put_total", "Total number of puts seen by this member.", this.putTotal, "counter");
    gauge("etcd_mvcc_delete_total", "Total number of deletes seen by this member.", this.deleteTotal, "counter");
    gauge("etcd_mvcc_range_total", "Total number of ranges seen by this member.", this.rangeTotal, "counter");
    gauge("etcd_mvcc_txn_total", "Total number of txns seen by this member.", this.txnTotal, "counter");
    this.renderCalls(out);
    return `${out.join("\n")}\n`;
  }
}
