import * as http2 from "node:http2";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { encodeHeaders, type HeaderField, HpackDecoder, HpackError, huffmanDecode } from "../src/etcd/grpc/h2/hpack.js";
import { h2Frame as frameOf } from "./helpers/h2-frames.js";

/**
 * HPACK (src/etcd/grpc/h2/hpack.ts): the worked examples of RFC 7541 Appendix C, blocks that
 * nghttp2 (node:http2's client) encodes with Huffman strings and its dynamic table, blocks our
 * encoder writes read back by node:http2, and every malformed input the decoder must refuse.
 */

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("RFC 7541 Appendix C examples", () => {
  it("C.2: one field of each representation", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"))).toEqual([
      ["custom-key", "custom-header"],
    ]);
    expect(d.tableSize).toBe(55);
    const fresh = new HpackDecoder();
    expect(fresh.decode(hex("040c 2f73 616d 706c 652f 7061 7468"))).toEqual([[":path", "/sample/path"]]);
    expect(fresh.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))).toEqual([["password", "secret"]]);
    expect(fresh.tableSize).toBe(0); // without indexing and never indexed leave the table alone
    expect(fresh.decode(hex("82"))).toEqual([[":method", "GET"]]);
  });

  const requests: HeaderField[][] = [
    [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ],
    [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ],
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  ];

  it("C.3: three requests on one connection share the dynamic table", () => {
    const d = new HpackDecoder();
    const blocks = [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    const sizes = [57, 110, 164];
    blocks.forEach((block, i) => {
      expect(d.decode(hex(block))).toEqual(requests[i]);
      expect(d.tableSize).toBe(sizes[i]);
    });
  });

  it("C.4: the same requests with Huffman-coded strings", () => {
    const d = new HpackDecoder();
    const blocks = [
      "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    for (const [i, block] of blocks.entries()) expect(d.decode(hex(block))).toEqual(requests[i]);
    expect(d.tableSize).toBe(164);
  });
});

