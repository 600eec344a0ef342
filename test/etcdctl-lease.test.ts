import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bothPrinted, finishBoth, grantedLease, Pair, waitUntil } from "./helpers/etcdctl-diff.js";
import { etcdctl } from "./helpers/nodes.js";

/**
 * etcdctl lease commands against our member and a real etcd 3.4.23. Lease IDs differ by nature;
 * each side's IDs become <LEASE1>, <LEASE2>... in order of appearance, and commands name leases
 * by those placeholders.
 */
describe("etcdctl lease commands: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start();
  });
  afterAll(async () => {
    await pair?.stop();
  });

  it("grant, list (soonest expiry first), attach keys, timetolive --keys", async () => {
    expect((await pair.same(["lease", "grant", "300"])).stdout).toBe("lease <LEASE1> granted with TTL(300s)\n");
    await pair.same(["lease", "grant", "100", "-w", "json"]);
    await pair.same(["lease", "grant", "200", "-w", "fields"]);
    // Below the minimum TTL (1.5 election timeouts): raised to it.
    expect((await pair.same(["lease", "grant", "1"])).stdout).toBe("lease <LEASE4> granted with TTL(2s)\n");
    await pair.same(["lease", "revoke", "<LEASE4>"]);
    const list = await pair.same(["lease", "list"]);
    expect(list.stdout).toBe("found 3 leases\n<LEASE2>\n<LEASE3>\n<LEASE1>\n");
    await pair.same(["lease", "list", "-w", "json"]);

    for (const k of ["l/b", "l/a", "l/c"]) await pair.same(["put", k, "v", "--lease", "<LEASE1>"]);
    await pair.same(["put", "l/d", "v", "--lease", "<LEASE2>"]);
    await pair.same(["get", "l/", "--prefix", "-w", "json"]);
    const ttl = await pair.same(["lease", "timetolive", "<LEASE1>", "--keys"], { remainingTtl: true });
    expect(ttl.stdout).toBe("lease <LEASE1> granted with TTL(300s), remaining(<TTL>s), attached keys([l/a l/b l/c])\n");
    await pair.same(["lease", "timetolive", "<LEASE1>"], { remainingTtl: true });
    await pair.same(["lease", "timetolive", "<LEASE1>", "--keys", "-w", "json"], { remainingTtl: true });
    await pair.same(["lease", "timetolive", "<LEASE2>", "-w", "fields"], { remainingTtl: true });

    // Re-attaching a key to another lease, or to none, detaches it from the first.
    await pair.same(["put", "l/a", "v2", "--lease", "<LEASE2>"]);
    await pair.same(["put", "l/b", "v2"]);
    // --ignore-lease keeps the key's lease.
    await pair.same(["put", "l/c", "v3", "--ignore-lease"]);
    await pair.same(["lease", "timetolive", "<LEASE1>", "--keys"], { remainingTtl: true });
    await pair.same(["lease", "timetolive", "<LEASE2>", "--keys"], { remainingTtl: true });
    // Deleting a key detaches it too.
    await pair.same(["del", "l/d"]);
    await pair.same(["lease", "timetolive", "<LEASE2>", "--keys", "-w", "json"], { remainingTtl: true });
  });

  it("keep-alive --once renews to the full TTL", async () => {
    expect((await pair.same(["lease", "keep-alive", "--once", "<LEASE1>"])).stdout).toBe(
      "lease <LEASE1> keepalived with TTL(300)\n",
    );
    await pair.same(["lease", "keep-alive", "--once", "<LEASE3>", "-w", "json"]);
    await pair.same(["lease", "timetolive", "<LEASE1>"], { remainingTtl: true });
  });

  it("keep-alive stream ends when the lease is revoked", async () => {
    // etcdctl renews every TTL/3 seconds and learns of the revocation from the next renewal.
    const lease = grantedLease(await pair.same(["lease", "grant", "3"]));
    const ka = pair.spawn(["lease", "keep-alive", lease]);
    await bothPrinted(ka, "keepalived");
    await pair.same(["lease", "revoke", lease]);
    const r = await finishBoth(ka);
    expect(r.stdout).toContain(`lease ${lease} expired or revoked.`);
  });

  it("revoke deletes the attached keys", async () => {
    await pair.same(["get", "l/", "--prefix"]);
    expect((await pair.same(["lease", "revoke", "<LEASE1>"])).stdout).toBe("lease <LEASE1> revoked\n");
    expect((await pair.same(["get", "l/", "--prefix", "--keys-only"])).stdout).toBe("l/a\n\nl/b\n\n");
    await pair.same(["lease", "revoke", "<LEASE2>", "-w", "json"]);
    await pair.same(["get", "", "--from-key", "-w", "json"]);
    await pair.same(["lease", "list"]);
    expect((await pair.same(["lease", "timetolive", "<LEASE1>"])).stdout).toBe("lease <LEASE1> already expired\n");
    await pair.same(["lease", "timetolive", "<LEASE1>", "-w", "json"]);
  });

  it("lease errors: unknown lease, TTL too large, bad arguments", async () => {
    const revoke = await pair.same(["lease", "revoke", "<LEASE1>"]);
    expect(revoke.stderr).toContain("failed to revoke lease (etcdserver: requested lease not found)");
    await pair.same(["lease", "keep-alive", "--once", "<LEASE1>"]);
    await pair.same(["lease", "keep-alive", "--once", "1234"]);
    await pair.same(["lease", "timetolive", "1234", "--keys"]);
    await pair.same(["put", "k", "v", "--lease", "1234"]);
    const big = await pair.same(["lease", "grant", "9000000001"]);
    expect(big.stderr).toContain("etcdserver: too large lease TTL");
    await pair.same(["lease", "grant", "9000000000", "-w", "json"]);
    // Zero and negative TTLs get the minimum TTL.
    await pair.same(["lease", "grant", "0"]);
    await pair.same(["lease", "grant", "--", "-5"]);
    for (const args of [
      ["lease", "grant"],
      ["lease", "grant", "ten"],
      ["lease", "revoke"],
      ["lease", "revoke", "xyz"],
      ["lease", "timetolive"],
      ["lease", "keep-alive"],
    ]) {
      expect((await pair.same(args)).code, args.join(" ")).not.toBe(0);
    }
  });

  it("an expired lease takes its keys with it", async () => {
    const lease = grantedLease(await pair.same(["lease", "grant", "2"]));
    await pair.same(["put", "exp/a", "v", "--lease", lease]);
    await pair.same(["put", "exp/b", "v", "--lease", lease]);
    // Expiry runs on each server's clock: wait until both have revoked it, then compare.
    for (const side of pair.sides) {
      const gone = await waitUntil(
        async () => (await etcdctl(side.node.endpoint, ["get", "exp/", "--prefix", "--keys-only"])).stdout === "",
        15_000,
      );
      expect(gone, `${side.name} revoked the expired lease`).toBe(true);
    }
    await pair.same(["lease", "timetolive", lease]);
    await pair.same(["get", "", "--from-key", "-w", "json"]);
  });
});
