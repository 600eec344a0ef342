import { createHash } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { EtcdError } from "../errors.js";
import type { EtcdServer } from "../server/server.js";
import { SERVER_VERSION } from "../server/server.js";
import { AlarmAction, type AlarmRequest, AlarmType, bigint, int } from "../wire.js";
import { serviceError } from "./errors.js";
import { header } from "./kv.js";
import { unary } from "./unary.js";

const SNAPSHOT_CHUNK = 32 * 1024;
const ALARM_NAMES: Record<number, string> = { 0: "NONE", 1: "NOSPACE", 2: "CORRUPT" };

export function maintenanceService(server: EtcdServer): grpc.UntypedServiceImplementation {
  return {
    Alarm: unary<AlarmRequest>(async (a) => {
      // etcd 3.4 answers Alarm, Defragment and Snapshot without a response header.
      if (a.action === AlarmAction.GET) return { alarms: server.alarms.get(a.alarm) };
      const result = await server.propose({ alarm: a });
      const { header: _omit, ...rest } = result.response as { header?: unknown };
      return rest;
    }),
    Status: unary<object>(() => {
      const errors = server.alarms.get().map((a) => `memberID:${a.memberID} alarm:${ALARM_NAMES[a.alarm] ?? a.alarm} `);
      const failure = server.storageFailure;
      if (failure) errors.push(failure.message);
      return {
        header: header(server, server.mvcc.currentRevision),
        version: SERVER_VERSION,
        dbSize: server.mvcc.dbSize,
        leader: server.leaderId.toString(),
        raftIndex: server.raftIndex,
        raftTerm: server.raftTerm,
        raftAppliedIndex: server.appliedIndex,
        errors,
        dbSizeInUse: server.mvcc.dbSizeInUse,
        isLearner: server.isLearner,
      };
    }),
    Defragment: unary<object>(() => {
      server.defragment();
      return {};
    }),
    Hash: unary<object>(() => {
      const h = server.mvcc.hashKV(0);
      return { header: header(server, server.mvcc.currentRevision), hash: h.hash };
    }),
    HashKV: unary<{ revision: string }>((r) => {
      const h = server.mvcc.hashKV(int(r.revision));
      // etcd reports its store's compaction revision as is: -1 until something is compacted.
      return { header: header(server, h.revision), hash: h.hash, compact_revision: server.mvcc.firstRevision };
    }),
    Snapshot: (call: grpc.ServerWritableStream<object, object>) => {
      streamSnapshot(server, call).catch((err: unknown) => call.destroy(serviceError(err)));
    },
    MoveLeader: unary<{ targetID: string }>(async (r) => {
      await server.moveLeader(bigint(r.targetID));
      return { header: header(server, server.mvcc.currentRevision) };
    }),
  };
}

// etcd streams a bbolt file, which is whole pages; etcdctl relies on that to find the SHA-256
// trailer (it requires size % 512 == 32). Our snapshot is padded with zero bytes to whole pages,
// so whoever reads a saved file back must drop the zeros after the snapshot's own CRC.
const SNAPSHOT_PAGE = 4096;

/** Streams the state in 32 KiB chunks, then the SHA-256 of all of it, as etcd does. */
async function streamSnapshot(server: EtcdServer, call: grpc.ServerWritableStream<object, object>): Promise<void> {
  const state = await server.snapshotBytes();
  const data = Buffer.alloc(Math.ceil(state.length / SNAPSHOT_PAGE) * SNAPSHOT_PAGE);
  state.copy(data);
  const sha = createHash("sha256");
  let sent = 0;
  while (sent < data.length) {
    const chunk = data.subarray(sent, Math.min(sent + SNAPSHOT_CHUNK, data.length));
    sent += chunk.length;
    sha.update(chunk);
    if (!call.write({ remaining_bytes: data.length - sent, blob: chunk })) {
      await new Promise<void>((resolve) => call.once("drain", resolve));
    }
    if (call.cancelled) return;
  }
  call.write({ remaining_bytes: 0, blob: sha.digest() });
  call.end();
}

