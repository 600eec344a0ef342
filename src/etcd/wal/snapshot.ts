import * as fs from "node:fs";
import * as path from "node:path";
import { BinaryReader, BinaryWriter } from "../../util/binary.js";
import { crc32c } from "../../util/crc32c.js";
import type { KeyValue, StoreImage } from "../mvcc/store.js";
import { fsyncDir } from "./wal.js";

/**
 * A snapshot is the whole applied state of a member at one log index: every retained MVCC record,
 * the leases, the alarms and the membership. Restart loads the newest snapshot and replays only the
 * log entries after it, so restart time is bounded by --snapshot-count, not by the age of the data.
 * The same bytes are what Maintenance.Snapshot streams (etcdctl snapshot save).
 *
 * File: "LABSNAP" + 2-digit format version, the body, then a CRC-32C of everything before it.
 */

export const SNAPSHOT_FORMAT_VERSION = 1;
const MAGIC = Buffer.from(`LABSNAP${String(SNAPSHOT_FORMAT_VERSION).padStart(2, "0")}`, "latin1");
const MAGIC_PREFIX = "LABSNAP";

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

export class SnapshotCorruptionError extends Error {
  constructor(file: string, reason: string) {
    super(`snapshot ${file} is unreadable: ${reason}`);
    this.name = "SnapshotCorruptionError";
  }
}

export function encodeSnapshot(s: StateSnapshot): Buffer {
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
export async function encodeSnapshotInSlices(s: StateSnapshot, recordsPerSlice = 4096): Promise<Buffer> {
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

/** Encodes `s`, yielding after every `recordsPerSlice` records; returns the finished bytes. */
function* snapshotEncoder(s: StateSnapshot, recordsPerSlice: number): Generator<void, Buffer, void> {
  // Sized up front (a store of 100,000 revisions is ~30 MB): no buffer grows, nothing is copied
  // twice; the checksum goes after the magic and the body, in the same buffer, and is computed
  // slice by slice as the bytes are written.
  let size = MAGIC.length + 8 * 3 + 4 + 8 * 2 + 4 + 4 + 4 + 4;
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
  w.raw(MAGIC);
  w.u64(s.index).u64(s.term).u64n(s.clusterId);
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
  if (data.length < MAGIC.length + 4) throw new SnapshotCorruptionError(label, "too short to be a lab snapshot");
  const magic = data.subarray(0, MAGIC.length).toString("latin1");
  if (!magic.startsWith(MAGIC_PREFIX)) throw new SnapshotCorruptionError(label, "not a lab snapshot file");
  if (magic !== MAGIC.toString("latin1")) {
    throw new SnapshotCorruptionError(
      label,
      `format version ${magic.slice(MAGIC_PREFIX.length)} is not supported (this build reads version ${SNAPSHOT_FORMAT_VERSION})`,
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
    for (let n = r.u32(); n > 0; n--) {
      const key = r.bytes();
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
    return { index, term, clusterId, members, store: { currentRevision, compactedRevision, records }, leases, alarms };
  } catch (err) {
    throw new SnapshotCorruptionError(label, err instanceof Error ? err.message : String(err));
  }
}

const KEEP_SNAPSHOTS = 5;

const snapshotFileName = (term: number, index: number): string =>
  `${term.toString(16).padStart(16, "0")}-${index.toString(16).padStart(16, "0")}.snap`;

/** The snapshot files of one member: `<dir>/<term>-<index>.snap`, 16 hex digits each. */
export class SnapshotStore {
  constructor(private readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /**
   * Writes atomically (temp file, fsync, rename, directory fsync), then prunes old snapshots; off
   * the event loop, since writing a large store takes long enough to stall every request in
   * flight. `data` is the encoding when the caller already has it.
   */
  async save(snapshot: StateSnapshot, data: Buffer = encodeSnapshot(snapshot)): Promise<void> {
    const file = path.join(this.dir, snapshotFileName(snapshot.term, snapshot.index));
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

  private prune(): void {
    const all = this.list();
    for (const old of all.slice(0, Math.max(0, all.length - KEEP_SNAPSHOTS))) fs.rmSync(path.join(this.dir, old));
  }

  /** The newest snapshot, or undefined when there is none. A damaged newest snapshot is an error. */
  loadNewest(): StateSnapshot | undefined {
    for (const stale of fs.readdirSync(this.dir).filter((n) => n.endsWith(".snap.tmp"))) {
      fs.rmSync(path.join(this.dir, stale));
    }
    const newest = this.list().at(-1);
    if (!newest) return undefined;
    const file = path.join(this.dir, newest);
    return decodeSnapshot(fs.readFileSync(file), file);
  }

  private list(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((n) => /^[0-9a-f]{16}-[0-9a-f]{16}\.snap$/.test(n))
      .sort((a, b) => (a.slice(17) < b.slice(17) ? -1 : a.slice(17) > b.slice(17) ? 1 : 0));
  }
}
