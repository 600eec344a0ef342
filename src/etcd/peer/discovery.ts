import * as net from "node:net";
import type { Logger } from "../../util/logger.js";
import type { EtcdConfig } from "../config.js";
import { hexId } from "../server/ids.js";
import type { MemberImage } from "../wal/snapshot.js";
import {
  decodeRefuse,
  decodeResponse,
  encodeHello,
  encodeRequest,
  type Frame,
  FrameDecoder,
  FrameType,
  frameHeader,
  MAX_HANDSHAKE_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./frame.js";
import { peerLookup } from "./lookup.js";

/**
 * Cluster discovery for a member started with --initial-cluster-state existing (etcd fetches
 * /members from the peer URLs for the same purpose). It does not know the cluster ID or its peers'
 * member IDs yet, so it dials anonymously: a hello with cluster ID, sender and receiver all 0,
 * followed by a single request of kind DISCOVERY_REQUEST_KIND. The acceptor answers it through
 * its onRequest(0n, "cluster-info", body) and accepts nothing else on such a connection.
 */
export const DISCOVERY_REQUEST_KIND = "cluster-info";

/** Largest discovery answer accepted (a member list). */
const MAX_DISCOVERY_ANSWER = 16 * 1024 * 1024;
const ATTEMPT_TIMEOUT_MS = 2000;
const DISCOVERY_DEADLINE_MS = 10_000;
const ROUND_PAUSE_MS = 300;

/**
 * Sends one anonymous request to the peer port at `url` (http://host:port) and resolves with the
 * answer. Rejects on connection failure, refusal, timeout, or the remote's error (its message).
 */
export function anonymousRequest(url: URL, kind: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    if (url.protocol !== "http:") {
      reject(new Error(`peer URL ${url.href}: only http://host:port peer URLs are supported`));
      return;
    }
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === "" ? 80 : Number(url.port);
    const socket = net.connect({ host, port, lookup: peerLookup });
    const decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES);
    let settled = false;
    const finish = (err: Error | undefined, answer?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(answer as Buffer);
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on("connect", () => {
      const hello = encodeHello({ version: PROTOCOL_VERSION, clusterId: 0n, from: 0n, to: 0n });
      const request = encodeRequest({ id: 1, kind, body });
      socket.cork();
      socket.write(frameHeader(FrameType.Hello, hello));
      socket.write(hello);
      socket.write(frameHeader(FrameType.Request, request));
      socket.write(request);
      socket.uncork();
    });
    socket.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      for (const f of frames) {
        try {
          if (f.type === FrameType.HelloOk) {
            decoder.setMaxBytes(MAX_DISCOVERY_ANSWER);
          } else if (f.type === FrameType.Refuse) {
            finish(new Error(`refused: ${decodeRefuse(f.payload).message}`));
          } else if (f.type === FrameType.Response) {
            const r = decodeResponse(f.payload);
            if (r.ok) finish(undefined, r.body);
            else finish(new Error(r.error));
          } else {
            finish(new Error(`unexpected frame type ${f.type}`));
          }
        } catch (err) {
          finish(err instanceof Error ? err : new Error(String(err)));
        }
        if (settled) return;
      }
    });
    socket.on("error", (err) => finish(err));
    socket.on("close", () => finish(new Error("connection closed before an answer")));
  });
}

export interface DiscoveredCluster {
  clusterId: bigint;
  members: MemberImage[];
}

/** Parses the server's "cluster-info" answer: {"clusterId": "<decimal>", "members": [{id: "<decimal>", ...}]}. */
export function parseClusterInfo(answer: Buffer): DiscoveredCluster {
  const fail = (why: string): never => {
    throw new Error(`malformed cluster-info answer: ${why}`);
  };
  let v: unknown;
  try {
    v = JSON.parse(answer.toString("utf8"));
  } catch {
    return fail("not JSON");
  }
  if (typeof v !== "object" || v === null) return fail("not an object");
  const o = v as { clusterId?: unknown; members?: unknown };
  if (typeof o.clusterId !== "string" || !/^\d+$/.test(o.clusterId)) return fail("no clusterId");
  if (!Array.isArray(o.members)) return fail("no members");
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === "string");
  const members = o.members.map((m: unknown): MemberImage => {
    if (typeof m !== "object" || m === null) return fail("a member is not an object");
    const r = m as Record<string, unknown>;
    if (typeof r.id !== "string" || !/^\d+$/.test(r.id)) return fail("a member has no id");
    if (typeof r.name !== "string" || !strings(r.peerUrls) || !strings(r.clientUrls)) return fail("bad member fields");
    return {
      id: BigInt(r.id),
      name: r.name,
      peerUrls: r.peerUrls,
      clientUrls: r.clientUrls,
      isLearner: r.isLearner === true,
    };
  });
  return { clusterId: BigInt(o.clusterId), members };
}

/**
 * Asks the members --initial-cluster names (all but this one) for the cluster ID and member list,
 * trying each URL in turn for up to about ten seconds. Rejects naming every URL and its last error.
 */
export async function discoverCluster(config: EtcdConfig, logger: Logger): Promise<DiscoveredCluster> {
  const own = new Set(config.initialAdvertisePeerUrls.map((u) => u.host));
  const urls: URL[] = [];
  for (const [name, list] of config.initialCluster) {
    if (name === config.name) continue;
    for (const u of list) if (!own.has(u.host)) urls.push(u);
  }
  if (urls.length === 0) {
    throw new Error(
      "--initial-cluster-state existing: --initial-cluster names no other member to learn the cluster from",
    );
  }
  const errors = new Map<string, string>();
  const deadline = Date.now() + DISCOVERY_DEADLINE_MS;
  for (;;) {
    for (const u of urls) {
      const where = `${u.protocol}//${u.host}`;
      try {
        const info = parseClusterInfo(
          await anonymousRequest(u, DISCOVERY_REQUEST_KIND, Buffer.alloc(0), ATTEMPT_TIMEOUT_MS),
        );
        logger.info("learned the cluster from a peer", {
          peer: where,
          "cluster-id": hexId(info.clusterId),
          members: info.members.length,
        });
        return info;
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        errors.set(where, msg);
        logger.debug("cannot learn the cluster from a peer", { peer: where, error: msg });
      }
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, ROUND_PAUSE_MS));
  }
  throw new Error(
    `cannot learn the cluster from its peers (${[...errors].map(([u, e]) => `${u}: ${e}`).join("; ")}); are they running, and is this member added (etcdctl member add)?`,
  );
}
