import * as fs from "node:fs";
import * as path from "node:path";
import type { Logger } from "../../util/logger.js";
import type { EtcdConfig } from "../config.js";
import { EtcdError } from "../errors.js";
import { MvccStore } from "../mvcc/store.js";
import { decodeInternal, encodeInternal } from "../proto.js";
import type { MemberImage, StateSnapshot } from "../wal/snapshot.js";
import { encodeSnapshot, SnapshotStore } from "../wal/snapshot.js";
import { Wal, WalFailedError } from "../wal/wal.js";
import { AlarmType, type InternalRequest, type RangeRequest, type RangeResponse, type TxnRequest } from "../wire.js";
import { AlarmStore, Applier, type ApplyResult, requestWrites } from "./applier.js";
import { AutoCompactor } from "./compactor.js";
import { clusterIdFor, IdGenerator, memberIdFor } from "./ids.js";
import { Lessor } from "./lessor.js";
import { WatchHub } from "./watch-hub.js";

/**
 * One store member. Writes are *proposed*: encoded as a log entry, made durable in the
 * write-ahead log (group commit: concurrent proposals share an fsync), then applied in log order
 * by the deterministic Applier, and only then acknowledged. Reads are served from the applied
 * state, which holds only durable writes, so a single member's reads are linearizable.
 *
 * The Raft issue replaces "append to the local log" with "replicate through Raft"; the apply
 * side (applyThrough, snapshots, restart replay) stays as it is.
 */

/** etcd 3.4's API level, which clients (etcdctl, client libraries) check. */
export const SERVER_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";

export interface Member {
  readonly id: bigint;
  readonly name: string;
  readonly peerUrls: string[];
  readonly clientUrls: string[];
  readonly isLearner: boolean;
}

interface Waiter {
  readonly req: InternalRequest;
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: unknown) => void;
}

export interface ServerOptions {
  readonly config: EtcdConfig;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class EtcdServer {
  readonly memberId: bigint;
  readonly clusterId: bigint;
  readonly members: Member[];
  readonly mvcc = new MvccStore();
  readonly alarms = new AlarmStore();
  readonly lessor: Lessor;
  readonly watchHub: WatchHub;
  private readonly applier: Applier;
  private readonly ids: IdGenerator;
  private readonly snapshots: SnapshotStore;
  private wal!: Wal;
  private term = 1;
  private lastIndex = 0;
  private applied = 0;
  private snapshotIndex = 0;
  private readonly waiters = new Map<number, Waiter>();
  private storageError: WalFailedError | undefined;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private revoking = new Set<bigint>();
  private snapshotting = false;
  private readonly compactor: AutoCompactor;

  private constructor(
    readonly config: EtcdConfig,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    const peerUrls = (config.initialCluster.get(config.name) ?? config.initialAdvertisePeerUrls).map(urlString);
    this.memberId = memberIdFor(peerUrls, config.initialClusterToken);
    const allIds = [...config.initialCluster.entries()].map(([, urls]) =>
      memberIdFor(urls.map(urlString), config.initialClusterToken),
    );
    this.clusterId = clusterIdFor(allIds.length > 0 ? allIds : [this.memberId]);
    this.members = [
      {
        id: this.memberId,
        name: config.name,
        peerUrls,
        clientUrls: config.advertiseClientUrls.map(urlString),
        isLearner: false,
      },
    ];
    this.lessor = new Lessor(minLeaseTtl(config), now);
    this.mvcc.setLeaseListener(this.lessor);
    this.watchHub = new WatchHub(this.mvcc, config.watchProgressNotifyIntervalMs, now);
    this.applier = new Applier(this.mvcc, this.lessor, this.alarms, (rev) => this.watchHub.onCommit(rev));
    this.ids = new IdGenerator(this.memberId, now());
    this.compactor = new AutoCompactor(
      config.autoCompactionMode,
      {
        ...(config.autoCompactionRetentionMs !== undefined ? { ms: config.autoCompactionRetentionMs } : {}),
        ...(config.autoCompactionRetentionRevisions !== undefined
          ? { revisions: config.autoCompactionRetentionRevisions }
          : {}),
      },
      now,
    );
    this.snapshots = new SnapshotStore(path.join(config.dataDir, "member", "snap"));
  }

  /** Opens the data directory, recovers state (snapshot + log replay) and starts serving. */
  static async start(options: ServerOptions): Promise<EtcdServer> {
    const server = new EtcdServer(options.config, options.logger, options.now ?? Date.now);
    await server.recover();
    return server;
  }

  get raftTerm(): number {
    return this.term;
  }

  get raftIndex(): number {
    return this.lastIndex;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  /** The member that leads; a single member always leads itself. */
  get leaderId(): bigint {
    return this.memberId;
  }

  get storageFailure(): Error | undefined {
    return this.storageError;
  }

  private async recover(): Promise<void> {
    const memberDir = path.join(this.config.dataDir, "member");
    const fresh = !fs.existsSync(path.join(memberDir, "wal"));
    fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });

    const snap = this.snapshots.loadNewest();
    if (snap) {
      this.restoreSnapshot(snap);
      this.log.info("loaded snapshot", { index: snap.index, revision: snap.store.currentRevision });
    }
    const { wal, contents } = Wal.open(path.join(memberDir, "wal"), { fsync: !this.config.unsafeNoFsync });
    this.wal = wal;
    for (const w of contents.warnings) this.log.warn(w);
    let replayed = 0;
    for (const entry of contents.entries) {
      if (entry.index <= this.applied) continue;
      const req = decodeInternal(entry.data);
      try {
        this.applier.apply(req);
      } catch (err) {
        if (!(err instanceof EtcdError)) throw err;
        // The same deterministic error the proposer saw the first time; nothing to do.
      }
      this.applied = entry.index;
      replayed++;
    }
    this.lastIndex = Math.max(this.applied, wal.lastEntryIndex);
    this.term = Math.max(contents.hardState?.term ?? 0, snap?.term ?? 0) + 1;
    await this.wal.append([], { term: this.term, vote: this.memberId, commit: this.applied });
    this.log.info(fresh ? "started a new member" : "restarted member", {
      name: this.config.name,
      "member-id": this.memberId.toString(16),
      "cluster-id": this.clusterId.toString(16),
      "data-dir": this.config.dataDir,
      "replayed-entries": replayed,
      revision: this.mvcc.currentRevision,
      term: this.term,
    });
    // This member leads: it keeps lease expiry, with every lease given a full TTL from now.
    this.lessor.promote();
    this.timers.push(setInterval(() => this.revokeExpiredLeases(), 500));
    if (this.compactor.enabled) {
      this.timers.push(setInterval(() => this.autoCompact(), this.compactor.intervalMs));
    }
    for (const t of this.timers) t.unref();
  }

