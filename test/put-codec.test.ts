import { describe, expect, it } from "vitest";
import {
  decodeInternal,
  decodeInternalByReflection,
  encodeInternal,
  encodeInternalByReflection,
} from "../src/etcd/proto.js";
import { serviceOf } from "../src/etcd/proto-client.js";
import { decodePutCommand, encodePutCommand } from "../src/etcd/put-codec.js";
import type { InternalRequest } from "../src/etcd/wire.js";
import { mulberry32 } from "./helpers/prng.js";

// The direct put codec (src/etcd/put-codec.ts) against protobufjs' reflection, which every member
// used before it: the same bytes for every put, the same decoded command for every byte string.

type Deserialize = (b: Buffer) => Record<string, unknown>;
type Serialize = (v: object) => Buffer;
const kv = serviceOf("etcdserverpb.KV").service as unknown as Record<
  string,
  { requestSerialize: Serialize; requestDeserialize: Deserialize }
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
