import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterMember, parseJsonBig, setFaults, TestCluster } from "./helpers/cluster.js";
import { etcdctl, httpGet, sleep } from "./helpers/nodes.js";

/**
 * A three-member cluster of real `lab etcd` processes on loopback, driven by the real etcdctl 3.4
 * with all endpoints, as an operator would drive etcd.
 */
describe("a three-member cluster", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ size: 3 });
  }, 60_000);

  afterAll(async () => {
    await cluster?.killAll();
  });

  it("elects exactly one leader that every member reports", async () => {
    const leader = await cluster.waitLeader();
    const st = await cluster.statuses();
    expect(st).toHaveLength(3);
    const leaders = st.filter((s) => String(s.Status.leader) === String(s.Status.header.member_id));
    expect(leaders).toHaveLength(1);
    expect(leaders[0]?.Endpoint).toBe(leader.endpoint);
    expect(new Set(st.map((s) => String(s.Status.header.cluster_id))).size).toBe(1);
    const table = await etcdctl(cluster.endpoints, ["endpoint", "status", "-w", "table"]);
    expect(table.code).toBe(0);
    // One "true" in the IS LEADER column.
    expect(table.stdout.split("\n").filter((l) => /\|\s+true\s+\|/.test(l))).toHaveLength(1);
  });

  it("fast-forwards the election clock on boot once both peers answer (--initial-election-tick-advance)", async () => {
    await cluster.waitLeader();
    let forwarded = 0;
    for (const m of cluster.members) {
      const lines = m.output.split("\n");
      const line = lines.find((l) => l.includes("fast-forwarded election ticks"));
      if (line === undefined) {
        // A member whose peers answered only after a leader had been elected keeps its clock
        // (it already follows that leader); it polls every 50 ms, so this happens when the others
        // fast-forward and elect in between.
        expect(
          lines.some((l) => l.includes('"leader elected"')),
          `${m.name} output:\n${m.output.slice(-2000)}`,
        ).toBe(true);
        continue;
      }
      forwarded++;
      // --election-timeout 1000 / --heartbeat-interval 100 = 10 ticks; two are kept in hand.
      expect(JSON.parse(line)).toMatchObject({ "forward-ticks": 8, "active-peers": 2 });
    }
    // Someone fast-forwarded: without it no member would campaign before a whole election timeout.
    expect(forwarded).toBeGreaterThan(0);
  });

  it("lists every member with its name, peer and client URLs", async () => {
    await cluster.waitLeader();
    // Members publish their names once a leader exists; give it a moment.
    let r = await etcdctl(cluster.endpoints, ["member", "list", "-w", "json"]);
    for (let i = 0; i < 50; i++) {
      const names = (parseJsonBig(r.stdout) as { members: Array<{ name?: string }> }).members.map((m) => m.name);
      if (names.every((n) => n)) break;
      await sleep(100);
      r = await etcdctl(cluster.endpoints, ["member", "list", "-w", "json"]);
    }
    const members = (
      parseJsonBig(r.stdout) as {
        members: Array<{ name: string; peerURLs: string[]; clientURLs: string[]; isLearner?: boolean }>;
      }
    ).members;
    expect(members.map((m) => m.name).sort()).toEqual(["m1", "m2", "m3"]);
    for (const m of members) {
      const spec = cluster.members.find((x) => x.name === m.name) as ClusterMember;
      expect(m.peerURLs).toEqual([`http://127.0.0.1:${spec.peerPort}`]);
      expect(m.clientURLs).toEqual([`http://127.0.0.1:${spec.clientPort}`]);
      expect(m.isLearner ?? false).toBe(false);
    }
    const simple = await etcdctl(cluster.endpoints, ["member", "list"]);
    expect(simple.stdout.trim().split("\n")).toHaveLength(3);
    expect(simple.stdout).toContain(", started, m1, http://127.0.0.1:");
  });

  it("accepts writes on every member and serves them from every member", async () => {
    const leader = await cluster.waitLeader();
    const followers = cluster.members.filter((m) => m !== leader);
    for (const [i, m] of cluster.members.entries()) {
      const put = await etcdctl(m.endpoint, ["put", `k${i}`, `from-${m.name}`]);
      expect(put.stdout.trim(), put.stderr).toBe("OK");
    }
    for (const m of cluster.members) {
      const get = await etcdctl(m.endpoint, ["get", "k", "--prefix", "--print-value-only"]);
      expect(get.stdout.trim().split("\n")).toEqual(["from-m1", "from-m2", "from-m3"]);
    }
    // A linearizable read on a follower sees a write just made through another member.
    const f = followers[0] as ClusterMember;
    await etcdctl(leader.endpoint, ["put", "fresh", "1"]);
    const get = await etcdctl(f.endpoint, ["get", "fresh", "--print-value-only"]);
    expect(get.stdout.trim()).toBe("1");
    await cluster.waitConverged();
  });

  it("reports the bytes sent to and received from each peer, labelled as etcd labels them", async () => {
    const leader = await cluster.waitLeader();
    const ids = new Map<string, string>(); // name -> member ID in hex, as etcdctl prints it
    const list = await etcdctl(leader.endpoint, ["member", "list"]);
    for (const line of list.stdout.trim().split("\n")) {
      const [id, , name] = line.split(", ");
      if (id && name) ids.set(name, id);
    }
    await etcdctl(leader.endpoint, ["put", "traffic", "x".repeat(1000)]);
    const leaderId = ids.get(leader.name) ?? "?";
    for (const m of cluster.members) {
      const metrics = await httpGet(m.clientPort, "/metrics");
      const bytes = (series: string, label: string): Map<string, number> => {
        const out = new Map<string, number>();
        const pattern = new RegExp(`^${series}\\{${label}="([0-9a-f]+)"\\} (\\d+)$`);
        for (const line of metrics.split("\n")) {
          const match = pattern.exec(line);
          if (match?.[1] !== undefined) out.set(match[1], Number(match[2]));
        }
        return out;
      };
      const sent = bytes("etcd_network_peer_sent_bytes_total", "To");
      const received = bytes("etcd_network_peer_received_bytes_total", "From");
      const others = cluster.members.filter((o) => o !== m).map((o) => ids.get(o.name) ?? "?");
      expect([...sent.keys()].sort(), m.name).toEqual([...others].sort());
      expect([...received.keys()].sort(), m.name).toEqual([...others].sort());
      // The 1,000-byte put went from the leader to each follower.
      if (m === leader) for (const peer of others) expect(sent.get(peer)).toBeGreaterThan(1000);
      else expect(received.get(leaderId)).toBeGreaterThan(1000);
      expect(metrics).toMatch(/^etcd_server_proposals_failed_total \d+$/m);
    }
  });

  it("runs leases on the leader: grant and keep-alive through a follower, expiry deletes the keys", async () => {
    const leader = await cluster.waitLeader();
    const follower = cluster.members.find((m) => m !== leader) as ClusterMember;
    const grant = await etcdctl(follower.endpoint, ["lease", "grant", "2"]);
    expect(grant.code, grant.stderr).toBe(0);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1] as string;
    expect(id).toBeDefined();
    expect((await etcdctl(follower.endpoint, ["put", "leased", "v", "--lease", id])).code).toBe(0);
    const once = await etcdctl(follower.endpoint, ["lease", "keep-alive", "--once", id]);
    expect(once.stdout).toContain(`lease ${id} keepalived with TTL(`);
    const ttl = await etcdctl(follower.endpoint, ["lease", "timetolive", id, "--keys"]);
    expect(ttl.stdout).toMatch(/granted with TTL\(2s\), remaining\(\d+s\), attached keys\(\[leased\]\)/);
    // The minimum TTL is etcd's (1.5 election timeouts, rounded up: 2 s here); wait past it.
    let gone = false;
    for (let i = 0; i < 60 && !gone; i++) {
      await sleep(200);
      const get = await etcdctl(follower.endpoint, ["get", "leased"]);
      gone = get.code === 0 && get.stdout === "";
    }
    expect(gone).toBe(true);
    const after = await etcdctl(leader.endpoint, ["lease", "timetolive", id]);
    expect(after.stdout.trim()).toBe(`lease ${id} already expired`);
  });

  it("loses and fails no write sent during a leadership transfer, and stores each once", async () => {
    // 128 writers on the leader keep more requests waiting than one Raft pass takes (64) while
    // leadership moves; the leader's messages to the new leader are delayed by 300 ms, so the
    // transfer lasts that long, and the leader refuses proposals meanwhile (as etcd's does): those
    // keep their place and go at the next tick, to whichever member then leads.
    const leader = await cluster.waitLeader();
    const target = cluster.members.find((m) => m !== leader) as ClusterMember;
    const st = await cluster.statuses();
    const targetId = BigInt(String(st.find((s) => s.Endpoint === target.endpoint)?.Status.header.member_id));
    const clients = Array.from({ length: 8 }, () => new Etcd3({ hosts: `http://${leader.endpoint}` }));
    const acked: { key: string; value: string; revision: number }[] = [];
    const refused: string[] = [];
    let stop = false;
    try {
      const writers = Array.from({ length: 128 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const key = `transfer/${w}/${i}`;
          const value = `v${w}.${i}`;
          try {
            const r = await (clients[w % clients.length] as Etcd3).put(key).value(value).exec();
            acked.push({ key, value, revision: Number(r.header.revision) });
          } catch (err) {
            refused.push((err as Error).message);
            await sleep(10);
          }
        }
      });
      while (acked.length < 200) await sleep(10);
      await setFaults(leader, "POST", { peer: targetId.toString(16), delayMs: 300 });
      const moved = await etcdctl(leader.endpoint, ["move-leader", targetId.toString(16)]).finally(() =>
        setFaults(leader, "DELETE"),
      );
      expect(moved.stdout, moved.stderr).toContain("Leadership transferred from");
      const before = acked.length;
      while (acked.length < before + 200) await sleep(10);
      stop = true;
      await Promise.all(writers);
    } finally {
      stop = true;
      for (const c of clients) c.close();
    }
    // None fails: the member holds what the leader in transfer refused and proposes it again.
    expect(refused).toEqual([]);
    // Each acknowledged write is stored, at its own revision.
    expect(new Set(acked.map((a) => a.revision)).size).toBe(acked.length);
    await cluster.waitConverged();
    for (const m of cluster.members) {
      const c = new Etcd3({ hosts: `http://${m.endpoint}` });
      try {
        const stored = await c.getAll().prefix("transfer/").strings();
        for (const a of acked) expect(stored[a.key]).toBe(a.value);
      } finally {
        c.close();
      }
    }
  });

  it("moves leadership with move-leader", async () => {
    const leader = await cluster.waitLeader();
    const target = cluster.members.find((m) => m !== leader) as ClusterMember;
    const st = await cluster.statuses();
    const targetId = BigInt(String(st.find((s) => s.Endpoint === target.endpoint)?.Status.header.member_id));
    const r = await etcdctl(leader.endpoint, ["move-leader", targetId.toString(16)]);
    expect(r.stdout, r.stderr).toContain(`Leadership transferred from`);
    expect((await cluster.waitLeader()).name).toBe(target.name);
    // Asked of a follower, etcdctl finds the leader among the endpoints itself; with only a
    // follower's endpoint, the member answers "not leader".
    const follower = cluster.members.find((m) => m.name !== target.name) as ClusterMember;
    const wrong = await etcdctl(follower.endpoint, ["move-leader", targetId.toString(16)]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("no leader endpoint given");
  });
});