  private restoreSnapshot(snap: StateSnapshot): void {
    // Leases first: restoring the store re-attaches each live key to its lease.
    this.lessor.restore(snap.leases);
    this.mvcc.restore(snap.store);
    this.alarms.restore(snap.alarms);
    this.applied = snap.index;
    this.lastIndex = snap.index;
    this.snapshotIndex = snap.index;
    this.term = snap.term;
  }

  /**
   * Proposes a command; resolves with its result once it is durable and applied, or rejects with
   * the EtcdError the apply produced (or a storage failure).
   */
  propose(body: Omit<InternalRequest, "id">): Promise<ApplyResult> {
    if (this.stopped) return Promise.reject(new EtcdError("Stopped"));
    if (this.storageError) return Promise.reject(this.storageError);
    const req = { ...body, id: this.ids.nextId().toString() } as InternalRequest;
    const data = encodeInternal(req);
    if (data.length > this.config.maxRequestBytes) return Promise.reject(new EtcdError("RequestTooLarge"));
    const index = ++this.lastIndex;
    const result = new Promise<ApplyResult>((resolve, reject) => this.waiters.set(index, { req, resolve, reject }));
    this.wal.append([{ index, term: this.term, data }]).then(
      () => this.applyThrough(index),
      (err: unknown) => this.failStorage(err),
    );
    return result;
  }

  /** Applies every durable entry up to `index`, in order, and answers their proposers. */
  private applyThrough(index: number): void {
    while (this.applied < index) {
      const next = this.applied + 1;
      const waiter = this.waiters.get(next);
      if (!waiter) break;
      this.waiters.delete(next);
      this.applied = next;
      try {
        waiter.resolve(this.applier.apply(waiter.req));
      } catch (err) {
        waiter.reject(err);
      }
    }
    if (this.applied - this.snapshotIndex >= this.config.snapshotCount) this.triggerSnapshot();
  }

  private failStorage(err: unknown): void {
    if (!this.storageError) {
      this.storageError = err instanceof WalFailedError ? err : new WalFailedError(err);
      this.log.error("stopped accepting writes after a storage failure", { error: this.storageError.message });
    }
    for (const w of this.waiters.values()) w.reject(this.storageError);
    this.waiters.clear();
  }

  /** A transaction with no writes, served from the applied state without a log entry. */
  readOnlyTxn(t: TxnRequest): object {
    return this.applier.apply({ id: "0", txn: t }).response;
  }

