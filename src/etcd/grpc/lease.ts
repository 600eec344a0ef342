import type * as grpc from "@grpc/grpc-js";
import { EtcdError } from "../errors.js";
import { MAX_LEASE_TTL } from "../server/lessor.js";
import type { EtcdServer } from "../server/server.js";
import { bigint, int, type LeaseGrantRequest, type LeaseRevokeRequest } from "../wire.js";
import { serviceError } from "./errors.js";
import { header, refuseOnLearner, withHeader } from "./kv.js";
import { unary } from "./unary.js";

/** The Lease service: grant and revoke through the log; keep-alive and TTL queries on the leader. */
export function leaseService(server: EtcdServer): grpc.UntypedServiceImplementation {
  return {
    LeaseGrant: unary<LeaseGrantRequest>(async (r) => {
      refuseOnLearner(server);
      if (int(r.TTL) > MAX_LEASE_TTL) throw new EtcdError("LeaseTTLTooLarge");
      let id = bigint(r.ID);
      if (id === 0n) {
        // The ID is chosen before proposing so that every member applies the same one.
        do id = server.nextLeaseId();
        while (server.lessor.has(id));
      }
      const body = { lease_grant: { TTL: r.TTL, ID: id.toString() } };
      if (!server.checkQuota(body, 64)) throw new EtcdError("NoSpace");
      const result = await server.propose(body);
      return withHeader(server, result.response, result.revision);
    }),
    LeaseRevoke: unary<LeaseRevokeRequest>(async (r) => {
      refuseOnLearner(server);
      const result = await server.propose({ lease_revoke: { ID: r.ID } });
      return withHeader(server, result.response, result.revision);
    }),
    LeaseTimeToLive: unary<{ ID: string; keys: boolean }>(async (r) => {
      refuseOnLearner(server);
      // Remaining TTLs are the leader's to know: a follower asks it.
      const t = await server.leaseTimeToLive(bigint(r.ID));
      const hdr = header(server, server.mvcc.currentRevision);
      // etcd answers an unknown lease with TTL -1 rather than an error ("already expired").
      if (t.ttl === -1) return { header: hdr, ID: r.ID, TTL: -1, grantedTTL: 0, keys: [] };
      return {
        header: hdr,
        ID: r.ID,
        TTL: t.ttl,
        grantedTTL: t.granted,
        keys: r.keys ? t.keys.map((k) => Buffer.from(k, "latin1")) : [],
      };
    }),
    LeaseLeases: unary<object>(() => {
      refuseOnLearner(server);
      return {
        header: header(server, server.mvcc.currentRevision),
        // Soonest expiry first, as etcd's lessor lists them.
        leases: server.lessor
          .list()
          .sort((a, b) => (a.expiry < b.expiry ? -1 : a.expiry > b.expiry ? 1 : 0))
          .map((l) => ({ ID: l.id.toString() })),
      };
    }),
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<{ ID: string }, object>) => {
      if (server.isLearner) {
        call.destroy(serviceError(new EtcdError("NotSupportedForLearner")));
        return;
      }
      // Keep-alives are answered in order, each once the leader renewed the lease.
      let chain = Promise.resolve();
      call.on("data", (r: { ID: string }) => {
        const id = bigint(r.ID);
        chain = chain.then(async () => {
          let ttl: number;
          try {
            ttl = await server.renewLease(id);
          } catch (err) {
            if (err instanceof EtcdError && err.kind === "LeaseNotFound") ttl = 0;
            else {
              call.destroy(serviceError(err));
              return;
            }
          }
          if (!call.destroyed) call.write({ header: header(server, server.mvcc.currentRevision), ID: r.ID, TTL: ttl });
        });
      });
      call.on("end", () => call.end());
      call.on("error", () => {});
    },
  };
}
