import type { Outcome, RawClient } from "./diff-client.js";
import {
  type CompareSpec,
  describeOp,
  type GenContext,
  type Op,
  prefixEnd,
  type RangeSpec,
  resolveRev,
  SortOrder,
  SortTarget,
  type TxnOpSpec,
  type TxnSpec,
} from "./opgen.js";

/**
 * Runs generated operation sequences (test/helpers/opgen.ts) against two servers and compares
 * every answer field by field. What may legitimately differ is normalized away first:
 *
 *  - header.cluster_id, header.member_id and header.raft_term (identity and Raft state);
 *  - absolute revisions: every revision in requests and responses is relative to a base revision
 *    taken on each server just before the sequence (a marker write), so sequences are independent
 *    of what ran before them on the same servers;
 *  - the order of equal sort keys in a sorted Range (etcd sorts with Go's unstable sort): ties are
 *    compared as sets, and a tie group cut by the limit only by its sort key and size;
 *  - the order of LeaseLeases and of LeaseTimeToLive's keys (etcd iterates Go maps);
 *  - LeaseTimeToLive's remaining TTL, a clock reading, within 2 seconds.
 */

export const MARKER_KEY = "!diff-marker";

const b = (s: string): Buffer => Buffer.from(s, "latin1");

/**
 * A range_end for the wire: absent when empty, as Go clients (proto3 canonical encoding) send it.
 * protobufjs would send an explicitly empty field, which etcd 3.4 decodes as a non-nil empty slice
 * and then treats like "\0" (every key >= key); see the report in differential.test.ts.
 */
const end = (s: string): Buffer | undefined => (s === "" ? undefined : b(s));

function rangeRequest(s: RangeSpec, base: number): object {
  return {
    key: b(s.key),
    range_end: end(s.rangeEnd),
    limit: String(s.limit),
    revision: String(resolveRev(s.revision, base)),
    sort_order: s.sortOrder,
    sort_target: s.sortTarget,
    serializable: s.serializable,
    keys_only: s.keysOnly,
    count_only: s.countOnly,
    min_mod_revision: String(resolveRev(s.minMod, base)),
    max_mod_revision: String(resolveRev(s.maxMod, base)),
    min_create_revision: String(resolveRev(s.minCreate, base)),
    max_create_revision: String(resolveRev(s.maxCreate, base)),
  };
}

function compareRequest(c: CompareSpec, base: number): object {
  const req: Record<string, unknown> = { result: c.result, target: c.target, key: b(c.key) };
  if (c.rangeEnd !== "") req.range_end = b(c.rangeEnd);
  switch (c.union) {
    case "version":
      req.version = String(c.version);
      break;
    case "create_revision":
      req.create_revision = String(resolveRev(c.createRevision, base));
      break;
    case "mod_revision":
      req.mod_revision = String(resolveRev(c.modRevision, base));
      break;
    case "value":
      req.value = b(c.value);
      break;
    case "lease":
      req.lease = c.lease;
      break;
    default:
  }
  return req;
}

function requestOp(op: TxnOpSpec, base: number): object {
  switch (op.kind) {
    case "range":
      return { request_range: rangeRequest(op, base) };
    case "put":
      return {
        request_put: {
          key: b(op.key),
          value: b(op.value),
          lease: op.lease,
          prev_kv: op.prevKv,
          ignore_value: op.ignoreValue,
          ignore_lease: op.ignoreLease,
        },
      };
    case "delete":
      return { request_delete_range: { key: b(op.key), range_end: end(op.rangeEnd), prev_kv: op.prevKv } };
    case "txn":
      return { request_txn: txnRequest(op, base) };
    case "empty":
      return {};
  }
}

function txnRequest(t: TxnSpec, base: number): object {
  return {
    compare: t.compare.map((c) => compareRequest(c, base)),
    success: t.success.map((o) => requestOp(o, base)),
    failure: t.failure.map((o) => requestOp(o, base)),
  };
}

