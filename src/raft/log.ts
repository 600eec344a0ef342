import { ErrCompacted, ErrUnavailable, limitSize, NO_LIMIT, type Storage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";

/**
 * The part of the log that Raft holds but the application has not persisted yet: an incoming
 * snapshot and/or entries from `offset` on.
 *
 * Worked example. Storage holds entries 1..5 (persisted). The leader appends 6 and 7: they live
 * here with offset=6 until the application persists them from a Ready and calls advance(), which
 * calls stableTo(7, term) and leaves entries=[] offset=8.
 *
 *     storage: [1 2 3 4 5]        unstable: offset=6 entries=[6 7]
 *
 * If a new leader now sends entries 5' 6' (index 5 and 6 with a newer term) the follower
 * truncates: the suffix from 5 must go, and 5 is already in storage, so the unstable part
 * becomes offset=5 entries=[5' 6'] and it "shadows" storage from index 5 (reads of 5 come from
 * here). When 5' 6' are persisted, storage.append() overwrites its own 5.
 *
 * A late stableTo(7, oldTerm) for the earlier Ready must not mark the new 6' stable, which is why
 * stableTo checks the term as well as the index.
 */
export class Unstable {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  /** The first index if there is an unstable snapshot (then it, not storage, starts the log). */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  stableTo(i: number, term: number): void {
    const t = this.maybeTerm(i);
    // Only entries still in the unstable part with the term that was persisted count as stable.
    if (t === term && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
    }
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  restore(snap: Snapshot): void {
    this.offset = snap.metadata.index + 1;
    this.entries = [];
    this.snapshot = snap;
  }

  truncateAndAppend(ents: Entry[]): void {
    const first = ents[0]!.index;
    if (first === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (first <= this.offset) {
      // Replaces everything unstable, and shadows storage from `first` on.
      this.offset = first;
      this.entries = [...ents];
    } else {
      this.entries = this.entries.slice(0, first - this.offset).concat(ents);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    if (lo > hi || lo < this.offset || hi > this.offset + this.entries.length) {
      throw new Error(
        `raft: unstable.slice[${lo},${hi}) out of bound [${this.offset},${this.offset + this.entries.length}]`,
      );
    }
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

/**
 * The node's view of the log: persisted entries (Storage) followed by unstable ones, plus the
 * commit and applied indexes. Invariant: applied <= committed <= lastIndex().
 */
export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  committed: number;
  applied: number;

  constructor(storage: Storage) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    // Everything up to the snapshot is committed and applied by definition.
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /**
   * The term of entry i. 0 for an index past the end (nothing is there) and throws ErrCompacted
   * below firstIndex()-1.
   */
  term(i: number): number {
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw ErrCompacted;
    if (i > this.lastIndex()) return 0;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    return this.storage.term(i);
  }

  /** term(i), but 0 when the entry is gone (compacted) or not there. */
  termOrZero(i: number): number {
    try {
      return this.term(i);
    } catch (err) {
      if (err === ErrCompacted || err === ErrUnavailable) return 0;
      throw err;
    }
  }

  matchTerm(i: number, term: number): boolean {
    try {
      return this.term(i) === term;
    } catch (err) {
      if (err === ErrCompacted || err === ErrUnavailable) return false;
      throw err;
    }
  }

  /** Raft's "at least as up-to-date" rule for granting votes (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Appends a leader's entries that follow (index, logTerm) if our log has that entry; returns
   * the index of the last new entry, or undefined when the logs do not match there.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new Error(`raft: entry ${conflict} conflicts with committed entry [committed(${this.committed})]`);
      }
      this.append(ents.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    if (after < this.committed) {
      throw new Error(`raft: after(${after}) is out of range [committed(${this.committed})]`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry in ents that is new or disagrees with our log (0 if all are
   * already there). Entries are contiguous, so after the first mismatch everything differs.
   */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Walks back from index to the last entry whose term is <= term. A follower uses it to tell the
   * leader where to retry, and the leader uses it on the follower's hint, so a probe skips a
   * whole term of divergent entries per round trip instead of one entry.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      let t: number;
      try {
        t = this.term(i);
      } catch {
        return { index: i, term: 0 };
      }
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  /**
   * The last index of the log that is known durable: in storage and not shadowed by unstable
   * entries waiting to replace it. 0 while an unstable snapshot waits to be persisted.
   */
  durableLastIndex(): number {
    if (this.unstable.snapshot !== undefined) return 0;
    return Math.min(this.storage.lastIndex(), this.unstable.offset - 1);
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  /** Committed entries the application has not applied yet. */
  nextCommittedEntries(maxSize = NO_LIMIT): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 <= lo) return [];
    return this.slice(lo, this.committed + 1, maxSize);
  }

  /** The snapshot the application must persist and apply, if one arrived. */
  unstableSnapshot(): Snapshot | undefined {
    return this.unstable.snapshot;
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return; // never decrease
    if (this.lastIndex() < toCommit) {
      throw new Error(`raft: tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`);
    }
    this.committed = toCommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (this.committed < i || i < this.applied) {
      throw new Error(
        `raft: applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`,
      );
    }
    this.applied = i;
  }

  stableTo(i: number, term: number): void {
    this.unstable.stableTo(i, term);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Commits up to maxIndex, but only if that entry is from `term` (Raft's current-term commit rule, §5.4.2). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrZero(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  restore(snap: Snapshot): void {
    this.committed = snap.metadata.index;
    this.unstable.restore(snap);
  }

  /** Entries from lo to the end, at most maxSize bytes (at least one entry). */
  entries(lo: number, maxSize: number): Entry[] {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxSize);
  }

  /** All entries from the first available one (for tests and inspection). */
  allEntries(): Entry[] {
    return this.entries(this.firstIndex(), NO_LIMIT);
  }

  /** Entries in [lo, hi), storage part first. Throws ErrCompacted if lo was compacted. */
  slice(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo > hi) throw new Error(`raft: invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw ErrCompacted;
    const length = this.lastIndex() + 1 - first;
    if (hi > first + length) throw new Error(`raft: slice[${lo},${hi}) out of bound [${first},${this.lastIndex()}]`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      const stored = this.storage.entries(lo, Math.min(hi, offset), maxSize);
      // Storage stopped early because of the size limit: do not add unstable entries after a gap.
      if (stored.length < Math.min(hi, offset) - lo) return stored;
      ents = stored;
    }
    if (hi > offset) {
      const unstable = this.unstable.slice(Math.max(lo, offset), hi);
      ents = ents.length > 0 ? ents.concat(unstable) : unstable;
    }
    return limitSize(ents, maxSize);
  }
}
