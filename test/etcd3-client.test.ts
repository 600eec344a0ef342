import { Etcd3, EtcdLockFailedError, type IKeyValue, type Watcher } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningNode, startLab, startRealEtcd } from "./helpers/nodes.js";

/**
 * The real `etcd3` npm client (1.1.2) against our member: the KV builders, transactions, watches,
 * leases (keep-alive, revoke, expiry), maintenance status, locks and STM. The same suite runs
 * against the real etcd 3.4.23 too, so every expectation here is etcd's own behaviour.
 */

interface SeenEvent {
  readonly type: "put" | "delete";
  readonly key: string;
  readonly value: string;
  readonly prev: string | undefined;
  readonly modRevision: number;
}

/** Queues a watcher's put/delete events in arrival order; `take(n)` waits for the next n. */
class Events {
  private readonly queue: SeenEvent[] = [];
  private wake: (() => void) | undefined;

  constructor(watcher: Watcher) {
    const push = (type: "put" | "delete", kv: IKeyValue, prev?: IKeyValue): void => {
      this.queue.push({
        type,
        key: kv.key.toString(),
        value: kv.value.toString(),
        prev: prev?.value.toString(),
        modRevision: Number(kv.mod_revision),
      });
      const w = this.wake;
      this.wake = undefined;
      w?.();
    };
    watcher.on("put", (kv, prev) => push("put", kv, prev));
    watcher.on("delete", (kv, prev) => push("delete", kv, prev));
  }

  async take(n: number): Promise<SeenEvent[]> {
    while (this.queue.length < n) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.queue.splice(0, n);
  }
}

const servers: [string, () => Promise<RunningNode>][] = [
  ["lab etcd", () => startLab()],
  ["real etcd 3.4", () => startRealEtcd()],
];