/** Sends one op; `base` resolves its relative revisions. */
export function execute(c: RawClient, op: Op, base: number): Promise<Outcome> {
  switch (op.kind) {
    case "range":
      return c.kv("Range", rangeRequest(op, base));
    case "put":
    case "delete":
      return c.kv(
        op.kind === "put" ? "Put" : "DeleteRange",
        (requestOp(op, base) as Record<string, object>)[
          op.kind === "put" ? "request_put" : "request_delete_range"
        ] as object,
      );
    case "txn":
      return c.kv("Txn", txnRequest(op, base));
    case "compact":
      return c.kv("Compact", { revision: String(resolveRev(op.revision, base)), physical: op.physical });
    case "leaseGrant":
      return c.lease("LeaseGrant", { TTL: String(op.ttl), ID: op.id });
    case "leaseRevoke":
      return c.lease("LeaseRevoke", { ID: op.id });
    case "leaseTtl":
      return c.lease("LeaseTimeToLive", { ID: op.id, keys: op.keys });
    case "leaseLeases":
      return c.lease("LeaseLeases", {});
  }
}

// ---- normalization ----

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const IGNORED = new Set(["cluster_id", "member_id", "raft_term"]);
const REVISIONS = new Set(["revision", "create_revision", "mod_revision"]);

/** Plain JSON: Buffers as latin1 strings, revisions relative to `base`, ignored fields dropped. */
function plain(v: unknown, base: number, key = ""): Json {
  if (v === undefined || v === null) return null;
  if (Buffer.isBuffer(v)) return v.toString("latin1");
  if (Array.isArray(v)) return v.map((x) => plain(x, base));
  if (typeof v === "object") {
    const out: { [k: string]: Json } = {};
    for (const k of Object.keys(v as object).sort()) {
      if (IGNORED.has(k)) continue;
      out[k] = plain((v as Record<string, unknown>)[k], base, k);
    }
    return out;
  }
  if (REVISIONS.has(key) && (typeof v === "string" || typeof v === "number")) {
    const n = Number(v);
    return n === 0 ? 0 : `B${n - base >= 0 ? "+" : ""}${n - base}`;
  }
  return v as Json;
}

function sortValue(kv: { [k: string]: Json }, target: number): Json {
  switch (target) {
    case SortTarget.VERSION:
      return Number(kv.version);
    case SortTarget.CREATE:
      return relNum(kv.create_revision);
    case SortTarget.MOD:
      return relNum(kv.mod_revision);
    default:
      return kv.value ?? "";
  }
}

function relNum(v: Json | undefined): number {
  if (typeof v === "number") return v;
  return Number(String(v).slice(1));
}

/** Ties of a non-key sort compared as sets; a tie group cut by the limit by sort key and size. */
function normalizeRange(resp: { [k: string]: Json }, spec: RangeSpec): void {
  let order = spec.sortOrder;
  if (spec.sortTarget !== SortTarget.KEY && order === SortOrder.NONE) order = SortOrder.ASCEND;
  if (spec.sortTarget === SortTarget.KEY || (order !== SortOrder.ASCEND && order !== SortOrder.DESCEND)) return;
  const kvs = (resp.kvs ?? []) as { [k: string]: Json }[];
  const groups: { sort: Json; kvs: { [k: string]: Json }[] }[] = [];
  for (const kv of kvs) {
    const s = sortValue(kv, spec.sortTarget);
    const last = groups[groups.length - 1];
    if (last && last.sort === s) last.kvs.push(kv);
    else groups.push({ sort: s, kvs: [kv] });
  }
  const out: Json[] = [];
  groups.forEach((g, i) => {
    if (resp.more === true && i === groups.length - 1) {
      out.push({ tieGroupCutByLimit: g.sort, size: g.kvs.length });
      return;
    }
    out.push(...g.kvs.sort((x, y) => (String(x.key) < String(y.key) ? -1 : String(x.key) > String(y.key) ? 1 : 0)));
  });
  resp.kvs = out;
}

