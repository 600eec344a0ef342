/**
 * A seeded generator of random etcd v3 operation sequences, for differential tests that run the
 * same sequence against the real etcd and our member and compare every answer.
 *
 * Deterministic: the same seed (and context) always gives the same sequence. Sequences use a tiny
 * key space under one prefix so that keys collide (overwrites, deletes of live keys, txn compares
 * that both hold and fail), and revisions are *relative* to a base revision chosen when the
 * sequence starts running (see `Rev`), so one sequence behaves the same whatever ran before it on
 * the same servers.
 */

import { mulberry32 } from "./prng.js";

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    const total = choices.reduce((s, [w]) => s + w, 0);
    let x = this.next() * total;
    for (const [w, v] of choices) {
      x -= w;
      if (x < 0) return v;
    }
    return (choices[choices.length - 1] as readonly [number, T])[1];
  }
}

/**
 * A revision in a request. `rel` is relative to the sequence's base revision (the revision of a
 * marker write made just before the sequence runs, on each server separately); `abs` is sent as
 * is (used for 0 "none/current" and negative values only).
 */
export type Rev = { readonly rel: number } | { readonly abs: number };

export const NONE: Rev = { abs: 0 };

export function resolveRev(r: Rev, base: number): number {
  return "rel" in r ? base + r.rel : r.abs;
}

// Wire enum values (etcdserverpb), including out-of-range ones that etcd accepts.
export const SortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
export const SortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;
export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;

export interface RangeSpec {
  readonly kind: "range";
  readonly key: string;
  readonly rangeEnd: string;
  readonly limit: number;
  readonly revision: Rev;
  readonly sortOrder: number;
  readonly sortTarget: number;
  readonly serializable: boolean;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  readonly minMod: Rev;
  readonly maxMod: Rev;
  readonly minCreate: Rev;
  readonly maxCreate: Rev;
}

export interface PutSpec {
  readonly kind: "put";
  readonly key: string;
  readonly value: string;
  /** Decimal lease ID, "0" for none. */
  readonly lease: string;
  readonly prevKv: boolean;
  readonly ignoreValue: boolean;
  readonly ignoreLease: boolean;
}

export interface DeleteSpec {
  readonly kind: "delete";
  readonly key: string;
  readonly rangeEnd: string;
  readonly prevKv: boolean;
}

export interface CompareSpec {
  readonly key: string;
  readonly rangeEnd: string;
  readonly target: number;
  readonly result: number;
  /** Which member of the target_union is set (normally the one matching `target`). */
  readonly union: "version" | "create_revision" | "mod_revision" | "value" | "lease" | "none";
  readonly version: number;
  readonly createRevision: Rev;
  readonly modRevision: Rev;
  readonly value: string;
  readonly lease: string;
}

export interface TxnSpec {
  readonly kind: "txn";
  readonly compare: readonly CompareSpec[];
  readonly success: readonly TxnOpSpec[];
  readonly failure: readonly TxnOpSpec[];
}

/** A RequestOp with no request set (etcd rejects it). */
export interface EmptyOpSpec {
  readonly kind: "empty";
}

export type TxnOpSpec = RangeSpec | PutSpec | DeleteSpec | TxnSpec | EmptyOpSpec;

export interface CompactSpec {
  readonly kind: "compact";
  readonly revision: Rev;
  readonly physical: boolean;
}

export interface LeaseGrantSpec {
  readonly kind: "leaseGrant";
  readonly id: string;
  readonly ttl: number;
}

export interface LeaseRevokeSpec {
  readonly kind: "leaseRevoke";
  readonly id: string;
}

export interface LeaseTtlSpec {
  readonly kind: "leaseTtl";
  readonly id: string;
  readonly keys: boolean;
}

export interface LeaseLeasesSpec {
  readonly kind: "leaseLeases";
}

export type Op =
  | RangeSpec
  | PutSpec
  | DeleteSpec
  | TxnSpec
  | CompactSpec
  | LeaseGrantSpec
  | LeaseRevokeSpec
  | LeaseTtlSpec
  | LeaseLeasesSpec;

export interface GenContext {
  /** Every key starts with this (distinct per sequence run on shared servers). */
  readonly prefix: string;
  /** Lease IDs of this sequence are derived from it (distinct per sequence). */
  readonly leaseBase: number;
  /** etcd's --max-txn-ops (default 128). */
  readonly maxTxnOps?: number;
}

