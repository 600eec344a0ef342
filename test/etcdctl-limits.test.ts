import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pair } from "./helpers/etcdctl-diff.js";

/** Request limits and the space quota, with both servers started with the same small limits. */
describe("etcdctl against small request limits: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start({ extraArgs: ["--max-txn-ops", "4", "--max-request-bytes", "4096"] });
  });
  afterAll(async () => {
    await pair?.stop();
  });

  const puts = (n: number, prefix = "t"): string =>
    Array.from({ length: n }, (_, i) => `put ${prefix}${i} v\n`).join("");

  it("txn with more than --max-txn-ops operations in any part", async () => {
    expect((await pair.same(["txn"], { input: `\n${puts(4)}\n\n` })).stdout).toMatch(/^SUCCESS/);
    const tooMany = await pair.same(["txn"], { input: `\n${puts(5)}\n\n` });
    expect(tooMany.stderr).toContain("etcdserver: too many operations in txn request");
    await pair.same(["txn"], { input: `\n\n${puts(5, "f")}\n` });
    const cmps = Array.from({ length: 5 }, (_, i) => `version("t${i}") > "0"\n`).join("");
    await pair.same(["txn"], { input: `${cmps}\nput ok v\n\n\n` });
    await pair.same(["get", "", "--from-key", "--keys-only"]);
  });

  it("requests over --max-request-bytes", async () => {
    const big = "x".repeat(5000);
    const put = await pair.same(["put", "big"], { input: big });
    expect(put.stderr).toContain("etcdserver: request is too large");
    // Many small puts that add up: the whole txn counts.
    const lines = Array.from({ length: 4 }, (_, i) => `put big${i} ${"y".repeat(1500)}\n`).join("");
    expect((await pair.same(["txn"], { input: `\n${lines}\n\n` })).stderr).toContain("request is too large");
    // Well under the limit: fine.
    expect((await pair.same(["put", "small"], { input: "x".repeat(1000) })).stdout).toBe("OK\n");
    await pair.same(["get", "big", "--prefix", "--keys-only"]);
  });
});

describe("etcdctl against a tiny space quota: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start({ extraArgs: ["--quota-backend-bytes", "65536"] });
  });
  afterAll(async () => {
    await pair?.stop();
  });

  it("NOSPACE: the alarm is raised, listed, blocks writes, and is disarmed", async () => {
    await pair.same(["put", "before", "v"]);
    expect((await pair.same(["alarm", "list"])).stdout).toBe("");
    const full = await pair.same(["put", "huge"], { input: "z".repeat(100_000) });
    expect(full.stderr).toContain("etcdserver: mvcc: database space exceeded");
    expect((await pair.same(["alarm", "list"])).stdout).toBe("memberID:<MEMBER> alarm:NOSPACE \n");
    await pair.same(["alarm", "list", "-w", "json"]);
    await pair.same(["endpoint", "status", "-w", "table"]);
    // While the alarm is active, writes fail even when small; reads and deletes still work.
    await pair.same(["put", "small", "v"]);
    await pair.same(["txn"], { input: "\nput small v\n\n\n" });
    await pair.same(["lease", "grant", "100"]);
    await pair.same(["get", "before"]);
    await pair.same(["del", "before"]);
    await pair.same(["txn"], { input: "\nget before\n\n\n" });
    expect((await pair.same(["alarm", "disarm"])).stdout).toBe("memberID:<MEMBER> alarm:NOSPACE \n");
    expect((await pair.same(["alarm", "list"])).stdout).toBe("");
    expect((await pair.same(["put", "small", "v"])).stdout).toBe("OK\n");
    await pair.same(["alarm", "disarm"]);
  });
});