  /** A fresh lease ID, chosen before proposing so every member applies the same one. */
  nextLeaseId(): bigint {
    return this.ids.nextId();
  }

  /** A read at the applied state (linearizable: only durable writes are applied). */
  range(r: RangeRequest): RangeResponse {
    return this.applier.range(r);
  }

  /**
   * Whether a write of `cost` more bytes fits in the quota; when it does not, raises the NOSPACE
   * alarm (through the log, as etcd does) and returns false.
   */
  checkQuota(req: Omit<InternalRequest, "id">, cost: number): boolean {
    if (!requestWrites(req as InternalRequest)) return true;
    if (this.mvcc.dbSize + cost < this.config.quotaBackendBytes) return true;
    if (!this.alarms.has(AlarmType.NOSPACE)) {
      this.log.warn("database space exceeded; raising the NOSPACE alarm", {
        "db-size": this.mvcc.dbSize,
        "quota-size": this.config.quotaBackendBytes,
      });
      this.propose({ alarm: { action: 1, memberID: this.memberId.toString(), alarm: AlarmType.NOSPACE } }).catch(
        () => {},
      );
    }
    return false;
  }

  /** Leases past expiry are revoked through the log (their keys' deletion is a normal write). */
  private revokeExpiredLeases(): void {
    if (this.stopped || this.storageError) return;
    for (const id of this.lessor.expired()) {
      if (this.revoking.has(id)) continue;
      this.revoking.add(id);
      this.log.debug("revoking expired lease", { lease: id.toString(16) });
      this.propose({ lease_revoke: { ID: id.toString() } })
        .catch(() => {})
        .finally(() => this.revoking.delete(id));
    }
  }

  /** Periodic or revision-based auto compaction, as --auto-compaction-mode asks. */
  private autoCompact(): void {
    if (this.stopped || this.storageError) return;
    const target = this.compactor.tick(this.mvcc.currentRevision, this.mvcc.compactedRevision);
    if (target === undefined) return;
    this.log.info("auto compaction", { revision: target, mode: this.config.autoCompactionMode });
    this.propose({ compaction: { revision: String(target), physical: false } }).catch((err: unknown) => {
      this.log.warn("auto compaction failed", { error: String(err) });
    });
  }

  /** The applied state as a snapshot (what Maintenance.Snapshot streams). */
  snapshotImage(): StateSnapshot {
    return {
      index: this.applied,
      term: this.term,
      clusterId: this.clusterId,
      members: this.members.map(toMemberImage),
      store: this.mvcc.image(),
      leases: this.lessor.image(),
      alarms: this.alarms.image(),
    };
  }

  snapshotBytes(): Buffer {
    return encodeSnapshot(this.snapshotImage());
  }

  private triggerSnapshot(): void {
    if (this.snapshotting || this.storageError) return;
    this.snapshotting = true;
    try {
      this.saveSnapshot();
    } finally {
      this.snapshotting = false;
    }
  }

  /** Writes a snapshot of the applied state and lets the log drop what it covers. */
  private saveSnapshot(): void {
    const image = this.snapshotImage();
    this.snapshots.save(image);
    this.snapshotIndex = image.index;
    this.log.info("saved snapshot", { index: image.index, revision: image.store.currentRevision });
    this.wal.markSnapshot({ index: image.index, term: image.term }).catch((err: unknown) => this.failStorage(err));
  }

  /** Returns compacted space (db size falls to what is in use) and rewrites the snapshot. */
  defragment(): void {
    if (this.storageError) throw this.storageError;
    this.mvcc.defragment();
    this.saveSnapshot();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.watchHub.close();
    try {
      await this.wal.close();
    } catch {
      // Nothing more to save; the log is already as durable as it will be.
    }
    for (const w of this.waiters.values()) w.reject(new EtcdError("Stopped"));
    this.waiters.clear();
  }
}

function urlString(u: URL): string {
  // etcd keeps URLs as given, without the trailing slash URL.toString() would add.
  return u.toString().replace(/\/$/, "");
}

function toMemberImage(m: Member): MemberImage {
  return { id: m.id, name: m.name, peerUrls: m.peerUrls, clientUrls: m.clientUrls, isLearner: m.isLearner };
}

/** etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds, rounded up. */
export function minLeaseTtl(config: Pick<EtcdConfig, "electionTimeoutMs" | "heartbeatIntervalMs">): number {
  const electionTicks = Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs);
  const ms = Math.floor((3 * electionTicks) / 2) * config.heartbeatIntervalMs;
  return Math.ceil(ms / 1000);
}