function normalizeTxn(resp: { [k: string]: Json }, spec: TxnSpec): void {
  const branch = resp.succeeded === true ? spec.success : spec.failure;
  const responses = (resp.responses ?? []) as { [k: string]: Json }[];
  responses.forEach((r, i) => {
    const op = branch[i];
    if (op?.kind === "range" && r.response_range) normalizeRange(r.response_range as { [k: string]: Json }, op);
    if (op?.kind === "txn" && r.response_txn) normalizeTxn(r.response_txn as { [k: string]: Json }, op);
  });
}

export type Normalized = { ok: { [k: string]: Json } } | { error: { code: number; details: string } };

export function normalize(o: Outcome, op: Op, base: number): Normalized {
  if ("error" in o) return { error: { code: o.error.code, details: o.error.details } };
  const resp = plain(o.ok, base) as { [k: string]: Json };
  if (op.kind === "range") normalizeRange(resp, op);
  if (op.kind === "txn") normalizeTxn(resp, op);
  if (op.kind === "leaseLeases" && Array.isArray(resp.leases)) {
    resp.leases = (resp.leases as { [k: string]: Json }[]).sort((x, y) =>
      Number(BigInt(String(x.ID)) - BigInt(String(y.ID))),
    );
  }
  if (op.kind === "leaseTtl" && Array.isArray(resp.keys)) resp.keys = (resp.keys as string[]).sort();
  return { ok: resp };
}

/** The path of the first difference, or undefined when equal. */
export function firstDifference(a: Json, b: Json, path = "$"): string | undefined {
  if (a === b) return undefined;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const d = firstDifference(a[i] ?? null, b[i] ?? null, `${path}[${i}]`);
      if (d) return d;
    }
    return a.length === b.length ? undefined : `${path}.length`;
  }
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference(a[k] ?? null, b[k] ?? null, `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return path;
}

/** Compares the real etcd's answer (`want`) with ours (`got`); the path of a difference, if any. */
export function compareOutcomes(op: Op, want: Normalized, got: Normalized): string | undefined {
  if (op.kind === "leaseTtl" && "ok" in want && "ok" in got) {
    const w = Number(want.ok.TTL);
    const g = Number(got.ok.TTL);
    // A clock reading: equal up to the time between the two calls (and rounding).
    if (Math.sign(w) === Math.sign(g) && Math.abs(w - g) <= 2) got = { ok: { ...got.ok, TTL: want.ok.TTL ?? null } };
  }
  return firstDifference(want as unknown as Json, got as unknown as Json);
}

// ---- sequences ----

export interface Servers {
  readonly etcd: RawClient;
  readonly lab: RawClient;
}

/** Tallies of what the sequences exercised (op kinds and their outcomes), for the coverage check. */
export class Coverage {
  readonly counts = new Map<string, number>();
  add(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }
  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }
  record(op: Op, n: Normalized): void {
    if ("error" in n) {
      this.add(`${op.kind}:error:${n.error.details}`);
      if (op.kind === "txn" && n.error.details.includes("too many") && op.success.length <= 128) {
        this.add("txn:error:nested-over-limit");
      }
      return;
    }
    this.add(`${op.kind}:ok`);
    if (op.kind === "txn") this.txn(op, n.ok);
    if (op.kind === "range") {
      this.rangeShape(op);
      if (JSON.stringify(n.ok.kvs).includes("tieGroupCutByLimit")) this.add("range:tie-cut-by-limit");
    }
    if (op.kind === "leaseTtl") {
      if (n.ok.TTL === "-1") this.add("leaseTtl:unknown-lease");
      if (Array.isArray(n.ok.keys) && n.ok.keys.length > 0) this.add("leaseTtl:with-keys");
    }
  }
  private txn(spec: TxnSpec, resp: { [k: string]: Json }): void {
    this.add(resp.succeeded === true ? "txn:succeeded" : "txn:failed");
    const branch = resp.succeeded === true ? spec.success : spec.failure;
    const responses = (resp.responses ?? []) as { [k: string]: Json }[];
    responses.forEach((r, i) => {
      const op = branch[i];
      if (op?.kind === "txn" && r.response_txn) {
        this.add("txn:nested-ran");
        this.txn(op, r.response_txn as { [k: string]: Json });
      } else if (op) this.add(`txn:op:${op.kind}`);
    });
  }
  private rangeShape(op: RangeSpec): void {
    if (op.sortTarget !== SortTarget.KEY || op.sortOrder !== SortOrder.NONE) this.add("range:sorted");
    if (op.limit > 0) this.add("range:limit");
    if (op.rangeEnd === "\u0000") this.add("range:from-key");
    if (op.countOnly) this.add("range:count-only");
    if (op.keysOnly) this.add("range:keys-only");
    if ("rel" in op.revision) this.add("range:at-revision");
    if ([op.minMod, op.maxMod, op.minCreate, op.maxCreate].some((r) => "rel" in r)) this.add("range:filtered");
  }
  summary(): string {
    return [...this.counts.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${String(v).padStart(6)}  ${k}`)
      .join("\n");
  }
}

