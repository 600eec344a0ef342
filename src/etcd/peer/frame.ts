import { BinaryReader } from "../../util/binary.js";
import { crc32c } from "../../util/crc32c.js";
import { ExactWriter } from "./codec.js";

/**
 * Framing of the peer protocol. Every frame is
 *
 *   u32 payload length | u32 CRC-32C of (type byte, payload) | u8 type | payload
 *
 * little-endian. A frame longer than the reader's bound (small before the handshake, MAX_FRAME_BYTES
 * after) or with a bad checksum is a FrameError: the connection is closed, nothing else happens.
 */
export const FRAME_HEADER_BYTES = 9;

/** The largest frame accepted after the handshake: a snapshot message must fit in one frame. */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;

/** The largest frame accepted before the handshake completed (hellos and refusals are tiny). */
export const MAX_HANDSHAKE_FRAME_BYTES = 64 * 1024;

export enum FrameType {
  /** Dialer → acceptor, first frame: PROTOCOL_MAGIC, version, cluster ID, sender ID, intended receiver ID. */
  Hello = 1,
  /** Acceptor → dialer: the hello was accepted (cluster ID, acceptor member ID). */
  HelloOk = 2,
  /** Acceptor → dialer: the hello was refused (code, cluster ID, acceptor member ID, reason); then close. */
  Refuse = 3,
  /** Dialer → acceptor: one encoded Raft message (see codec.ts). */
  Message = 4,
  /** Dialer → acceptor: request ID, kind, body. */
  Request = 5,
  /** Acceptor → dialer: request ID, ok flag, body (ok) or error message. */
  Response = 6,
}

export class FrameError extends Error {
  override name = "FrameError";
}

export interface Frame {
  type: number;
  payload: Buffer;
}

function frameCrc(type: number, payload: Uint8Array): number {
  return crc32c(payload, crc32c(Uint8Array.of(type)));
}

/** The 9-byte header for `payload`; write it and the payload back to back (no copy of the payload). */
export function frameHeader(type: FrameType, payload: Uint8Array): Buffer {
  if (payload.length > MAX_FRAME_BYTES) {
    throw new FrameError(`frame of ${payload.length} bytes exceeds the limit of ${MAX_FRAME_BYTES}`);
  }
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt32LE(frameCrc(type, payload), 4);
  h[8] = type;
  return h;
}

/** Header and payload in one buffer (tests and small frames). */
export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(type, payload), payload]);
}

/**
 * Incremental frame parser: push socket chunks, get whole frames back in order. A frame that lies
 * inside one chunk is returned as a view of that chunk; a frame split across chunks is
 * concatenated once when complete (memory grows with bytes received, not with the announced
 * length). After a FrameError the decoder must be discarded.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private inBody = false;
  private len = 0;
  private crc = 0;
  private type = 0;
  private parts: Buffer[] = [];
  private bodyFill = 0;

  constructor(private maxBytes: number) {}

  /** Raises (or lowers) the frame size bound, e.g. once the handshake has completed. */
  setMaxBytes(n: number): void {
    this.maxBytes = n;
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.headerFill === 0 && !this.inBody;
  }

  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    let off = 0;
    for (;;) {
      if (!this.inBody) {
        if (off >= chunk.length) break;
        const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - off);
        chunk.copy(this.header, this.headerFill, off, off + n);
        this.headerFill += n;
        off += n;
        if (this.headerFill < FRAME_HEADER_BYTES) break;
        this.len = this.header.readUInt32LE(0);
        this.crc = this.header.readUInt32LE(4);
        this.type = this.header[8] as number;
        if (this.len > this.maxBytes) {
          throw new FrameError(`frame of ${this.len} bytes exceeds the limit of ${this.maxBytes}`);
        }
        this.inBody = true;
        this.parts = [];
        this.bodyFill = 0;
      }
      const n = Math.min(this.len - this.bodyFill, chunk.length - off);
      if (n > 0) {
        this.parts.push(chunk.subarray(off, off + n));
        this.bodyFill += n;
        off += n;
      }
      if (this.bodyFill < this.len) break;
      const payload = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.len);
      const actual = frameCrc(this.type, payload);
      if (actual !== this.crc) {
        throw new FrameError(
          `frame checksum mismatch (type ${this.type}, ${this.len} bytes: header says ${this.crc.toString(16)}, data gives ${actual.toString(16)})`,
        );
      }
      out.push({ type: this.type, payload });
      this.inBody = false;
      this.headerFill = 0;
      this.parts = [];
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Control payloads. Decoders throw FrameError for anything malformed.

