import {
  type ConfState,
  cloneConfState,
  EMPTY_HARD_STATE,
  type Entry,
  type HardState,
  type Snapshot,
} from "./types.js";

/** The errors a Storage may throw. Callers compare by identity (`err === ErrCompacted`). */
export class RaftStorageError extends Error {
  constructor(
    readonly code: "compacted" | "unavailable" | "snapshotOutOfDate" | "snapshotTemporarilyUnavailable",
    message: string,
  ) {
    super(message);
    this.name = "RaftStorageError";
  }
}

/** The requested index is older than the storage's first index: it was compacted into a snapshot. */
export const ErrCompacted = new RaftStorageError("compacted", "requested index is unavailable due to compaction");
/** The requested index is newer than the storage's last index. */
export const ErrUnavailable = new RaftStorageError("unavailable", "requested entry at index is unavailable");
/** applySnapshot/createSnapshot was given a snapshot older than the one the storage already has. */
export const ErrSnapshotOutOfDate = new RaftStorageError(
  "snapshotOutOfDate",
  "requested index is older than the existing snapshot",
);
/** The storage is still building a snapshot; the leader should try again later. */
export const ErrSnapshotTemporarilyUnavailable = new RaftStorageError(
  "snapshotTemporarilyUnavailable",
  "snapshot is temporarily unavailable",
);

export interface InitialState {
  hardState: HardState;
  confState: ConfState;
}

/**
 * What Raft reads of the durable log. Raft never writes through this interface: the application
 * persists what Ready hands it (entries, hard state, snapshot), then calls advance().
 *
 * Indexes: the storage holds its latest snapshot, covering (0, snapshot.index], and the entries
 * [firstIndex(), lastIndex()]. Compaction may keep some entries the snapshot covers, so
 * firstIndex()-1 <= snapshot.index. The entry at firstIndex()-1 is known only by its term
 * (term(firstIndex()-1) must work: the leader checks it when it appends right after it).
 *
 * Ownership: Raft does not modify returned arrays or entries, and the storage must not modify
 * them after returning them either (hand out copies or never mutate in place).
 */
export interface Storage {
  /** The persisted HardState and the membership as of the last snapshot. */
  initialState(): InitialState;
  /**
   * Entries in [lo, hi). Returns at least one entry when lo < hi, and stops before the total
   * byte size of entry data exceeds maxSize. Throws ErrCompacted if lo < firstIndex(), and
   * ErrUnavailable if hi > lastIndex() + 1.
   */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  /**
   * The term of entry i, for i in [firstIndex()-1, lastIndex()]. Throws ErrCompacted below that
   * range and ErrUnavailable above it.
   */
  term(i: number): number;
  /** Index of the last entry (the snapshot's index when there are no entries). */
  lastIndex(): number;
  /** Index of the first entry that is still available (older ones are in the snapshot). */
  firstIndex(): number;
  /** The most recent snapshot. May throw ErrSnapshotTemporarilyUnavailable. */
  snapshot(): Snapshot;
}

/** Sum of entry data sizes, used against maxSizePerMsg. */
export function entrySize(e: Entry): number {
  // A small fixed cost per entry so that empty entries still count against a byte budget.
  return e.data.length + 16;
}

/** Keeps a prefix of `ents` whose size fits maxSize, but always at least one entry. */
export function limitSize(ents: Entry[], maxSize: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySize(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySize(ents[n]!);
    if (size > maxSize) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

export const NO_LIMIT = Number.MAX_SAFE_INTEGER;

/**
 * An in-memory Storage, like etcd's MemoryStorage. The application writes to it while handling a
 * Ready: applySnapshot, then append(entries), then setHardState, all before advance().
 *
 * Layout: `ents[0]` is a dummy entry that stands for the snapshot point (its index and term are
 * the snapshot's); real entries follow it. So firstIndex() = ents[0].index + 1.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { ...EMPTY_HARD_STATE };
  private snap: Snapshot = {
    metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } },
    data: new Uint8Array(0),
  };
  private ents: Entry[] = [{ term: 0, index: 0, type: "normal", data: new Uint8Array(0) }];

  initialState(): InitialState {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw ErrCompacted;
    if (hi > this.lastIndex() + 1) throw ErrUnavailable;
    if (lo >= hi) return [];
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSize);
  }

  term(i: number): number {
    const offset = this.offset();
    if (i < offset) throw ErrCompacted;
    const e = this.ents[i - offset];
    if (e === undefined) throw ErrUnavailable;
    return e.term;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the storage's contents with a snapshot (a follower installing the leader's snapshot). */
  applySnapshot(snap: Snapshot): void {
    if (snap.metadata.index <= this.snap.metadata.index) throw ErrSnapshotOutOfDate;
    this.snap = snap;
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: "normal", data: new Uint8Array(0) }];
  }

  /**
   * Records a snapshot of the application's state as of applied index i, so that the log before
   * it can be compacted. i must be in (snapshot.index, lastIndex()].
   */
  createSnapshot(i: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (i <= this.snap.metadata.index) throw ErrSnapshotOutOfDate;
    if (i > this.lastIndex()) throw new Error(`raft: snapshot ${i} is out of bound lastindex(${this.lastIndex()})`);
    const term = this.ents[i - this.offset()]!.term;
    this.snap = { metadata: { index: i, term, confState: cloneConfState(confState) }, data };
    return this.snap;
  }

  /**
   * Discards entries before compactIndex; the entry at compactIndex becomes the dummy entry (only
   * its term is kept). The application must not compact past what it has applied.
   */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) throw ErrCompacted;
    if (compactIndex > this.lastIndex()) {
      throw new Error(`raft: compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    }
    const keep = this.ents.slice(compactIndex - offset);
    const head = keep[0]!;
    keep[0] = { term: head.term, index: head.index, type: "normal", data: new Uint8Array(0) };
    this.ents = keep;
  }

  /**
   * Appends entries, replacing any existing suffix that they overlap (a new leader overwrote it).
   * Entries older than the first index are ignored; a gap after lastIndex() is an error.
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1]!.index;
    if (last < first) return;
    const fresh = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const at = fresh[0]!.index - this.offset();
    if (at > this.ents.length) {
      throw new Error(`raft: missing log entry [last: ${this.lastIndex()}, append at: ${fresh[0]!.index}]`);
    }
    // In place: copying the whole log on every append made each write O(log length).
    if (at < this.ents.length) this.ents.length = at;
    for (const e of fresh) this.ents.push(e);
  }
}
