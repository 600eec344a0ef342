import type * as net from "node:net";
import { Duplex } from "node:stream";
import * as zlib from "node:zlib";
import { H2Connection, type H2Stream, type IncomingHeaders, type StreamListener } from "./h2/connection.js";
import { encodeHeaders, type HeaderField } from "./h2/hpack.js";
import { CallMetadata, GrpcStatus, type GrpcStatusCode } from "./status.js";

/**
 * The member's gRPC server: gRPC's HTTP/2 protocol on the member's own HTTP/2 framing
 * (./h2/connection.ts), for the service implementations written against grpc-js's handler API
 * (unary `(call, callback)`, streaming `(call)` with a Duplex call).
 *
 * Why not grpc-js's own server: per call it costs ~0.1 ms of CPU more (measured with the etcd3
 * client against a Put that does nothing: 0.34 vs 0.24 ms of server CPU per call), which was a
 * large share of a put's latency, and it always adds grpc-encoding headers that etcd does not
 * send and every client then parses. Here, as in etcd's grpc-go server, the response headers are
 * just :status and content-type, and over-limit messages get grpc-go's error text.
 *
 * The protocol (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): a POST to
 * /<service>/<method> with content-type application/grpc; messages in both directions framed as
 * 1 byte "compressed" + 4 bytes big-endian length + bytes; the call ends with trailers carrying
 * grpc-status and grpc-message (or, when nothing was sent, with those in the only HEADERS frame).
 */

export interface MethodDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestDeserialize: (bytes: Buffer) => unknown;
  readonly responseSerialize: (value: unknown) => Buffer;
}

type Implementation = (...args: never[]) => unknown;

interface Route {
  readonly method: MethodDefinition;
  readonly handler: Implementation;
  readonly kind: CallKind;
}

/** What a call is, in the labels of go-grpc-prometheus (which etcd's /metrics uses). */
export interface CallKind {
  /** "etcdserverpb.KV" */
  readonly service: string;
  /** "Put" */
  readonly method: string;
  readonly type: "unary" | "client_stream" | "server_stream" | "bidi_stream";
}

/**
 * Told about every call to a known method, as go-grpc-prometheus' server interceptors count them:
 * when it starts, each message in and out, and once, how it ended. Calls of one method share one
 * CallKind object.
 */
export interface CallObserver {
  started(kind: CallKind): void;
  received(kind: CallKind): void;
  sent(kind: CallKind): void;
  /** The call ended with `code` (CANCELLED when the client went away), `seconds` after it started. */
  handled(kind: CallKind, code: GrpcStatusCode, seconds: number): void;
}

export interface GrpcServerOptions {
  /** Largest request message accepted, in bytes (grpc-go's MaxRecvMsgSize). */
  readonly maxReceiveMessageLength: number;
  readonly observer?: CallObserver;
}

interface Status {
  readonly code: GrpcStatusCode;
  readonly details: string;
}

const RESPONSE_FIELDS: HeaderField[] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];
const RESPONSE_HEADERS = encodeHeaders(RESPONSE_FIELDS);
const OK_TRAILERS = encodeHeaders([["grpc-status", "0"]]);

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<H2Connection>();

  constructor(private readonly options: GrpcServerOptions) {}

  /** Serves every method of a service definition (as protobufjs-built definitions list them). */
  addService(definition: Record<string, MethodDefinition>, implementation: Record<string, Implementation>): void {
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name];
      if (!handler) continue;
      const service = method.path.slice(1, method.path.lastIndexOf("/"));
      const type = method.requestStream
        ? method.responseStream
          ? "bidi_stream"
          : "client_stream"
        : method.responseStream
          ? "server_stream"
          : "unary";
      this.routes.set(method.path, { method, handler, kind: { service, method: name, type } });
    }
  }

  /** Takes a client connection whose first bytes (already read) were put back with unshift(). */
  handleConnection(socket: net.Socket): void {
    const connection: H2Connection = new H2Connection(socket, {
      onStream: (stream, headers) => this.onStream(stream, headers),
      onClose: () => this.connections.delete(connection),
    });
    this.connections.add(connection);
  }

  close(): void {
    for (const c of this.connections) c.close();
    this.connections.clear();
  }

  private onStream(stream: H2Stream, headers: IncomingHeaders): void {
    const contentType = headers["content-type"] ?? "";
    if (
      headers[":method"] !== "POST" ||
      typeof contentType !== "string" ||
      !contentType.startsWith("application/grpc")
    ) {
      respondHttpError(stream, headers[":method"] !== "POST" ? 405 : 415);
      return;
    }
    const path = String(headers[":path"] ?? "");
    const route = this.routes.get(path);
    if (!route) {
      sendTrailersOnly(stream, { code: GrpcStatus.UNIMPLEMENTED, details: `unknown method ${path}` });
      return;
    }
    if (route.method.requestStream) {
      const exchange = new StreamingExchange(stream, headers, route, this.options);
      stream.listener = exchange;
      invokeStreaming(route.handler, exchange.call, exchange);
      return;
    }
    // Exactly one request message; the handler runs once the client has ended its side.
    stream.listener = new SingleRequestCall(stream, headers, route, this.options);
  }
}

