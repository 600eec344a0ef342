import { halves, type U64, varint32Size, varint64Size, writeVarint32, writeVarint64 } from "../util/varint.js";
import type { InternalRequest, PutRequest } from "./wire.js";

/**
 * Puts are most of the Raft log, and each one was encoded by the proposer and decoded by every
 * member through protobufjs' reflection (~5 µs and ~3 µs a put, and a good share of a put's
 * garbage). This module encodes and decodes a log command that is just `{id, put}` directly, to
 * the same bytes and the same decoded object as the generic path in proto.ts: fields in field
 * order, defaults left out, bytes as views into the entry, 64-bit integers as decimal strings,
 * every other request field null. Anything else (another request, or bytes not in exactly that
 * canonical form) returns undefined, and the caller takes the generic path.
 *
 * Wire layout (labpb.InternalRequest, etcdserverpb.PutRequest):
 *   0x08 varint id (left out when 0) · 0x1a len PutRequest
 *   PutRequest: 0x0a len key · 0x12 len value · 0x18 varint lease (int64, two's complement)
 *               · 0x20 01 prev_kv · 0x28 01 ignore_value · 0x30 01 ignore_lease
 */

const U64_LIMIT = 1n << 64n;
const I64_MIN = -(1n << 63n);
const I64_LIMIT = 1n << 63n;

/** The request fields other than `id` and `put`, as the generic decoder fills them in. */
const OTHER_FIELDS = [
  "delete_range",
  "txn",
  "compaction",
  "lease_grant",
  "lease_revoke",
  "alarm",
  "lease_checkpoint",
  "member_attributes",
  "member_peer_urls",
] as const;

/** A 64-bit field given as a decimal string, number or bigint; undefined if it is none of those. */
function toBigInt(v: unknown): bigint | undefined {
  if (v === undefined || v === null || v === "" || v === "0") return 0n;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  return undefined;
}

/** The encoded command if it is a plain put (see above), else undefined. */
export function encodePutCommand(req: InternalRequest): Buffer | undefined {
  const put = req.put;
  if (!put || !isPlainPut(req)) return undefined;
  const id = toBigInt(req.id);
  if (id === undefined || id < 0n || id >= U64_LIMIT) return undefined;
  return encodePut(id, put);
}

/** Whether `req` carries a put and no other request (its id aside). */
export function isPlainPut(req: Partial<InternalRequest>): boolean {
  if (!req.put) return false;
  for (const f of OTHER_FIELDS) if (req[f] !== undefined && req[f] !== null) return false;
  return true;
}

/**
 * The command `{id, put}` (id an unsigned 64-bit integer), encoded into the bytes `allocate`
 * hands out (by default a new buffer), or undefined if the put is not in a form this module
 * encodes (see above). The proposer passes its long-lived slab allocator: the entry is written
 * where the Raft log keeps it, without a copy.
 */
export function encodePut(
  id: bigint,
  put: PutRequest,
  allocate: (n: number) => Buffer = Buffer.allocUnsafe,
): Buffer | undefined {
  const { key, value, prev_kv, ignore_value, ignore_lease } = put;
  if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array)) return undefined;
  const lease = toBigInt(put.lease);
  if (lease === undefined || lease < I64_MIN || lease >= I64_LIMIT) return undefined;
  if (!isFlag(prev_kv) || !isFlag(ignore_value) || !isFlag(ignore_lease)) return undefined;

  const idBits = halves(id);
  const leaseBits = lease === 0n ? ZERO_BITS : halves(BigInt.asUintN(64, lease));
  let putSize = 0;
  if (key.length > 0) putSize += 1 + varint32Size(key.length) + key.length;
  if (value.length > 0) putSize += 1 + varint32Size(value.length) + value.length;
  if (lease !== 0n) putSize += 1 + varint64Size(leaseBits);
  if (prev_kv === true) putSize += 2;
  if (ignore_value === true) putSize += 2;
  if (ignore_lease === true) putSize += 2;
  const size = (id !== 0n ? 1 + varint64Size(idBits) : 0) + 1 + varint32Size(putSize) + putSize;

  const out = allocate(size);
  let at = 0;
  if (id !== 0n) {
    out[at++] = 0x08;
    at = writeVarint64(out, at, idBits);
  }
  out[at++] = 0x1a;
  at = writeVarint32(out, at, putSize);
  if (key.length > 0) {
    out[at++] = 0x0a;
    at = writeVarint32(out, at, key.length);
    out.set(key, at);
    at += key.length;
  }
  if (value.length > 0) {
    out[at++] = 0x12;
    at = writeVarint32(out, at, value.length);
    out.set(value, at);
    at += value.length;
  }
  if (lease !== 0n) {
    out[at++] = 0x18;
    at = writeVarint64(out, at, leaseBits);
  }
  if (prev_kv === true) at = writeFlag(out, at, 0x20);
  if (ignore_value === true) at = writeFlag(out, at, 0x28);
  if (ignore_lease === true) writeFlag(out, at, 0x30);
  return out;
}