describe.each(servers)("the etcd3 npm client against %s", (_name, start) => {
  let node: RunningNode;
  let client: Etcd3;

  beforeAll(async () => {
    node = await start();
    client = new Etcd3({ hosts: `http://${node.endpoint}`, dialTimeout: 5000 });
  });

  afterAll(async () => {
    client?.close();
    await node?.stop();
  });

  it("puts, gets, lists with prefix/limit/sort, and deletes", async () => {
    await client.put("crud/a").value("3");
    await client.put("crud/b").value("1");
    await client.put("crud/c").value("2");
    await client.put("crudx").value("outside");

    expect(await client.get("crud/a").string()).toBe("3");
    expect(await client.get("crud/none").string()).toBeNull();
    expect(await client.get("crud/b").exists()).toBe(true);

    expect(await client.getAll().prefix("crud/").strings()).toEqual({ "crud/a": "3", "crud/b": "1", "crud/c": "2" });
    expect(await client.getAll().prefix("crud/").count()).toBe(3);
    expect(await client.getAll().prefix("crud/").limit(2).keys()).toEqual(["crud/a", "crud/b"]);
    expect(await client.getAll().prefix("crud/").sort("Key", "Descend").keys()).toEqual(["crud/c", "crud/b", "crud/a"]);
    expect(await client.getAll().prefix("crud/").sort("Value", "Ascend").limit(2).keys()).toEqual(["crud/b", "crud/c"]);
    const byMod = await client.getAll().prefix("crud/").sort("Mod", "Descend").exec();
    expect(byMod.kvs.map((kv) => kv.key.toString())).toEqual(["crud/c", "crud/b", "crud/a"]);
    expect(byMod.count).toBe("3");
    expect(byMod.more).toBe(false);

    // Put with the previous value, and touch (ignore_value) bumping only the version.
    const prev = await client.put("crud/a").value("4").getPrevious();
    expect(prev.value.toString()).toBe("3");
    await client.put("crud/a").touch();
    const a = (await client.get("crud/a").exec()).kvs[0];
    expect(a?.value.toString()).toBe("4");
    expect(a?.version).toBe("3");

    // An older revision still reads the old value.
    const atRev = await client
      .get("crud/a")
      .revision(Number(prev.header.revision) - 1)
      .string();
    expect(atRev).toBe("3");

    await client.delete().key("crud/b");
    expect(await client.get("crud/b").string()).toBeNull();
    const deleted = await client.delete().prefix("crud/").getPrevious();
    expect(deleted.map((kv) => kv.key.toString()).sort()).toEqual(["crud/a", "crud/c"]);
    expect(await client.getAll().prefix("crud/").count()).toBe(0);
    expect(await client.get("crudx").string()).toBe("outside");
  });

  it("answers a burst of writes far larger than one proposal pass, each once, at distinct revisions", async () => {
    // Our member proposes at most 64 queued requests per Raft pass and takes the rest in later
    // passes: none may be lost, answered twice, or left waiting.
    const n = 300;
    const responses = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        client
          .put(`burst/${String(i).padStart(3, "0")}`)
          .value(`v${i}`)
          .exec(),
      ),
    );
    const revisions = responses.map((r) => Number(r.header.revision)).sort((a, b) => a - b);
    expect(new Set(revisions).size).toBe(n);
    expect((revisions.at(-1) ?? 0) - (revisions[0] ?? 0)).toBe(n - 1);
    const stored = await client.getAll().prefix("burst/").strings();
    expect(Object.keys(stored)).toHaveLength(n);
    expect(stored["burst/299"]).toBe("v299");
  });

  it("runs transactions built with if/then/else", async () => {
    await client.put("txn/k").value("v1");
    const ok = await client
      .if("txn/k", "Value", "==", "v1")
      .then(client.put("txn/k").value("v2"), client.get("txn/k"))
      .else(client.put("txn/other").value("else"))
      .commit();
    expect(ok.succeeded).toBe(true);
    expect(ok.responses.map((r) => (r.response_put ? "put" : r.response_range ? "range" : "other"))).toEqual([
      "put",
      "range",
    ]);
    expect(ok.responses[1]?.response_range?.kvs[0]?.value.toString()).toBe("v2");
    expect(await client.get("txn/k").string()).toBe("v2");

    const failed = await client
      .if("txn/k", "Value", "==", "v1")
      .then(client.put("txn/k").value("v3"))
      .else(client.put("txn/other").value("else"), client.delete().key("txn/k"))
      .commit();
    expect(failed.succeeded).toBe(false);
    expect(await client.get("txn/k").string()).toBeNull();
    expect(await client.get("txn/other").string()).toBe("else");

    // Create == 0: "does not exist" (what locks and elections build on); Version > comparisons.
    const create = await client.if("txn/new", "Create", "==", 0).then(client.put("txn/new").value("1")).commit();
    expect(create.succeeded).toBe(true);
    const again = await client.if("txn/new", "Create", "==", 0).then(client.put("txn/new").value("2")).commit();
    expect(again.succeeded).toBe(false);
    const ver = await client
      .if("txn/new", "Version", ">", 0)
      .and("txn/other", "Mod", "<", Number(failed.header.revision) + 1)
      .then(client.put("txn/new").value("3"))
      .commit();
    expect(ver.succeeded).toBe(true);
    expect(await client.get("txn/new").string()).toBe("3");
  });

  it("watches a key and a prefix: put and delete events, with previous values", async () => {
    const keyWatcher = await client.watch().key("w/a").withPreviousKV().create();
    const prefixWatcher = await client.watch().prefix("w/").create();
    const onKey = new Events(keyWatcher);
    const onPrefix = new Events(prefixWatcher);

    await client.put("w/a").value("1");
    await client.put("w/b").value("2");
    await client.put("w/a").value("3");
    await client.delete().key("w/a");
    await client.put("wx").value("not under the prefix");
    await client.delete().key("w/b");

    const keyEvents = await onKey.take(3);
    expect(keyEvents.map((e) => [e.type, e.key, e.value, e.prev])).toEqual([
      ["put", "w/a", "1", undefined],
      ["put", "w/a", "3", "1"],
      ["delete", "w/a", "", "3"],
    ]);
    const prefixEvents = await onPrefix.take(5);
    expect(prefixEvents.map((e) => `${e.type} ${e.key}`)).toEqual([
      "put w/a",
      "put w/b",
      "put w/a",
      "delete w/a",
      "delete w/b",
    ]);
    // One revision per write, in order.
    const revs = prefixEvents.map((e) => e.modRevision);
    expect(revs).toEqual([...revs].sort((x, y) => x - y));
    expect(new Set(revs).size).toBe(5);

    // A watcher from a past revision replays history.
    const replay = await client.watch().key("w/a").startRevision(String(revs[0])).create();
    const replayed = await new Events(replay).take(3);
    expect(replayed.map((e) => `${e.type} ${e.value}`)).toEqual(["put 1", "put 3", "delete "]);

    await Promise.all([keyWatcher.cancel(), prefixWatcher.cancel(), replay.cancel()]);
  });

  it("grants leases, attaches keys, keeps alive, and revoking deletes the keys", async () => {
    const lease = client.lease(60);
    const kept = new Promise<{ TTL: string; ID: string }>((resolve) => lease.once("keepaliveSucceeded", resolve));
    const id = await lease.grant();
    expect(id).not.toBe("0");
    await lease.put("lease/a").value("1");
    await lease.put("lease/b").value("2");

    const alive = await kept;
    expect(alive.ID).toBe(id);
    expect(alive.TTL).toBe("60");
    const once = await lease.keepaliveOnce();
    expect(once.TTL).toBe("60");

    const a = (await client.get("lease/a").exec()).kvs[0];
    expect(a?.lease).toBe(id);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    expect(ttl.grantedTTL).toBe("60");
    expect(Number(ttl.TTL)).toBeGreaterThan(0);
    expect(Number(ttl.TTL)).toBeLessThanOrEqual(60);
    expect(ttl.keys.map((k) => k.toString()).sort()).toEqual(["lease/a", "lease/b"]);
    const all = await client.leaseClient.leaseLeases();
    expect(all.leases.map((l) => l.ID)).toContain(id);

    const watcher = await client.watch().prefix("lease/").create();
    const events = new Events(watcher);
    await lease.revoke();
    const deletes = await events.take(2);
    expect(deletes.map((e) => `${e.type} ${e.key}`).sort()).toEqual(["delete lease/a", "delete lease/b"]);
    // Both keys go in the one revision of the revoke.
    expect(deletes[0]?.modRevision).toBe(deletes[1]?.modRevision);
    expect(await client.getAll().prefix("lease/").count()).toBe(0);
    const gone = await client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    expect(gone.TTL).toBe("-1");
    await watcher.cancel();
  });

  it("deletes a lease's keys when it expires without keep-alives", async () => {
    const watcher = await client.watch().key("expiring/k").create();
    const events = new Events(watcher);
    const lease = client.lease(1, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put("expiring/k").value("soon gone");
    const [put, del] = await events.take(2);
    expect(put?.type).toBe("put");
    expect(del?.type).toBe("delete");
    expect(await client.get("expiring/k").string()).toBeNull();
    const gone = await client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    expect(gone.TTL).toBe("-1");
    await watcher.cancel();
    lease.release();
  });

  it("reports member status through maintenance.status()", async () => {
    const status = await client.maintenance.status();
    expect(status.version).toBe("3.4.23");
    expect(Number(status.dbSize)).toBeGreaterThan(0);
    expect(status.leader).toBe(status.header.member_id);
    expect(Number(status.raftTerm)).toBeGreaterThan(0);
    expect(Number(status.raftIndex)).toBeGreaterThan(0);
  });

  it("takes a lock with client.lock().do(): exclusive while held, released after", async () => {
    const result = await client
      .lock("locks/x")
      .ttl(30)
      .do(async () => {
        const holder = (await client.get("locks/x").exec()).kvs[0];
        expect(holder).toBeDefined();
        expect(holder?.lease).not.toBe("0");
        await expect(client.lock("locks/x").acquire()).rejects.toBeInstanceOf(EtcdLockFailedError);
        return "done";
      });
    expect(result).toBe("done");
    expect(await client.get("locks/x").string()).toBeNull();
    // Free again.
    const again = await client.lock("locks/x").ttl(30).acquire();
    await again.release();
  });

  it("runs concurrent STM transactions without losing updates", async () => {
    await client.put("stm/n").value("0");
    const workers = 6;
    await Promise.all(
      Array.from({ length: workers }, () =>
        client.stm({ retries: 50 }).transact(async (tx) => {
          const n = await tx.get("stm/n").number();
          await tx.put("stm/n").value(String((n ?? 0) + 1));
        }),
      ),
    );
    expect(await client.get("stm/n").number()).toBe(workers);
  });
});
