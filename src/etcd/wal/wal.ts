import * as fs from "node:fs";
import * as path from "node:path";
import { crc32c } from "../../util/crc32c.js";
import { exponentialBuckets, Histogram } from "../../util/histogram.js";
import { SlabCopier } from "../../util/slab.js";

/**
 * The write-ahead log: every state-machine command is appended here, and fsynced, before it is
 * applied or acknowledged, so an acknowledged write survives a SIGKILL or a power cut.
 *
 * Layout: `<dir>/<seq>-<firstIndex>.wal` segments (16 hex digits each, as etcd names its own). A
 * segment starts with the 8-byte magic "LABWAL" + 2-digit format version, then records:
 *
 *     u32 LE  payload length
 *     u32 LE  CRC-32C of (type byte + payload)
 *     u8      record type
 *     ...     payload
 *
 * Record types: ENTRY (u64 index, u64 term, data: a normal Raft entry), CONF_ENTRY (the same layout,
 * for a membership-change entry), HARD_STATE (u64 term, u64 vote, u64 commit), and SNAPSHOT (u64
 * index, u64 term, optional u8 reset: a snapshot covering everything up to index was saved; with
 * reset = 1 it came from the leader and replaced the whole log, so entries before the record are
 * void even above its index).
 *
 * Format version 2 (this build writes it; it still reads and appends to version 1 segments): the
 * file is extended with zeros (sparse, by ftruncate) ahead of the records, PREALLOCATE_BYTES at a
 * time, as etcd preallocates its segments. Writes then land inside the file and an fdatasync
 * need not commit a new file size with every write (measured on ext4 here: 0.16 vs 0.23 ms per
 * small write + fdatasync). The log ends where the zeros begin: no record has length 0.
 *
 * Recovery rules: a damaged record at the very end of the last segment is a write torn by a crash;
 * it was never acknowledged (we ack only after fsync), so it is truncated with a warning. A damaged
 * record anywhere else means acknowledged data is unreadable: opening fails with the file and
 * offset, never silently dropping it.
 *
 * Group commit: appends made while an fsync is in flight queue up and share the next one.
 */

export const WAL_FORMAT_VERSION = 2;
const magicOf = (version: number): Buffer => Buffer.from(`LABWAL${String(version).padStart(2, "0")}`, "latin1");
const MAGIC = magicOf(WAL_FORMAT_VERSION);
/** Versions this build reads: 1 has no zero tail (and is appended to as it is), 2 may have one. */
const READABLE_MAGICS = new Map([1, 2].map((v) => [magicOf(v).toString("latin1"), v]));
const MAGIC_PREFIX = "LABWAL";
/** Replayed entries stay in the Raft log until it is compacted after a snapshot: copied apart. */
const entryCopier = new SlabCopier();
const NO_DATA = Buffer.alloc(0);
/** How far ahead of the records a version-2 segment is extended with zeros. */
const PREALLOCATE_BYTES = 4 * 1024 * 1024;
const HEADER = 9;
const SEGMENT_BYTES = 64 * 1024 * 1024;
/** fdatasync runs on the event loop while it averages below this; on the thread pool above it. */
const SYNC_INLINE_BELOW_MS = 2;

enum RecordType {
  Entry = 1,
  HardState = 2,
  Snapshot = 3,
  ConfEntry = 4,
}

/** An entry as append() takes it (a Raft log entry is one). */
export interface AppendedEntry {
  readonly index: number;
  readonly term: number;
  /** Absent means "normal". */
  readonly type?: "normal" | "confChange";
  readonly data: Uint8Array;
}

/** An entry as the log reads it back. */
export interface WalEntry extends AppendedEntry {
  readonly data: Buffer;
}

export interface HardState {
  readonly term: number;
  readonly vote: bigint;
  readonly commit: number;
}

export interface SnapshotMark {
  readonly index: number;
  readonly term: number;
  /** The snapshot replaced the whole log (one received from the leader). */
  readonly reset?: boolean;
}

export interface WalContents {
  /** Entries after the last snapshot mark, in index order (later entries replace earlier ones at the same index). */
  readonly entries: WalEntry[];
  readonly hardState: HardState | undefined;
  readonly snapshot: SnapshotMark | undefined;
  /** Human-readable notes about repairs made while opening (a truncated torn tail). */
  readonly warnings: string[];
}

