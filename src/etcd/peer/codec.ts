import { type Entry, type EntryType, type Message, MessageType, type Snapshot } from "../../raft/types.js";
import { BinaryReader } from "../../util/binary.js";
import { SlabCopier } from "../../util/slab.js";

/** Log entries stay in the Raft log until it is compacted after a snapshot: copied apart. */
const entryCopier = new SlabCopier();

/**
 * Binary encoding of a Raft `Message` for the peer transport.
 *
 * Layout (all integers little-endian; `bytes` is a u32 length then the bytes):
 *
 *   u8 version (1 to 3) | u8 type (raftpb's MessageType number)
 *   u64 from | u64 to | u64 term | u64 logTerm | u64 index | u64 commit
 *   u8 flags | u64 rejectHint | (version 3 only: u64 durable) | bytes context
 *   u32 entry count, then per entry: u64 term | u64 index | u8 type (0 normal, 1 confChange) | bytes data
 *   u8 has snapshot (0|1), then if 1: u64 index | u64 term | u32 n + n×u64 voters | u32 n + n×u64 learners | bytes data
 *
 * Flags: in version 1 the byte is `reject` (0|1); version 2 adds bit 1, `commitOnly`. Version 3
 * adds the leader's durable index (Message.durable). Each message is written in the lowest version
 * that holds it. Members whose builds differ in what they write refuse each other at the
 * handshake (PROTOCOL_VERSION), so a member never meets a version it cannot read.
 *
 * Nothing may follow. Decoding checks every length against what is left, every flag and enum
 * against its range, and every term/index against 2^53, and throws a `PeerCodecError` saying what
 * was wrong; it never returns a partly decoded message.
 */
export const MESSAGE_CODEC_VERSION = 3;

const FLAG_REJECT = 1;
const FLAG_COMMIT_ONLY = 2;

export class PeerCodecError extends Error {
  override name = "PeerCodecError";
}

const TYPE_CODES: Readonly<Record<MessageType, number>> = {
  [MessageType.MsgHup]: 0,
  [MessageType.MsgBeat]: 1,
  [MessageType.MsgProp]: 2,
  [MessageType.MsgApp]: 3,
  [MessageType.MsgAppResp]: 4,
  [MessageType.MsgVote]: 5,
  [MessageType.MsgVoteResp]: 6,
  [MessageType.MsgSnap]: 7,
  [MessageType.MsgHeartbeat]: 8,
  [MessageType.MsgHeartbeatResp]: 9,
  [MessageType.MsgUnreachable]: 10,
  [MessageType.MsgSnapStatus]: 11,
  [MessageType.MsgCheckQuorum]: 12,
  [MessageType.MsgTransferLeader]: 13,
  [MessageType.MsgTimeoutNow]: 14,
  [MessageType.MsgReadIndex]: 15,
  [MessageType.MsgReadIndexResp]: 16,
  [MessageType.MsgPreVote]: 17,
  [MessageType.MsgPreVoteResp]: 18,
};

const TYPES_BY_CODE: ReadonlyMap<number, MessageType> = new Map(
  Object.entries(TYPE_CODES).map(([t, c]) => [c, t as MessageType]),
);

const ENTRY_TYPE_CODES: Readonly<Record<EntryType, number>> = { normal: 0, confChange: 1 };

const MAX_U64 = (1n << 64n) - 1n;
const TWO_32 = 2 ** 32;

/** Fixed part: version, type, 6×u64, reject, rejectHint, context length, entry count, snapshot flag. */
const FIXED_BYTES = 1 + 1 + 6 * 8 + 1 + 8 + 4 + 4 + 1;
/** Smallest encoded entry: term, index, type, data length. */
const MIN_ENTRY_BYTES = 8 + 8 + 1 + 4;

/**
 * Writes into a buffer allocated once at its exact final size (callers compute the size first).
 * BinaryWriter starts at 64 KiB and hands out views of it, which would pin 64 KiB per queued
 * heartbeat; the transport queues thousands of small messages, so it sizes them exactly instead.
 */
export class ExactWriter {
  readonly buf: Buffer;
  private off = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  u8(v: number): void {
    this.buf[this.off++] = v;
  }

  u32(v: number): void {
    this.buf.writeUInt32LE(v, this.off);
    this.off += 4;
  }

  /** A safe non-negative integer as u64 (checked by the caller). */
  u64(v: number): void {
    this.buf.writeUInt32LE(v % TWO_32, this.off);
    this.buf.writeUInt32LE(Math.floor(v / TWO_32), this.off + 4);
    this.off += 8;
  }

  u64n(v: bigint): void {
    this.buf.writeBigUInt64LE(v, this.off);
    this.off += 8;
  }

  bytes(v: Uint8Array): void {
    this.u32(v.length);
    this.buf.set(v, this.off);
    this.off += v.length;
  }

