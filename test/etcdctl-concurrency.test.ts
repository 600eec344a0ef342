import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bothPrinted, finishBoth, metric, Pair, stopBoth, waitForWatchers, waitUntil } from "./helpers/etcdctl-diff.js";
import { etcdctl, type RunningNode } from "./helpers/nodes.js";

/**
 * etcdctl elect and lock (built on sessions: a lease kept alive, a key per contender, watches on
 * the predecessor) against our member and a real etcd 3.4.23. Their keys end in the session's
 * lease ID in unpadded hex, which is normalized like every lease ID.
 */
describe("etcdctl elect and lock: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start();
  });
  afterAll(async () => {
    await pair?.stop();
  });

  /** Range requests served so far (etcdctl's own reads included). */
  function ranges(node: RunningNode): Promise<number> {
    return metric(node, "grpc_server_handled_total", ['grpc_method="Range"']);
  }

  /** Waits until each side has `count` keys under `prefix` (contenders queued). */
  async function waitForKeys(prefix: string, count: number): Promise<void> {
    for (const side of pair.sides) {
      const ok = await waitUntil(async () => {
        const r = await etcdctl(side.node.endpoint, ["get", prefix, "--prefix", "--keys-only"]);
        return r.stdout.split("\n").filter((l) => l.length > 0).length === count;
      });
      expect(ok, `${side.name}: ${count} keys under ${prefix}`).toBe(true);
    }
  }

  it("elect: a leader with a proposal, a successor, and an observer", async () => {
    const norm = { leaseKeyPrefixes: ["e1/"] };
    const observer = pair.spawn(["elect", "-l", "e1"]);
    const first = pair.spawn(["elect", "e1", "proposal-one"]);
    await bothPrinted(first, "proposal-one");
    await bothPrinted(observer, "proposal-one");
    const second = pair.spawn(["elect", "e1", "proposal-two"]);
    await waitForKeys("e1/", 2);
    // Simple output: JSON would base64-encode the keys and hide their lease IDs from normalization.
    await pair.same(["get", "e1/", "--prefix", "--sort-by", "CREATE", "-w", "fields"], norm);

    // The leader resigns on SIGINT; the successor is elected and the observer sees it.
    const r1 = await stopBoth(first, "SIGINT", norm);
    expect(r1).toMatchObject({ code: 0, stdout: "e1/<LEASE1>\nproposal-one\n" });
    await bothPrinted(second, "proposal-two");
    await bothPrinted(observer, "proposal-two");
    const reads = await Promise.all(pair.sides.map((s) => ranges(s.node)));
    const r2 = await stopBoth(second, "SIGINT", norm);
    expect(r2).toMatchObject({ code: 0, stdout: "e1/<LEASE2>\nproposal-two\n" });
    // After the resignation the observer reads again, then waits on a new watch: stop it only
    // once it is there, not while its read is in flight (etcdctl would log the cancelled read).
    for (const [i, side] of pair.sides.entries()) {
      const ok = await waitUntil(async () => (await ranges(side.node)) > (reads[i] ?? 0));
      expect(ok, `${side.name}: the observer read again`).toBe(true);
    }
    await waitForWatchers(pair, 1);
    const obs = await stopBoth(observer, "SIGINT", norm);
    expect(obs.stdout).toBe("e1/<LEASE1>\nproposal-one\ne1/<LEASE2>\nproposal-two\n");
    await pair.same(["get", "e1/", "--prefix"], norm);
  });

  it("elect: bad arguments", async () => {
    for (const args of [["elect"], ["elect", "e1"], ["elect", "-l"], ["elect", "a", "b", "c"]]) {
      expect((await pair.same(args)).code, args.join(" ")).not.toBe(0);
    }
  });

  it("lock: two lockers contend, the second runs its command once the first lets go", async () => {
    const norm = { leaseKeyPrefixes: ["l1/"] };
    const holder = pair.spawn(["lock", "l1"]);
    await bothPrinted(holder, "l1/");
    const waiter = pair.spawn(["lock", "l1", "--", "sh", "-c", 'echo "got $ETCD_LOCK_KEY at $ETCD_LOCK_REV"']);
    await waitForKeys("l1/", 2);
    await pair.same(["get", "l1/", "--prefix", "--sort-by", "CREATE", "--keys-only"], norm);
    // The waiter is still blocked while the holder holds the lock.
    expect(waiter.lab.stdout + waiter.etcd.stdout).toBe("");

    const held = await stopBoth(holder, "SIGINT", norm);
    expect(held.code).toBe(0);
    const got = await finishBoth(waiter, norm);
    expect(got).toMatchObject({ code: 0, stdout: expect.stringMatching(/^got l1\/<LEASE\d+> at \d+\n$/) });
    await pair.same(["get", "l1/", "--prefix"], norm);
  });

  it("lock: bad arguments", async () => {
    expect((await pair.same(["lock"])).code).not.toBe(0);
  });
});