/** The log is unreadable in a way that could lose acknowledged data: the node must not start. */
export class WalCorruptionError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    reason: string,
  ) {
    super(
      `write-ahead log ${file} is corrupt at offset ${offset}: ${reason}. Acknowledged data may be behind this point, so the member will not start; restore the member from a snapshot (or remove it and re-add it to the cluster).`,
    );
    this.name = "WalCorruptionError";
  }
}

/** Writes stop after a failed write or fsync: nothing more is acknowledged until a restart. */
export class WalFailedError extends Error {
  constructor(cause: unknown) {
    super(
      `write-ahead log failed (${cause instanceof Error ? cause.message : String(cause)}); the member stopped accepting writes. Free disk space or fix the disk, then restart the member.`,
    );
    this.name = "WalFailedError";
  }
}

interface Pending {
  /** The records of one append or snapshot mark. */
  readonly bytes: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export interface WalOptions {
  /** When false (--unsafe-no-fsync), data is written but not fsynced: fast, and lost on power cut. */
  readonly fsync: boolean;
  readonly segmentBytes?: number;
  /**
   * Entries at or below this index are checked (checksums, order) but left out of `contents`:
   * the caller holds them in a snapshot. Copying every entry a 64 MB segment holds only to drop
   * most of them was a large part of a restart's time. 0 (the default) keeps them all.
   */
  readonly skipEntriesThrough?: number;
}

export class Wal {
  private fd: number;
  /** Where the next record goes: the end of the records, not of the file (which has zeros after). */
  private size: number;
  /** The file's length: records plus preallocated zeros. */
  private allocated: number;
  /** Whether the current segment is version 2 (extended ahead) rather than a version-1 file. */
  private preallocates: boolean;
  private seq: number;
  private pending: Pending[] = [];
  private flushing = false;
  private failed: WalFailedError | undefined;
  private closed = false;
  private lastIndex: number;
  private readonly segmentBytes: number;
  /** Starts optimistic; a slow disk moves it above the threshold within a few syncs. */
  private syncMsAverage = 0;
  /** How long each fdatasync took, in seconds, with etcd's buckets (1 ms doubling to 8 s). */
  readonly fsyncSeconds = new Histogram(exponentialBuckets(0.001, 2, 14));
  /** Bytes of records written (preallocated zeros not counted). */
  writtenBytes = 0;

  private constructor(
    private readonly dir: string,
    private readonly options: WalOptions,
    current: OpenSegment,
    lastIndex: number,
  ) {
    this.fd = current.fd;
    this.size = current.size;
    this.allocated = current.allocated;
    this.preallocates = current.preallocates;
    this.seq = current.seq;
    this.lastIndex = lastIndex;
    this.segmentBytes = options.segmentBytes ?? SEGMENT_BYTES;
  }

