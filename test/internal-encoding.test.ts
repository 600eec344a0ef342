import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { decodeInternal, encodeInternal, PROTO_DIR } from "../src/etcd/proto.js";
import { serviceOf } from "../src/etcd/proto-client.js";
import type { InternalRequest } from "../src/etcd/wire.js";
import { BinaryReader, BinaryWriter } from "../src/util/binary.js";

/** A request as the gRPC layer hands it over: decoded with every default filled in. */
function asReceived(method: string, body: object): Record<string, unknown> {
  const def = serviceOf("etcdserverpb.KV").service as unknown as Record<
    string,
    { requestSerialize: (v: object) => Buffer; requestDeserialize: (b: Buffer) => Record<string, unknown> }
  >;
  const m = def[method];
  if (!m) throw new Error(`no method ${method}`);
  return m.requestDeserialize(m.requestSerialize(body));
}

describe("log command encoding", () => {
  it("leaves default-valued fields out, and decoding restores them", () => {
    const put = asReceived("Put", { key: Buffer.from("k"), value: Buffer.from("v") });
    const req = { id: "12345678901234567", put } as unknown as InternalRequest;
    const bytes = encodeInternal(req);
    // id (1 tag + 8 varint bytes) + put (1 tag + 1 length + key 3 + value 3): nothing else.
    expect(bytes.length).toBe(1 + 8 + 2 + 6);
    expect(decodeInternal(bytes)).toEqual(decodeInternal(encodeInternal(decodeInternal(bytes))));
    expect(decodeInternal(bytes).put).toEqual(put);
  });

  it("keeps oneof members that hold a default value, strings that read '0', and empty nested messages", () => {
    const txn = asReceived("Txn", {
      compare: [
        { result: 0, target: 3, key: Buffer.from("k"), value: Buffer.alloc(0) },
        { result: 0, target: 0, key: Buffer.from("k"), version: "0" },
      ],
      success: [{ request_range: { key: Buffer.from("k") } }, { request_delete_range: {} }],
      failure: [],
    });
    const back = decodeInternal(encodeInternal({ id: "7", txn } as unknown as InternalRequest));
    expect(back.txn).toEqual(txn);
    const compare = (back.txn as unknown as { compare: Array<Record<string, unknown>> }).compare;
    expect(compare[0]?.value).toEqual(Buffer.alloc(0));
    expect(compare[1]?.version).toBe("0");
    const member = decodeInternal(
      encodeInternal({ id: "8", member_attributes: { id: "9", name: "0", client_urls: ["0"] } } as InternalRequest),
    );
    expect(member.member_attributes).toEqual({ id: "9", name: "0", client_urls: ["0"] });
  });
});

describe("snapshot field encoding (BinaryWriter)", () => {
  const written = (write: (w: BinaryWriter) => void): Buffer => {
    const w = new BinaryWriter();
    write(w);
    return Buffer.from(w.finish());
  };
  const asBigInt = (v: bigint, signed: boolean): Buffer => {
    const b = Buffer.alloc(8);
    if (signed) b.writeBigInt64LE(v);
    else b.writeBigUInt64LE(v);
    return b;
  };

  it("writes unsigned 64-bit numbers as little-endian, the same bytes as through a BigInt", () => {
    for (const v of [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 123_456_789_012, Number.MAX_SAFE_INTEGER]) {
      expect(written((w) => w.u64(v))).toEqual(asBigInt(BigInt(v), false));
      expect(new BinaryReader(written((w) => w.u64(v))).u64()).toBe(v);
    }
  });

  it("refuses what does not fit: negative, fractional, unsafe", () => {
    for (const v of [-1, 1.5, Number.NaN, 2 ** 53]) expect(() => new BinaryWriter().u64(v)).toThrow(RangeError);
  });

  it("writes signed 64-bit IDs, zero included", () => {
    for (const v of [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n)]) {
      expect(written((w) => w.i64(v))).toEqual(asBigInt(v, true));
    }
  });
});

describe("response header encoding", () => {
  /** protobufjs' own generated conversion, from a root of ours that never had the fast path. */
  function referencePutResponse(): protobuf.Type {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith("/") ? target : PROTO_DIR + target);
    root.loadSync(["etcdserverpb/rpc.proto"], { keepCase: true });
    root.resolveAll();
    return root.lookupType("etcdserverpb.PutResponse");
  }

  it("encodes every header shape byte for byte as protobufjs' generated conversion does", () => {
    const put = (
      serviceOf("etcdserverpb.KV").service as unknown as Record<string, { responseSerialize(v: object): Buffer }>
    ).Put;
    if (!put) throw new Error("no Put method");
    const reference = referencePutResponse();
    const headers: Array<Record<string, unknown>> = [
      { cluster_id: "14841639068965178418", member_id: "10276657743932975437", revision: 42, raft_term: 3 },
      { cluster_id: "18446744073709551615", member_id: "0", revision: 0, raft_term: 0 },
      { cluster_id: "1", member_id: "4294967296", revision: Number.MAX_SAFE_INTEGER, raft_term: 2 ** 32 },
      // Shapes the fast path hands back to the generated conversion.
      { cluster_id: 7, member_id: "8", revision: "9", raft_term: "10" },
      { cluster_id: "12", member_id: "13", revision: -1, raft_term: 1 },
      { member_id: "13", revision: 5 },
    ];
    for (const header of headers) {
      for (const prev_kv of [undefined, { key: Buffer.from("k"), value: Buffer.from("v"), mod_revision: "5" }]) {
        const message = prev_kv ? { header, prev_kv } : { header };
        const expected = Buffer.from(reference.encode(reference.fromObject(message)).finish());
        expect(put.responseSerialize(message).toString("hex")).toBe(expected.toString("hex"));
      }
    }
  });
});