const ZERO_BITS = halves(0n);

/** A bool field as protobufjs accepts it here: absent or a boolean. */
function isFlag(b: unknown): boolean {
  return b === undefined || b === null || typeof b === "boolean";
}

function writeFlag(out: Buffer, at: number, tag: number): number {
  out[at] = tag;
  out[at + 1] = 1;
  return at + 2;
}

/** Reads canonical encodings only; `undefined` for anything the generic decoder should judge. */
class CanonicalReader {
  at: number;
  constructor(
    readonly data: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.at = start;
  }

  varint32(): number | undefined {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.at >= this.end) return undefined;
      const b = this.data[this.at++] as number;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v <= 0x7fffffff ? v : undefined;
    }
    return undefined;
  }

  varint64(): bigint | undefined {
    // Seven bits at a time into two 32-bit halves; one BigInt at the end.
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) return undefined;
      const b = this.data[this.at++] as number;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= bits << 28;
        hi = bits >>> 4;
      } else if (i < 9) hi |= bits << (7 * i - 32);
      else if (bits > 1)
        return undefined; // beyond 64 bits
      else hi |= bits << 31;
      if (b < 0x80) return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    }
    return undefined;
  }

  bytes(): Buffer | undefined {
    const n = this.varint32();
    if (n === undefined || this.at + n > this.end) return undefined;
    const out = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

/** An empty key or value: nothing can be written into it, so all decoded puts may share it. */
const EMPTY = Buffer.alloc(0);

/** The decoded command if `data` is a plain put in canonical form, else undefined. */
export function decodePutCommand(data: Buffer): InternalRequest | undefined {
  const top = new CanonicalReader(data, 0, data.length);
  let id = 0n;
  if (data[0] === 0x08) {
    top.at = 1;
    const v = top.varint64();
    if (v === undefined || v === 0n) return undefined;
    id = v;
  }
  if (data[top.at++] !== 0x1a) return undefined;
  const putSize = top.varint32();
  if (putSize === undefined || top.at + putSize !== data.length) return undefined;

  const put = readPut(new CanonicalReader(data, top.at, data.length), false);
  if (put === undefined) return undefined;
  return {
    id: id.toString(),
    put,
    delete_range: null,
    txn: null,
    compaction: null,
    lease_grant: null,
    lease_revoke: null,
    alarm: null,
    lease_checkpoint: null,
    member_attributes: null,
    member_peer_urls: null,
  } satisfies Record<(typeof OTHER_FIELDS)[number], null> & InternalRequest;
}

/**
 * A KV.Put request message as clients send it, decoded to the object protobufjs' reflection makes
 * of it (proto.ts CONVERSION), except that key and value are views into `bytes` rather than
 * copies (the proposer copies them into the log entry at once). Undefined for anything but fields
 * 1–6, each at most once and in field order (as clients' encoders write them): the caller then
 * decodes the generic way.
 */
export function decodePutRequest(bytes: Buffer): PutRequest | undefined {
  return readPut(new CanonicalReader(bytes, 0, bytes.length), true);
}

/**
 * The PutRequest fields from `r`'s position to its end. `explicitDefaults`: a field may be
 * written with its default value (an empty key, lease 0, a false flag), as some encoders do;
 * a log entry never has one (see above).
 */
function readPut(r: CanonicalReader, explicitDefaults: boolean): PutRequest | undefined {
  const data = r.data;
  const put: PutRequest = {
    key: EMPTY,
    value: EMPTY,
    lease: "0",
    prev_kv: false,
    ignore_value: false,
    ignore_lease: false,
  };
  let lastTag = 0;
  while (r.at < r.end) {
    const tag = data[r.at++] as number;
    // Each field at most once, in field order (and in a log entry, no field at its default).
    if (tag <= lastTag) return undefined;
    lastTag = tag;
    if (tag === 0x0a || tag === 0x12) {
      const b = r.bytes();
      if (b === undefined || (b.length === 0 && !explicitDefaults)) return undefined;
      if (tag === 0x0a) put.key = b;
      else put.value = b;
    } else if (tag === 0x18) {
      const v = r.varint64();
      if (v === undefined || (v === 0n && !explicitDefaults)) return undefined;
      put.lease = BigInt.asIntN(64, v).toString();
    } else if (tag === 0x20 || tag === 0x28 || tag === 0x30) {
      const flag = data[r.at++];
      if (flag !== 1 && (flag !== 0 || !explicitDefaults)) return undefined;
      if (tag === 0x20) put.prev_kv = flag === 1;
      else if (tag === 0x28) put.ignore_value = flag === 1;
      else put.ignore_lease = flag === 1;
    } else {
      return undefined;
    }
  }
  if (r.at !== r.end) return undefined;
  return put;
}

/**
 * A PutResponse without a previous key-value (`{header}`, as kv.ts answers a put), encoded to
 * protobufjs' bytes: every header field the object has is written, zeros too. Undefined for any
 * other value (the caller serializes it the generic way). The header's IDs are the same in every
 * answer: their decimal texts are parsed once (ID_BITS).
 *
 * Wire layout: 0x0a len ResponseHeader · ResponseHeader: 0x08 cluster_id · 0x10 member_id
 * · 0x18 revision · 0x20 raft_term (varints).
 */
export function encodePutResponse(value: unknown): Buffer | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  for (const k in value) if (k !== "header") return undefined;
  const header = (value as { header?: unknown }).header;
  if (header === undefined || header === null) return Buffer.alloc(0);
  if (typeof header !== "object") return undefined;
  const h = header as Record<string, unknown>;
  for (const k in h) {
    if (k !== "cluster_id" && k !== "member_id" && k !== "revision" && k !== "raft_term") return undefined;
  }
  const cluster = headerField(h.cluster_id);
  const member = headerField(h.member_id);
  const revision = headerField(h.revision);
  const term = headerField(h.raft_term);
  if (cluster === undefined || member === undefined || revision === undefined || term === undefined) return undefined;
  let headerSize = 0;
  if (cluster !== null) headerSize += 1 + varint64Size(cluster);
  if (member !== null) headerSize += 1 + varint64Size(member);
  if (revision !== null) headerSize += 1 + varint64Size(revision);
  if (term !== null) headerSize += 1 + varint64Size(term);
  const out = Buffer.allocUnsafe(1 + varint32Size(headerSize) + headerSize);
  out[0] = 0x0a;
  let at = writeVarint32(out, 1, headerSize);
  if (cluster !== null) at = writeVarint64(out, writeTag(out, at, 0x08), cluster);
  if (member !== null) at = writeVarint64(out, writeTag(out, at, 0x10), member);
  if (revision !== null) at = writeVarint64(out, writeTag(out, at, 0x18), revision);
  if (term !== null) writeVarint64(out, writeTag(out, at, 0x20), term);
  return out;
}

function writeTag(out: Buffer, at: number, tag: number): number {
  out[at] = tag;
  return at + 1;
}

/** The last few decimal IDs seen in headers, and their bits. */
const ID_BITS = new Map<string, U64>();

/**
 * A header field's value as 64 bits: null when absent, undefined when not a non-negative integer
 * below 2^64 given as a safe integer or a decimal text.
 */
function headerField(v: unknown): U64 | null | undefined {
  if (v === undefined || v === null) return null;
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 0) return undefined;
    return { lo: v % 0x1_0000_0000, hi: Math.floor(v / 0x1_0000_0000) };
  }
  if (typeof v === "string") {
    const known = ID_BITS.get(v);
    if (known) return known;
    const n = toBigInt(v);
    if (n === undefined || n < 0n || n >= U64_LIMIT) return undefined;
    const bits = halves(n);
    if (v.length > 15) {
      if (ID_BITS.size >= 8) ID_BITS.clear();
      ID_BITS.set(v, bits);
    }
    return bits;
  }
  return undefined;
}
