import type * as net from "node:net";
import { StableMap } from "../../../util/stable-map.js";
import { type HeaderField, HpackDecoder, HpackError } from "./hpack.js";

/**
 * The server side of one HTTP/2 connection (RFC 9113), as much of it as a gRPC server needs,
 * framed by the member itself instead of node:http2.
 *
 * Why: node:http2 sends a unary answer's trailers one event-loop turn after its data (its
 * sendTrailers defers to setImmediate), so every call costs the client two wake-ups and a gap
 * in which other work can run; and its per-stream machinery (Duplex streams, header objects,
 * nghttp2 round trips) costs about three times the CPU of the framing here for a small call.
 * Here a unary answer (HEADERS, DATA, trailing HEADERS) leaves in one socket write, and all the
 * frames made while handling one batch of input share one write.
 *
 * What it does: the connection preface and SETTINGS (both ways, acknowledged), HEADERS with
 * CONTINUATION, padding and priority fields, DATA, RST_STREAM, PING, GOAWAY, WINDOW_UPDATE and
 * flow control in both directions (we credit what we received as soon as it is handed over;
 * we send no more than the peer's windows allow and queue the rest), stream states, and
 * connection errors answered with GOAWAY. What a gRPC server never needs is left out: server
 * push, the priority tree (priorities are parsed and ignored), and TLS (the listener is TCP).
 */

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

enum FrameType {
  Data = 0,
  Headers = 1,
  Priority = 2,
  RstStream = 3,
  Settings = 4,
  PushPromise = 5,
  Ping = 6,
  GoAway = 7,
  WindowUpdate = 8,
  Continuation = 9,
}

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** Error codes (RFC 9113 section 7). */
export enum H2Error {
  NoError = 0,
  ProtocolError = 1,
  InternalError = 2,
  FlowControlError = 3,
  StreamClosed = 5,
  FrameSizeError = 6,
  RefusedStream = 7,
  Cancel = 8,
  CompressionError = 9,
  EnhanceYourCalm = 11,
}

enum Setting {
  HeaderTableSize = 1,
  EnablePush = 2,
  MaxConcurrentStreams = 3,
  InitialWindowSize = 4,
  MaxFrameSize = 5,
  MaxHeaderListSize = 6,
}

const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/** The largest frame payload we accept (the protocol's default; we do not announce more). */
const OUR_MAX_FRAME = 16_384;
/** What we let a peer send on each stream before we credit it, and on the whole connection. */
const OUR_STREAM_WINDOW = 4 * 1024 * 1024;
const OUR_CONNECTION_WINDOW = 16 * 1024 * 1024;
/** A header block (HEADERS plus CONTINUATIONs) above this is refused: it would only cost memory. */
const MAX_HEADER_BLOCK = 1024 * 1024;

/** Request headers as node:http2 presents them: a repeated field becomes an array. */
export type IncomingHeaders = Record<string, string | string[] | undefined>;

interface OutgoingData {
  data: Buffer;
  written: (() => void) | undefined;
}

/**
 * What the gRPC layer attaches to a stream (in onStream, before returning) to hear of it. Plain
 * methods rather than events: a stream per call with an EventEmitter and three listener closures
 * was a large share of what a unary call left for the garbage collector.
 */
export interface StreamListener {
  /** A chunk of the request body. */
  data(chunk: Buffer): void;
  /** The peer finished sending (END_STREAM). */
  end(): void;
  /** The stream is over: both sides finished, either reset it, or the connection went away. */
  close(): void;
}

/** One stream of the connection, as the gRPC layer sees it. */
export class H2Stream {
  listener: StreamListener | undefined;
  /** We sent END_STREAM or RST_STREAM (or the connection closed): nothing more can be sent. */
  closed = false;
  headersSent = false;
  /** The peer sent END_STREAM. */
  remoteEnded = false;
  sendWindow: number;
  receivedUncredited = 0;
  readonly queue: OutgoingData[] = [];
  /** A trailing header block waiting for the queued data to go out first. */
  trailers: Buffer | undefined;
  private gone = false;

