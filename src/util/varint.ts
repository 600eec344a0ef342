/**
 * Protobuf varints (LEB128): sizes and writers for 32-bit lengths and for 64-bit values held as
 * two 32-bit halves, so that no BigInt arithmetic runs per byte.
 */

/** A 64-bit value as two 32-bit halves, for varints without BigInt arithmetic per byte. */
export interface U64 {
  readonly lo: number;
  readonly hi: number;
}

export function halves(v: bigint): U64 {
  return { lo: Number(v & 0xffffffffn), hi: Number(v >> 32n) };
}

export function varint64Size({ lo, hi }: U64): number {
  let n = 1;
  while (hi !== 0 || lo > 0x7f) {
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
    n++;
  }
  return n;
}

export function writeVarint64(out: Buffer, at: number, { lo, hi }: U64): number {
  while (hi !== 0 || lo > 0x7f) {
    out[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[at++] = lo;
  return at;
}

export function varint32Size(v: number): number {
  let n = 1;
  while (v > 0x7f) {
    v >>>= 7;
    n++;
  }
  return n;
}

export function writeVarint32(out: Buffer, at: number, v: number): number {
  while (v > 0x7f) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}

/** The encoded size of any varint field value; a negative int64 is sign-extended to 10 bytes. */
export function varintSize(v: number | bigint): number {
  if (v < 0) return 10;
  if (typeof v === "number" && v <= 0x7fffffff) return varint32Size(v);
  return varint64Size(halves(BigInt(v)));
}
