import { afterEach, describe, expect, it } from "vitest";
import { type ClusterMember, setFaults, TestCluster } from "./helpers/cluster.js";
import { connect, num, prefixEnd } from "./helpers/grpc-client.js";
import { etcdctl, sleep } from "./helpers/nodes.js";
import { Workload } from "./helpers/workload.js";

/**
 * Member and leader failures on real `lab etcd` processes, with a recorded client workload checked
 * for linearizability and for acknowledged writes that went missing.
 */

let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.killAll();
  cluster = undefined;
});

/** Every acknowledged write is in every member's history (etcdctl get --rev at its revision). */
async function expectNothingLost(c: TestCluster, w: Workload): Promise<void> {
  const clients = c.endpoints.map((e) => connect(e));
  try {
    for (const [key, writes] of w.acknowledged) {
      for (const { value, revision } of writes) {
        for (const client of clients) {
          const res = await client.range(key, undefined, { revision });
          const kv = res.kvs[0];
          expect(kv && Buffer.from(kv.value).toString(), `${key}@${revision} on ${client.endpoint}`).toBe(value);
          expect(num(kv?.mod_revision)).toBe(revision);
        }
      }
    }
  } finally {
    for (const client of clients) client.close();
  }
}

function expectLinearizable(w: Workload): void {
  const { linearizable, revisions } = w.check();
  const failures = linearizable.failures.map((f) => f.explanation).join("\n\n");
  expect(linearizable.result, failures).toBe("linearizable");
  expect(revisions.ok, revisions.violations.join("\n")).toBe(true);
  expect(w.recorder.size).toBeGreaterThan(100);
}

function leaderOf(c: TestCluster): Promise<ClusterMember> {
  return c.waitLeader();
}

describe("failures in a five-member cluster", () => {
  it("keeps committing with two of five down (the leader among them), linearizably, and catches them up", async () => {
    cluster = await TestCluster.start({ size: 5 });
    const c = cluster;
    const leader = await leaderOf(c);
    const other = c.members.find((m) => m !== leader) as ClusterMember;
    const w = new Workload({ endpoints: () => c.endpoints, clients: 8, keys: 6 });
    try {
      await w.waitWrites(150, 20_000);
      await c.kill(leader);
      await c.kill(other);
      w.mark();
      const newLeader = await c.waitLeader();
      expect([leader.name, other.name]).not.toContain(newLeader.name);
      await w.waitWrites(150, 20_000);
      await c.restart(leader);
      await c.restart(other);
      w.mark();
      await w.waitWrites(100, 20_000);
    } finally {
      await w.stop();
    }
    await c.waitLeader();
    await c.waitConverged();
    await expectNothingLost(c, w);
    expectLinearizable(w);
  });
});