/** The lease IDs a sequence grants and uses (one of them negative: etcd accepts any non-zero ID). */
export function leaseIds(ctx: GenContext): string[] {
  const ids: string[] = [];
  for (let i = 1; i <= 4; i++) ids.push(String(ctx.leaseBase + i));
  ids.push(String(-(ctx.leaseBase + 5)));
  return ids;
}

/** An ID a sequence mostly uses as "no such lease" (it is rarely granted too). */
export function unknownLeaseId(ctx: GenContext): string {
  return String(ctx.leaseBase + 9);
}

/** Every lease ID a sequence may have granted, for cleaning up after it. */
export function allLeaseIds(ctx: GenContext): string[] {
  return [...leaseIds(ctx), unknownLeaseId(ctx)];
}

/** The smallest key greater than every key with the given prefix (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: string): string {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const c = prefix.charCodeAt(i);
    if (c < 0xff) return prefix.slice(0, i) + String.fromCharCode(c + 1);
  }
  return "\u0000";
}

// "a\u0000" sorts right after "a": single-key and prefix ranges must tell them apart.
const SUFFIXES = ["a", "a\u0000", "a/1", "a/2", "ab", "b", "b/1", "c", "\u00ff"];
const VALUES = ["", "v0", "v1", "v2", "zz"];
const LONG_TTL = [600, 3600, 86_400, 1_000_000];
export const MAX_LEASE_TTL = 9_000_000_000;

/**
 * Generates `count` operations for `seed`. A rough model of the revision counter (an upper bound:
 * every op that may write counts) steers revision arguments towards the interesting region:
 * mostly past revisions of this sequence, sometimes the future, sometimes below a compaction.
 */
export function generate(seed: number, count: number, ctx: GenContext): Op[] {
  return new Generator(new Rng(seed), ctx).run(count);
}

class Generator {
  private writes = 0;
  private readonly keys: string[];
  private readonly maxTxnOps: number;
  private readonly leasePool: string[];
  private readonly unknownLease: string;

  constructor(
    private readonly r: Rng,
    private readonly ctx: GenContext,
  ) {
    this.keys = SUFFIXES.map((s) => ctx.prefix + s);
    this.maxTxnOps = ctx.maxTxnOps ?? 128;
    this.leasePool = leaseIds(ctx);
    this.unknownLease = unknownLeaseId(ctx);
  }

  run(count: number): Op[] {
    const ops: Op[] = [];
    for (let i = 0; i < count; i++) {
      const op = this.op();
      if (op.kind === "put" || op.kind === "delete" || op.kind === "txn" || op.kind === "leaseRevoke") this.writes++;
      ops.push(op);
    }
    return ops;
  }

  private op(): Op {
    const r = this.r;
    return r.weighted<() => Op>([
      [26, () => this.put()],
      [24, () => this.range()],
      [9, () => this.del()],
      [22, () => safeTxn(this.txn(0))],
      [1, () => this.bigTxn()],
      [3, () => this.compact()],
      [5, () => this.leaseGrant()],
      [3, () => ({ kind: "leaseRevoke", id: this.leaseId() })],
      [4, () => ({ kind: "leaseTtl", id: this.leaseId(), keys: r.chance(0.7) })],
      [2, () => ({ kind: "leaseLeases" })],
    ])();
  }

  private key(): string {
    if (this.r.chance(0.015)) return "";
    if (this.r.chance(0.03)) return this.ctx.prefix;
    return this.r.pick(this.keys);
  }

  private rangeEnd(key: string): string {
    const r = this.r;
    return r.weighted<() => string>([
      [40, () => ""],
      [15, () => prefixEnd(key)],
      [10, () => "\u0000"],
      [15, () => prefixEnd(this.ctx.prefix)],
      [20, () => r.pick(this.keys)],
    ])();
  }

  private value(): string {
    if (this.r.chance(0.1)) return `x${this.r.int(0, 99)}`;
    return this.r.pick(VALUES);
  }

  private leaseId(): string {
    if (this.r.chance(0.1)) return this.unknownLease;
    return this.r.pick(this.leasePool);
  }

  /** A relative revision in this sequence's range, sometimes in the future. */
  private rev(): Rev {
    const r = this.r;
    return r.weighted<() => Rev>([
      [70, () => ({ rel: r.int(0, this.writes + 1) })],
      [10, () => ({ rel: this.writes + r.int(2, 6) })],
      [10, () => ({ rel: r.int(Math.max(0, this.writes - 3), this.writes + 1) })],
      [5, () => ({ abs: -1 })],
      [5, () => ({ rel: 0 })],
    ])();
  }

