import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import {
  decodeInternal,
  decodeInternalByReflection,
  encodeInternal,
  encodeInternalByReflection,
  PROTO_DIR,
} from "../src/etcd/proto.js";
import { serviceOf } from "../src/etcd/proto-client.js";
import {
  decodePutCommand,
  decodePutRequest,
  encodePut,
  encodePutCommand,
  encodePutResponse,
} from "../src/etcd/put-codec.js";
import type { InternalRequest } from "../src/etcd/wire.js";
import { mulberry32 } from "./helpers/prng.js";

// The direct put codec (src/etcd/put-codec.ts) against protobufjs' reflection, which every member
// used before it: the same bytes for every put, the same decoded command for every byte string.

type Deserialize = (b: Buffer) => Record<string, unknown>;
type Serialize = (v: object) => Buffer;
const kv = serviceOf("etcdserverpb.KV").service as unknown as Record<
  string,
  { requestSerialize: Serialize; requestDeserialize: Deserialize; responseSerialize: Serialize }
>;
/** A put as the gRPC layer hands it over: decoded with every default filled in. */
const received = (body: object): Record<string, unknown> => {
  const m = kv.Put;
  if (!m) throw new Error("no Put");
  return m.requestDeserialize(m.requestSerialize(body));
};

const EDGE_64 = ["0", "1", "127", "128", "16383", "16384", "4294967295", "4294967296", "9007199254740993"];
const EDGE_I64 = [...EDGE_64, "-1", "-128", "-4294967296", "9223372036854775807", "-9223372036854775808"];
const EDGE_U64 = [...EDGE_64, "18446744073709551615", "9223372036854775808"];

function randomPut(rand: () => number): InternalRequest {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const bytes = (max: number): Buffer => {
    const n = rand() < 0.2 ? 0 : Math.floor(rand() * max);
    return Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  };
  const sizes = [4, 130, 300, rand() < 0.02 ? 20_000 : 40];
  const lease = rand() < 0.5 ? "0" : pick(EDGE_I64);
  const put = received({
    key: bytes(pick(sizes)),
    value: bytes(pick(sizes)),
    lease,
    prev_kv: rand() < 0.3,
    ignore_value: rand() < 0.3,
    ignore_lease: rand() < 0.3,
  });
  const id = rand() < 0.1 ? "0" : pick([...EDGE_U64, String(Math.floor(rand() * 2 ** 53))]);
  return { id, put } as unknown as InternalRequest;
}

/** A decode's result or its error message, so that two decoders can be compared either way. */
function outcome(decode: () => unknown): unknown {
  try {
    return { decoded: decode() };
  } catch (err) {
    return { error: String(err) };
  }
}

