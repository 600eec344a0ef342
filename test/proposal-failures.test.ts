import { describe, expect, it } from "vitest";
import { EtcdError } from "../src/etcd/errors.js";
import { Metrics } from "../src/etcd/grpc/metrics.js";
import { InMemoryCluster, putCommand } from "./helpers/in-memory-cluster.js";

// etcd_server_proposals_failed_total counts proposals that could not be committed: refused by a
// stopped member, or cut off while they waited (here: for a quorum that was gone).

const failedLine = (text: string): string | undefined =>
  text.split("\n").find((l) => l.startsWith("etcd_server_proposals_failed_total "));

describe("failed proposals", () => {
  it("are counted when a member stops under a waiting proposal, and when a stopped member refuses one", async () => {
    const cluster = await InMemoryCluster.start(3);
    try {
      const leader = await cluster.leader();
      await leader.propose(putCommand("ok"));
      expect(leader.proposalsFailed).toBe(0);
      expect(failedLine(new Metrics().render(leader))).toBe("etcd_server_proposals_failed_total 0");

      // Without its followers the leader cannot commit: the proposal waits until the leader stops.
      for (const s of cluster.servers) if (s !== leader) await s.stop();
      const waiting = leader.propose(putCommand("no-quorum"));
      await leader.stop();
      await expect(waiting).rejects.toThrow(EtcdError);
      expect(leader.proposalsFailed).toBe(1);

      await expect(leader.propose(putCommand("after-stop"))).rejects.toThrow(EtcdError);
      expect(leader.proposalsFailed).toBe(2);
      expect(failedLine(new Metrics().render(leader))).toBe("etcd_server_proposals_failed_total 2");
    } finally {
      await cluster.stop();
    }
  }, 60_000);

  it("fail as timed out (etcd's 'request timed out') once the request timeout has passed without a commit", async () => {
    const cluster = await InMemoryCluster.start(3, ["--heartbeat-interval=20", "--election-timeout=200"]);
    try {
      const leader = await cluster.leader();
      await leader.propose(putCommand("ok"));
      // Nothing the leader sends arrives any more: its proposal is never committed.
      cluster.hold((from) => from === leader.memberId);
      const started = performance.now();
      await expect(leader.propose(putCommand("never-committed"))).rejects.toMatchObject({
        kind: "Timeout",
        message: "request timed out",
      });
      // Not before etcd's request timeout (5 s plus two election timeouts).
      expect(performance.now() - started).toBeGreaterThanOrEqual(leader.requestTimeoutMs);
      expect(leader.proposalsFailed).toBe(1);
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