export class Mismatch extends Error {}

/**
 * Runs one sequence on both servers: a marker write fixes each server's base revision, then every
 * op goes to both (concurrently) and the answers must agree. Throws a Mismatch naming the seed,
 * the op index, the ops up to it and both answers. Cleans up (revokes the sequence's leases,
 * deletes its keys) whatever happens.
 */
export async function runSequence(
  servers: Servers,
  seed: number,
  ops: readonly Op[],
  ctx: GenContext,
  cleanupLeases: readonly string[],
  coverage: Coverage,
): Promise<void> {
  const bases = await Promise.all([markerBase(servers.etcd), markerBase(servers.lab)]);
  const [etcdBase, labBase] = bases;
  try {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as Op;
      const [w, g] = await Promise.all([execute(servers.etcd, op, etcdBase), execute(servers.lab, op, labBase)]);
      const want = normalize(w, op, etcdBase);
      const got = normalize(g, op, labBase);
      const diff = compareOutcomes(op, want, got);
      if (diff) {
        const history = ops
          .slice(0, i + 1)
          .map((o, j) => `  #${j} ${describeOp(o)}`)
          .join("\n");
        throw new Mismatch(
          [
            `differential mismatch: seed ${seed}, op #${i} (${op.kind}), first difference at ${diff}`,
            `reproduce: LAB_DIFF_SEED=${seed} npx vitest run test/differential.test.ts`,
            `context: prefix ${JSON.stringify(ctx.prefix)}, lease base ${ctx.leaseBase}; base revisions etcd ${etcdBase}, lab ${labBase}`,
            "operations (revisions relative to the base B):",
            history,
            `etcd 3.4: ${JSON.stringify(want)}`,
            `lab:      ${JSON.stringify(got)}`,
          ].join("\n"),
        );
      }
      coverage.record(op, want);
    }
  } finally {
    await Promise.all([cleanup(servers.etcd, ctx, cleanupLeases), cleanup(servers.lab, ctx, cleanupLeases)]);
  }
}

async function markerBase(c: RawClient): Promise<number> {
  const o = await c.kv("Put", { key: b(MARKER_KEY), value: b("") });
  if ("error" in o) throw new Error(`marker put failed on ${c.endpoint}: ${o.error.details}`);
  return Number((o.ok.header as { revision: string }).revision);
}

async function cleanup(c: RawClient, ctx: GenContext, leases: readonly string[]): Promise<void> {
  for (const id of leases) await c.lease("LeaseRevoke", { ID: id });
  await c.kv("DeleteRange", { key: b(ctx.prefix), range_end: b(prefixEnd(ctx.prefix)) });
}