describe("failures in a three-member cluster", () => {
  it("survives SIGKILL of the leader under write load: a new leader, writes resume, nothing acknowledged is lost", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const oldLeader = await leaderOf(c);
    const w = new Workload({ endpoints: () => c.endpoints, clients: 6, keys: 5 });
    try {
      await w.waitWrites(200, 20_000);
      await c.kill(oldLeader);
      w.mark();
      const newLeader = await c.waitLeader();
      expect(newLeader.name).not.toBe(oldLeader.name);
      await w.waitWrites(200, 20_000);
      await c.restart(oldLeader);
      w.mark();
      await w.waitWrites(100, 20_000);
    } finally {
      await w.stop();
    }
    await c.waitConverged();
    await expectNothingLost(c, w);
    expectLinearizable(w);
  });

  it("orders the election once the leader's connection closes: the survivor ranked first leads", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const ordered =
      /"msg":"lost the connection to the leader; ordered the election".*?"rank":(\d+),"election-ticks":(\d+)/;
    // Three leader kills: with randomized timeouts either survivor could lead each time.
    for (let round = 1; round <= 3; round++) {
      const leader = await c.waitLeader();
      const survivors = c.members.filter((m) => m !== leader);
      const seen = survivors.map((m) => m.output.length);
      await c.kill(leader);
      const next = await c.waitLeader();
      const found = survivors.map((m, i) => ordered.exec(m.output.slice(seen[i])));
      expect(
        found.map((f) => f && [f[1], f[2]]),
        `round ${round}: ${survivors.map((m) => m.output.slice(-1500)).join("\n---\n")}`,
      ).toEqual(
        found[0]?.[1] === "0"
          ? [
              ["0", "10"],
              ["1", "12"],
            ]
          : [
              ["1", "12"],
              ["0", "10"],
            ],
      );
      const first = survivors[found.findIndex((f) => f?.[1] === "0")] as ClusterMember;
      expect(next.name, `round ${round}`).toBe(first.name);
      await c.restart(leader);
      await c.waitConverged();
    }
  });

  it("holds a write a follower gets while its leader is down, and commits it once under the next leader", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const oldLeader = await leaderOf(c);
    const follower = c.members.find((m) => m !== oldLeader) as ClusterMember;
    const leaderStatus = (await c.statuses()).find((s) => s.Endpoint === oldLeader.endpoint);
    const leaderHex = BigInt(String(leaderStatus?.Status.header.member_id)).toString(16).padStart(16, "0");
    await c.kill(oldLeader);
    // The follower has seen the leader's connection close, but still follows it: no election yet
    // (that takes an election timeout, at least a second).
    for (;;) {
      const res = await fetch(`http://${follower.endpoint}/lab/faults`);
      const { peers } = (await res.json()) as { peers: Record<string, { connected: boolean }> };
      if (peers[leaderHex]?.connected === false) break;
      await sleep(5);
    }
    const client = connect(follower.endpoint);
    try {
      // Forwarded to the dead leader, it would be lost and time out ("request timed out") after 7 s.
      const put = await client.put("held-write", "v1");
      expect(num(put.header.revision)).toBeGreaterThan(1);
      const newLeader = await c.waitLeader();
      expect(newLeader.name).not.toBe(oldLeader.name);
    } finally {
      client.close();
    }
    await c.restart(oldLeader);
    await c.waitConverged();
    for (const m of c.members) {
      const member = connect(m.endpoint);
      try {
        const got = await member.range("held-write");
        expect(got.kvs.map((kv) => [Buffer.from(kv.value).toString(), num(kv.version)])).toEqual([["v1", 1]]);
      } finally {
        member.close();
      }
    }
  });

  it("refuses writes without a quorum (2 of 3 killed) and recovers everything when they return", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const [a, b, survivor] = c.members as [ClusterMember, ClusterMember, ClusterMember];
    expect((await etcdctl(c.endpoints, ["put", "before", "1"])).stdout.trim()).toBe("OK");
    const w = new Workload({ endpoints: () => c.endpoints, clients: 4, keys: 4, deadlineMs: 2000 });
    await w.waitWrites(100, 20_000);
    await c.kill(a);
    await c.kill(b);
    const put = await etcdctl(survivor.endpoint, ["--command-timeout=3s", "put", "during", "x"]);
    expect(put.code).not.toBe(0);
    expect(put.stderr).toMatch(/context deadline exceeded|etcdserver: request timed out/);
    // A linearizable read cannot be served either; a serializable one can (local state).
    const lin = await etcdctl(survivor.endpoint, ["--command-timeout=3s", "get", "before"]);
    expect(lin.code).not.toBe(0);
    const ser = await etcdctl(survivor.endpoint, ["get", "before", "--consistency=s", "--print-value-only"]);
    expect(ser.stdout.trim()).toBe("1");
    const health = await etcdctl(survivor.endpoint, ["endpoint", "health"]);
    expect(health.code).not.toBe(0);
    await c.restart(a);
    await c.restart(b);
    await c.waitLeader();
    w.mark();
    await w.waitWrites(100, 20_000);
    await w.stop();
    expect((await etcdctl(c.endpoints, ["put", "after", "2"])).stdout.trim()).toBe("OK");
    await c.waitConverged();
    await expectNothingLost(c, w);
    expectLinearizable(w);
    for (const m of c.members) {
      const get = await etcdctl(m.endpoint, ["get", "before", "--print-value-only", "--consistency=s"]);
      expect(get.stdout.trim()).toBe("1");
    }
  });

  it("never serves a stale read from a leader that was paused (SIGSTOP) while the others moved on", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const leader = await leaderOf(c);
    expect((await etcdctl(leader.endpoint, ["put", "x", "old"])).stdout.trim()).toBe("OK");
    const w = new Workload({ endpoints: () => c.endpoints, clients: 6, keys: 4, deadlineMs: 3000 });
    await w.waitWrites(100, 20_000);
    leader.process?.kill("SIGSTOP");
    try {
      const others = c.members.filter((m) => m !== leader).map((m) => m.endpoint);
      let written = false;
      for (let i = 0; i < 100 && !written; i++) {
        const put = await etcdctl(others, ["--command-timeout=2s", "put", "x", "new"]);
        written = put.stdout.trim() === "OK";
        if (!written) await sleep(100);
      }
      expect(written).toBe(true);
    } finally {
      leader.process?.kill("SIGCONT");
    }
    // The resumed member must not answer from its old state: it either sees "new" or refuses.
    for (let i = 0; i < 5; i++) {
      const get = await etcdctl(leader.endpoint, ["--command-timeout=3s", "get", "x", "--print-value-only"]);
      if (get.code === 0) expect(get.stdout.trim()).toBe("new");
    }
    w.mark();
    await w.waitWrites(100, 20_000);
    await w.stop();
    await c.waitLeader();
    await c.waitConverged();
    await expectNothingLost(c, w);
    expectLinearizable(w);
  });

  it("keeps leases alive across a leader change (a new leader renews them to their full TTL)", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const leader = await leaderOf(c);
    const follower = c.members.find((m) => m !== leader) as ClusterMember;
    const grant = await etcdctl(follower.endpoint, ["lease", "grant", "6"]);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1] as string;
    expect(id, grant.stderr).toBeDefined();
    await etcdctl(follower.endpoint, ["put", "owned", "v", "--lease", id]);
    await sleep(3000);
    await c.kill(leader);
    await c.waitLeader();
    // 3 s after the change, 6 s after the grant: an early expiry would have deleted the key by now.
    await sleep(3000);
    const get = await etcdctl(follower.endpoint, ["get", "owned", "--print-value-only"]);
    expect(get.stdout.trim()).toBe("v");
    const ttl = await etcdctl(follower.endpoint, ["lease", "timetolive", id]);
    expect(ttl.stdout).toMatch(/granted with TTL\(6s\), remaining\([1-6]s\)/);
  });
});