  private optRev(p: number): Rev {
    return this.r.chance(p) ? this.rev() : NONE;
  }

  private put(): PutSpec {
    const r = this.r;
    const ignoreValue = r.chance(0.12);
    const ignoreLease = r.chance(0.12);
    let lease = "0";
    if (r.chance(0.3)) lease = this.leaseId();
    // Mostly well-formed flag combinations; sometimes the ones etcd rejects up front.
    if (ignoreLease && !r.chance(0.15)) lease = "0";
    const value = ignoreValue && !r.chance(0.15) ? "" : this.value();
    return { kind: "put", key: this.key(), value, lease, prevKv: r.chance(0.4), ignoreValue, ignoreLease };
  }

  private range(): RangeSpec {
    const r = this.r;
    const key = this.key();
    let sortTarget: number = r.weighted([
      [50, SortTarget.KEY],
      [12, SortTarget.VERSION],
      [12, SortTarget.CREATE],
      [12, SortTarget.MOD],
      [14, SortTarget.VALUE],
    ]);
    const sortOrder = r.weighted([
      [45, SortOrder.NONE],
      [25, SortOrder.ASCEND],
      [27, SortOrder.DESCEND],
      [3, 3], // not a SortOrder; etcd 3.4 accepts it and does not sort
    ]);
    const keysOnly = r.chance(0.15);
    let limit = r.chance(0.35) ? r.int(1, 4) : r.chance(0.05) ? -1 : 0;
    // With keys_only the values are gone, so ties of a value sort could not be told apart at a
    // limit's cut: keep that combination unlimited.
    if (keysOnly && sortTarget === SortTarget.VALUE && limit > 0) {
      if (r.chance(0.5)) limit = 0;
      else sortTarget = SortTarget.MOD;
    }
    return {
      kind: "range",
      key,
      rangeEnd: this.rangeEnd(key),
      limit,
      revision: this.optRev(0.3),
      sortOrder,
      sortTarget,
      serializable: r.chance(0.2),
      keysOnly,
      countOnly: r.chance(0.08),
      minMod: this.optRev(0.07),
      maxMod: this.optRev(0.07),
      minCreate: this.optRev(0.07),
      maxCreate: this.optRev(0.07),
    };
  }

  private del(): DeleteSpec {
    const key = this.key();
    return { kind: "delete", key, rangeEnd: this.rangeEnd(key), prevKv: this.r.chance(0.5) };
  }

  private compare(): CompareSpec {
    const r = this.r;
    const target = r.weighted([
      [22, CompareTarget.VERSION],
      [18, CompareTarget.CREATE],
      [18, CompareTarget.MOD],
      [30, CompareTarget.VALUE],
      [10, CompareTarget.LEASE],
      [2, 5], // not a CompareTarget
    ]);
    const result = r.weighted([
      [40, CompareResult.EQUAL],
      [20, CompareResult.GREATER],
      [20, CompareResult.LESS],
      [18, CompareResult.NOT_EQUAL],
      [2, 4], // not a CompareResult
    ]);
    const natural = (["version", "create_revision", "mod_revision", "value", "lease"] as const)[target];
    const union: CompareSpec["union"] = r.chance(0.04)
      ? r.pick(["version", "create_revision", "mod_revision", "value", "lease", "none"] as const)
      : (natural ?? "none");
    const key = this.r.chance(0.01) ? "" : r.pick(this.keys);
    return {
      key,
      rangeEnd: r.chance(0.2) ? this.rangeEnd(key) : "",
      target,
      result,
      union,
      version: r.int(0, 3),
      createRevision: r.chance(0.15) ? NONE : { rel: r.int(0, this.writes + 1) },
      modRevision: r.chance(0.15) ? NONE : { rel: r.int(0, this.writes + 1) },
      value: this.value(),
      lease: r.chance(0.4) ? "0" : this.leaseId(),
    };
  }

  private txnOp(depth: number): TxnOpSpec {
    const r = this.r;
    return r.weighted<() => TxnOpSpec>([
      [35, () => this.range()],
      [35, () => this.put()],
      [15, () => this.del()],
      [depth < 2 ? 10 : 0, () => this.txn(depth + 1)],
      [1, () => ({ kind: "empty" })],
    ])();
  }