  constructor(
    readonly id: number,
    readonly connection: H2Connection,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** The stream is over for good (after close()). */
  get destroyed(): boolean {
    return this.gone;
  }

  /** Response headers (a block from encodeHeaders); with endStream they are all the answer. */
  respond(block: Buffer, endStream = false): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaderBlock(this.id, block, endStream);
    if (endStream) this.localEnd();
  }

  /** Queues body bytes; `written` runs once they have been handed to the socket. */
  write(data: Buffer, written?: () => void): void {
    if (this.closed) return;
    this.queue.push({ data, written });
    this.connection.pump(this);
  }

  /** Ends the stream with a trailing header block, after everything written so far. */
  end(trailers: Buffer): void {
    if (this.closed || this.trailers) return;
    this.trailers = trailers;
    this.connection.pump(this);
  }

  /** Abandons the stream with RST_STREAM (code CANCEL unless given). */
  reset(code: H2Error = H2Error.Cancel): void {
    if (this.gone) return;
    this.connection.sendReset(this.id, code);
    this.finish();
  }

  /** Called by the connection once the trailers (or END_STREAM headers) went out. */
  localEnd(): void {
    this.closed = true;
    this.queue.length = 0;
    // A server that has answered need not read the rest of a request (RFC 9113 section 8.1).
    if (!this.remoteEnded) this.connection.sendReset(this.id, H2Error.NoError);
    this.finish();
  }

  /** The peer ended its side. */
  remoteEnd(): void {
    if (this.remoteEnded) return;
    this.remoteEnded = true;
    this.listener?.end();
  }

  /** Over: forget it and tell the listeners. */
  finish(): void {
    if (this.gone) return;
    this.gone = true;
    this.closed = true;
    this.queue.length = 0;
    this.trailers = undefined;
    this.connection.forget(this.id);
    this.listener?.close();
  }
}

export interface H2ConnectionOptions {
  /** A new stream and its request headers. Set its listener before returning: data may follow at once. */
  readonly onStream: (stream: H2Stream, headers: IncomingHeaders) => void;
  /** The connection closed (after every stream's close()). */
  readonly onClose?: () => void;
}

export class H2Connection {
  private readonly streams = new StableMap<number, H2Stream>();
  private readonly decoder = new HpackDecoder();
  private input: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private lastStreamId = 0;
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = OUR_MAX_FRAME;
  private receivedUncredited = 0;
  /** HEADERS awaiting CONTINUATION frames. */
  private partial: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined;
  /** Streams with data held back by a connection window of 0, in the order they stalled. */
  private readonly stalled = new Set<H2Stream>();
  private out: Buffer[] = [];
  private outCallbacks: Array<() => void> = [];
  private flushScheduled = false;
  private closed = false;
  private goingAway = false;

