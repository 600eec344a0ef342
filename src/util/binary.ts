import type { SlabCopier } from "./slab.js";

/** A growable little-endian byte writer for our on-disk formats. */
export class BinaryWriter {
  private buf: Buffer;
  private off = 0;

  /** `capacity`: the bytes to reserve up front; a writer that knows its size never copies. */
  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.off++] = v;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.off);
    this.off += 4;
    return this;
  }

  /** Integers up to 2^53, written as unsigned 64-bit. */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not an unsigned integer below 2^53: ${v}`);
    this.ensure(8);
    // Two 32-bit halves: the same bytes as writeBigUInt64LE, without a BigInt per field (a
    // snapshot writes four per revision).
    this.buf.writeUInt32LE(v % 0x1_0000_0000, this.off);
    this.buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), this.off + 4);
    this.off += 8;
    return this;
  }

  /** Unsigned 64-bit IDs (member and cluster IDs use the whole range). */
  u64n(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.off);
    this.off += 8;
    return this;
  }

  i64(v: bigint): this {
    this.ensure(8);
    if (v === 0n)
      this.buf.fill(0, this.off, this.off + 8); // most leases
    else this.buf.writeBigInt64LE(v, this.off);
    this.off += 8;
    return this;
  }

  bytes(v: Uint8Array): this {
    this.u32(v.length);
    this.ensure(v.length);
    this.buf.set(v, this.off);
    this.off += v.length;
    return this;
  }

  /** Bytes as they are, without a length. */
  raw(v: Uint8Array): this {
    this.ensure(v.length);
    this.buf.set(v, this.off);
    this.off += v.length;
    return this;
  }

  string(v: string): this {
    return this.bytes(Buffer.from(v, "utf8"));
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

/** Reads what BinaryWriter wrote; every read checks bounds and throws a RangeError past the end. */
export class BinaryReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.off;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new RangeError(`unexpected end of data at offset ${this.off}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++] as number;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const v = Number(this.buf.readBigUInt64LE(this.off));
    this.off += 8;
    return v;
  }

  u64n(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }

  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.off);
    this.off += 8;
    return v;
  }

  /** A length-prefixed byte string, copied out (by `copier` when given). */
  bytes(copier?: SlabCopier): Buffer {
    const n = this.u32();
    this.need(n);
    const view = this.buf.subarray(this.off, this.off + n);
    const v = copier ? copier.copy(view) : Buffer.from(view);
    this.off += n;
    return v;
  }

  /** Like bytes(), but returns `same` itself when the bytes are equal to it (no copy). */
  bytesOrSame(same: Buffer | undefined): Buffer {
    const n = this.u32();
    this.need(n);
    const view = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return same !== undefined && view.equals(same) ? same : Buffer.from(view);
  }

  string(): string {
    return this.bytes().toString("utf8");
  }
}