  /** The filled buffer; throws if the size computed up front was wrong (a bug, not bad input). */
  finish(): Buffer {
    if (this.off !== this.buf.length) throw new Error(`peer codec: wrote ${this.off} bytes into ${this.buf.length}`);
    return this.buf;
  }
}

function checkNumber(m: Message, field: string, v: unknown): void {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new PeerCodecError(
      `peer codec: cannot encode ${String(m.type)}: ${field} is ${String(v)}, not an integer in [0, 2^53)`,
    );
  }
}

function checkId(m: Message, field: string, v: unknown): void {
  if (typeof v !== "bigint" || v < 0n || v > MAX_U64) {
    throw new PeerCodecError(`peer codec: cannot encode ${String(m.type)}: ${field} is ${String(v)}, not a u64 bigint`);
  }
}

function checkBytes(m: Message, field: string, v: unknown): void {
  if (!(v instanceof Uint8Array)) {
    throw new PeerCodecError(`peer codec: cannot encode ${String(m.type)}: ${field} is not a Uint8Array`);
  }
}

/** The exact encoded size of `m`, validating every field on the way. */
function encodedSize(m: Message): number {
  if (TYPE_CODES[m.type] === undefined) throw new PeerCodecError(`peer codec: unknown message type ${String(m.type)}`);
  checkId(m, "from", m.from);
  checkId(m, "to", m.to);
  checkNumber(m, "term", m.term);
  checkNumber(m, "logTerm", m.logTerm);
  checkNumber(m, "index", m.index);
  checkNumber(m, "commit", m.commit);
  checkNumber(m, "rejectHint", m.rejectHint);
  if (typeof m.reject !== "boolean")
    throw new PeerCodecError(`peer codec: cannot encode ${m.type}: reject not boolean`);
  checkBytes(m, "context", m.context);
  if (!Array.isArray(m.entries)) throw new PeerCodecError(`peer codec: cannot encode ${m.type}: entries not an array`);
  let size = FIXED_BYTES + m.context.length;
  if (m.durable !== undefined) {
    checkNumber(m, "durable", m.durable);
    size += 8;
  }
  m.entries.forEach((e, i) => {
    checkNumber(m, `entries[${i}].term`, e.term);
    checkNumber(m, `entries[${i}].index`, e.index);
    if (ENTRY_TYPE_CODES[e.type] === undefined) {
      throw new PeerCodecError(`peer codec: cannot encode ${m.type}: entries[${i}].type is ${String(e.type)}`);
    }
    checkBytes(m, `entries[${i}].data`, e.data);
    size += MIN_ENTRY_BYTES + e.data.length;
  });
  const s = m.snapshot;
  if (s !== undefined) {
    checkNumber(m, "snapshot.metadata.index", s.metadata.index);
    checkNumber(m, "snapshot.metadata.term", s.metadata.term);
    const { voters, learners } = s.metadata.confState;
    for (const [i, id] of voters.entries()) checkId(m, `snapshot voters[${i}]`, id);
    for (const [i, id] of learners.entries()) checkId(m, `snapshot learners[${i}]`, id);
    checkBytes(m, "snapshot.data", s.data);
    size += 8 + 8 + 4 + 8 * voters.length + 4 + 8 * learners.length + 4 + s.data.length;
  }
  return size;
}

/**
 * Encodes `m` into a fresh buffer that shares nothing with `m` (the caller may reuse or mutate
 * `m` afterwards). Throws a PeerCodecError for a malformed message (unknown type, negative or
 * fractional numbers, IDs outside u64).
 */
export function encodeMessage(m: Message): Buffer {
  const w = new ExactWriter(encodedSize(m));
  w.u8(m.durable !== undefined ? 3 : m.commitOnly ? 2 : 1);
  w.u8(TYPE_CODES[m.type]);
  w.u64n(m.from);
  w.u64n(m.to);
  w.u64(m.term);
  w.u64(m.logTerm);
  w.u64(m.index);
  w.u64(m.commit);
  w.u8((m.reject ? FLAG_REJECT : 0) | (m.commitOnly ? FLAG_COMMIT_ONLY : 0));
  w.u64(m.rejectHint);
  if (m.durable !== undefined) w.u64(m.durable);
  w.bytes(m.context);
  w.u32(m.entries.length);
  for (const e of m.entries) {
    w.u64(e.term);
    w.u64(e.index);
    w.u8(ENTRY_TYPE_CODES[e.type]);
    w.bytes(e.data);
  }
  if (m.snapshot === undefined) {
    w.u8(0);
  } else {
    const { metadata, data } = m.snapshot;
    w.u8(1);
    w.u64(metadata.index);
    w.u64(metadata.term);
    w.u32(metadata.confState.voters.length);
    for (const id of metadata.confState.voters) w.u64n(id);
    w.u32(metadata.confState.learners.length);
    for (const id of metadata.confState.learners) w.u64n(id);
    w.bytes(data);
  }
  return w.finish();
}