  constructor(
    readonly socket: net.Socket,
    private readonly options: H2ConnectionOptions,
  ) {
    // Our SETTINGS (no push; room for many streams; a larger window per stream), then a larger
    // connection window than the protocol's 64 KiB.
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(Setting.EnablePush, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(Setting.MaxConcurrentStreams, 6);
    settings.writeUInt32BE(MAX_WINDOW, 8);
    settings.writeUInt16BE(Setting.InitialWindowSize, 12);
    settings.writeUInt32BE(OUR_STREAM_WINDOW, 14);
    this.frame(FrameType.Settings, 0, 0, settings);
    this.windowUpdate(0, OUR_CONNECTION_WINDOW - DEFAULT_WINDOW);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => this.onSocketClose());
    socket.on("error", () => {});
    // The listener may have paused the socket while it looked at the first bytes.
    socket.resume();
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** Sends GOAWAY and closes the connection; open streams are closed. */
  close(code: H2Error = H2Error.NoError): void {
    if (this.closed) return;
    this.goAway(code, "");
    this.flush();
    this.socket.end();
    setImmediate(() => this.socket.destroy()).unref();
  }

  // --- receiving ---

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    try {
      if (!this.prefaceSeen) {
        if (this.input.length < PREFACE.length) {
          if (!PREFACE.subarray(0, this.input.length).equals(this.input))
            throw new ConnectionError(H2Error.ProtocolError, "bad preface");
          return;
        }
        if (!this.input.subarray(0, PREFACE.length).equals(PREFACE))
          throw new ConnectionError(H2Error.ProtocolError, "bad preface");
        this.input = this.input.subarray(PREFACE.length);
        this.prefaceSeen = true;
      }
      let offset = 0;
      const input = this.input;
      while (input.length - offset >= 9) {
        const length = input.readUIntBE(offset, 3);
        if (length > OUR_MAX_FRAME) throw new ConnectionError(H2Error.FrameSizeError, `frame of ${length} bytes`);
        if (input.length - offset < 9 + length) break;
        const type = input[offset + 3] as number;
        const flags = input[offset + 4] as number;
        const streamId = input.readUInt32BE(offset + 5) & 0x7fffffff;
        const payload = input.subarray(offset + 9, offset + 9 + length);
        offset += 9 + length;
        this.onFrame(type, flags, streamId, payload);
        if (this.closed) return;
      }
      this.input = offset === input.length ? Buffer.alloc(0) : input.subarray(offset);
      this.creditReceived();
    } catch (err) {
      // A protocol error ends the connection with its code; anything else is our bug, and it
      // ends this connection (INTERNAL_ERROR), never the member.
      if (err instanceof ConnectionError) this.fail(err.code, err.message);
      else this.fail(H2Error.InternalError, err instanceof Error ? err.message : String(err));
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.partial && type !== FrameType.Continuation) {
      throw new ConnectionError(H2Error.ProtocolError, "a header block was interrupted");
    }
    switch (type) {
      case FrameType.Data:
        this.onDataFrame(flags, streamId, payload);
        return;
      case FrameType.Headers:
        this.onHeaders(flags, streamId, payload);
        return;
      case FrameType.Continuation:
        this.onContinuation(flags, streamId, payload);
        return;
      case FrameType.Priority:
        if (streamId === 0) throw new ConnectionError(H2Error.ProtocolError, "PRIORITY on stream 0");
        return;
      case FrameType.RstStream: {
        if (streamId === 0 || payload.length !== 4) throw new ConnectionError(H2Error.ProtocolError, "bad RST_STREAM");
        this.streams.get(streamId)?.finish();
        return;
      }
      case FrameType.Settings:
        this.onSettings(flags, streamId, payload);
        return;
      case FrameType.PushPromise:
        throw new ConnectionError(H2Error.ProtocolError, "a client must not push");
      case FrameType.Ping:
        if (streamId !== 0 || payload.length !== 8) throw new ConnectionError(H2Error.ProtocolError, "bad PING");
        if ((flags & FLAG_ACK) === 0) this.frame(FrameType.Ping, FLAG_ACK, 0, Buffer.from(payload));
        return;
      case FrameType.GoAway:
        this.goingAway = true;
        return;
      case FrameType.WindowUpdate:
        this.onWindowUpdate(streamId, payload);
        return;
      default:
        return; // unknown frame types are ignored (section 4.1)
    }
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.ProtocolError, "DATA on stream 0");
    this.receivedUncredited += payload.length; // flow control counts padding too
    const stream = this.streams.get(streamId);
    if (!stream || stream.remoteEnded) {
      if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.ProtocolError, "DATA on an idle stream");
      if (stream?.remoteEnded) this.sendReset(streamId, H2Error.StreamClosed);
      return;
    }
    const body = unpad(flags, payload);
    stream.receivedUncredited += payload.length;
    if (stream.receivedUncredited >= OUR_STREAM_WINDOW / 2 && !(flags & FLAG_END_STREAM)) {
      this.windowUpdate(streamId, stream.receivedUncredited);
      stream.receivedUncredited = 0;
    }
    if (body.length > 0) stream.listener?.data(body);
    if (flags & FLAG_END_STREAM) stream.remoteEnd();
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) throw new ConnectionError(H2Error.ProtocolError, "bad HEADERS stream");
    let block = unpad(flags, payload);
    if (flags & FLAG_PRIORITY) block = block.subarray(5);
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) this.onHeaderBlock(streamId, endStream, block);
    else this.partial = { streamId, endStream, parts: [Buffer.from(block)], bytes: block.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const partial = this.partial;
    if (!partial || partial.streamId !== streamId)
      throw new ConnectionError(H2Error.ProtocolError, "stray CONTINUATION");
    partial.parts.push(Buffer.from(payload));
    partial.bytes += payload.length;
    if (partial.bytes > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.EnhanceYourCalm, "header block too large");
    if (flags & FLAG_END_HEADERS) {
      this.partial = undefined;
      this.onHeaderBlock(streamId, partial.endStream, Buffer.concat(partial.parts));
    }
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(block);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(H2Error.CompressionError, err.message);
      throw err;
    }
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers from the client: gRPC clients send none, but they end the request all the same.
      if (!endStream) throw new ConnectionError(H2Error.ProtocolError, "trailers without END_STREAM");
      existing.remoteEnd();
      return;
    }
    // A stream we already closed (answered early, or reset): its late frames are ignored (RFC 9113
    // section 5.1); the block was decoded all the same, to keep the HPACK table in step.
    if (streamId <= this.lastStreamId) return;
    this.lastStreamId = streamId;
    if (this.goingAway) {
      this.sendReset(streamId, H2Error.RefusedStream);
      return;
    }
    const headers: IncomingHeaders = {};
    for (const [name, value] of fields) {
      const before = headers[name];
      if (before === undefined) headers[name] = value;
      else if (Array.isArray(before)) before.push(value);
      else headers[name] = [before, value];
    }
    const stream = new H2Stream(streamId, this, this.peerInitialWindow);
    this.streams.set(streamId, stream);
    this.options.onStream(stream, headers);
    if (endStream) stream.remoteEnd();
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.ProtocolError, "SETTINGS on a stream");
    if (flags & FLAG_ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FrameSizeError, "bad SETTINGS length");
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.InitialWindowSize) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FlowControlError, "initial window too large");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (id === Setting.MaxFrameSize) {
        if (value < 16_384 || value > 16_777_215)
          throw new ConnectionError(H2Error.ProtocolError, "bad max frame size");
        this.peerMaxFrame = value;
      } else if (id === Setting.EnablePush && value > 1) {
        throw new ConnectionError(H2Error.ProtocolError, "bad ENABLE_PUSH");
      }
      // HEADER_TABLE_SIZE needs nothing: our blocks never use the dynamic table.
    }
    this.frame(FrameType.Settings, FLAG_ACK, 0, Buffer.alloc(0));
    for (const s of this.streams.values()) this.pump(s);
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FrameSizeError, "bad WINDOW_UPDATE");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.ProtocolError, "WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW)
        throw new ConnectionError(H2Error.FlowControlError, "connection window overflow");
      const waiting = [...this.stalled];
      this.stalled.clear();
      for (const s of waiting) this.pump(s);
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) return; // a closed stream's update is allowed and meaningless
    if (increment === 0) {
      stream.reset(H2Error.ProtocolError);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      stream.reset(H2Error.FlowControlError);
      return;
    }
    this.pump(stream);
  }

  /** Credits the connection window once a good part of it was used (streams credit themselves). */
  private creditReceived(): void {
    if (this.receivedUncredited >= OUR_CONNECTION_WINDOW / 4) {
      this.windowUpdate(0, this.receivedUncredited);
      this.receivedUncredited = 0;
    }
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.streams.values()]) s.finish();
    this.options.onClose?.();
  }

  private fail(code: H2Error, reason: string): void {
    this.goAway(code, reason);
    this.flush();
    this.closed = true;
    this.socket.end();
    setImmediate(() => this.socket.destroy()).unref();
    for (const s of [...this.streams.values()]) s.finish();
    this.options.onClose?.();
  }

  private goAway(code: H2Error, reason: string): void {
    const payload = Buffer.alloc(8 + Buffer.byteLength(reason));
    payload.writeUInt32BE(this.lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    payload.write(reason, 8);
    this.frame(FrameType.GoAway, 0, 0, payload);
  }

  // --- sending ---

  forget(streamId: number): void {
    const stream = this.streams.get(streamId);
    if (stream) this.stalled.delete(stream);
    this.streams.delete(streamId);
  }

  sendReset(streamId: number, code: H2Error): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(code, 0);
    this.frame(FrameType.RstStream, 0, streamId, payload);
  }

  /** A header block as HEADERS plus CONTINUATIONs when it exceeds the peer's frame size. */
  sendHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    const end = endStream ? FLAG_END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) {
      this.frame(FrameType.Headers, FLAG_END_HEADERS | end, streamId, block);
      return;
    }
    let offset = 0;
    let type = FrameType.Headers;
    while (offset < block.length) {
      const piece = block.subarray(offset, offset + this.peerMaxFrame);
      offset += piece.length;
      const last = offset >= block.length;
      this.frame(type, (last ? FLAG_END_HEADERS : 0) | (type === FrameType.Headers ? end : 0), streamId, piece);
      type = FrameType.Continuation;
    }
  }

  /** Sends what the windows allow of a stream's queued data, then its trailers once all is out. */
  pump(stream: H2Stream): void {
    if (stream.closed) return;
    while (stream.queue.length > 0) {
      const head = stream.queue[0] as OutgoingData;
      const room = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (head.data.length > 0 && room <= 0) {
        if (this.sendWindow <= 0) this.stalled.add(stream);
        return;
      }
      const piece = head.data.length <= room ? head.data : head.data.subarray(0, room);
      this.frame(FrameType.Data, 0, stream.id, piece);
      stream.sendWindow -= piece.length;
      this.sendWindow -= piece.length;
      if (piece.length === head.data.length) {
        stream.queue.shift();
        if (head.written) this.outCallbacks.push(head.written);
      } else head.data = head.data.subarray(piece.length);
    }
    if (stream.trailers) {
      const trailers = stream.trailers;
      stream.trailers = undefined;
      this.sendHeaderBlock(stream.id, trailers, true);
      stream.localEnd();
    }
  }

  private windowUpdate(streamId: number, increment: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(increment, 0);
    this.frame(FrameType.WindowUpdate, 0, streamId, payload);
  }

  /** Queues a frame; everything queued in one turn of the event loop leaves in one write. */
  private frame(type: FrameType, flags: number, streamId: number, payload: Buffer): void {
    if (this.closed) return;
    const head = Buffer.allocUnsafe(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(streamId, 5);
    this.out.push(head);
    if (payload.length > 0) this.out.push(payload);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0) return;
    const out = this.out;
    const callbacks = this.outCallbacks;
    this.out = [];
    this.outCallbacks = [];
    if (this.socket.destroyed) return;
    const done =
      callbacks.length === 0
        ? undefined
        : () => {
            for (const cb of callbacks) cb();
          };
    // Small frames are copied into one buffer; large payloads go by reference (writev).
    const bytes = out.reduce((n, b) => n + b.length, 0);
    if (bytes <= 64 * 1024) {
      this.socket.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out, bytes), done);
      return;
    }
    this.socket.cork();
    for (const [i, b] of out.entries()) this.socket.write(b, i === out.length - 1 ? done : undefined);
    this.socket.uncork();
  }
}

class ConnectionError extends Error {
  constructor(
    readonly code: H2Error,
    message: string,
  ) {
    super(message);
  }
}

/** A DATA or HEADERS payload without its padding (and pad length byte). */
function unpad(flags: number, payload: Buffer): Buffer {
  if ((flags & FLAG_PADDED) === 0) return payload;
  const padding = payload[0] ?? 0;
  if (padding >= payload.length) throw new ConnectionError(H2Error.ProtocolError, "padding exceeds the frame");
  return payload.subarray(1, payload.length - padding);
}