describe("partitions through the fault hook", () => {
  it("an isolated leader steps down, the majority elects another, and the old leader's uncommitted entries are gone after healing", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    const leader = await leaderOf(c);
    const others = c.members.filter((m) => m !== leader);
    const w = new Workload({ endpoints: () => c.endpoints, clients: 6, keys: 4, deadlineMs: 3000 });
    await w.waitWrites(100, 20_000);
    // Isolate the leader both ways, from its own side.
    await setFaults(leader, "POST", { peer: "all", blockOutbound: true, blockInbound: true });
    // A write sent to the isolated leader is appended to its log but can never commit.
    const stranded = etcdctl(leader.endpoint, ["--command-timeout=4s", "put", "stranded", "x"]);
    const newLeader = await waitForLeaderAmong(c, others);
    expect(newLeader.name).not.toBe(leader.name);
    expect((await etcdctl(newLeader.endpoint, ["put", "majority", "y"])).stdout.trim()).toBe("OK");
    const strandedResult = await stranded;
    expect(strandedResult.code).not.toBe(0);
    // Check-quorum: the isolated leader stepped down (it no longer claims to lead).
    const st = await etcdctl(leader.endpoint, ["endpoint", "status", "-w", "json"]);
    // etcdctl's JSON leaves out a zero leader.
    expect(st.stdout).not.toMatch(/"leader":[1-9]/);
    w.mark();
    await w.waitWrites(50, 20_000);
    await setFaults(leader, "DELETE");
    await c.waitLeader();
    w.mark();
    await w.waitWrites(50, 20_000);
    await w.stop();
    await c.waitConverged();
    await expectNothingLost(c, w);
    expectLinearizable(w);
    for (const m of c.members) {
      const get = await etcdctl(m.endpoint, ["get", "stranded", "--consistency=s"]);
      expect(get.stdout).toBe("");
      const maj = await etcdctl(m.endpoint, ["get", "majority", "--print-value-only", "--consistency=s"]);
      expect(maj.stdout.trim()).toBe("y");
    }
  });

  it("answers bad fault requests with a clear error", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const m = cluster.members[0] as ClusterMember;
    await expect(setFaults(m, "POST", { peer: "nobody" })).rejects.toThrow(/a member ID in hex/);
    await expect(setFaults(m, "POST", { peer: "all", drop: 2 })).rejects.toThrow(/400/);
    await expect(setFaults(m, "POST", { peer: "all", jitter: 1 })).rejects.toThrow(/unknown fields jitter/);
    const ok = await setFaults(m, "POST", { peer: "all", delayMs: 10 });
    expect(ok).toContain("10");
    const cleared = JSON.parse(await setFaults(m, "DELETE")) as { faults: { all: unknown } };
    expect(cleared.faults.all).toBeNull();
  });
});

