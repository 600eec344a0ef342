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
});
