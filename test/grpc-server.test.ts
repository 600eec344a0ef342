import * as http2 from "node:http2";
import * as net from "node:net";
import * as zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcServer, type MethodDefinition } from "../src/etcd/grpc/server.js";
import { serviceOf } from "../src/etcd/proto-client.js";

/**
 * Our gRPC server (src/etcd/grpc/server.ts) at the protocol level: a raw HTTP/2 client sees
 * exactly what goes on the wire, and grpc-js's client checks that real clients understand it.
 */

interface Answer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

const KV = serviceOf("etcdserverpb.KV");
const definition = KV.service as unknown as Record<string, MethodDefinition>;
/** The full grpc-js definition of a method, with the client-side (de)serializers too. */
const full = KV.service as unknown as Record<
  string,
  { requestSerialize: (v: object) => Buffer; responseDeserialize: (b: Buffer) => unknown }
>;
const putRequest = (key: string, value = "v"): Buffer =>
  (full.Put as (typeof full)[string]).requestSerialize({ key: Buffer.from(key), value: Buffer.from(value) });

function frame(body: Buffer, compressed = false): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

describe("gRPC server", () => {
  let port = 0;
  let listener: net.Server;
  let server: GrpcServer;
  const cancelled: string[] = [];
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    server = new GrpcServer({ maxReceiveMessageLength: 1024 });
    server.addService(definition, {
      Put: ((call: { request: { key: Buffer; value: Buffer } }, cb: (e: unknown, v?: object) => void) => {
        const key = call.request.key.toString();
        if (key === "fail") {
          const err = new Error("etcdserver: nope — non-ASCII ✓ 100%") as grpc.ServiceError;
          err.code = grpc.status.FAILED_PRECONDITION;
          err.details = err.message;
          cb(err);
        } else if (key === "hang") {
          // never answers: the deadline does
        } else if (key === "wait") {
          // never answers; says when the client gives up
          (call as unknown as grpc.ServerUnaryCall<object, object>).on("cancelled", () => cancelled.push("Put"));
        } else if (key === "throw") {
          throw new Error("handler bug");
        } else {
          cb(null, { header: { revision: String(call.request.value.length) } });
        }
      }) as never,
    });
    server.addService(serviceOf("etcdserverpb.Watch").service as unknown as Record<string, MethodDefinition>, {
      Watch: ((call: grpc.ServerDuplexStream<object, object>) => {
        call.on("data", () => call.write({ watch_id: "7", created: true }));
        call.on("cancelled", () => cancelled.push("Watch"));
      }) as never,
    });
    listener = net.createServer((socket) => server.handleConnection(socket));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    port = (listener.address() as net.AddressInfo).port;
    session = http2.connect(`http://127.0.0.1:${port}`);
  });

  afterAll(() => {
    session?.close();
    server?.close();
    listener?.close();
  });

  /** A call left open for the test to write to and reset (the reset's stream error is expected). */
  function openCall(path: string): http2.ClientHttp2Stream {
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc" });
    req.on("error", () => {});
    return req;
  }

  /** A call whose request body goes out as the given pieces, each in a DATA frame of its own. */
  function call(path: string, body: Buffer | Buffer[], headers: http2.OutgoingHttpHeaders = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      const answer: Answer = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
      req.on("response", (h) => {
        answer.headers = h;
      });
      req.on("trailers", (t) => {
        answer.trailers = t;
      });
      req.on("data", (c: Buffer) => {
        answer.body = Buffer.concat([answer.body, c]);
      });
      req.on("end", () => resolve(answer));
      req.on("error", reject);
      if (Buffer.isBuffer(body)) {
        req.end(body);
        return;
      }
      const send = async (): Promise<void> => {
        for (const piece of body) await new Promise<void>((done) => req.write(piece, () => done()));
        req.end();
      };
      send().catch(reject);
    });
  }

  /** `bytes` cut at the given offsets. */
  function pieces(bytes: Buffer, cuts: number[]): Buffer[] {
    const out: Buffer[] = [];
    let from = 0;
    for (const cut of [...cuts, bytes.length]) {
      out.push(bytes.subarray(from, cut));
      from = cut;
    }
    return out;
  }

  it("answers a unary call with only :status and content-type, the message, then grpc-status 0", async () => {
    const a = await call("/etcdserverpb.KV/Put", frame(putRequest("k", "four")));
    expect(a.headers[":status"]).toBe(200);
    expect(Object.keys(a.headers).filter((k) => k !== "date")).toEqual([":status", "content-type"]);
    expect(a.headers["content-type"]).toBe("application/grpc");
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(a.body.readUInt32BE(1)).toBe(a.body.length - 5);
    const response = full.Put?.responseDeserialize(a.body.subarray(5)) as { header: { revision: string } };
    expect(response.header.revision).toBe("4");
  });

  it("works for grpc-js's client, errors included (code and percent-encoded details)", async () => {
    const client = new KV(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const put = (key: string): Promise<unknown> =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, (...a: unknown[]) => void>).Put?.call(
          client,
          { key: Buffer.from(key), value: Buffer.from("xy") },
          (err: Error | null, v: unknown) => (err ? reject(err) : resolve(v)),
        ),
      );
    expect(await put("a")).toMatchObject({ header: { revision: "2" } });
    await expect(put("fail")).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      details: "etcdserver: nope — non-ASCII ✓ 100%",
    });
    await expect(put("throw")).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: "handler bug" });
    client.close();
  });

  it("refuses unknown methods, non-POST requests and other content types", async () => {
    const unknown = await call("/etcdserverpb.KV/Nope", frame(Buffer.alloc(0)));
    expect(unknown.headers["grpc-status"]).toBe(String(grpc.status.UNIMPLEMENTED));
    expect(unknown.headers["grpc-message"]).toBe("unknown method /etcdserverpb.KV/Nope");
    const notGrpc = await call("/etcdserverpb.KV/Put", Buffer.from("{}"), { "content-type": "application/json" });
    expect(notGrpc.headers[":status"]).toBe(415);
    const get = await new Promise<number>((resolve) => {
      const req = session.request({ ":method": "GET", ":path": "/etcdserverpb.KV/Put" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.end();
    });
    expect(get).toBe(405);
  });

  it("refuses a message over the limit with grpc-go's words, and a missing message", async () => {
    const big = await call("/etcdserverpb.KV/Put", frame(putRequest("k", "x".repeat(2000))));
    expect(big.headers["grpc-status"]).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    expect(big.headers["grpc-message"]).toMatch(/^grpc: received message larger than max \(20\d\d vs\. 1024\)$/);
    const none = await call("/etcdserverpb.KV/Put", Buffer.alloc(0));
    expect(none.headers["grpc-status"]).toBe(String(grpc.status.INTERNAL));
  });

  it("puts a message together from several DATA frames, its 5-byte prefix split too", async () => {
    const message = frame(putRequest("k", "eight!!!"));
    for (const cuts of [[1], [2, 4], [5], [3, 9, 10], Array.from({ length: message.length - 1 }, (_, i) => i + 1)]) {
      const a = await call("/etcdserverpb.KV/Put", pieces(message, cuts));
      expect(a.trailers["grpc-status"], `cut at ${cuts.join(",")}`).toBe("0");
      const response = full.Put?.responseDeserialize(a.body.subarray(5)) as { header: { revision: string } };
      expect(response.header.revision).toBe("8");
    }
    // Over the limit, whichever way the prefix arrives.
    const big = frame(putRequest("k", "x".repeat(2000)));
    for (const cuts of [[2], [4, 600, 1200], [5]]) {
      const a = await call("/etcdserverpb.KV/Put", pieces(big, cuts));
      expect(a.headers["grpc-status"], `cut at ${cuts.join(",")}`).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    }
    // Two messages for a unary method, in one frame or split between two.
    const two = Buffer.concat([message, message]);
    for (const cuts of [[], [message.length - 2], [message.length + 3]]) {
      const a = await call("/etcdserverpb.KV/Put", pieces(two, cuts));
      expect(a.headers["grpc-status"], `cut at ${cuts.join(",")}`).toBe(String(grpc.status.UNIMPLEMENTED));
      expect(a.headers["grpc-message"]).toBe("grpc: 2 request messages for a unary method");
    }
  });

  it("tells a unary handler that listens for 'cancelled' when the client resets the call", async () => {
    const req = openCall("/etcdserverpb.KV/Put");
    await new Promise<void>((resolve) => req.end(frame(putRequest("wait")), () => resolve()));
    const before = cancelled.length;
    req.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 50 && cancelled.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(cancelled.slice(before)).toEqual(["Put"]);
  });

  it("reads gzip- and deflate-compressed messages; refuses an unknown compression", async () => {
    for (const [encoding, compress] of [
      ["gzip", zlib.gzipSync],
      ["deflate", zlib.deflateSync],
    ] as const) {
      const a = await call("/etcdserverpb.KV/Put", frame(compress(putRequest("k", "seven!!")), true), {
        "grpc-encoding": encoding,
      });
      expect(a.trailers["grpc-status"], encoding).toBe("0");
      const response = full.Put?.responseDeserialize(a.body.subarray(5)) as { header: { revision: string } };
      expect(response.header.revision).toBe("7");
    }
    const odd = await call("/etcdserverpb.KV/Put", frame(putRequest("k"), true), { "grpc-encoding": "snappy" });
    expect(odd.headers["grpc-status"]).toBe(String(grpc.status.UNIMPLEMENTED));
  });

  it("answers DEADLINE_EXCEEDED when grpc-timeout passes before the handler answers", async () => {
    const a = await call("/etcdserverpb.KV/Put", frame(putRequest("hang")), { "grpc-timeout": "50m" });
    expect(a.headers["grpc-status"]).toBe(String(grpc.status.DEADLINE_EXCEEDED));
  });

  it("streams: answers each request as it comes, and tells the handler when the client cancels", async () => {
    const req = openCall("/etcdserverpb.Watch/Watch");
    const got: Buffer[] = [];
    req.on("data", (c: Buffer) => got.push(c));
    // Two messages in one DATA frame, then a third whose prefix is split over two frames.
    req.write(Buffer.concat([frame(Buffer.alloc(0)), frame(Buffer.alloc(0))]));
    req.write(frame(Buffer.alloc(0)).subarray(0, 2));
    req.write(frame(Buffer.alloc(0)).subarray(2));
    for (let i = 0; i < 50 && Buffer.concat(got).length < 3 * 5; i++) await new Promise((r) => setTimeout(r, 20));
    const body = Buffer.concat(got);
    const first = body.readUInt32BE(1);
    expect(body.length).toBe(3 * (5 + first)); // three framed responses, the stream still open
    const before = cancelled.length;
    req.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 50 && cancelled.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(cancelled.slice(before)).toEqual(["Watch"]);
  });
});
