import * as http2 from "node:http2";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { H2Connection, type H2Stream, type IncomingHeaders } from "../src/etcd/grpc/h2/connection.js";
import { encodeHeaders, HpackDecoder } from "../src/etcd/grpc/h2/hpack.js";
import { h2Frame as frameOf, H2_PREFACE as PREFACE } from "./helpers/h2-frames.js";

/**
 * The member's own HTTP/2 server framing (src/etcd/grpc/h2/connection.ts), below gRPC: against
 * node:http2's client (nghttp2) for the ordinary paths and flow control, and against a raw
 * client for what a library would not send (CONTINUATION, padding, PING, protocol errors).
 */

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Serves: each stream's request body comes back as the response body, then trailers x-bytes. */
type Behaviour = (stream: H2Stream, headers: IncomingHeaders) => void;
const echo: Behaviour = (stream) => {
  const parts: Buffer[] = [];
  stream.listener = {
    data: (chunk) => parts.push(chunk),
    end: () => {
      const body = Buffer.concat(parts);
      stream.respond(encodeHeaders([[":status", "200"]]));
      if (body.length > 0) stream.write(body);
      stream.end(encodeHeaders([["x-bytes", String(body.length)]]));
    },
    close: () => {},
  };
};

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
const sessions: http2.ClientHttp2Session[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

async function serve(behaviour: Behaviour): Promise<{ port: number; streams: H2Stream[]; closed: Promise<void> }> {
  const streams: H2Stream[] = [];
  let closedResolve: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    closedResolve = resolve;
  });
  const server = net.createServer((socket) => {
    sockets.push(socket);
    new H2Connection(socket, {
      onStream: (stream, headers) => {
        streams.push(stream);
        behaviour(stream, headers);
      },
      onClose: closedResolve,
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, streams, closed };
}

/** A raw client: sends bytes, collects whole frames. */
async function rawClient(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  const frames: Frame[] = [];
  const chunks: Buffer[] = [];
  let input = Buffer.alloc(0);
  let ended = false;
  let waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    input = Buffer.concat([input, chunk]);
    while (input.length >= 9 && input.length >= 9 + input.readUIntBE(0, 3)) {
      const length = input.readUIntBE(0, 3);
      frames.push({
        type: input[3] ?? 0,
        flags: input[4] ?? 0,
        stream: input.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(input.subarray(9, 9 + length)),
      });
      input = input.subarray(9 + length);
    }
    wake();
  });
  socket.on("close", () => {
    ended = true;
    wake();
  });
  socket.on("error", () => {});
  const until = async (test: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!test()) {
      if (ended || Date.now() > deadline)
        throw new Error(`gave up waiting; frames: ${JSON.stringify(frames.map((f) => [f.type, f.flags, f.stream]))}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  };
  return {
    socket,
    frames,
    chunks,
    get ended() {
      return ended;
    },
    send: (...buffers: Buffer[]) => socket.write(Buffer.concat(buffers)),
    until,
    reset: () => {
      waiters = [];
    },
  };
}

const request = (path = "/echo"): Buffer =>
  encodeHeaders([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
  ]);

async function nodeClient(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings });
  sessions.push(session);
  session.on("error", () => {});
  return session;
}

async function call(
  session: http2.ClientHttp2Session,
  body: Buffer,
  readSlowly = false,
): Promise<{ status: number; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/echo", "content-type": "application/grpc" });
    const parts: Buffer[] = [];
    let status = 0;
    let trailers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => {
      status = Number(h[":status"]);
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("data", (chunk: Buffer) => {
      parts.push(chunk);
      if (readSlowly) {
        req.pause();
        setTimeout(() => req.resume(), 5);
      }
    });
    req.on("end", () => resolve({ status, body: Buffer.concat(parts), trailers }));
    req.on("error", reject);
    req.end(body);
  });
}

describe("with node:http2's client", () => {
  it("answers requests of any size, many at once, with the body and trailers intact", async () => {
    const { port } = await serve(echo);
    const session = await nodeClient(port);
    const bodies = [0, 1, 100, 16_384, 16_385, 70_000, 300_000].map((n, i) => Buffer.alloc(n, 97 + i));
    const answers = await Promise.all(bodies.map((b) => call(session, b)));
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe(200);
      expect(a.body.equals(bodies[i] as Buffer)).toBe(true);
      expect(a.trailers["x-bytes"]).toBe(String((bodies[i] as Buffer).length));
    }
  });

  it("sends no more than the client's windows allow: a slow reader with a small window gets all of a large answer", async () => {
    const { port, streams } = await serve(echo);
    const session = await nodeClient(port, { initialWindowSize: 1024 });
    const body = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => i % 251));
    const answer = await call(session, body, true);
    expect(answer.body.equals(body)).toBe(true);
    expect(answer.trailers["x-bytes"]).toBe(String(body.length));
    expect(streams[0]?.destroyed).toBe(true);
  });

  it("tells the server when the client resets a stream, and drops what was still queued for it", async () => {
    let written = 0;
    const { port, streams } = await serve((stream, headers) => {
      if (headers[":path"] === "/echo") {
        echo(stream, headers);
        return;
      }
      stream.respond(encodeHeaders([[":status", "200"]]));
      // More than the client's window (64 KiB): most of it stays queued.
      for (let i = 0; i < 64; i++) stream.write(Buffer.alloc(16_384, 1), () => written++);
    });
    const session = await nodeClient(port);
    const req = session.request({ ":method": "POST", ":path": "/stream" });
    req.on("error", () => {});
    await new Promise<void>((resolve) => req.once("response", () => resolve()));
    const closed = new Promise<void>((resolve) => {
      const stream = streams[0];
      if (stream) stream.listener = { data: () => {}, end: () => {}, close: resolve };
    });
    req.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    expect(streams[0]?.destroyed).toBe(true);
    expect(written).toBeLessThan(64);
    // The connection goes on serving.
    expect((await call(session, Buffer.from("after"))).body.toString()).toBe("after");
  });
});

describe("with a raw client", () => {
  it("answers a small call in one write: HEADERS, DATA and the trailing HEADERS together", async () => {
    const { port } = await serve(echo);
    const c = await rawClient(port);
    c.send(PREFACE, frameOf(4, 0, 0));
    await c.until(() => c.frames.some((f) => f.type === 4 && f.flags === 0));
    const before = c.chunks.length;
    c.send(frameOf(1, 0x4, 1, request()), frameOf(0, 0x1, 1, Buffer.from("hello")));
    await c.until(() => c.frames.some((f) => f.type === 1 && f.stream === 1 && f.flags & 0x1));
    const answerChunks = c.chunks.slice(before).filter((chunk) => chunk.length > 0);
    expect(answerChunks).toHaveLength(1); // all three frames arrived in one segment
    const ours = c.frames.filter((f) => f.stream === 1);
    expect(ours.map((f) => [f.type, f.flags])).toEqual([
      [1, 0x4], // HEADERS, END_HEADERS
      [0, 0], // DATA
      [1, 0x5], // trailers: END_HEADERS | END_STREAM
    ]);
    expect(ours[1]?.payload.toString()).toBe("hello");
    expect(new HpackDecoder().decode(ours[2]?.payload as Buffer)).toEqual([["x-bytes", "5"]]);
  });

  it("acknowledges SETTINGS and PING, and reads HEADERS split over CONTINUATION with padding and priority", async () => {
    const seen: IncomingHeaders[] = [];
    const { port } = await serve((stream, headers) => {
      seen.push(headers);
      echo(stream, headers);
    });
    const c = await rawClient(port);
    c.send(PREFACE, frameOf(4, 0, 0, Buffer.from([0, 4, 0, 0, 0x40, 0])), frameOf(6, 0, 0, Buffer.from("12345678")));
    await c.until(() => c.frames.some((f) => f.type === 6 && f.flags === 1));
    expect(c.frames.find((f) => f.type === 6)?.payload.toString()).toBe("12345678");
    expect(c.frames.some((f) => f.type === 4 && f.flags === 1)).toBe(true); // our ACK of their SETTINGS

    const block = encodeHeaders([
      [":method", "POST"],
      [":path", "/echo"],
      ["x-big", "b".repeat(40_000)],
      ["x-repeated", "one"],
      ["x-repeated", "two"],
    ]);
    // HEADERS with PADDED (3 bytes) and PRIORITY, then two CONTINUATIONs.
    const first = Buffer.concat([
      Buffer.from([3]),
      Buffer.from([0, 0, 0, 0, 16]),
      block.subarray(0, 10_000),
      Buffer.alloc(3),
    ]);
    c.send(frameOf(1, 0x8 | 0x20, 3, first), frameOf(9, 0, 3, block.subarray(10_000, 26_000)));
    c.send(frameOf(9, 0x4, 3, block.subarray(26_000)));
    // A padded DATA frame that ends the request.
    c.send(frameOf(0, 0x8 | 0x1, 3, Buffer.concat([Buffer.from([2]), Buffer.from("xy"), Buffer.alloc(2)])));
    await c.until(() => c.frames.some((f) => f.type === 1 && f.stream === 3 && f.flags & 0x1));
    expect(seen[0]?.["x-big"]).toBe("b".repeat(40_000));
    expect(seen[0]?.["x-repeated"]).toEqual(["one", "two"]);
    expect(c.frames.find((f) => f.type === 0 && f.stream === 3)?.payload.toString()).toBe("xy");
  });

  const goAwayOf = async (bytes: Buffer[]): Promise<number> => {
    const { port, closed } = await serve(echo);
    const c = await rawClient(port);
    for (const b of bytes) c.send(b);
    await c.until(() => c.frames.some((f) => f.type === 7));
    await closed;
    return (c.frames.find((f) => f.type === 7) as Frame).payload.readUInt32BE(4);
  };

  it("closes the connection with GOAWAY and the protocol's error code on what it must refuse", async () => {
    expect(await goAwayOf([Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")])).toBe(1); // not the preface
    expect(await goAwayOf([PREFACE, frameOf(0, 0, 1, Buffer.alloc(20_000))])).toBe(6); // above 16 KiB
    expect(await goAwayOf([PREFACE, frameOf(1, 0x4, 1, Buffer.from([0x80]))])).toBe(9); // HPACK index 0
    expect(await goAwayOf([PREFACE, frameOf(1, 0, 1, request()), frameOf(0, 0, 1, Buffer.from("x"))])).toBe(1); // CONTINUATION expected
    expect(await goAwayOf([PREFACE, frameOf(1, 0x4, 2, request())])).toBe(1); // even stream id
    expect(await goAwayOf([PREFACE, frameOf(8, 0, 0, Buffer.from([0, 0, 0, 0]))])).toBe(1); // window + 0
  });

  it("refuses a stream window that would pass 2^31 - 1 with RST_STREAM, ignores that stream's late frames, and goes on serving", async () => {
    const { port } = await serve((stream) => stream.respond(encodeHeaders([[":status", "200"]])));
    const c = await rawClient(port);
    c.send(PREFACE, frameOf(4, 0, 0), frameOf(1, 0x4, 1, request()));
    await c.until(() => c.frames.some((f) => f.type === 1 && f.stream === 1));
    c.send(frameOf(8, 0, 1, Buffer.from([0x7f, 0xff, 0xff, 0xff])));
    await c.until(() => c.frames.some((f) => f.type === 3 && f.stream === 1));
    expect(c.frames.find((f) => f.type === 3)?.payload.readUInt32BE(0)).toBe(3); // FLOW_CONTROL_ERROR
    c.send(frameOf(1, 0x5, 3, request()));
    await c.until(() => c.frames.some((f) => f.type === 1 && f.stream === 3));
    // Late frames on the stream that was reset (trailers, data) are ignored, not a connection error.
    c.send(frameOf(1, 0x5, 1, encodeHeaders([["x-late", "1"]])), frameOf(0, 0x1, 1, Buffer.from("late")));
    c.send(frameOf(1, 0x5, 5, request()));
    await c.until(() => c.frames.some((f) => f.type === 1 && f.stream === 5));
    expect(c.frames.some((f) => f.type === 7)).toBe(false);
    expect(c.ended).toBe(false);
  });
});
