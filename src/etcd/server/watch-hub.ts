import { EtcdError } from "../errors.js";
import type { KeySpan, MvccEvent, MvccStore, RevisionEvents } from "../mvcc/store.js";
import { spanContains } from "../mvcc/store.js";

/**
 * Watchers and event delivery. Events come from the end of each applied write transaction
 * (`onCommit`), so a watcher sees exactly the committed revisions, in order, each revision whole.
 *
 * A watcher is either *synced* (it has everything up to the current revision; new revisions are
 * pushed to it as they commit) or *unsynced* (it is behind: it started at an old revision, or its
 * client read too slowly). Unsynced watchers catch up from the store's history in bounded batches,
 * only while their stream can take more, so a slow client never blocks writers and never loses
 * events; if compaction overtakes a lagging watcher, it is cancelled with the compaction revision,
 * as etcd does, instead of skipping events.
 */

export interface WatchSink {
  /** True while the client's stream has too much unsent data; delivery pauses until `resume`. */
  readonly congested: boolean;
  /** Whole revisions of matching events for one watcher; `revision` goes in the response header. */
  deliver(watcher: Watcher, events: MvccEvent[], revision: number): void;
  /** The watcher's start revision has been compacted away: the sink cancels it. */
  compacted(watcher: Watcher, compactRevision: number): void;
  /** An empty response saying "you have every event up to `revision`". */
  progress(watcher: Watcher, revision: number): void;
}

export interface WatcherOptions {
  readonly span: KeySpan;
  /** First revision to deliver; 0 means "from the next revision". */
  readonly startRevision: number;
  readonly prevKv: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly progressNotify: boolean;
  readonly fragment: boolean;
}

export interface Watcher extends WatcherOptions {
  readonly id: number;
  readonly sink: WatchSink;
  /** The next revision this watcher needs. */
  nextRevision: number;
  synced: boolean;
  /** Wall-clock ms of the last response sent, for periodic progress notifications. */
  lastSentAt: number;
}

const CATCH_UP_BATCH_EVENTS = 1000;

export class WatchHub {
  private readonly synced = new Set<Watcher>();
  private readonly unsynced = new Set<Watcher>();
  private syncScheduled = false;
  private readonly progressTimer: NodeJS.Timeout;

  constructor(
    private readonly store: MvccStore,
    progressIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.progressTimer = setInterval(
      () => this.notifyProgress(progressIntervalMs),
      Math.min(progressIntervalMs, 60_000),
    );
    this.progressTimer.unref();
  }

  get watcherCount(): number {
    return this.synced.size + this.unsynced.size;
  }

  get unsyncedCount(): number {
    return this.unsynced.size;
  }

  /**
   * Registers a watcher. A start revision below the compaction revision is accepted and then
   * cancelled with the compaction revision (the client sees "created", then the compaction).
   */
  add(id: number, sink: WatchSink, options: WatcherOptions): Watcher {
    const current = this.store.currentRevision;
    const start = options.startRevision > 0 ? options.startRevision : current + 1;
    const w: Watcher = { ...options, id, sink, nextRevision: start, synced: start > current, lastSentAt: this.now() };
    if (w.synced) this.synced.add(w);
    else {
      this.unsynced.add(w);
      this.scheduleSync();
    }
    return w;
  }

  remove(w: Watcher): void {
    this.synced.delete(w);
    this.unsynced.delete(w);
  }

  /** True when `w` has been handed every committed revision. */
  isSynced(w: Watcher): boolean {
    return w.synced && w.nextRevision > this.store.currentRevision;
  }

  /** Called at the end of every write transaction that changed something. */
  onCommit(rev: RevisionEvents): void {
    for (const w of this.synced) {
      if (rev.revision < w.nextRevision) continue;
      if (w.sink.congested) {
        // Stop pushing; catch up from history once the client has read what it has.
        w.synced = false;
        this.synced.delete(w);
        this.unsynced.add(w);
        continue;
      }
      const matching = filterEvents(w, rev.events);
      w.nextRevision = rev.revision + 1;
      if (matching.length > 0) {
        w.lastSentAt = this.now();
        w.sink.deliver(w, matching, rev.revision);
      }
    }
  }

  /** A sink that was congested can take more: catch its watchers up. */
  resume(): void {
    this.scheduleSync();
  }

  /** Sends a progress notification to every watcher that has nothing pending. */
  requestProgress(watchers: Iterable<Watcher>): void {
    const rev = this.store.currentRevision;
    for (const w of watchers) if (this.isSynced(w)) w.sink.progress(w, rev);
  }

  close(): void {
    clearInterval(this.progressTimer);
    this.synced.clear();
    this.unsynced.clear();
  }

  private scheduleSync(): void {
    if (this.syncScheduled) return;
    this.syncScheduled = true;
    setImmediate(() => {
      this.syncScheduled = false;
      this.syncUnsynced();
    });
  }

  /** One round of catch-up for every unsynced watcher whose stream has room. */
  private syncUnsynced(): void {
    const current = this.store.currentRevision;
    let more = false;
    for (const w of [...this.unsynced]) {
      if (w.sink.congested) continue;
      if (w.nextRevision < this.store.compactedRevision) {
        this.unsynced.delete(w);
        w.sink.compacted(w, this.store.compactedRevision);
        continue;
      }
      let batches: RevisionEvents[];
      try {
        batches = this.store.eventsSince(w.nextRevision, CATCH_UP_BATCH_EVENTS);
      } catch (err) {
        if (err instanceof EtcdError && err.kind === "Compacted") {
          this.unsynced.delete(w);
          w.sink.compacted(w, this.store.compactedRevision);
          continue;
        }
        throw err;
      }
      const matching: MvccEvent[] = [];
      for (const b of batches) {
        if (b.revision < w.nextRevision) continue;
        for (const e of filterEvents(w, b.events)) matching.push(e);
        w.nextRevision = b.revision + 1;
      }
      if (w.nextRevision <= current)
        w.nextRevision = Math.max(w.nextRevision, batches.length === 0 ? current + 1 : w.nextRevision);
      if (matching.length > 0) {
        w.lastSentAt = this.now();
        w.sink.deliver(w, matching, current);
      }
      if (w.nextRevision > current) {
        w.synced = true;
        this.unsynced.delete(w);
        this.synced.add(w);
      } else more = true;
    }
    if (more) this.scheduleSync();
  }

  private notifyProgress(intervalMs: number): void {
    const now = this.now();
    const rev = this.store.currentRevision;
    for (const w of this.synced) {
      if (!w.progressNotify || now - w.lastSentAt < intervalMs || w.sink.congested) continue;
      w.lastSentAt = now;
      w.sink.progress(w, rev);
    }
  }
}

function filterEvents(w: Watcher, events: readonly MvccEvent[]): MvccEvent[] {
  const out: MvccEvent[] = [];
  for (const e of events) {
    if (e.type === "PUT" ? w.noPut : w.noDelete) continue;
    if (!spanContains(w.span, e.kv.key.toString("latin1"))) continue;
    out.push(e);
  }
  return out;
}