function invokeStreaming(handler: Implementation, call: StreamCall, exchange: Exchange): void {
  try {
    (handler as unknown as (call: StreamCall) => void)(call);
  } catch (err) {
    exchange.fail(statusOf(err));
  }
}

/**
 * One call on one stream, as the stream's listener: it splits the request body into messages
 * (size limit, decompression), notices the client going away or the deadline passing, and sends
 * the answer: headers, message(s), then the status in trailers (trailers-only when nothing else
 * was sent). Subclasses say what the request messages are for.
 */
abstract class Exchange implements StreamListener {
  /** The status was sent (or the stream is gone): nothing more may be written. */
  finished = false;
  /** The start of a message whose bytes have not all arrived yet. */
  private pending: Buffer[] | undefined;
  private pendingBytes = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly startedAt: number;

  constructor(
    readonly stream: H2Stream,
    readonly headers: IncomingHeaders,
    protected readonly route: Route,
    private readonly options: GrpcServerOptions,
  ) {
    options.observer?.started(route.kind);
    this.startedAt = options.observer ? performance.now() : 0;
    const ms = parseTimeout(headers["grpc-timeout"]);
    if (ms === undefined) return;
    this.deadlineTimer = setTimeout(() => {
      if (this.finished) return;
      this.fail({ code: GrpcStatus.DEADLINE_EXCEEDED, details: "context deadline exceeded" });
      this.cancel();
    }, ms);
    this.deadlineTimer.unref();
  }

  /** A decoded request message. */
  protected abstract message(request: unknown): void;

  /** The client will send no more messages. */
  abstract end(): void;

  /** The client went away (or the deadline passed) before the answer: the handler should stop. */
  protected abstract cancel(): void;

  /** The stream is over; before the answer, that means the client cancelled. */
  close(): void {
    if (this.finished) return;
    this.settle(GrpcStatus.CANCELLED);
    this.cancel();
  }