  /** Opens (creating when absent) the log in `dir` and reads everything it holds. */
  static open(dir: string, options: WalOptions): { wal: Wal; contents: WalContents } {
    fs.mkdirSync(dir, { recursive: true });
    const segments = listSegments(dir);
    const warnings: string[] = [];
    const entries: WalEntry[] = [];
    let hardState: HardState | undefined;
    let snapshot: SnapshotMark | undefined;
    let lastEnd = 0;
    let lastVersion = WAL_FORMAT_VERSION;
    // The last entry record read is the log's last entry (a rewrite at an index drops what followed).
    let lastEntryIndex: number | undefined;

    segments.forEach((seg, i) => {
      const file = path.join(dir, seg.name);
      const isLast = i === segments.length - 1;
      const data = fs.readFileSync(file);
      const parsed = parseSegment(file, data, isLast, options.skipEntriesThrough ?? 0);
      if (parsed.truncateAt !== undefined) {
        warnings.push(
          `${file}: truncated a torn record at offset ${parsed.truncateAt} (${data.length - parsed.truncateAt} bytes); it was never acknowledged`,
        );
        fs.truncateSync(file, parsed.truncateAt);
      }
      lastEnd = parsed.truncateAt ?? parsed.end;
      lastVersion = parsed.version;
      for (const rec of parsed.records) {
        if (rec.type === RecordType.Entry || rec.type === RecordType.ConfEntry) {
          const e = rec.entry as WalEntry;
          // A later entry at an index replaces what was there and everything after (Raft log truncation).
          while (entries.length > 0 && (entries[entries.length - 1] as WalEntry).index >= e.index) entries.pop();
          lastEntryIndex = e.index;
          if (rec.skipped !== true) entries.push(e);
        } else if (rec.type === RecordType.HardState) {
          hardState = rec.hardState;
        } else if (rec.type === RecordType.Snapshot) {
          snapshot = rec.snapshot;
          if (snapshot?.reset) {
            entries.length = 0;
            lastEntryIndex = undefined;
          }
        }
      }
    });
    const afterSnapshot = snapshot ? entries.filter((e) => e.index > (snapshot as SnapshotMark).index) : entries;

    let current: OpenSegment;
    const last = segments[segments.length - 1];
    if (last) {
      const file = path.join(dir, last.name);
      const fd = fs.openSync(file, "r+");
      current = {
        fd,
        size: lastEnd,
        allocated: fs.fstatSync(fd).size,
        preallocates: lastVersion >= 2,
        seq: last.seq,
      };
    } else {
      current = createSegment(dir, 0, 1, options.segmentBytes ?? SEGMENT_BYTES);
    }
    const lastIndex = lastEntryIndex ?? snapshot?.index ?? 0;
    const wal = new Wal(dir, options, current, lastIndex);
    return { wal, contents: { entries: afterSnapshot, hardState, snapshot, warnings } };
  }

  /** Index of the last entry appended (0 for an empty log). */
  get lastEntryIndex(): number {
    return this.lastIndex;
  }

  /**
   * Appends entries (and optionally a hard state) and resolves once they are durable. Calls made
   * while an fsync is in flight share the next fsync. With `sync: false` it resolves once the
   * records are written, without waiting for the disk. Rejects with WalFailedError after any I/O
   * failure, and from then on.
   */
  append(entries: readonly AppendedEntry[], hardState?: HardState, options: { sync?: boolean } = {}): Promise<void> {
    const bytes = encodeRecords(entries, hardState);
    const last = entries[entries.length - 1];
    if (last) this.lastIndex = last.index;
    if (options.sync === false && this.pending.length === 0 && !this.failed && !this.closed) {
      // Nothing queued ahead of it, so writing now keeps the records in order. Not waiting for
      // the disk is what the caller asked for (e.g. a commit index, which Raft can recompute).
      try {
        this.write([bytes]);
      } catch (err) {
        this.failed = new WalFailedError(err);
        return Promise.reject(this.failed);
      }
      return Promise.resolve();
    }
    return this.enqueue(bytes);
  }

  /** Records that a snapshot covers everything up to `mark.index`, then drops segments it covers. */
  async markSnapshot(mark: SnapshotMark): Promise<void> {
    const payload = Buffer.alloc(mark.reset ? 17 : 16);
    payload.writeBigUInt64LE(BigInt(mark.index), 0);
    payload.writeBigUInt64LE(BigInt(mark.term), 8);
    if (mark.reset) {
      payload[16] = 1;
      this.lastIndex = mark.index;
    }
    await this.enqueue(encodeRecord(RecordType.Snapshot, payload));
    this.releaseSegmentsBefore(mark.index);
  }