describe("decoding what nghttp2 encodes", () => {
  const servers: net.Server[] = [];
  const sessions: http2.ClientHttp2Session[] = [];
  afterEach(() => {
    for (const s of sessions.splice(0)) s.destroy();
    for (const s of servers.splice(0)) s.close();
  });

  /**
   * A bare TCP server that collects the header blocks of every request a node:http2 client sends
   * (HEADERS plus CONTINUATION, padding and priority removed). `settings` go out first.
   */
  async function captureBlocks(
    settings: Buffer,
    expected: number,
  ): Promise<{ url: string; blocks: Buffer[]; received: Promise<void> }> {
    const blocks: Buffer[] = [];
    let resolveReceived: () => void = () => {};
    const received = new Promise<void>((resolve) => {
      resolveReceived = resolve;
    });
    const server = net.createServer((socket) => {
      socket.write(frameOf(4, 0, 0, settings));
      let buffer = Buffer.alloc(0);
      let prefaceSeen = false;
      let pending: Buffer[] = [];
      socket.on("data", (chunk) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (!prefaceSeen) {
          if (buffer.length < 24) return;
          buffer = buffer.subarray(24);
          prefaceSeen = true;
        }
        while (buffer.length >= 9 && buffer.length >= 9 + buffer.readUIntBE(0, 3)) {
          const length = buffer.readUIntBE(0, 3);
          const [type, flags] = [buffer[3] ?? 0, buffer[4] ?? 0];
          let payload = buffer.subarray(9, 9 + length);
          buffer = buffer.subarray(9 + length);
          if (type === 4 && (flags & 1) === 0) socket.write(frameOf(4, 1, 0));
          if (type !== 1 && type !== 9) continue;
          if (type === 1) {
            const padding = flags & 0x8 ? (payload[0] ?? 0) : 0;
            if (flags & 0x8) payload = payload.subarray(1);
            if (flags & 0x20) payload = payload.subarray(5);
            payload = payload.subarray(0, payload.length - padding);
          }
          pending.push(Buffer.from(payload));
          if (flags & 0x4) {
            blocks.push(Buffer.concat(pending));
            pending = [];
            if (blocks.length >= expected) resolveReceived();
          }
        }
      });
      socket.on("error", () => {});
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    return { url: `http://127.0.0.1:${port}`, blocks, received };
  }

  /** Sends `requests` (extra header fields per request) and decodes the blocks in order. */
  async function roundTrip(requests: Array<Record<string, string>>, settings = Buffer.alloc(0), limit = 4096) {
    const capture = await captureBlocks(settings, requests.length);
    const session = http2.connect(capture.url);
    sessions.push(session);
    session.on("error", () => {});
    for (const extra of requests) {
      const stream = session.request({ ":method": "POST", ":path": "/etcdserverpb.KV/Put", ...extra });
      stream.on("error", () => {});
      // Let each request leave before the next, so that the blocks arrive in order.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await capture.received;
    const decoder = new HpackDecoder(limit);
    return { decoded: capture.blocks.map((b) => decoder.decode(b)), decoder };
  }

  const fieldsOf = (decoded: HeaderField[]): Record<string, string> =>
    Object.fromEntries(decoded.filter(([name]) => !name.startsWith(":")));

  it("reads static names, Huffman strings and indexed repeats from the dynamic table", async () => {
    const extra = {
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": "grpc-node-js/1.0 lab-test",
      "grpc-timeout": "4999m",
      "accept-encoding": "identity,deflate,gzip",
      authorization: "Bearer some.token.value-with-Punctuation_0123456789",
      "x-binary-bin": Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]).toString("base64"),
      "x-every-printable": Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join(""),
    };
    const { decoded, decoder } = await roundTrip([extra, extra, { ...extra, "grpc-timeout": "12S" }]);
    expect(decoded).toHaveLength(3);
    for (const [i, block] of decoded.entries()) {
      const want = i === 2 ? { ...extra, "grpc-timeout": "12S" } : extra;
      expect(fieldsOf(block)).toEqual(want);
      expect(block).toContainEqual([":method", "POST"]);
      expect(block).toContainEqual([":path", "/etcdserverpb.KV/Put"]);
    }
    expect(decoder.tableSize).toBeGreaterThan(0); // nghttp2 indexed fields, and we resolved them
  });

  it("follows a smaller table the peer was told to use, evicting old entries", async () => {
    // SETTINGS_HEADER_TABLE_SIZE (1) = 100: the client must shrink its table with a size update.
    const settings = Buffer.from([0, 1, 0, 0, 0, 100]);
    const requests = Array.from({ length: 6 }, (_, i) => ({ [`x-field-${i}`]: `value-${i}-${"v".repeat(30)}` }));
    const { decoded, decoder } = await roundTrip(requests, settings, 100);
    for (const [i, block] of decoded.entries()) expect(fieldsOf(block)).toEqual(requests[i]);
    expect(decoder.tableSize).toBeLessThanOrEqual(100);
  });
});

