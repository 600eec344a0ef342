import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdServer } from "../src/etcd/server/server.js";
import { type Message, MessageType } from "../src/raft/index.js";
import { InMemoryCluster, type JournalEntry, putCommand } from "./helpers/in-memory-cluster.js";

// What a leader sends when, relative to the answers it gives, observed on three members whose peer
// messages pass through memory (test/helpers/in-memory-cluster.ts).

async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((r) => setTimeout(r, 5));
}

describe("a leader's sends around a one-client put", () => {
  let cluster: InMemoryCluster;
  let leader: EtcdServer;
  let followers: EtcdServer[];

  beforeAll(async () => {
    // Long heartbeats: followers learn the new commit index from the notices, not a heartbeat.
    cluster = await InMemoryCluster.start(3, ["--heartbeat-interval=300", "--election-timeout=3000"]);
    leader = await cluster.leader();
    followers = cluster.servers.filter((s) => s !== leader);
    await leader.propose(putCommand("warm-up"));
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
    // The entry went to both followers before the answer (it could not be committed otherwise)...
    expect(appends).toHaveLength(2);
    for (const i of appends) expect(i).toBeLessThan(answeredAt);
    // ...and the notices of its commit went to both, after the answer.
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
