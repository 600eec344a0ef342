import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdServer } from "../src/etcd/server/server.js";
import { type Message, MessageType } from "../src/raft/index.js";
import { InMemoryCluster, type JournalEntry, putCommand } from "./helpers/in-memory-cluster.js";

// What a leader sends when, relative to the answers it gives, observed on five and on three members
// whose peer messages pass through memory (test/helpers/in-memory-cluster.ts).

async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((r) => setTimeout(r, 5));
}

/** A cluster of `size` members, its leader elected and one put through it. */
async function warmCluster(
  size: number,
): Promise<{ cluster: InMemoryCluster; leader: EtcdServer; followers: EtcdServer[] }> {
  // Long heartbeats: followers learn a new commit index from appends and notices, not a heartbeat.
  const cluster = await InMemoryCluster.start(size, ["--heartbeat-interval=300", "--election-timeout=3000"]);
  const leader = await cluster.leader();
  await leader.propose(putCommand("warm-up"));
  return { cluster, leader, followers: cluster.servers.filter((s) => s !== leader) };
}

// Five members: the leader and one follower are not a quorum, so followers learn of commits from
// the leader's commit notices (with three, see the next describe, they commit on their own).
describe("a leader's sends around a one-client put, five members", () => {
  let cluster: InMemoryCluster;
  let leader: EtcdServer;
  let followers: EtcdServer[];

  beforeAll(async () => {
    ({ cluster, leader, followers } = await warmCluster(5));
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("sends the entry at once, and the commit notices only after the put is answered", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    cluster.journal.length = 0;
    await leader.propose(putCommand("k")).then(() => cluster.note("answered"));
    const index = leader.appliedIndex;
    await until(() => followers.every((f) => f.appliedIndex >= index));

    const at = (pick: (e: JournalEntry) => boolean): number[] =>
      cluster.journal.flatMap((e, i) => (pick(e) ? [i] : []));
    const fromLeader = (e: JournalEntry, test: (m: Message) => boolean): boolean =>
      e.kind === "sent" && e.from === leader.memberId && test(e.message);
    const answered = at((e) => e.kind === "note" && e.text === "answered");
    const appends = at((e) =>
      fromLeader(e, (m) => m.type === MessageType.MsgApp && m.entries.some((x) => x.index === index)),
    );
    const notices = at((e) =>
      fromLeader(e, (m) => m.type === MessageType.MsgApp && m.entries.length === 0 && m.commit >= index),
    );
    expect(answered).toHaveLength(1);
    const answeredAt = answered[0] as number;
    // The entry went to every follower before the answer (it could not be committed otherwise)...
    expect(appends).toHaveLength(4);
    for (const i of appends) expect(i).toBeLessThan(answeredAt);
    // ...and the notices of its commit went to all of them, after the answer.
    const noticeTargets = new Set(
      notices.map((i) => {
        const e = cluster.journal[i];
        return e?.kind === "sent" ? e.message.to : 0n;
      }),
    );
    expect([...noticeTargets].sort()).toEqual(followers.map((f) => f.memberId).sort());
    for (const i of notices) expect(i).toBeGreaterThan(answeredAt);
  });

  it("sends the commit notice of a forwarded put to the follower that forwarded it at once", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    // The follower the leader addresses last: deferred together, its notice would be sent last.
    cluster.journal.length = 0;
    await leader.propose(putCommand("order"));
    const appendOrder = sentByLeader((m) => m.type === MessageType.MsgApp && m.entries.length > 0).map(
      (e) => e.message.to,
    );
    const via = followers.find((f) => f.memberId === appendOrder[appendOrder.length - 1]) as EtcdServer;
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));

    cluster.journal.length = 0;
    await via.propose(putCommand("forwarded"));
    const index = via.appliedIndex;
    await until(() => followers.every((f) => f.appliedIndex >= index));
    const notices = sentByLeader((m) => m.type === MessageType.MsgApp && m.entries.length === 0 && m.commit >= index);
    expect(notices.map((e) => e.message.to)).toEqual(expect.arrayContaining(followers.map((f) => f.memberId)));
    expect(notices[0]?.message.to).toBe(via.memberId);
    // Nobody was told the leader's durable index: no follower could commit with it.
    expect(sentByLeader((m) => m.durable !== undefined)).toEqual([]);
  });

  it("lets a follower's answer out before it writes the new commit index", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    const via = followers[0] as EtcdServer;
    // The gRPC edge writes an answer on a later tick than the one the put resolves in, as here;
    // what the follower's log had written by then is noted with it.
    let writtenAtAnswer = -1;
    await via.propose(putCommand("answered-first")).then(
      () =>
        new Promise<void>((r) =>
          process.nextTick(() => {
            writtenAtAnswer = via.walStats.writtenBytes;
            r();
          }),
        ),
    );
    // The write that records the commit index follows within a few turns of the event loop.
    for (let turn = 0; turn < 100 && via.walStats.writtenBytes === writtenAtAnswer; turn++)
      await new Promise((r) => setImmediate(r));
    expect(via.walStats.writtenBytes).toBeGreaterThan(writtenAtAnswer);
  });

  /** What the leader sent since the journal was last cleared, in order. */
  function sentByLeader(test: (m: Message) => boolean): { message: Message }[] {
    return cluster.journal.flatMap((e) =>
      e.kind === "sent" && e.from === leader.memberId && test(e.message) ? [e] : [],
    );
  }
});