describe("our encoder", () => {
  it("writes blocks the decoder and node:http2 read back as given", async () => {
    const fields: HeaderField[] = [
      [":status", "200"],
      ["content-type", "application/grpc"],
      ["grpc-status", "0"],
      ["grpc-message", "etcdserver: requested lease not found"],
      ["x-long", "x".repeat(300)],
      ["x-latin1", "\u00ff\u0080 bytes"],
    ];
    const block = encodeHeaders(fields);
    expect(new HpackDecoder().decode(block)).toEqual(fields);
    expect(block[0]).toBe(0x88); // ":status: 200" whole from the static table

    // node:http2 decodes a HEADERS frame carrying the block as the response to its request.
    const server = net.createServer((socket) => {
      socket.write(frameOf(4, 0, 0));
      let seen = Buffer.alloc(0);
      socket.on("data", (chunk) => {
        seen = Buffer.concat([seen, chunk]);
        // Answer once the request's HEADERS frame (type 1, stream 1) has arrived.
        if (seen.includes(Buffer.from([1, 0, 0, 0, 1])) || seen.length > 24 + 9 + 9) {
          socket.write(frameOf(1, 0x4 | 0x1, 1, block));
        }
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    session.on("error", () => {});
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = session.request({ ":path": "/" });
        req.on("response", resolve);
        req.on("error", reject);
        req.end();
      });
      expect(headers[":status"]).toBe(200);
      expect(headers["grpc-message"]).toBe("etcdserver: requested lease not found");
      expect(headers["x-long"]).toBe("x".repeat(300));
      expect(Buffer.from(headers["x-latin1"] as string, "latin1")).toEqual(
        Buffer.from([0xff, 0x80, 32, 98, 121, 116, 101, 115]),
      );
    } finally {
      session.destroy();
      server.close();
    }
  });
});

describe("malformed blocks", () => {
  const refuse = (block: Buffer, message: RegExp, decoder = new HpackDecoder()): void => {
    expect(() => decoder.decode(block)).toThrow(HpackError);
    expect(() => new HpackDecoder().decode(block)).toThrow(message);
  };

  it("refuses index 0 and indexes beyond both tables", () => {
    refuse(hex("80"), /index 0/);
    refuse(hex("be"), /index 62 beyond the tables/); // nothing in the dynamic table yet
    refuse(hex("7f 00"), /index 63 beyond/); // a literal naming a missing entry
  });

  it("refuses blocks that end inside a field or a string", () => {
    refuse(hex("40"), /ends inside a field/);
    refuse(hex("400a 6375 7374"), /runs past the end/);
    refuse(hex("ff"), /ends inside a field/); // an integer with its continuation missing
  });

  it("refuses integers that would not fit", () => {
    refuse(hex("ff ff ff ff ff ff 0f"), /integer too large/);
  });

  it("refuses a table size update above our limit or after a field", () => {
    refuse(hex("3fe2 1f"), /above the limit 4096/); // 4097 (31 + 98 + 31 × 128)
    refuse(hex("82 20"), /size update after a header field/);
    // Within the limit it is taken, and shrinking to 0 empties the table.
    const d = new HpackDecoder();
    d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
    expect(d.decode(hex("20"))).toEqual([]);
    expect(d.tableSize).toBe(0);
  });

  it("refuses bad Huffman strings: EOS, long padding, padding with zeros", () => {
    // EOS is 30 ones: four 0xff bytes contain it whole.
    expect(() => huffmanDecode(hex("ff ff ff ff"))).toThrow(/EOS symbol/);
    // "0" is 00000 (5 bits); a whole byte of padding after it is too long.
    expect(() => huffmanDecode(hex("07 ff"))).toThrow(/longer than 7 bits/);
    expect(() => huffmanDecode(hex("00"))).toThrow(/not a prefix of EOS/); // "0" then 000
    expect(huffmanDecode(hex("07"))).toBe("0"); // "0" then 111
  });

  it("decodes a repeated Huffman-coded literal the same each time, and refuses a bad one each time", () => {
    // :path (static index 4) as a literal without indexing, as gRPC clients send it with every call.
    const example = hex("04 8c f1e3 c2e5 f23a 6ba0 ab90 f4ff"); // "www.example.com"
    const noCache = hex("04 86 a8eb 1064 9cbf"); // "no-cache"
    const d = new HpackDecoder();
    for (let i = 0; i < 3; i++) {
      expect(d.decode(example)).toEqual([[":path", "www.example.com"]]);
      expect(d.decode(noCache)).toEqual([[":path", "no-cache"]]);
      expect(d.decode(Buffer.concat([noCache, example]))).toEqual([
        [":path", "no-cache"],
        [":path", "www.example.com"],
      ]);
      expect(() => d.decode(hex("04 84 ffff ffff"))).toThrow(/EOS symbol/);
    }
    // More distinct strings than the decoder remembers, then the first again.
    const coded = ["07", "0f", "17", "1f", "27", "2f", "37", "3f", "47", "4f"]; // ten one-symbol strings
    const blocks = coded.map((c) => hex(`04 81 ${c}`));
    const expected = blocks.map((b) => d.decode(b)[0]?.[1]);
    expect(expected).toEqual(["0", "1", "2", "a", "c", "e", "i", "o", "s", "t"]);
    expect(blocks.map((b) => d.decode(b)[0]?.[1])).toEqual(expected);
    expect(d.tableSize).toBe(0);
  });

  it("an entry larger than the whole table empties it and is not added", () => {
    const d = new HpackDecoder(64);
    d.decode(hex("20")); // size update to 0 …
    d.decode(hex("3f21")); // … then to 64
    d.decode(Buffer.concat([hex("4001 61"), Buffer.from([1]), Buffer.from("b")])); // "a: b" is 34
    expect(d.tableSize).toBe(34);
    const big = "v".repeat(40); // 1 + 40 + 32 = 73 > 64
    d.decode(Buffer.concat([hex("4001 61"), Buffer.from([big.length]), Buffer.from(big)]));
    expect(d.tableSize).toBe(0);
    expect(() => d.decode(hex("be"))).toThrow(/beyond the tables/);
  });
});