/** Waits until the members in `among` agree on a leader among themselves. */
async function waitForLeaderAmong(c: TestCluster, among: ClusterMember[], timeoutMs = 20_000): Promise<ClusterMember> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await etcdctl(
      among.map((m) => m.endpoint),
      ["endpoint", "status", "-w", "table"],
    );
    const leaderLine = r.stdout.split("\n").find((l) => /\|\s+true\s+\|/.test(l));
    const m = leaderLine && among.find((x) => leaderLine.includes(x.endpoint));
    if (m) return m;
    await sleep(100);
  }
  throw new Error(`no leader among ${among.map((m) => m.name).join(", ")}\n${c.dump()}`);
}

describe("a follower that falls behind", () => {
  it("catches up by snapshot after a partition, and its watchers still get every event in order", async () => {
    cluster = await TestCluster.start({
      size: 3,
      extraArgs: ["--snapshot-count", "40", "--experimental-snapshot-catchup-entries", "10"],
    });
    const c = cluster;
    const leader = await leaderOf(c);
    const follower = c.members.find((m) => m !== leader) as ClusterMember;
    const watchClient = connect(follower.endpoint);
    const stream = watchClient.watch();
    try {
      stream.create({ key: "lag/", range_end: prefixEnd("lag/") });
      await setFaults(follower, "POST", { peer: "all", blockOutbound: true, blockInbound: true });
      const others = c.members.filter((m) => m !== follower).map((m) => m.endpoint);
      // Far more than --snapshot-count plus the entries kept behind a snapshot: the leader's log
      // no longer reaches back to the follower, which must be sent a snapshot.
      for (let i = 0; i < 300; i++) {
        const r = await etcdctl(others, ["put", `lag/k${i % 7}`, `v${i}`]);
        expect(r.stdout.trim(), r.stderr).toBe("OK");
      }
      await setFaults(follower, "DELETE");
      await c.waitConverged(30_000);
      expect(follower.output).toContain("applied a snapshot from the leader");
      // Made when sent, of the state the leader had applied then (Raft itself keeps no copy); by
      // whichever member led by then.
      const senders = c.members.filter((m) => m !== follower && m.output.includes('"msg":"sending a snapshot"'));
      expect(senders.length, c.members.map((m) => m.output).join("\n")).toBeGreaterThan(0);
      // Every event arrives once, in revision order, with the values written.
      const values: string[] = [];
      const deadline = Date.now() + 20_000;
      while (values.length < 300 && Date.now() < deadline) {
        for (const r of stream.received.splice(0)) {
          for (const e of r.events ?? []) if (e.kv) values.push(Buffer.from(e.kv.value).toString());
        }
        if (values.length < 300) await sleep(50);
      }
      expect(values).toEqual(Array.from({ length: 300 }, (_, i) => `v${i}`));
    } finally {
      watchClient.close();
    }
  });
});