  /**
   * A branch of ops. Usually cleaned of what etcd rejects as duplicates (one key put twice, or put
   * and deleted, in one branch; checked only at this level), so that most txns get to run.
   */
  private branch(depth: number, max: number): TxnOpSpec[] {
    const r = this.r;
    const ops: TxnOpSpec[] = [];
    const n = r.int(0, max);
    for (let i = 0; i < n; i++) ops.push(this.txnOp(depth));
    if (r.chance(0.2)) return ops;
    const dels = ops.filter((o): o is DeleteSpec => o.kind === "delete");
    const hit = (k: string): boolean =>
      dels.some((d) =>
        d.rangeEnd === "" ? d.key === k : d.rangeEnd === "\u0000" ? false : k >= d.key && k < d.rangeEnd,
      );
    const puts = new Set<string>();
    return ops.filter((o) => {
      if (o.kind !== "put") return true;
      if (puts.has(o.key) || hit(o.key)) return false;
      puts.add(o.key);
      return true;
    });
  }

  private txn(depth: number): TxnSpec {
    const r = this.r;
    const compare: CompareSpec[] = [];
    const nc = r.weighted([
      [15, 0],
      [45, 1],
      [25, 2],
      [15, 3],
    ]);
    for (let i = 0; i < nc; i++) compare.push(this.compare());
    return { kind: "txn", compare, success: this.branch(depth, 4), failure: this.branch(depth, 3) };
  }

  /** Transactions near --max-txn-ops, at the top level or through a nested txn's reduced limit. */
  private bigTxn(): TxnSpec {
    const r = this.r;
    const max = this.maxTxnOps;
    const ranges = (n: number): RangeSpec[] => {
      const out: RangeSpec[] = [];
      for (let i = 0; i < n; i++) out.push({ ...this.range(), key: r.pick(this.keys) });
      return out;
    };
    if (r.chance(0.5)) {
      const n = r.int(max - 1, max + 1);
      return { kind: "txn", compare: [], success: ranges(n), failure: [] };
    }
    const outer = r.int(max - 40, max - 1);
    const inner = r.int(Math.max(1, max - outer - 3), max - outer + 3);
    const nested: TxnSpec = { kind: "txn", compare: [], success: ranges(inner), failure: [] };
    return { kind: "txn", compare: [], success: [...ranges(outer - 1), nested], failure: [] };
  }

  private compact(): CompactSpec {
    const r = this.r;
    const revision = r.weighted<() => Rev>([
      [70, () => ({ rel: r.int(0, this.writes) })],
      [10, () => ({ rel: this.writes + r.int(1, 5) })],
      [10, () => ({ abs: 0 })],
      [10, () => ({ abs: -1 })],
    ])();
    return { kind: "compact", revision, physical: r.chance(0.5) };
  }

  private leaseGrant(): LeaseGrantSpec {
    const r = this.r;
    const ttl = r.chance(0.08) ? MAX_LEASE_TTL + r.int(1, 10) : r.chance(0.04) ? MAX_LEASE_TTL : r.pick(LONG_TTL);
    return { kind: "leaseGrant", id: this.r.chance(0.05) ? this.unknownLease : r.pick(this.leasePool), ttl };
  }
}

function hasFromKeyDelete(t: TxnSpec): boolean {
  return [...t.success, ...t.failure].some(
    (o) => (o.kind === "delete" && o.rangeEnd === "\u0000") || (o.kind === "txn" && hasFromKeyDelete(o)),
  );
}

function withoutIgnoreFlags(t: TxnSpec): TxnSpec {
  const fix = (o: TxnOpSpec): TxnOpSpec => {
    if (o.kind === "put") return { ...o, ignoreValue: false, ignoreLease: false };
    if (o.kind === "txn") return withoutIgnoreFlags(o);
    return o;
  };
  return { ...t, success: t.success.map(fix), failure: t.failure.map(fix) };
}

/**
 * etcd 3.4's duplicate-key check takes a from-key delete ("\0") as holding no key, so a txn may
 * delete a key that a later put in it reads with ignore_value/ignore_lease; the real etcd then
 * panics applying it (the put finds no previous key mid-txn). Such txns would crash the reference,
 * so puts in a txn with a from-key delete never ignore value or lease.
 */
function safeTxn(t: TxnSpec): TxnSpec {
  return hasFromKeyDelete(t) ? withoutIgnoreFlags(t) : t;
}

/** One line per op, revisions shown relative to the base ("B+3"). */
export function describeOp(op: Op | TxnOpSpec): string {
  return JSON.stringify(op, (k, v) => {
    if (k === "kind") return v;
    if (v && typeof v === "object" && ("rel" in v || "abs" in v) && Object.keys(v).length === 1) {
      return "rel" in v ? `B+${(v as { rel: number }).rel}` : (v as { abs: number }).abs;
    }
    return v;
  });
}