/** BinaryReader plus the range checks a message needs. */
class MessageReader {
  private readonly r: BinaryReader;

  constructor(data: Uint8Array) {
    this.r = new BinaryReader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  get remaining(): number {
    return this.r.remaining;
  }

  u8(): number {
    return this.r.u8();
  }

  flag(field: string): boolean {
    const v = this.r.u8();
    if (v > 1) throw new PeerCodecError(`peer codec: ${field} is ${v}, not 0 or 1`);
    return v === 1;
  }

  /** A term or an index: a u64 that must fit a JavaScript number exactly. */
  num(field: string): number {
    const v = this.r.u64n();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PeerCodecError(`peer codec: ${field} ${v} is above 2^53-1`);
    return Number(v);
  }

  id(): bigint {
    return this.r.u64n();
  }

  /** A count of items of at least `itemBytes` each, checked against what is left. */
  count(field: string, itemBytes: number): number {
    const n = this.r.u32();
    if (n * itemBytes > this.r.remaining) {
      throw new PeerCodecError(`peer codec: ${field} count ${n} does not fit in the ${this.r.remaining} bytes left`);
    }
    return n;
  }

  /** A length-prefixed byte string, copied out (the result does not pin the frame buffer). */
  bytes(copier?: SlabCopier): Uint8Array {
    return this.r.bytes(copier);
  }
}

/**
 * Decodes what encodeMessage produced. Throws a PeerCodecError (and nothing else) for any input
 * that is not exactly one well-formed version-1 message. The result owns all its byte arrays.
 */
export function decodeMessage(data: Uint8Array): Message {
  try {
    return decodeUnchecked(new MessageReader(data));
  } catch (err) {
    if (err instanceof PeerCodecError) throw err;
    if (err instanceof RangeError) throw new PeerCodecError(`peer codec: truncated message (${err.message})`);
    throw new PeerCodecError(`peer codec: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decodeUnchecked(r: MessageReader): Message {
  const version = r.u8();
  if (version < 1 || version > MESSAGE_CODEC_VERSION) {
    throw new PeerCodecError(
      `peer codec: unsupported message encoding version ${version} (this build reads 1 to ${MESSAGE_CODEC_VERSION})`,
    );
  }
  const code = r.u8();
  const type = TYPES_BY_CODE.get(code);
  if (type === undefined) throw new PeerCodecError(`peer codec: unknown message type code ${code}`);
  const from = r.id();
  const to = r.id();
  const term = r.num("term");
  const logTerm = r.num("logTerm");
  const index = r.num("index");
  const commit = r.num("commit");
  const flags = r.u8();
  if (flags > (version === 1 ? FLAG_REJECT : FLAG_REJECT | FLAG_COMMIT_ONLY)) {
    throw new PeerCodecError(`peer codec: flags are ${flags}, not a combination this version defines`);
  }
  const reject = (flags & FLAG_REJECT) !== 0;
  const rejectHint = r.num("rejectHint");
  const durable = version >= 3 ? r.num("durable") : undefined;
  const context = r.bytes();
  const n = r.count("entry", MIN_ENTRY_BYTES);
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const eterm = r.num(`entries[${i}].term`);
    const eindex = r.num(`entries[${i}].index`);
    const etype = r.u8();
    if (etype > 1) throw new PeerCodecError(`peer codec: entries[${i}] has unknown entry type ${etype}`);
    entries.push({
      term: eterm,
      index: eindex,
      type: etype === 0 ? "normal" : "confChange",
      data: r.bytes(entryCopier),
    });
  }
  const m: Message = { type, from, to, term, logTerm, index, entries, commit, reject, rejectHint, context };
  if ((flags & FLAG_COMMIT_ONLY) !== 0) m.commitOnly = true;
  if (durable !== undefined) m.durable = durable;
  if (r.flag("snapshot flag")) m.snapshot = decodeSnapshot(r);
  if (r.remaining !== 0) throw new PeerCodecError(`peer codec: ${r.remaining} unexpected bytes after the message`);
  return m;
}

function decodeSnapshot(r: MessageReader): Snapshot {
  const index = r.num("snapshot.metadata.index");
  const term = r.num("snapshot.metadata.term");
  const voters: bigint[] = [];
  const nv = r.count("snapshot voter", 8);
  for (let i = 0; i < nv; i++) voters.push(r.id());
  const learners: bigint[] = [];
  const nl = r.count("snapshot learner", 8);
  for (let i = 0; i < nl; i++) learners.push(r.id());
  return { metadata: { index, term, confState: { voters, learners } }, data: r.bytes() };
}