describe("membership changes", () => {
  it("removes the leader (which then stops) and adds a fresh member that catches up by snapshot", async () => {
    cluster = await TestCluster.start({ size: 3, extraArgs: ["--snapshot-count", "50"] });
    const c = cluster;
    for (let i = 0; i < 120; i++) await etcdctl(c.endpoints, ["put", `pre${i}`, `v${i}`]);
    // The hardest case: the leader itself is removed (it steps down; the others elect a leader).
    const victim = await c.waitLeader();
    const list = await etcdctl(c.endpoints, ["member", "list"]);
    const victimId = list.stdout
      .split("\n")
      .find((l) => l.includes(`, ${victim.name}, `))
      ?.split(",")[0] as string;
    const removed = await etcdctl(c.endpoints, ["member", "remove", victimId]);
    expect(removed.stdout, removed.stderr).toMatch(new RegExp(`Member +${victimId} removed from cluster`));
    expect(await victim.exited).toBe(1);
    expect(victim.output).toContain("removed from the cluster");
    victim.process = undefined;
    // A removed member that comes back with its data is refused, with a clear message.
    c.spawn(victim, "new");
    expect(await victim.exited).not.toBe(0);
    expect(victim.output).toMatch(/removed/);
    victim.process = undefined;
    // More writes, so the log the newcomer needs is compacted away: it must get a snapshot.
    for (let i = 0; i < 120; i++) await etcdctl(c.endpoints, ["put", `mid${i}`, `v${i}`]);
    const fresh = await c.addMember("m4");
    const add = await etcdctl(c.endpoints, ["member", "add", "m4", `--peer-urls=http://127.0.0.1:${fresh.peerPort}`]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('ETCD_INITIAL_CLUSTER_STATE="existing"');
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(add.stdout)?.[1] as string;
    c.spawn(fresh, "existing", initialCluster);
    await c.waitUp(fresh);
    await c.waitLeader();
    await c.waitConverged();
    expect(fresh.output).toContain("applied a snapshot from the leader");
    const got = await etcdctl(fresh.endpoint, ["get", "pre0", "--print-value-only", "--consistency=s"]);
    expect(got.stdout.trim()).toBe("v0");
    const members = await etcdctl(c.endpoints, ["member", "list"]);
    expect(members.stdout).toContain(", started, m4, ");
    expect(members.stdout).not.toContain(`, ${victim.name}, `);
  });

  it("adds a learner, which cannot be promoted before it has caught up, then promotes it", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    await c.waitLeader();
    const learner = await c.addMember("m4");
    const add = await etcdctl(c.endpoints, [
      "member",
      "add",
      "m4",
      `--peer-urls=http://127.0.0.1:${learner.peerPort}`,
      "--learner",
    ]);
    expect(add.code, add.stderr).toBe(0);
    const id = /Member +([0-9a-f]+) added/.exec(add.stdout)?.[1] as string;
    const early = await etcdctl(c.endpoints, ["member", "promote", id]);
    expect(early.code).not.toBe(0);
    expect(early.stderr).toContain("can only promote a learner member which is in sync with leader");
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(add.stdout)?.[1] as string;
    c.spawn(learner, "existing", initialCluster);
    await c.waitUp(learner);
    const asLearner = await etcdctl(c.endpoints, ["member", "list"]);
    expect(asLearner.stdout).toMatch(/, m4, .*, true/);
    const status = await etcdctl(learner.endpoint, ["endpoint", "status", "-w", "table"]);
    expect(status.stdout).toMatch(/\|\s+false\s+\|\s+true\s+\|/); // not leader, learner
    // A learner serves serializable reads and status only, as in etcd.
    const refused = await etcdctl(learner.endpoint, ["put", "via-learner", "x"]);
    expect(refused.stderr).toContain("etcdserver: rpc not supported for learner");
    const voters = c.members.filter((m) => m !== learner && m.process).map((m) => m.endpoint);
    const put = await etcdctl(voters, ["put", "seen-by-learner", "y"]);
    expect(put.stdout.trim(), put.stderr).toBe("OK");
    let seen = "";
    for (let i = 0; i < 50 && seen !== "y"; i++) {
      seen = (
        await etcdctl(learner.endpoint, ["get", "seen-by-learner", "--consistency=s", "--print-value-only"])
      ).stdout.trim();
      if (seen !== "y") await sleep(100);
    }
    expect(seen).toBe("y");
    let promoted = await etcdctl(c.endpoints, ["member", "promote", id]);
    for (let i = 0; i < 50 && promoted.code !== 0; i++) {
      await sleep(200);
      promoted = await etcdctl(c.endpoints, ["member", "promote", id]);
    }
    expect(promoted.stdout, promoted.stderr).toMatch(new RegExp(`Member +${id} promoted in cluster`));
    const list = await etcdctl(c.endpoints, ["member", "list"]);
    expect(list.stdout).toMatch(/, started, m4, .*, false\n?/);
    await c.waitConverged();
  });

  it("refuses a reconfiguration that would leave too few started voters for a quorum (strict reconfig check)", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    await c.waitLeader();
    // Wait until every member has published its name (etcd's "started").
    for (let i = 0; i < 50; i++) {
      const list = await etcdctl(c.endpoints, ["member", "list"]);
      if (!list.stdout.includes(", started, , ")) break;
      await sleep(100);
    }
    // Two voters that never start: 3 started of 5 is still a quorum.
    for (const name of ["m4", "m5"]) {
      const port = (await c.addMember(name)).peerPort;
      const add = await etcdctl(c.endpoints, ["member", "add", name, `--peer-urls=http://127.0.0.1:${port}`]);
      expect(add.code, add.stderr).toBe(0);
    }
    // Removing a started voter would leave 2 started of 4: refused, as etcd refuses it.
    const list = await etcdctl(c.endpoints, ["member", "list"]);
    const m1 = list.stdout
      .split("\n")
      .find((l) => l.includes(", m1, "))
      ?.split(",")[0] as string;
    const removed = await etcdctl(c.endpoints, ["member", "remove", m1]);
    expect(removed.code).not.toBe(0);
    expect(removed.stderr).toContain("etcdserver: re-configuration failed due to not enough started members");
    // Removing one that never started is fine.
    const m5 = (await etcdctl(c.endpoints, ["member", "list"])).stdout
      .split("\n")
      .find((l) => l.includes(", unstarted, "))
      ?.split(",")[0] as string;
    // etcdctl pads the ID to 16 columns.
    expect((await etcdctl(c.endpoints, ["member", "remove", m5])).stdout).toMatch(new RegExp(`Member +${m5} removed`));
  });

  it("refuses a member started with the wrong cluster token", async () => {
    cluster = await TestCluster.start({ size: 3 });
    const c = cluster;
    await c.waitLeader();
    const stranger = await c.addMember("m4");
    const add = await etcdctl(c.endpoints, [
      "member",
      "add",
      "m4",
      `--peer-urls=http://127.0.0.1:${stranger.peerPort}`,
    ]);
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(add.stdout)?.[1] as string;
    // Joining members learn the cluster from their peers; a member restarted into a cluster it
    // does not belong to (another token) is refused by the peers.
    c.spawn(stranger, "new", initialCluster, ["--initial-cluster-token", "some-other-cluster"]);
    const deadline = Date.now() + 15_000;
    while (!/cluster ID mismatch/.test(stranger.output) && Date.now() < deadline) await sleep(100);
    expect(stranger.output).toMatch(/cluster ID mismatch/);
    expect(stranger.output).toContain("--initial-cluster-token");
    await c.kill(stranger);
  });
});
