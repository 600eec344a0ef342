import { EtcdError } from "../errors.js";
import type { KeySpan, MvccEvent, MvccStore, RevisionEvents } from "../mvcc/store.js";
import { spanContains } from "../mvcc/store.js";

/**
 * Watchers and event delivery. Events come from the end of each applied write transaction
 * (`onCommit`), so a watcher sees exactly the committed revisions, in order, each revision whole.
 *
 * A watcher is in one of three sets:
 *  - *synced*: it has been handed every committed revision; new revisions are pushed to it as they
 *    commit (one response per revision).
 *  - *unsynced*: it is behind, because it started at an old revision or because its stream was
 *    congested when a matching revision committed. It catches up from the store's history in
 *    bounded batches of whole revisions, only while its stream can take more, so a slow client
 *    never blocks writers and never loses events. Once caught up it becomes synced again.
 *  - *compacted*: compaction overtook its next revision before it caught up. It was told so (the
 *    sink cancels it with the compaction revision, as etcd does, instead of skipping events) and
 *    gets nothing more, but it keeps its ID on its stream until the client cancels it or the stream
 *    closes, as in etcd, and still counts as a watcher in the metrics until then.
 *
 * Invariant: a synced watcher's `nextRevision` is above the current revision, so "synced" means
 * "every event up to now has been handed to the sink".
 */

export interface WatchSink {
  /** True while the client's stream has too much unsent data; delivery pauses until `resume`. */
  readonly congested: boolean;
  /** Whole revisions of matching events for one watcher; `revision` goes in the response header. */
  deliver(watcher: Watcher, events: MvccEvent[], revision: number): void;
  /** The watcher's next revision has been compacted away: the sink cancels it. */
  compacted(watcher: Watcher, compactRevision: number): void;
  /** An empty response saying "you have every event up to `revision`". */
  progress(watcher: Watcher, revision: number): void;
  /** The watcher has been handed every committed revision (it just finished catching up). */
  caughtUp(watcher: Watcher): void;
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

export type WatcherState = "synced" | "unsynced" | "compacted" | "removed";

export interface Watcher extends WatcherOptions {
  readonly id: number;
  readonly sink: WatchSink;
  /** The next revision this watcher needs. */
  nextRevision: number;
  state: WatcherState;
  /** Events were handed to the sink since the last periodic progress tick (which then skips it). */
  sentSinceTick: boolean;
}

/** Catch-up batches stop after the revision that reaches this many events (never mid-revision). */
const CATCH_UP_BATCH_EVENTS = 1000;
/** etcd's floor for --experimental-watch-progress-notify-interval. */
const MIN_PROGRESS_INTERVAL_MS = 100;
/** setInterval's ceiling. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WatchHub {
  private readonly synced = new Set<Watcher>();
  private readonly unsynced = new Set<Watcher>();
  private readonly compactedSet = new Set<Watcher>();
  private syncScheduled = false;
  private closed = false;
  private readonly progressTimer: NodeJS.Timeout;

  /**
   * @param progressIntervalMs how often a synced watcher that asked for progress notifications and
   *   received no events since the last tick gets one (raised to etcd's 100 ms minimum)
   */
  constructor(
    private readonly store: MvccStore,
    progressIntervalMs: number,
    readonly now: () => number = Date.now,
  ) {
    const interval = Math.min(Math.max(progressIntervalMs, MIN_PROGRESS_INTERVAL_MS), MAX_TIMER_MS);
    this.progressTimer = setInterval(() => this.notifyProgress(), interval);
    this.progressTimer.unref();
  }

  /** Watchers registered and not yet removed (compacted ones included, as etcd counts them). */
  get watcherCount(): number {
    return this.synced.size + this.unsynced.size + this.compactedSet.size;
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
    const start = options.startRevision > 0 ? Math.max(options.startRevision, 1) : current + 1;
    const w: Watcher = {
      ...options,
      id,
      sink,
      nextRevision: start,
      state: start > current ? "synced" : "unsynced",
      sentSinceTick: false,
    };
    if (w.state === "synced") this.synced.add(w);
    else {
      this.unsynced.add(w);
      this.scheduleSync();
    }
    return w;
  }

  remove(w: Watcher): void {
    this.synced.delete(w);
    this.unsynced.delete(w);
    this.compactedSet.delete(w);
    w.state = "removed";
  }

  /**
   * True when nothing more is owed to `w` up to the current revision: it has been handed every
   * committed revision, or it will get nothing more (compacted, removed).
   */
  isCaughtUp(w: Watcher): boolean {
    if (w.state === "compacted" || w.state === "removed") return true;
    return w.state === "synced" && w.nextRevision > this.store.currentRevision;
  }