  /** Flushes what is queued and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.pending.length > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.failed) break;
    }
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private enqueue(bytes: Buffer): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new WalFailedError(new Error("log closed")));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ bytes, resolve, reject });
      if (!this.flushing) this.flush();
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) {
      this.flushing = false;
      return;
    }
    this.flushing = true;
    const buffers = batch.map((p) => p.bytes);
    const fail = (err: unknown): void => {
      this.failed = new WalFailedError(err);
      for (const p of batch) p.reject(this.failed);
      for (const p of this.pending) p.reject(this.failed);
      this.pending = [];
      this.flushing = false;
    };
    // The write itself goes to the page cache and takes microseconds: done synchronously, it
    // saves a thread-pool round trip per batch. Only the fdatasync waits on the disk.
    try {
      this.write(buffers);
    } catch (err) {
      fail(err);
      return;
    }
    const done = (syncErr: NodeJS.ErrnoException | null): void => {
      if (syncErr) {
        fail(syncErr);
        return;
      }
      try {
        if (this.size >= this.segmentBytes) this.cut();
      } catch (cutErr) {
        fail(cutErr);
        return;
      }
      for (const p of batch) p.resolve();
      this.flush();
    };
    if (!this.options.fsync) {
      queueMicrotask(() => done(null));
      return;
    }
    if (this.syncMsAverage < SYNC_INLINE_BELOW_MS) {
      // On a fast disk, waiting in place (as etcd's raft loop does) beats a thread-pool round
      // trip and the cross-thread wake-up after it; whatever arrives meanwhile waits in the
      // sockets and joins the next batch.
      const started = performance.now();
      let error: NodeJS.ErrnoException | null = null;
      try {
        fs.fdatasyncSync(this.fd);
      } catch (err) {
        error = err as NodeJS.ErrnoException;
      }
      this.recordSync(performance.now() - started);
      queueMicrotask(() => done(error));
      return;
    }
    const started = performance.now();
    fs.fdatasync(this.fd, (err) => {
      this.recordSync(performance.now() - started);
      done(err);
    });
  }

  /** Writes records at the end of the log, first extending a version-2 segment's zeros if needed. */
  private write(buffers: Buffer[]): void {
    const bytes = buffers.reduce((n, b) => n + b.length, 0);
    if (this.preallocates && this.size + bytes > this.allocated) {
      const target = Math.min(this.segmentBytes, this.size + bytes + PREALLOCATE_BYTES);
      if (target > this.allocated) {
        fs.ftruncateSync(this.fd, target);
        this.allocated = target;
      }
    }
    writeAll(this.fd, buffers, bytes, this.size);
    this.size += bytes;
    this.writtenBytes += bytes;
    this.allocated = Math.max(this.allocated, this.size);
  }

  /** A moving average of fdatasync times, so that a slow disk never blocks the event loop long. */
  private recordSync(ms: number): void {
    this.syncMsAverage = this.syncMsAverage * 0.9 + ms * 0.1;
    this.fsyncSeconds.observe(ms / 1000);
  }

  /** Starts a new segment once the current one is large enough. */
  private cut(): void {
    fs.closeSync(this.fd);
    const next = createSegment(this.dir, this.seq + 1, this.lastIndex + 1, this.segmentBytes);
    this.fd = next.fd;
    this.size = next.size;
    this.allocated = next.allocated;
    this.preallocates = next.preallocates;
    this.seq = next.seq;
  }