/** "LABP": lets an acceptor tell our hello from something else speaking to the peer port. */
export const PROTOCOL_MAGIC = 0x5042414c;
/** 2: messages may carry the leader's durable index (codec version 3), which version-1 members cannot read. */
export const PROTOCOL_VERSION = 2;

export interface Hello {
  version: number;
  clusterId: bigint;
  from: bigint;
  to: bigint;
}

export interface HelloOk {
  clusterId: bigint;
  memberId: bigint;
}

export enum RefuseCode {
  ClusterMismatch = 1,
  WrongMember = 2,
  Removed = 3,
  Version = 4,
  Other = 5,
}

export interface Refuse {
  code: RefuseCode;
  /** The acceptor's cluster ID and member ID, so the dialer can word the error from its side. */
  clusterId: bigint;
  memberId: bigint;
  message: string;
}

export interface RequestFrame {
  id: number;
  kind: string;
  body: Buffer;
}

export type ResponseFrame = { id: number; ok: true; body: Buffer } | { id: number; ok: false; error: string };

function reading<T>(what: string, payload: Buffer, read: (r: BinaryReader) => T): T {
  const r = new BinaryReader(payload);
  let v: T;
  try {
    v = read(r);
  } catch (err) {
    if (err instanceof FrameError) throw err;
    throw new FrameError(`malformed ${what} frame: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (r.remaining !== 0) throw new FrameError(`malformed ${what} frame: ${r.remaining} trailing bytes`);
  return v;
}

function safeU64(r: BinaryReader, what: string): number {
  const v = r.u64n();
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`malformed ${what} frame: id ${v} above 2^53-1`);
  return Number(v);
}

export function encodeHello(h: Hello): Buffer {
  const w = new ExactWriter(4 + 1 + 24);
  w.u32(PROTOCOL_MAGIC);
  w.u8(h.version);
  w.u64n(h.clusterId);
  w.u64n(h.from);
  w.u64n(h.to);
  return w.finish();
}

export function decodeHello(payload: Buffer): Hello {
  return reading("hello", payload, (r) => {
    const magic = r.u32();
    if (magic !== PROTOCOL_MAGIC) throw new FrameError(`not a lab peer hello (magic ${magic.toString(16)})`);
    return { version: r.u8(), clusterId: r.u64n(), from: r.u64n(), to: r.u64n() };
  });
}

export function encodeHelloOk(h: HelloOk): Buffer {
  const w = new ExactWriter(16);
  w.u64n(h.clusterId);
  w.u64n(h.memberId);
  return w.finish();
}

export function decodeHelloOk(payload: Buffer): HelloOk {
  return reading("hello-ok", payload, (r) => ({ clusterId: r.u64n(), memberId: r.u64n() }));
}

export function encodeRefuse(f: Refuse): Buffer {
  const msg = Buffer.from(f.message, "utf8");
  const w = new ExactWriter(1 + 16 + 4 + msg.length);
  w.u8(f.code);
  w.u64n(f.clusterId);
  w.u64n(f.memberId);
  w.bytes(msg);
  return w.finish();
}

export function decodeRefuse(payload: Buffer): Refuse {
  return reading("refuse", payload, (r) => {
    const code = r.u8();
    const clusterId = r.u64n();
    const memberId = r.u64n();
    const message = r.string();
    return { code: code in RefuseCode ? (code as RefuseCode) : RefuseCode.Other, clusterId, memberId, message };
  });
}

export function encodeRequest(f: RequestFrame): Buffer {
  const kind = Buffer.from(f.kind, "utf8");
  const w = new ExactWriter(8 + 4 + kind.length + 4 + f.body.length);
  w.u64(f.id);
  w.bytes(kind);
  w.bytes(f.body);
  return w.finish();
}

export function decodeRequest(payload: Buffer): RequestFrame {
  return reading("request", payload, (r) => ({ id: safeU64(r, "request"), kind: r.string(), body: r.bytes() }));
}

export function encodeResponse(f: ResponseFrame): Buffer {
  const data = f.ok ? f.body : Buffer.from(f.error, "utf8");
  const w = new ExactWriter(8 + 1 + 4 + data.length);
  w.u64(f.id);
  w.u8(f.ok ? 1 : 0);
  w.bytes(data);
  return w.finish();
}

export function decodeResponse(payload: Buffer): ResponseFrame {
  return reading("response", payload, (r): ResponseFrame => {
    const id = safeU64(r, "response");
    const ok = r.u8();
    if (ok > 1) throw new FrameError(`malformed response frame: ok flag ${ok}`);
    const data = r.bytes();
    return ok === 1 ? { id, ok: true, body: data } : { id, ok: false, error: data.toString("utf8") };
  });
}