  /** Called at the end of every write transaction that changed something. */
  onCommit(rev: RevisionEvents): void {
    if (this.synced.size === 0) return;
    const keys = rev.events.map((e) => e.kv.key.toString("latin1"));
    for (const w of this.synced) {
      if (rev.revision < w.nextRevision) continue; // a start revision still in the future
      const matching = filterEvents(w, rev.events, keys);
      if (matching.length === 0) {
        w.nextRevision = rev.revision + 1;
        continue;
      }
      if (w.sink.congested) {
        // Stop pushing; it catches up from history once its client has read what it has.
        this.moveToUnsynced(w);
        continue;
      }
      w.nextRevision = rev.revision + 1;
      w.sentSinceTick = true;
      w.sink.deliver(w, matching, rev.revision);
    }
  }

  /** A sink that was congested can take more: catch its watchers up. */
  resume(): void {
    if (this.unsynced.size > 0) this.scheduleSync();
  }

  /**
   * The store was replaced by a snapshot (a follower that fell too far behind): every watcher
   * catches up from the restored history, or is cancelled as compacted if that history no longer
   * reaches back to its next revision, as etcd does after restoring a snapshot.
   */
  storeRestored(): void {
    for (const w of [...this.synced]) this.moveToUnsynced(w);
    this.scheduleSync();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.progressTimer);
    for (const set of [this.synced, this.unsynced, this.compactedSet]) {
      for (const w of set) w.state = "removed";
      set.clear();
    }
  }

  private moveToUnsynced(w: Watcher): void {
    this.synced.delete(w);
    w.state = "unsynced";
    this.unsynced.add(w);
  }

  private scheduleSync(): void {
    if (this.syncScheduled || this.closed) return;
    this.syncScheduled = true;
    setImmediate(() => {
      this.syncScheduled = false;
      this.syncUnsynced();
    });
  }

  private markCompacted(w: Watcher): void {
    this.unsynced.delete(w);
    w.state = "compacted";
    this.compactedSet.add(w);
    w.sink.compacted(w, this.store.compactedRevision);
  }

  /** One round of catch-up: a batch for every unsynced watcher whose stream has room. */
  private syncUnsynced(): void {
    if (this.closed) return;
    let more = false;
    for (const w of [...this.unsynced]) {
      if (w.state !== "unsynced") continue; // removed by a sink callback during this round
      if (w.sink.congested) continue; // its sink calls resume() when it has room again
      const current = this.store.currentRevision;
      if (w.nextRevision < this.store.compactedRevision) {
        this.markCompacted(w);
        continue;
      }
      let batches: RevisionEvents[];
      try {
        batches = this.store.eventsSince(w.nextRevision, CATCH_UP_BATCH_EVENTS);
      } catch (err) {
        if (err instanceof EtcdError && err.kind === "Compacted") {
          this.markCompacted(w);
          continue;
        }
        throw err;
      }
      const matching: MvccEvent[] = [];
      let next = w.nextRevision;
      for (const b of batches) {
        if (b.revision < next) continue;
        if (b.revision > current) break;
        for (const e of filterEvents(w, b.events)) matching.push(e);
        next = b.revision + 1;
      }
      // The history holds every revision up to the current one; an empty answer means there is
      // nothing (left) to read.
      if (batches.length === 0) next = current + 1;
      w.nextRevision = next;
      if (matching.length > 0) {
        w.sentSinceTick = true;
        w.sink.deliver(w, matching, current);
      }
      if (w.state !== "unsynced") continue;
      if (w.nextRevision > current) {
        this.unsynced.delete(w);
        w.state = "synced";
        this.synced.add(w);
        w.sink.caughtUp(w);
      } else more = true;
    }
    if (more) this.scheduleSync();
  }

  /** The periodic tick: progress for every synced watcher that asked for it and got no events. */
  private notifyProgress(): void {
    const rev = this.store.currentRevision;
    for (const w of this.synced) {
      if (!w.progressNotify) continue;
      if (!w.sentSinceTick && !w.sink.congested) w.sink.progress(w, rev);
      w.sentSinceTick = false;
    }
    for (const w of this.unsynced) w.sentSinceTick = false;
  }
}

/** The events `w` wants; `keys[i]` may hold events[i]'s key as a latin1 string, computed once. */
function filterEvents(w: Watcher, events: readonly MvccEvent[], keys?: readonly string[]): MvccEvent[] {
  const out: MvccEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as MvccEvent;
    if (e.type === "PUT" ? w.noPut : w.noDelete) continue;
    if (!spanContains(w.span, keys?.[i] ?? e.kv.key.toString("latin1"))) continue;
    out.push(e);
  }
  return out;
}