// Three members: the leader and any one follower are a quorum. The leader tells each follower how
// far its own log is durable, and a follower commits on its own what it holds of that.
describe("a leader's sends around a one-client put, three members", () => {
  let cluster: InMemoryCluster;
  let leader: EtcdServer;
  let followers: EtcdServer[];

  beforeAll(async () => {
    ({ cluster, leader, followers } = await warmCluster(3));
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  /** The leader's MsgApps since the journal was last cleared, in order. */
  const appendsFromLeader = (): Message[] =>
    cluster.journal.flatMap((e) =>
      e.kind === "sent" && e.from === leader.memberId && e.message.type === MessageType.MsgApp ? [e.message] : [],
    );

  it("tells both followers its durable index and sends no commit notice", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    cluster.journal.length = 0;
    await leader.propose(putCommand("k"));
    const index = leader.appliedIndex;
    await until(() => followers.every((f) => f.appliedIndex >= index));
    const sent = appendsFromLeader();
    for (const f of followers) {
      const toIt = sent.filter((m) => m.to === f.memberId);
      // The entry, then (once the leader's own write was done) a notice saying it is durable...
      expect(toIt.filter((m) => m.entries.some((e) => e.index === index))).toHaveLength(1);
      expect(toIt.some((m) => m.entries.length === 0 && (m.durable ?? 0) >= index && m.commitOnly === true)).toBe(true);
      // ...and never the commit index itself: the follower committed the entry on its own.
      expect(toIt.filter((m) => m.commit >= index)).toEqual([]);
    }
  });

  it("a follower answers a put it forwarded without waiting for the leader's commit", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    const via = followers[0] as EtcdServer;
    cluster.journal.length = 0;
    await via.propose(putCommand("forwarded"));
    const index = via.appliedIndex;
    await until(() => followers.every((f) => f.appliedIndex >= index));
    expect(appendsFromLeader().filter((m) => m.commit >= index)).toEqual([]);
  });

  it("a linearizable read on the leader sees a write a follower committed on its own", async () => {
    await until(() => followers.every((f) => f.appliedIndex === leader.appliedIndex));
    const via = followers[1] as EtcdServer;
    // Hold the followers' acknowledgements: the leader cannot commit, but a follower can.
    cluster.hold((_from, m) => m.type === MessageType.MsgAppResp);
    const put = via.propose(putCommand("seen-by-read"));
    await until(() => via.appliedIndex > leader.appliedIndex);
    const index = via.appliedIndex;
    await put;
    expect(leader.appliedIndex).toBeLessThan(index);
    // The read index covers what followers may have committed; the read waits for the commit.
    let read = false;
    const reading = leader.linearizableRead().then(() => {
      read = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(read).toBe(false);
    cluster.release();
    await reading;
    expect(leader.appliedIndex).toBeGreaterThanOrEqual(index);
  });
});
