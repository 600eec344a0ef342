import type { EtcdServer } from "../server/server.js";

/**
 * Prometheus text exposition for /metrics, using etcd's metric names where etcd has the metric,
 * so dashboards and alert rules written for etcd read ours.
 */
export class Metrics {
  putTotal = 0;
  deleteTotal = 0;
  rangeTotal = 0;
  txnTotal = 0;
  private readonly requests = new Map<string, number>();
  private readonly failures = new Map<string, number>();

  countRequest(method: string): void {
    this.requests.set(method, (this.requests.get(method) ?? 0) + 1);
  }

  countFailure(method: string): void {
    this.failures.set(method, (this.failures.get(method) ?? 0) + 1);
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
    out.push(
      "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.",
      "# TYPE grpc_server_handled_total counter",
    );
    for (const [method, n] of [...this.requests].sort()) {
      const failed = this.failures.get(method) ?? 0;
      out.push(`grpc_server_handled_total{grpc_method="${method}",grpc_code="OK"} ${n - failed}`);
      if (failed > 0) out.push(`grpc_server_handled_total{grpc_method="${method}",grpc_code="Error"} ${failed}`);
    }
    return `${out.join("\n")}\n`;
  }
}