  /** Deletes segments whose every entry is at or below `index` (never the current one). */
  private releaseSegmentsBefore(index: number): void {
    const segments = listSegments(this.dir);
    for (let i = 0; i + 1 < segments.length; i++) {
      const next = segments[i + 1] as Segment;
      if (next.firstIndex - 1 <= index && (segments[i] as Segment).seq !== this.seq) {
        fs.rmSync(path.join(this.dir, (segments[i] as Segment).name));
      } else break;
    }
  }
}

/**
 * Writes every byte or throws why not: a short write is retried for the rest, so that a full disk
 * surfaces as the kernel's ENOSPC rather than an unexplained short count.
 */
function writeAll(fd: number, buffers: Buffer[], total: number, position: number): void {
  const written = fs.writevSync(fd, buffers, position);
  if (written === total) return;
  let rest = Buffer.concat(buffers).subarray(written);
  let at = position + written;
  while (rest.length > 0) {
    const n = fs.writeSync(fd, rest, 0, rest.length, at);
    if (n === 0) throw new Error(`short write: ${total - rest.length} of ${total} bytes`);
    rest = rest.subarray(n);
    at += n;
  }
}

interface OpenSegment {
  readonly fd: number;
  readonly size: number;
  readonly allocated: number;
  readonly preallocates: boolean;
  readonly seq: number;
}

interface Segment {
  readonly name: string;
  readonly seq: number;
  readonly firstIndex: number;
}

function segmentName(seq: number, firstIndex: number): string {
  return `${seq.toString(16).padStart(16, "0")}-${firstIndex.toString(16).padStart(16, "0")}.wal`;
}

function listSegments(dir: string): Segment[] {
  const out: Segment[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/.exec(name);
    if (!m) continue;
    out.push({ name, seq: Number.parseInt(m[1] as string, 16), firstIndex: Number.parseInt(m[2] as string, 16) });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

function createSegment(dir: string, seq: number, firstIndex: number, segmentBytes: number): OpenSegment {
  const file = path.join(dir, segmentName(seq, firstIndex));
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w");
  fs.writeSync(fd, MAGIC);
  const allocated = Math.max(MAGIC.length, Math.min(segmentBytes, MAGIC.length + PREALLOCATE_BYTES));
  fs.ftruncateSync(fd, allocated);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
  const wfd = fs.openSync(file, "r+");
  return { fd: wfd, size: MAGIC.length, allocated, preallocates: true, seq };
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function encodeRecord(type: RecordType, payload: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + payload.length);
  buf.writeUInt32LE(payload.length, 0);
  buf[8] = type;
  payload.copy(buf, HEADER);
  buf.writeUInt32LE(crc32c(buf, 0, 8), 4);
  return buf;
}

/**
 * The records of one append (its entries, then its hard state) in one buffer: one allocation and
 * one write vector element per Ready, however many entries it brings.
 */
function encodeRecords(entries: readonly AppendedEntry[], hardState: HardState | undefined): Buffer {
  let size = hardState ? HEADER + 24 : 0;
  for (const e of entries) size += HEADER + 16 + e.data.length;
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of entries) {
    const start = at;
    buf.writeUInt32LE(16 + e.data.length, at);
    buf[at + 8] = e.type === "confChange" ? RecordType.ConfEntry : RecordType.Entry;
    writeUint64(buf, e.index, at + HEADER);
    writeUint64(buf, e.term, at + HEADER + 8);
    buf.set(e.data, at + HEADER + 16);
    at += HEADER + 16 + e.data.length;
    buf.writeUInt32LE(crc32c(buf, 0, start + 8, at), start + 4);
  }
  if (hardState) {
    buf.writeUInt32LE(24, at);
    buf[at + 8] = RecordType.HardState;
    writeUint64(buf, hardState.term, at + HEADER);
    buf.writeBigUInt64LE(hardState.vote, at + HEADER + 8);
    writeUint64(buf, hardState.commit, at + HEADER + 16);
    buf.writeUInt32LE(crc32c(buf, 0, at + 8, at + HEADER + 24), at + 4);
  }
  return buf;
}

/**
 * A safe integer as 8 little-endian bytes, as writeBigUInt64LE(BigInt(n)) writes it without
 * making two BigInts per field on the write path.
 */
function writeUint64(buf: Buffer, n: number, offset: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a log index or term: ${n}`);
  buf.writeUInt32LE(n % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), offset + 4);
}

interface ParsedRecord {
  readonly type: RecordType;
  readonly entry?: WalEntry;
  /** An entry at or below `skipEntriesThrough`: its index and term only, its data not copied. */
  readonly skipped?: true;
  readonly hardState?: HardState;
  readonly snapshot?: SnapshotMark;
}

interface ParsedSegment {
  readonly records: ParsedRecord[];
  readonly version: number;
  /** Where the records end (a version-2 segment's zeros follow). */
  readonly end: number;
  /** A torn last record starts here: the file is to be cut at this offset. */
  readonly truncateAt?: number;
}

function parseSegment(file: string, data: Buffer, isLast: boolean, skipEntriesThrough: number): ParsedSegment {
  const records: ParsedRecord[] = [];
  if (data.length < MAGIC.length) {
    // A segment is created complete (written to a temp file, then renamed), so a short one is damage.
    throw new WalCorruptionError(file, 0, "the file is shorter than its header");
  }
  const magic = data.subarray(0, MAGIC.length).toString("latin1");
  if (!magic.startsWith(MAGIC_PREFIX)) throw new WalCorruptionError(file, 0, "not a lab write-ahead log segment");
  const version = READABLE_MAGICS.get(magic);
  if (version === undefined) {
    throw new WalCorruptionError(
      file,
      0,
      `format version ${magic.slice(MAGIC_PREFIX.length)} is not supported by this build (it reads versions 1 and ${WAL_FORMAT_VERSION}); use the lab version that wrote it`,
    );
  }
  // Damage at `at`: a torn tail of the last segment is cut off there; anything else is corruption.
  const damage = (at: number, reason: string): ParsedSegment => {
    if (isLast && !hasValidRecordAfter(data, at + 1)) return { records, version, end: at, truncateAt: at };
    throw new WalCorruptionError(file, at, reason);
  };
  let off = MAGIC.length;
  // Offsets into `data` rather than views of each record: a restart reads every record of the log.
  while (off < data.length) {
    // Preallocated zeros: the records end here (a record never has length 0).
    if (version >= 2 && data[off] === 0 && isZero(data, off)) return { records, version, end: off };
    if (data.length - off < HEADER) return damage(off, "record header cut short");
    const len = data.readUInt32LE(off);
    const crc = data.readUInt32LE(off + 4);
    const end = off + HEADER + len;
    if (end > data.length) return damage(off, `record of ${len} bytes runs past the end of the file`);
    if (crc32c(data, 0, off + 8, end) !== crc) return damage(off, "checksum mismatch");
    const type = data[off + 8] as RecordType;
    const at = off + HEADER;
    switch (type) {
      case RecordType.Entry:
      case RecordType.ConfEntry: {
        if (len < 16) return damage(off, "entry record too short");
        const index = u64At(data, at);
        const term = u64At(data, at + 8);
        const skipped = index <= skipEntriesThrough;
        const bytes = skipped ? NO_DATA : entryCopier.copy(data.subarray(at + 16, end));
        // Object literals of fixed shapes: spreads cost more than the rest of a record's parsing.
        const entry: WalEntry =
          type === RecordType.ConfEntry
            ? { index, term, type: "confChange", data: bytes }
            : { index, term, data: bytes };
        records.push(skipped ? { type, entry, skipped } : { type, entry });
        break;
      }
      case RecordType.HardState:
        if (len < 24) return damage(off, "hard state record too short");
        records.push({
          type,
          hardState: { term: u64At(data, at), vote: data.readBigUInt64LE(at + 8), commit: u64At(data, at + 16) },
        });
        break;
      case RecordType.Snapshot:
        if (len < 16) return damage(off, "snapshot record too short");
        records.push({
          type,
          snapshot: {
            index: u64At(data, at),
            term: u64At(data, at + 8),
            ...(len > 16 && data[at + 16] === 1 ? { reset: true } : {}),
          },
        });
        break;
      default:
        throw new WalCorruptionError(file, off, `unknown record type ${type as number}`);
    }
    off = end;
  }
  return { records, version, end: off };
}

/** An unsigned 64-bit little-endian integer as a number (exact below 2^53), without a BigInt. */
function u64At(data: Buffer, at: number): number {
  return data.readUInt32LE(at) + data.readUInt32LE(at + 4) * 2 ** 32;
}

const ZEROS = Buffer.alloc(64 * 1024);

/** Whether every byte from `from` to the end is zero. */
function isZero(data: Buffer, from: number): boolean {
  for (let off = from; off < data.length; off += ZEROS.length) {
    const chunk = data.subarray(off, Math.min(data.length, off + ZEROS.length));
    if (!chunk.equals(ZEROS.subarray(0, chunk.length))) return false;
  }
  return true;
}

/**
 * Whether some intact record starts after `from`: if one does, the damage is not a torn tail but
 * corruption in the middle of the log.
 */
function hasValidRecordAfter(data: Buffer, from: number): boolean {
  for (let off = from; off + HEADER <= data.length; off++) {
    const len = data.readUInt32LE(off);
    if (len === 0 || off + HEADER + len > data.length) continue;
    const type = data[off + 8];
    if (
      type !== RecordType.Entry &&
      type !== RecordType.ConfEntry &&
      type !== RecordType.HardState &&
      type !== RecordType.Snapshot
    )
      continue;
    if (crc32c(data.subarray(off + 8, off + HEADER + len)) === data.readUInt32LE(off + 4)) return true;
  }
  return false;
}
