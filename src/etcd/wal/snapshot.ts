import * as fs from "node:fs";
import * as path from "node:path";
import { BinaryReader, BinaryWriter } from "../../util/binary.js";
import { crc32c } from "../../util/crc32c.js";
import { type KeyValue, recordsKeptByCompaction, type StoreImage } from "../mvcc/store.js";
import { fsyncDir } from "./wal.js";

/**
 * A snapshot is the whole applied state of a member at one log index: every retained MVCC record,
 * the leases, the alarms and the membership. Restart loads the newest snapshot and replays only the
 * log entries after it, so restart time is bounded by --snapshot-count, not by the age of the data.
 * The same bytes are what Maintenance.Snapshot streams (etcdctl snapshot save).
 *
 * File: "LABSNAP" + 2-digit format version, the body, then a CRC-32C of everything before it.
 *
 * Most snapshots a member saves are deltas: the records written since the previous snapshot file
 * (records are never changed once written), with the whole of the small state (members, leases,
 * alarms, revisions). A delta names the file it follows; loading takes the newest full snapshot
 * and the deltas after it, in order. So a snapshot costs what was written since the last one,
 * not the size of the store. Worked example, --snapshot-count 100:
 *
 *     index 100: full   0..0100.snap   every record (revisions 1..98)
 *     index 200: delta  0..0200.delta  records of revisions 99..197, follows index 100
 *     index 300: delta  0..0300.delta  records of revisions 198..290, follows index 200
 *
 * Loading index 300 = the full one's records, then each delta's appended key by key, then the
 * last delta's compaction applied (a compaction only drops records at or below its revision, so
 * applying it after the later records arrive drops the same ones). A member writes a full
 * snapshot again after MAX_DELTAS deltas, when a compaction passed the previous snapshot's
 * revision (the records since then are no longer all in the watch history), after a defragment,
 * and on a snapshot from its leader.
 *
 * Delta file: "LABDELT" + 2-digit version, the body of a snapshot with the index it follows and
 * the revision its records start after inserted after the cluster ID, then the CRC-32C.
 */

export const SNAPSHOT_FORMAT_VERSION = 1;
const MAGIC = Buffer.from(`LABSNAP${String(SNAPSHOT_FORMAT_VERSION).padStart(2, "0")}`, "latin1");
const MAGIC_PREFIX = "LABSNAP";
export const DELTA_FORMAT_VERSION = 1;
const DELTA_MAGIC = Buffer.from(`LABDELT${String(DELTA_FORMAT_VERSION).padStart(2, "0")}`, "latin1");
const DELTA_MAGIC_PREFIX = "LABDELT";
/** Deltas after a full snapshot before the next full one: bounds what a restart reads. */
export const MAX_DELTAS = 8;

export interface LeaseImage {
  readonly id: bigint;
  /** The TTL the lease was granted with, in seconds. */
  readonly ttl: number;
}

export interface AlarmImage {
  readonly memberId: bigint;
  /** etcdserverpb.AlarmType: 1 NOSPACE, 2 CORRUPT. */
  readonly alarm: number;
}

export interface MemberImage {
  readonly id: bigint;
  readonly name: string;
  readonly peerUrls: string[];
  readonly clientUrls: string[];
  readonly isLearner: boolean;
}

export interface StateSnapshot {
  /** Log index and term of the last entry the state includes. */
  readonly index: number;
  readonly term: number;
  readonly clusterId: bigint;
  readonly members: MemberImage[];
  readonly store: StoreImage;
  readonly leases: LeaseImage[];
  readonly alarms: AlarmImage[];
}

/**
 * The records written after the previous snapshot file (revisions fromRevision+1 .. the store's
 * current one, in revision order) and the whole of the rest of the state at `index`.
 */
export interface SnapshotDelta extends StateSnapshot {
  /** The index of the snapshot file this one follows (full or delta). */
  readonly follows: number;
  /** That snapshot's current revision: the records here are all written after it. */
  readonly fromRevision: number;
}

export class SnapshotCorruptionError extends Error {
  constructor(file: string, reason: string) {
    super(`snapshot ${file} is unreadable: ${reason}`);
    this.name = "SnapshotCorruptionError";
  }
}