describe("the direct put codec", () => {
  it("encodes 1,500 random puts to protobufjs' bytes and decodes them to its objects", () => {
    const rand = mulberry32(15);
    for (let i = 0; i < 1500; i++) {
      const req = randomPut(rand);
      const direct = encodePutCommand(req);
      expect(direct).toBeDefined();
      const reflective = encodeInternalByReflection(req);
      expect((direct as Buffer).equals(reflective), `put ${i}`).toBe(true);
      const decoded = decodePutCommand(reflective);
      expect(decoded).toBeDefined();
      expect(decoded).toEqual(decodeInternalByReflection(reflective));
      expect(encodeInternal(req).equals(reflective)).toBe(true);
      // Written into memory the caller hands out (the proposer's slabs, which are not zeroed):
      // every byte of it, and no more.
      const into = Buffer.alloc(reflective.length + 8, 0xee);
      let handedOut: Buffer | undefined;
      const inPlace = encodePut(BigInt(req.id as string), req.put as never, (n) => {
        handedOut = into.subarray(4, 4 + n);
        return handedOut;
      });
      expect(inPlace).toBe(handedOut);
      expect((inPlace as Buffer).equals(reflective), `put ${i} in place`).toBe(true);
      expect([...into.subarray(0, 4), ...into.subarray(4 + reflective.length)]).toEqual(Array(8).fill(0xee));
    }
  });

  it("leaves every other command, and bytes not in canonical form, to the generic path", () => {
    const put = received({ key: Buffer.from("k"), value: Buffer.from("v") });
    const txn = { id: "7", txn: { compare: [], success: [], failure: [] } } as unknown as InternalRequest;
    expect(encodePutCommand(txn)).toBeUndefined();
    expect(decodePutCommand(encodeInternal(txn))).toBeUndefined();
    expect(decodeInternal(encodeInternal(txn))).toEqual(decodeInternalByReflection(encodeInternal(txn)));
    expect(encodePutCommand({ id: "7", put, txn: {} } as unknown as InternalRequest)).toBeUndefined();
    expect(encodePutCommand({ id: "not a number", put } as unknown as InternalRequest)).toBeUndefined();

    const canonical = encodeInternal({ id: "300", put } as unknown as InternalRequest);
    expect([...canonical]).toEqual([0x08, 0xac, 0x02, 0x1a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76]);
    const variants = [
      [0x1a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x08, 0xac, 0x02], // id after put
      [0x08, 0xac, 0x02, 0x1a, 0x06, 0x12, 0x01, 0x76, 0x0a, 0x01, 0x6b], // value before key
      [0x08, 0x00, 0x1a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76], // id 0 written out
      [0x08, 0xac, 0x02, 0x1a, 0x08, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x20, 0x02], // prev_kv as 2
      [0x08, 0xac, 0x02, 0x1a, 0x08, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x18, 0x00], // lease 0 written out
      [0x08, 0xac, 0x02, 0x1a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x38, 0x01], // unknown field 7
      [0x08, 0xac, 0x02, 0x1a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x1a, 0x00], // put twice
    ].map((b) => Buffer.from(b));
    for (const v of variants) {
      expect(decodePutCommand(v), v.toString("hex")).toBeUndefined();
      // What the generic decoder makes of it is what members get, as before.
      expect(outcome(() => decodeInternal(v))).toEqual(outcome(() => decodeInternalByReflection(v)));
    }
    // Truncated: the generic decoder's own error, not a wrong command.
    const truncated = canonical.subarray(0, canonical.length - 1);
    expect(decodePutCommand(truncated)).toBeUndefined();
    expect(() => decodeInternal(truncated)).toThrow();
  });

  it("decodes clients' Put requests to protobufjs' objects, key and value as views into the message", () => {
    // protobufjs' own decoding of a PutRequest: wrapped as field 3 of a log command.
    const generic = (bytes: Buffer): unknown =>
      decodeInternalByReflection(Buffer.concat([Buffer.from([0x1a]), varint(bytes.length), bytes])).put;
    const serialize = kv.Put?.requestSerialize as Serialize;
    const deserialize = kv.Put?.requestDeserialize as Deserialize;
    const rand = mulberry32(16);
    for (let i = 0; i < 1500; i++) {
      const put = randomPut(rand).put as unknown as Record<string, unknown>;
      // As a client's encoder writes it, and with every field written, defaults too.
      const field = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), body]);
      const everyField = Buffer.concat([
        field(0x0a, Buffer.concat([varint((put.key as Buffer).length), put.key as Buffer])),
        field(0x12, Buffer.concat([varint((put.value as Buffer).length), put.value as Buffer])),
        field(0x18, varint(BigInt.asUintN(64, BigInt(put.lease as string)))),
        field(0x20, Buffer.from([put.prev_kv ? 1 : 0])),
        field(0x28, Buffer.from([put.ignore_value ? 1 : 0])),
        field(0x30, Buffer.from([put.ignore_lease ? 1 : 0])),
      ]);
      for (const bytes of [serialize(put), everyField]) {
        const direct = decodePutRequest(bytes);
        expect(direct, `put ${i}`).toBeDefined();
        expect(direct).toEqual(generic(bytes));
        expect(deserialize(bytes)).toEqual(generic(bytes));
        const { key, value } = direct as { key: Buffer; value: Buffer };
        if (key.length > 0) expect(key.buffer).toBe(bytes.buffer);
        if (value.length > 0) expect(value.buffer).toBe(bytes.buffer);
      }
    }
    // Anything else goes the generic way: fields out of order or twice, unknown fields, a flag
    // written as 2, a truncated message.
    const others = [
      [0x12, 0x01, 0x76, 0x0a, 0x01, 0x6b],
      [0x0a, 0x01, 0x6b, 0x0a, 0x01, 0x6c],
      [0x0a, 0x01, 0x6b, 0x38, 0x01],
      [0x0a, 0x01, 0x6b, 0x20, 0x02],
      [0x0a, 0x05, 0x6b],
    ].map((b) => Buffer.from(b));
    for (const bytes of others) {
      expect(decodePutRequest(bytes)).toBeUndefined();
      const expected = outcome(() => generic(bytes)) as { error?: string };
      // (the wrapped message's error names other offsets)
      if (expected.error) expect(() => deserialize(bytes)).toThrow(/index out of range/);
      else expect(deserialize(bytes)).toEqual(generic(bytes));
    }
    expect(decodePutRequest(Buffer.alloc(0))).toEqual(generic(Buffer.alloc(0)));
  });

  it("encodes a put's answer to the bytes protobufjs makes of it, and leaves others to it", () => {
    // protobufjs on its own, without the server's shortcuts.
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith("/") ? target : PROTO_DIR + target);
    root.loadSync("etcdserverpb/rpc.proto", { keepCase: true });
    const type = root.lookupType("etcdserverpb.PutResponse");
    const generic = (v: object): Buffer => Buffer.from(type.encode(type.fromObject(v)).finish());
    const serialize = kv.Put?.responseSerialize as Serialize;
    const rand = mulberry32(17);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const id = (): unknown => pick([undefined, 0, 1, 300, "0", "12345678901234567890", ...EDGE_U64]);
    for (let i = 0; i < 2000; i++) {
      const header: Record<string, unknown> = {};
      for (const f of ["cluster_id", "member_id", "revision", "raft_term"]) {
        const v = rand() < 0.5 ? id() : Math.floor(rand() * 2 ** (rand() < 0.5 ? 20 : 53));
        if (v !== undefined || rand() < 0.5) header[f] = v;
      }
      const value = rand() < 0.05 ? {} : { header };
      const direct = encodePutResponse(value);
      expect(direct, JSON.stringify(value)).toBeDefined();
      expect((direct as Buffer).equals(generic(value)), JSON.stringify(value)).toBe(true);
      expect(serialize(value).equals(generic(value))).toBe(true);
    }
    const prevKv = { key: Buffer.from("k"), value: Buffer.from("v"), create_revision: 2, mod_revision: 3 };
    const others: object[] = [
      { header: { revision: 3 }, prev_kv: prevKv },
      { header: { revision: -1 } },
      { header: { revision: 1.5 } },
      { header: { member_id: "-1" } },
      { header: { revision: 3, extra: 1 } },
    ];
    for (const value of others) {
      expect(encodePutResponse(value)).toBeUndefined();
      expect(outcome(() => serialize(value))).toEqual(outcome(() => generic(value)));
    }
  });

  it("decodes key and value as views into the entry, as the generic path does", () => {
    const entry = encodeInternal({
      id: "9",
      put: received({ key: Buffer.from("key"), value: Buffer.from("value") }),
    } as unknown as InternalRequest);
    const put = decodeInternal(entry).put as { key: Buffer; value: Buffer };
    expect(put.key.buffer).toBe(entry.buffer);
    expect(put.value.toString()).toBe("value");
  });
});

/** A protobuf varint. */
function varint(v: number | bigint): Buffer {
  let n = BigInt(v);
  const out: number[] = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return Buffer.from(out);
}