  /** Request body bytes: each message they complete is decoded and handed to message(). */
  data(chunk: Buffer): void {
    if (this.finished) return;
    const max = this.options.maxReceiveMessageLength;
    let bytes = chunk;
    if (this.pending !== undefined) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < 5) return;
      const first = this.pending[0] as Buffer;
      const length = (first.length >= 5 ? first : Buffer.concat(this.pending, this.pendingBytes)).readUInt32BE(1);
      // Wait for the rest (a message over the limit is refused below as soon as its length is known).
      if (this.pendingBytes < 5 + length && length <= max) return;
      bytes = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = undefined;
      this.pendingBytes = 0;
    }
    while (bytes.length >= 5) {
      const length = bytes.readUInt32BE(1);
      if (length > max) {
        this.fail({
          code: GrpcStatus.RESOURCE_EXHAUSTED,
          details: `grpc: received message larger than max (${length} vs. ${max})`,
        });
        return;
      }
      if (bytes.length < 5 + length) break;
      let request: unknown;
      try {
        const body = bytes.subarray(5, 5 + length);
        request = this.route.method.requestDeserialize(bytes[0] === 1 ? this.decompress(body) : body);
      } catch (err) {
        this.fail(
          isStatus(err)
            ? err
            : { code: GrpcStatus.INTERNAL, details: `grpc: error unmarshalling request: ${String(err)}` },
        );
        return;
      }
      bytes = bytes.subarray(5 + length);
      this.options.observer?.received(this.route.kind);
      this.message(request);
      if (this.finished) return;
    }
    if (bytes.length > 0) {
      this.pending = [bytes];
      this.pendingBytes = bytes.length;
    }
  }

  private decompress(frame: Buffer): Buffer {
    const encoding = this.headers["grpc-encoding"];
    const max = this.options.maxReceiveMessageLength;
    let plain: Buffer;
    try {
      if (encoding === "gzip") plain = zlib.gunzipSync(frame);
      else if (encoding === "deflate") plain = zlib.inflateSync(frame);
      else {
        const name = typeof encoding === "string" && encoding !== "" ? encoding : "identity";
        throw status(GrpcStatus.UNIMPLEMENTED, `grpc: Decompressor is not installed for grpc-encoding "${name}"`);
      }
    } catch (err) {
      if (isStatus(err)) throw err;
      throw status(GrpcStatus.INTERNAL, `grpc: failed to decompress the received message: ${String(err)}`);
    }
    if (plain.length > max) {
      throw status(
        GrpcStatus.RESOURCE_EXHAUSTED,
        `grpc: received message after decompression larger than max (${plain.length} vs. ${max})`,
      );
    }
    return plain;
  }

  /** Serializes a message, or fails the call (INTERNAL) and returns undefined. */
  frame(value: unknown): Buffer | undefined {
    try {
      return frameMessage(this.route.method.responseSerialize(value));
    } catch (err) {
      this.fail({ code: GrpcStatus.INTERNAL, details: `grpc: error while marshaling: ${String(err)}` });
      return undefined;
    }
  }

  /** A unary answer: headers, the message and OK trailers (they leave in one write). */
  answer(frame: Buffer): void {
    if (this.finished) return;
    this.settle(GrpcStatus.OK);
    if (this.stream.closed) return;
    this.options.observer?.sent(this.route.kind);
    this.stream.respond(RESPONSE_HEADERS);
    this.stream.write(frame);
    this.stream.end(OK_TRAILERS);
  }

  /** One message of a streaming answer; `written` once it is handed to the connection. */
  write(frame: Buffer, written: () => void): void {
    this.options.observer?.sent(this.route.kind);
    if (!this.stream.headersSent) this.stream.respond(RESPONSE_HEADERS);
    this.stream.write(frame, written);
  }

  /** Ends the call with OK after whatever was written. */
  succeed(): void {
    this.fail({ code: GrpcStatus.OK, details: "" });
  }

  /** Ends the call with a status after whatever was written (trailers-only when nothing was). */
  fail(s: Status): void {
    if (this.finished) return;
    this.settle(s.code);
    if (this.stream.closed) return;
    if (!this.stream.headersSent) {
      sendTrailersOnly(this.stream, s);
      return;
    }
    this.stream.end(encodeHeaders(statusFields(s)));
  }

  private settle(code: GrpcStatusCode): void {
    this.finished = true;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.options.observer?.handled(this.route.kind, code, (performance.now() - this.startedAt) / 1000);
  }
}

/**
 * A call of a method that takes one request message. For a unary method this object is also
 * what the handler gets as `call` (the part of grpc-js's ServerUnaryCall handlers use: request,
 * metadata, getPeer, cancelled and the "cancelled" event), so that a call costs few objects; a
 * server-streaming handler gets a StreamCall.
 */
class SingleRequestCall extends Exchange {
  request: unknown;
  cancelled = false;
  private count = 0;
  private md: CallMetadata | undefined;
  private streamCall: StreamCall | undefined;
  private cancelListeners: Array<(reason: string) => void> | undefined;

  protected message(request: unknown): void {
    this.count++;
    if (this.count === 1) this.request = request;
  }

  end(): void {
    if (this.finished) return;
    if (this.count !== 1) {
      this.fail({
        code: this.count === 0 ? GrpcStatus.INTERNAL : GrpcStatus.UNIMPLEMENTED,
        details:
          this.count === 0
            ? "grpc: the request message is missing"
            : `grpc: ${this.count} request messages for a unary method`,
      });
      return;
    }
    if (this.route.method.responseStream) {
      const call = new StreamCall(this);
      this.streamCall = call;
      call.request = this.request;
      call.push(null); // no more requests
      invokeStreaming(this.route.handler, call, this);
      return;
    }
    try {
      (this.route.handler as unknown as (call: SingleRequestCall, cb: typeof this.reply) => void)(this, this.reply);
    } catch (err) {
      this.reply(err);
    }
  }

  /** The unary handler's callback: an error, or the response message. */
  private readonly reply = (err: unknown, value?: unknown): void => {
    if (this.finished) return;
    if (err) {
      this.fail(statusOf(err));
      return;
    }
    const frame = this.frame(value);
    if (frame !== undefined) this.answer(frame);
  };

  protected cancel(): void {
    if (this.streamCall) {
      this.streamCall.cancel();
      return;
    }
    this.cancelled = true;
    if (this.cancelListeners) for (const listener of this.cancelListeners) listener("cancelled");
  }

