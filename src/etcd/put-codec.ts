import { halves, varint32Size, varint64Size, writeVarint32, writeVarint64 } from "../util/varint.js";
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
  if (v === undefined || v === null || v === "") return 0n;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  return undefined;
}

/** The encoded command if it is a plain put (see above), else undefined. */
export function encodePutCommand(req: InternalRequest): Buffer | undefined {
  const put = req.put;
  if (!put) return undefined;
  for (const f of OTHER_FIELDS) if (req[f] !== undefined && req[f] !== null) return undefined;
  const { key, value } = put;
  if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array)) return undefined;
  const id = toBigInt(req.id);
  const lease = toBigInt(put.lease);
  if (id === undefined || id < 0n || id >= U64_LIMIT) return undefined;
  if (lease === undefined || lease < I64_MIN || lease >= I64_LIMIT) return undefined;
  const flags = [put.prev_kv, put.ignore_value, put.ignore_lease];
  if (flags.some((b) => b !== undefined && b !== null && typeof b !== "boolean")) return undefined;

  const idBits = halves(id);
  const leaseBits = halves(BigInt.asUintN(64, lease));
  let putSize = 0;
  if (key.length > 0) putSize += 1 + varint32Size(key.length) + key.length;
  if (value.length > 0) putSize += 1 + varint32Size(value.length) + value.length;
  if (lease !== 0n) putSize += 1 + varint64Size(leaseBits);
  for (const b of flags) if (b === true) putSize += 2;
  const size = (id !== 0n ? 1 + varint64Size(idBits) : 0) + 1 + varint32Size(putSize) + putSize;

  const out = Buffer.allocUnsafe(size);
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
  flags.forEach((b, i) => {
    if (b !== true) return;
    out[at++] = 0x20 + 8 * i;
    out[at++] = 1;
  });
  return out;
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

  const r = new CanonicalReader(data, top.at, data.length);
  const put: PutRequest = {
    key: Buffer.alloc(0),
    value: Buffer.alloc(0),
    lease: "0",
    prev_kv: false,
    ignore_value: false,
    ignore_lease: false,
  };
  let lastTag = 0;
  while (r.at < r.end) {
    const tag = data[r.at++] as number;
    // Each field at most once, in field order; defaults are never written.
    if (tag <= lastTag) return undefined;
    lastTag = tag;
    if (tag === 0x0a || tag === 0x12) {
      const b = r.bytes();
      if (b === undefined || b.length === 0) return undefined;
      if (tag === 0x0a) put.key = b;
      else put.value = b;
    } else if (tag === 0x18) {
      const v = r.varint64();
      if (v === undefined || v === 0n) return undefined;
      put.lease = BigInt.asIntN(64, v).toString();
    } else if (tag === 0x20 || tag === 0x28 || tag === 0x30) {
      if (data[r.at++] !== 1) return undefined;
      if (tag === 0x20) put.prev_kv = true;
      else if (tag === 0x28) put.ignore_value = true;
      else put.ignore_lease = true;
    } else {
      return undefined;
    }
  }
  if (r.at !== r.end) return undefined;
  const req: InternalRequest = { id: id.toString(), put };
  for (const f of OTHER_FIELDS) req[f] = null;
  return req;
}