export function clusterService(server: EtcdServer): grpc.UntypedServiceImplementation {
  const members = (): object[] =>
    server.members.map((m) => ({
      ID: m.id.toString(),
      name: m.name,
      peerURLs: m.peerUrls,
      clientURLs: m.clientUrls,
      isLearner: m.isLearner,
    }));
  // etcd's cluster service fills no revision in its headers.
  const clusterHeader = (): object => ({
    cluster_id: server.clusterId.toString(),
    member_id: server.memberId.toString(),
    raft_term: server.raftTerm,
  });
  return {
    MemberList: unary<object>(() => ({ header: clusterHeader(), members: members() })),
    MemberAdd: unary<{ peerURLs: string[]; isLearner: boolean }>(async (r) => {
      const peerUrls = checkPeerUrls(r.peerURLs);
      if (!r.isLearner) checkStartedQuorum(server, { adding: true });
      const id = server.newMemberId(peerUrls);
      await server.proposeConfChange({ type: r.isLearner ? "addLearnerNode" : "addNode", nodeId: id }, { peerUrls });
      return {
        header: clusterHeader(),
        member: { ID: id.toString(), name: "", peerURLs: peerUrls, clientURLs: [], isLearner: r.isLearner },
        members: members(),
      };
    }),
    MemberRemove: unary<{ ID: string }>(async (r) => {
      const id = bigint(r.ID);
      const m = server.members.find((x) => x.id === id);
      if (!m) throw new EtcdError("MemberNotFound");
      if (!m.isLearner) checkStartedQuorum(server, { removing: id });
      await server.proposeConfChange({ type: "removeNode", nodeId: id }, {});
      return { header: clusterHeader(), members: members() };
    }),
    MemberUpdate: unary<{ ID: string; peerURLs: string[] }>(async (r) => {
      const peerUrls = checkPeerUrls(r.peerURLs);
      await server.propose({ member_peer_urls: { id: r.ID, peer_urls: peerUrls } });
      return { header: clusterHeader(), members: members() };
    }),
    MemberPromote: unary<{ ID: string }>(async (r) => {
      const id = bigint(r.ID);
      const m = server.members.find((x) => x.id === id);
      if (!m) throw new EtcdError("MemberNotFound");
      if (!m.isLearner) throw new EtcdError("MemberNotLearner");
      checkStartedQuorum(server, { adding: true });
      await server.checkLearnerReady(id);
      await server.proposeConfChange({ type: "addNode", nodeId: id }, {});
      return { header: clusterHeader(), members: members() };
    }),
  };
}

/**
 * etcd's strict reconfiguration check (on by default in 3.4): after the change, the voters that
 * have started (published their name) must still make a quorum, so that adding a voter that never
 * comes up, or removing one while others are down, cannot leave the cluster without a majority.
 */
function checkStartedQuorum(
  server: EtcdServer,
  change: { readonly adding?: boolean; readonly removing?: bigint },
): void {
  if (!server.config.strictReconfigCheck) return;
  const members = server.members;
  const voters = members.filter((m) => !m.isLearner && m.id !== change.removing);
  const total = voters.length + (change.adding ? 1 : 0);
  const started = voters.filter((m) => m.name !== "").length;
  // Growing a lone member to two is allowed (etcd's special case), or no cluster could grow.
  if (change.adding && started === 1 && total === 2) return;
  if (started < Math.floor(total / 2) + 1) throw new EtcdError("MemberNotEnoughStarted");
}

/** Peer URLs for MemberAdd/MemberUpdate: present and well-formed (etcd: "given member URLs are invalid"). */
function checkPeerUrls(urls: readonly string[]): string[] {
  if (urls.length === 0) throw new EtcdError("MemberBadURLs");
  for (const u of urls) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new EtcdError("MemberBadURLs");
    }
    if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.port === "") {
      throw new EtcdError("MemberBadURLs");
    }
  }
  return [...urls];
}

const AUTH_METHODS = [
  "AuthEnable",
  "AuthDisable",
  "Authenticate",
  "UserAdd",
  "UserGet",
  "UserList",
  "UserDelete",
  "UserChangePassword",
  "UserGrantRole",
  "UserRevokeRole",
  "RoleAdd",
  "RoleGet",
  "RoleList",
  "RoleDelete",
  "RoleGrantPermission",
  "RoleRevokePermission",
];

/** Authentication is not built yet: every Auth RPC says so plainly instead of pretending. */
export function authService(): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of AUTH_METHODS) {
    impl[method] = unary<object>(() => {
      throw new EtcdError(
        "Unimplemented",
        `etcdserver: ${method}: authentication (users, roles, auth enable) is not implemented by the lab store yet`,
      );
    });
  }
  return impl;
}

const SERVING = 1;
const NOT_SERVING = 2;

export function healthService(server: EtcdServer): grpc.UntypedServiceImplementation {
  const status = (): number => (server.storageFailure || server.alarms.has(AlarmType.CORRUPT) ? NOT_SERVING : SERVING);
  return {
    Check: (_call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
      callback(null, { status: status() });
    },
    Watch: (call: grpc.ServerWritableStream<object, object>) => {
      let last = status();
      call.write({ status: last });
      const timer = setInterval(() => {
        const now = status();
        if (now !== last) {
          last = now;
          call.write({ status: now });
        }
      }, 1000);
      call.on("cancelled", () => clearInterval(timer));
      call.on("close", () => clearInterval(timer));
    },
  };
}