  /** grpc-js's "cancelled" event: the only event of a unary call here. */
  on(event: string, listener: (reason: string) => void): this {
    if (event !== "cancelled") throw new Error(`a unary call emits only "cancelled", not "${event}"`);
    this.cancelListeners ??= [];
    this.cancelListeners.push(listener);
    return this;
  }

  get metadata(): CallMetadata {
    this.md ??= metadataOf(this.headers);
    return this.md;
  }

  getPeer(): string {
    return peerOf(this.stream);
  }
}

/** A call of a client- or bidi-streaming method: the messages go to the handler's StreamCall. */
class StreamingExchange extends Exchange {
  readonly call = new StreamCall(this);

  protected message(request: unknown): void {
    if (!this.call.destroyed) this.call.push(request);
  }

  end(): void {
    if (!this.call.destroyed) this.call.push(null);
  }

  protected cancel(): void {
    this.call.cancel();
  }
}

/**
 * What a streaming handler gets as `call`: an object-mode Duplex (requests in, responses out),
 * with grpc-js's "cancelled" event and flag, `request` for server-streaming methods, and
 * destroy(serviceError) to fail the call with that status.
 */
class StreamCall extends Duplex {
  request: unknown;
  cancelled = false;
  private md: CallMetadata | undefined;

  constructor(private readonly exchange: Exchange) {
    super({ objectMode: true });
  }

  /** The client went away (or the deadline passed): tell the handler, and stop. */
  cancel(): void {
    this.cancelled = true;
    this.emit("cancelled", "cancelled");
    this.destroy();
  }

  get metadata(): CallMetadata {
    this.md ??= metadataOf(this.exchange.headers);
    return this.md;
  }

  getPeer(): string {
    return peerOf(this.exchange.stream);
  }

  override _read(): void {}

  override _write(value: unknown, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.exchange.finished || this.exchange.stream.closed) {
      done();
      return;
    }
    const frame = this.exchange.frame(value);
    if (frame === undefined) {
      done();
      return;
    }
    this.exchange.write(frame, () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.exchange.succeed();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // destroy(serviceError) ends the call with that status and is not re-emitted as "error" (as
    // with grpc-js, handlers destroy a call to fail it).
    if (err) this.exchange.fail(statusOf(err));
    else this.exchange.fail({ code: GrpcStatus.CANCELLED, details: "the call was cancelled" });
    done(null);
  }
}

function peerOf(stream: H2Stream): string {
  return stream.connection.remoteAddress;
}

function frameMessage(body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

function status(code: GrpcStatusCode, details: string): Status & { readonly isGrpcStatus: true } {
  return { code, details, isGrpcStatus: true };
}

function isStatus(v: unknown): v is Status {
  return typeof v === "object" && v !== null && (v as { isGrpcStatus?: boolean }).isGrpcStatus === true;
}

/** A handler's error as a status: a grpc ServiceError keeps its code, anything else is INTERNAL. */
function statusOf(err: unknown): Status {
  if (isStatus(err)) return err;
  const e = err as { code?: unknown; details?: string; message?: string } | undefined;
  if (e && typeof e.code === "number") return { code: e.code as GrpcStatusCode, details: e.details ?? e.message ?? "" };
  return { code: GrpcStatus.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}

function statusFields(s: Status): HeaderField[] {
  const fields: HeaderField[] = [["grpc-status", String(s.code)]];
  if (s.details) fields.push(["grpc-message", percentEncode(s.details)]);
  return fields;
}

function sendTrailersOnly(stream: H2Stream, s: Status): void {
  if (stream.closed || stream.headersSent) return;
  stream.respond(encodeHeaders([...RESPONSE_FIELDS, ...statusFields(s)]), true);
}

function respondHttpError(stream: H2Stream, code: number): void {
  if (stream.headersSent) return;
  stream.respond(encodeHeaders([[":status", String(code)]]), true);
}

/** grpc-message is percent-encoded: bytes outside printable ASCII, and "%". */
function percentEncode(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** grpc-timeout: an integer and a unit (H, M, S, m, u, n). */
function parseTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
  return Math.max(1, Math.ceil(n * (unitMs[m[2] as string] as number)));
}

function metadataOf(headers: IncomingHeaders): CallMetadata {
  const md = new CallMetadata();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || key.startsWith("grpc-") || key === "content-type" || key === "te") continue;
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      try {
        md.add(key, key.endsWith("-bin") ? Buffer.from(v, "base64") : v);
      } catch {
        // A header gRPC metadata cannot hold is ignored, not fatal.
      }
    }
  }
  return md;
}
