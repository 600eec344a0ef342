import { createHash, randomBytes } from "node:crypto";

/**
 * Member and cluster IDs derived as etcd derives them, so that the same --initial-cluster and
 * --initial-cluster-token give the same IDs as a real etcd (etcdctl member list shows them).
 */

/** First 8 bytes of SHA-1(sorted peer URLs joined, cluster token), big-endian. */
export function memberIdFor(peerUrls: readonly string[], clusterToken: string): bigint {
  const sorted = [...peerUrls].sort();
  const digest = createHash("sha1")
    .update(sorted.join("") + clusterToken)
    .digest();
  return digest.readBigUInt64BE(0);
}

/** First 8 bytes of SHA-1 over the sorted member IDs, each 8 bytes big-endian. */
export function clusterIdFor(memberIds: readonly bigint[]): bigint {
  const sorted = [...memberIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const buf = Buffer.alloc(8 * sorted.length);
  sorted.forEach((id, i) => {
    buf.writeBigUInt64BE(id, i * 8);
  });
  return createHash("sha1").update(buf).digest().readBigUInt64BE(0);
}

/** etcd prints IDs as 16 lower-case hex digits. */
export function hexId(id: bigint): string {
  return id.toString(16).padStart(16, "0");
}

/**
 * Unique request and lease IDs, as etcd's idutil makes them: the member ID's low 16 bits, then a
 * millisecond timestamp and a counter, so IDs from different members and restarts do not collide.
 */
export class IdGenerator {
  private next: bigint;
  constructor(memberId: bigint, nowMs: number = Date.now()) {
    const prefix = (memberId & 0xffffn) << 48n;
    const suffix = (BigInt(nowMs) & 0xffffffffffn) << 8n;
    this.next = prefix | suffix | BigInt(randomBytes(1)[0] ?? 0);
  }

  /** A positive 63-bit ID. */
  nextId(): bigint {
    this.next = (this.next + 1n) & 0xffffffffffffffffn;
    const id = this.next & 0x7fffffffffffffffn;
    return id === 0n ? this.nextId() : id;
  }
}
