import { EtcdError } from "../errors.js";
import type { LeaseImage } from "../wal/snapshot.js";

/**
 * Leases: a TTL in seconds, a set of attached keys and an expiry time. Grant and revoke go through
 * the log (every member applies them); expiry times and keep-alives are the leader's alone and are
 * not logged, which is why a member that becomes leader (or restarts) gives every lease a fresh
 * full TTL (etcd 3.4's "promote"): a lease is never expired early by a leader change.
 */

export const MAX_LEASE_TTL = 9_000_000_000;

export interface Lease {
  readonly id: bigint;
  /** Granted TTL in seconds (after raising to the minimum). */
  readonly ttl: number;
  /** Wall-clock expiry in ms; +Infinity while this member is not the leader. */
  expiry: number;
  readonly keys: Set<string>;
}

export class Lessor {
  private readonly leases = new Map<bigint, Lease>();
  private primary = false;

  /**
   * @param minTtl the shortest TTL granted, in seconds (etcd: 1.5 election timeouts, rounded up)
   * @param now the clock, injected so tests can drive time
   */
  constructor(
    readonly minTtl: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.leases.size;
  }

  /** Applied from the log. */
  grant(id: bigint, ttl: number): Lease {
    if (this.leases.has(id)) throw new EtcdError("LeaseExist");
    if (ttl > MAX_LEASE_TTL) throw new EtcdError("LeaseTTLTooLarge");
    const effective = Math.max(ttl, this.minTtl);
    const lease: Lease = {
      id,
      ttl: effective,
      expiry: this.primary ? this.now() + effective * 1000 : Number.POSITIVE_INFINITY,
      keys: new Set(),
    };
    this.leases.set(id, lease);
    return lease;
  }

  /** Applied from the log: forgets the lease and returns the keys the caller must delete. */
  revoke(id: bigint): string[] {
    const lease = this.leases.get(id);
    if (!lease) throw new EtcdError("LeaseNotFound");
    this.leases.delete(id);
    return [...lease.keys].sort();
  }

  has(id: bigint): boolean {
    return this.leases.has(id);
  }

  get(id: bigint): Lease | undefined {
    return this.leases.get(id);
  }

  /** Keep-alive on the leader: the lease lives another full TTL. Returns the TTL. */
  renew(id: bigint): number {
    const lease = this.leases.get(id);
    if (!lease) throw new EtcdError("LeaseNotFound");
    lease.expiry = this.now() + lease.ttl * 1000;
    return lease.ttl;
  }

  /** Seconds left, truncated as etcd reports them; -1 for an unknown lease. */
  remaining(id: bigint): number {
    const lease = this.leases.get(id);
    if (!lease) return -1;
    if (!Number.isFinite(lease.expiry)) return lease.ttl;
    return Math.max(0, Math.trunc((lease.expiry - this.now()) / 1000));
  }

  attach(id: bigint, key: string): void {
    this.leases.get(id)?.keys.add(key);
  }

  detach(id: bigint, key: string): void {
    this.leases.get(id)?.keys.delete(key);
  }

  /** This member became the one that expires leases: every lease gets a full TTL from now. */
  promote(): void {
    this.primary = true;
    const now = this.now();
    for (const lease of this.leases.values()) lease.expiry = now + lease.ttl * 1000;
  }

  demote(): void {
    this.primary = false;
    for (const lease of this.leases.values()) lease.expiry = Number.POSITIVE_INFINITY;
  }

  /** Leases past their expiry, oldest first (the leader proposes their revocation). */
  expired(limit = 1000): bigint[] {
    const now = this.now();
    const out: Lease[] = [];
    for (const lease of this.leases.values()) if (lease.expiry <= now) out.push(lease);
    out.sort((a, b) => a.expiry - b.expiry);
    return out.slice(0, limit).map((l) => l.id);
  }

  list(): Lease[] {
    return [...this.leases.values()];
  }

  image(): LeaseImage[] {
    return this.list().map((l) => ({ id: l.id, ttl: l.ttl }));
  }

  restore(images: readonly LeaseImage[]): void {
    this.leases.clear();
    for (const l of images) {
      this.leases.set(l.id, { id: l.id, ttl: l.ttl, expiry: Number.POSITIVE_INFINITY, keys: new Set() });
    }
    if (this.primary) this.promote();
  }
}