export function encodeSnapshot(s: StateSnapshot | SnapshotDelta): Buffer {
  const steps = snapshotEncoder(s, Number.POSITIVE_INFINITY);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * The same bytes as encodeSnapshot, encoded `recordsPerSlice` MVCC records at a time with a turn
 * of the event loop in between: a member encoding a large store (100,000 revisions are ~30 MB,
 * ~0.4 s of CPU here) keeps answering requests meanwhile instead of stalling for the whole of it.
 * The snapshot must not change until the promise settles; a StoreImage holds its own list of
 * records, and records are never modified once written, so an image taken in one turn is safe.
 * The default slice (4,096 records) is ~15 ms of CPU on this project's 2-core test machine.
 */
export async function encodeSnapshotInSlices(
  s: StateSnapshot | SnapshotDelta,
  recordsPerSlice = 4096,
): Promise<Buffer> {
  if (!Number.isInteger(recordsPerSlice) || recordsPerSlice < 1) {
    throw new RangeError(`records per slice must be a positive integer, not ${recordsPerSlice}`);
  }
  const steps = snapshotEncoder(s, recordsPerSlice);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function isDelta(s: StateSnapshot | SnapshotDelta): s is SnapshotDelta {
  return "follows" in s;
}

/** Encodes `s` (a delta file when it is one), yielding after every `recordsPerSlice` records. */
function* snapshotEncoder(s: StateSnapshot | SnapshotDelta, recordsPerSlice: number): Generator<void, Buffer, void> {
  const delta = isDelta(s) ? s : undefined;
  // Sized up front (a store of 100,000 revisions is ~30 MB): no buffer grows, nothing is copied
  // twice; the checksum goes after the magic and the body, in the same buffer, and is computed
  // slice by slice as the bytes are written.
  let size = MAGIC.length + 8 * 3 + (delta ? 8 * 2 : 0) + 4 + 8 * 2 + 4 + 4 + 4 + 4;
  for (const m of s.members) {
    size += 8 + 4 + Buffer.byteLength(m.name) + 1 + 8;
    for (const u of [...m.peerUrls, ...m.clientUrls]) size += 4 + Buffer.byteLength(u);
  }
  const records = s.store.records;
  for (const r of records) size += 4 + r.key.length + 8 * 3 + 4 + r.value.length + 8;
  size += s.leases.length * 16 + s.alarms.length * 9;
  const w = new BinaryWriter(size);
  let crc = 0;
  let checksummed = 0;
  const checksumSoFar = (): void => {
    const written = w.finish();
    crc = crc32c(written.subarray(checksummed), crc);
    checksummed = written.length;
  };
  w.raw(delta ? DELTA_MAGIC : MAGIC);
  w.u64(s.index).u64(s.term).u64n(s.clusterId);
  if (delta) w.u64(delta.follows).u64(delta.fromRevision);
  w.u32(s.members.length);
  for (const m of s.members) {
    w.u64n(m.id)
      .string(m.name)
      .u8(m.isLearner ? 1 : 0);
    w.u32(m.peerUrls.length);
    for (const u of m.peerUrls) w.string(u);
    w.u32(m.clientUrls.length);
    for (const u of m.clientUrls) w.string(u);
  }
  w.u64(s.store.currentRevision).u64(s.store.compactedRevision);
  w.u32(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as KeyValue;
    w.bytes(r.key).u64(r.createRevision).u64(r.modRevision).u64(r.version).bytes(r.value).i64(r.lease);
    if ((i + 1) % recordsPerSlice === 0 && i + 1 < records.length) {
      checksumSoFar();
      yield;
    }
  }
  w.u32(s.leases.length);
  for (const l of s.leases) w.i64(l.id).u64(l.ttl);
  w.u32(s.alarms.length);
  for (const a of s.alarms) w.u64n(a.memberId).u8(a.alarm);
  checksumSoFar();
  w.u32(crc);
  return w.finish();
}

export function decodeSnapshot(data: Buffer, label: string): StateSnapshot {
  const decoded = decodeSnapshotFile(data, label);
  if (isDelta(decoded)) throw new SnapshotCorruptionError(label, "a delta snapshot, not a full one");
  return decoded;
}

/** Decodes a full snapshot or a delta, whichever the file's magic says. */
export function decodeSnapshotFile(data: Buffer, label: string): StateSnapshot | SnapshotDelta {
  if (data.length < MAGIC.length + 4) throw new SnapshotCorruptionError(label, "too short to be a lab snapshot");
  const magic = data.subarray(0, MAGIC.length).toString("latin1");
  const delta = magic.startsWith(DELTA_MAGIC_PREFIX);
  if (!delta && !magic.startsWith(MAGIC_PREFIX)) throw new SnapshotCorruptionError(label, "not a lab snapshot file");
  const expected = (delta ? DELTA_MAGIC : MAGIC).toString("latin1");
  if (magic !== expected) {
    throw new SnapshotCorruptionError(
      label,
      `format version ${magic.slice(MAGIC_PREFIX.length)} is not supported (this build reads version ${delta ? DELTA_FORMAT_VERSION : SNAPSHOT_FORMAT_VERSION})`,
    );
  }
  const end = data.length - 4;
  if (crc32c(data.subarray(0, end)) !== data.readUInt32LE(end)) {
    throw new SnapshotCorruptionError(label, "checksum mismatch");
  }
  try {
    const r = new BinaryReader(data.subarray(MAGIC.length, end));
    const index = r.u64();
    const term = r.u64();
    const clusterId = r.u64n();
    const follows = delta ? r.u64() : 0;
    const fromRevision = delta ? r.u64() : 0;
    const members: MemberImage[] = [];
    for (let n = r.u32(); n > 0; n--) {
      const id = r.u64n();
      const name = r.string();
      const isLearner = r.u8() === 1;
      const peerUrls: string[] = [];
      for (let k = r.u32(); k > 0; k--) peerUrls.push(r.string());
      const clientUrls: string[] = [];
      for (let k = r.u32(); k > 0; k--) clientUrls.push(r.string());
      members.push({ id, name, isLearner, peerUrls, clientUrls });
    }
    const currentRevision = r.u64();
    const compactedRevision = r.u64();
    const records: KeyValue[] = [];
    let previousKey: Buffer | undefined;
    for (let n = r.u32(); n > 0; n--) {
      // A full snapshot lists each key's records together: they share one copy of the key.
      const key = r.bytesOrSame(previousKey);
      previousKey = key;
      const createRevision = r.u64();
      const modRevision = r.u64();
      const version = r.u64();
      const value = r.bytes();
      const lease = r.i64();
      records.push({ key, createRevision, modRevision, version, value, lease });
    }
    const leases: LeaseImage[] = [];
    for (let n = r.u32(); n > 0; n--) leases.push({ id: r.i64(), ttl: r.u64() });
    const alarms: AlarmImage[] = [];
    for (let n = r.u32(); n > 0; n--) alarms.push({ memberId: r.u64n(), alarm: r.u8() });
    if (r.remaining !== 0) throw new RangeError(`${r.remaining} unexpected trailing bytes`);
    const state = {
      index,
      term,
      clusterId,
      members,
      store: { currentRevision, compactedRevision, records },
      leases,
      alarms,
    };
    return delta ? { ...state, follows, fromRevision } : state;
  } catch (err) {
    throw new SnapshotCorruptionError(label, err instanceof Error ? err.message : String(err));
  }
}

/**
 * The state a full snapshot and the deltas after it (in order) describe: the deltas' records
 * appended to each key's, then the last delta's compaction applied, and the last delta's index,
 * members, leases and alarms. `labels` name the deltas' files for errors.
 */
export function applyDeltas(
  base: StateSnapshot,
  deltas: readonly SnapshotDelta[],
  labels: readonly string[] = deltas.map((d) => `delta at index ${d.index}`),
): StateSnapshot {
  if (deltas.length === 0) return base;
  const byKey = new Map<string, KeyValue[]>();
  // A full snapshot's records of one key come together with one key buffer: one lookup for them.
  let lastKey: Buffer | undefined;
  let list: KeyValue[] = [];
  const add = (r: KeyValue): void => {
    if (r.key !== lastKey) {
      lastKey = r.key;
      const key = r.key.toString("latin1");
      const known = byKey.get(key);
      if (known) list = known;
      else {
        list = [];
        byKey.set(key, list);
      }
    }
    list.push(r);
  };
  for (const r of base.store.records) add(r);
  let previous: StateSnapshot = base;
  for (const [i, d] of deltas.entries()) {
    if (d.follows !== previous.index || d.fromRevision !== previous.store.currentRevision) {
      throw new SnapshotCorruptionError(
        labels[i] ?? `delta at index ${d.index}`,
        `it follows the snapshot at index ${d.follows} (revision ${d.fromRevision}), but the one before it is at index ${previous.index} (revision ${previous.store.currentRevision})`,
      );
    }
    for (const r of d.store.records) add(r);
    previous = d;
  }
  const compactedRevision = previous.store.compactedRevision;
  const records: KeyValue[] = [];
  for (const list of byKey.values()) {
    const keep =
      compactedRevision > base.store.compactedRevision ? recordsKeptByCompaction(list, compactedRevision) : list.length;
    for (let j = list.length - keep; j < list.length; j++) records.push(list[j] as KeyValue);
  }
  const { follows: _f, fromRevision: _r, ...last } = previous as SnapshotDelta;
  return { ...last, store: { currentRevision: previous.store.currentRevision, compactedRevision, records } };
}

/** Full snapshots kept (each with the deltas after it): the newest and the one before. */
const KEEP_FULL = 2;

const fileName = (term: number, index: number, delta: boolean): string =>
  `${term.toString(16).padStart(16, "0")}-${index.toString(16).padStart(16, "0")}.${delta ? "delta" : "snap"}`;
const FILE_NAME = /^[0-9a-f]{16}-([0-9a-f]{16})\.(snap|delta)$/;

/** What loadNewest found: the state, and where the next delta would follow on. */
export interface LoadedSnapshot {
  readonly state: StateSnapshot;
  /** Deltas after the full snapshot it was built from. */
  readonly deltas: number;
}

/**
 * The snapshot files of one member: `<dir>/<term>-<index>.snap` (full) and `.delta` (the records
 * since the file before), 16 hex digits each.
 */
export class SnapshotStore {
  constructor(private readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /**
   * Writes atomically (temp file, fsync, rename, directory fsync), then prunes old snapshots; off
   * the event loop, since writing a large store takes long enough to stall every request in
   * flight. `data` is the encoding when the caller already has it.
   */
  async save(snapshot: StateSnapshot | SnapshotDelta, data: Buffer = encodeSnapshot(snapshot)): Promise<void> {
    const file = path.join(this.dir, fileName(snapshot.term, snapshot.index, isDelta(snapshot)));
    const tmp = `${file}.tmp`;
    const handle = await fs.promises.open(tmp, "w");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
    fsyncDir(this.dir);
    this.prune();
  }

  /** Drops what comes before the KEEP_FULL newest full snapshots (their deltas stay with them). */
  private prune(): void {
    const all = this.list();
    const fulls = all.filter((f) => !f.delta);
    const oldestKept = fulls[fulls.length - KEEP_FULL];
    if (!oldestKept) return;
    for (const f of all) if (f.index < oldestKept.index) fs.rmSync(path.join(this.dir, f.name));
  }

  /**
   * The newest state: the newest full snapshot and the deltas after it, or undefined when there
   * is no snapshot. A damaged file among those, or a delta that does not follow the file before
   * it, is an error naming the file.
   */
  loadNewest(): LoadedSnapshot | undefined {
    for (const stale of fs.readdirSync(this.dir).filter((n) => n.endsWith(".tmp"))) {
      fs.rmSync(path.join(this.dir, stale));
    }
    const all = this.list();
    let fullAt = -1;
    for (let i = all.length - 1; i >= 0 && fullAt < 0; i--) if (!all[i]?.delta) fullAt = i;
    if (fullAt < 0) {
      const first = all[0];
      if (first) {
        throw new SnapshotCorruptionError(path.join(this.dir, first.name), "a delta with no full snapshot before it");
      }
      return undefined;
    }
    const read = (name: string) => {
      const file = path.join(this.dir, name);
      return { file, decoded: decodeSnapshotFile(fs.readFileSync(file), file) };
    };
    const fullName = (all[fullAt] as { name: string }).name;
    const base = read(fullName);
    if (isDelta(base.decoded)) throw new SnapshotCorruptionError(base.file, "a delta named as a full snapshot");
    const deltas: SnapshotDelta[] = [];
    const labels: string[] = [];
    for (const f of all.slice(fullAt + 1)) {
      const d = read(f.name);
      if (!isDelta(d.decoded)) throw new SnapshotCorruptionError(d.file, "a full snapshot named as a delta");
      deltas.push(d.decoded);
      labels.push(d.file);
    }
    return { state: applyDeltas(base.decoded, deltas, labels), deltas: deltas.length };
  }

  /** Snapshot files, oldest (lowest index) first. */
  private list(): { name: string; index: number; delta: boolean }[] {
    const files: { name: string; index: number; delta: boolean }[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const m = FILE_NAME.exec(name);
      if (m) files.push({ name, index: Number.parseInt(m[1] as string, 16), delta: m[2] === "delta" });
    }
    // At one index a full snapshot is the newer (a defragment rewrites the state in full).
    return files.sort((a, b) => a.index - b.index || Number(b.delta) - Number(a.delta));
  }
}
