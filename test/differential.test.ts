import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRaw, type RawClient } from "./helpers/diff-client.js";
import {
  Coverage,
  compareOutcomes,
  execute,
  MARKER_KEY,
  normalize,
  runSequence,
  type Servers,
} from "./helpers/diff-run.js";
import { type RunningNode, startLab, startRealEtcd } from "./helpers/nodes.js";
import { allLeaseIds, describeOp, type GenContext, generate, MAX_LEASE_TTL, type Op } from "./helpers/opgen.js";

/**
 * Generated differential tests: seeded random sequences of KV and Lease operations run against
 * the real etcd 3.4.23 and our member, every answer compared field by field (see
 * test/helpers/diff-run.ts for what is normalized away and why).
 *
 * Both servers are started once. Each sequence gets its own key prefix and lease IDs and works
 * with revisions relative to a marker write made just before it, so a sequence behaves the same
 * whatever ran before it; compaction is global, but a sequence only ever compacts below its own
 * revisions, and one compaction is made up front so that "has anything been compacted yet" is
 * the same for every sequence.
 *
 *   LAB_DIFF_SEEDS=500             how many seeds (default 40), starting at LAB_DIFF_SEED_START (1)
 *   LAB_DIFF_OPS=300               operations per seed (default 150)
 *   LAB_DIFF_SEED=17,42            exactly these seeds (to reproduce a failure)
 */

const envInt = (name: string, fallback: number): number => {
  const v = process.env[name];
  return v === undefined || v === "" ? fallback : Number.parseInt(v, 10);
};

const OPS = envInt("LAB_DIFF_OPS", 150);
const EXPLICIT = process.env.LAB_DIFF_SEED?.split(",").map((s) => Number.parseInt(s.trim(), 10));
const SEEDS: number[] =
  EXPLICIT ?? Array.from({ length: envInt("LAB_DIFF_SEEDS", 40) }, (_, i) => envInt("LAB_DIFF_SEED_START", 1) + i);

function contextFor(index: number): GenContext {
  // Prefixes sort in run order, so a from-key range ("\0") of one sequence sees no other's keys.
  return { prefix: `d/${String(index).padStart(6, "0")}/`, leaseBase: 1_000_000 + index * 100 };
}

function dataRoot(): string {
  // tmpfs when there is one: the real etcd fsyncs every write.
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  return fs.mkdtempSync(path.join(base, "lab-diff-"));
}

describe("differential: generated KV and Lease sequences, real etcd 3.4 vs lab", () => {
  let root: string;
  let etcd: RunningNode | undefined;
  let lab: RunningNode | undefined;
  let servers: Servers;
  const clients: RawClient[] = [];
  const coverage = new Coverage();

  beforeAll(async () => {
    root = dataRoot();
    [etcd, lab] = await Promise.all([
      startRealEtcd({ dataDir: path.join(root, "etcd") }),
      startLab({ dataDir: path.join(root, "lab") }),
    ]);
    servers = { etcd: connectRaw(etcd.endpoint), lab: connectRaw(lab.endpoint) };
    clients.push(servers.etcd, servers.lab);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all([etcd?.stop(), lab?.stop()]);
    if (root) fs.rmSync(root, { recursive: true, force: true });
    console.log(`differential coverage over ${SEEDS.length} seeds x ${OPS} ops:\n${coverage.summary()}`);
  });

  /** Sends one op to both servers (revisions absolute) and requires equal answers. */
  async function same(op: Op): Promise<void> {
    const [w, g] = await Promise.all([execute(servers.etcd, op, 0), execute(servers.lab, op, 0)]);
    const want = normalize(w, op, 0);
    const got = normalize(g, op, 0);
    const diff = compareOutcomes(op, want, got);
    expect(
      diff,
      `${describeOp(op)}\netcd 3.4: ${JSON.stringify(want)}\nlab:      ${JSON.stringify(got)}`,
    ).toBeUndefined();
  }

  it("agrees on a fresh store, then compacts once so every sequence starts alike", async () => {
    const range = {
      kind: "range",
      key: "!",
      rangeEnd: "\u0000",
      limit: 0,
      sortOrder: 0,
      sortTarget: 0,
      serializable: false,
      keysOnly: false,
      countOnly: false,
      minMod: { abs: 0 },
      maxMod: { abs: 0 },
      minCreate: { abs: 0 },
      maxCreate: { abs: 0 },
    } as const;
    // Nothing compacted yet: a negative revision inside a txn reads the current revision.
    await same({ kind: "txn", compare: [], success: [{ ...range, revision: { abs: -1 } }], failure: [] });
    await same({ ...range, revision: { abs: 1 } });
    await same({ ...range, revision: { abs: 2 } });
    // etcd's compaction revision starts at -1, so a fresh store accepts compacting at 0 (once);
    // from then on a negative revision inside a txn is below it: "compacted".
    await same({ kind: "compact", revision: { abs: 0 }, physical: false });
    await same({ kind: "txn", compare: [], success: [{ ...range, revision: { abs: -1 } }], failure: [] });
    await same({
      kind: "put",
      key: MARKER_KEY,
      value: "",
      lease: "0",
      prevKv: true,
      ignoreValue: false,
      ignoreLease: false,
    });
    await same({ kind: "compact", revision: { abs: 3 }, physical: true });
    await same({ kind: "compact", revision: { abs: 2 }, physical: false });
    await same({ ...range, revision: { abs: 1 } });
    await same({ ...range, revision: { abs: 2 } });
    await same({ kind: "txn", compare: [], success: [{ ...range, revision: { abs: -1 } }], failure: [] });
    await same({ kind: "compact", revision: { abs: 0 }, physical: false });
    // TTLs below the minimum (1.5 election timeouts, rounded up to seconds) are raised to it. Such
    // a lease expires within seconds, so it is revoked right away, without comparing that answer
    // (either side may have expired it first on a very slow machine).
    for (const [i, ttl] of [1, 0, -5].entries()) {
      const id = String(900 + i);
      await same({ kind: "leaseGrant", id, ttl });
      await Promise.all([servers.etcd.lease("LeaseRevoke", { ID: id }), servers.lab.lease("LeaseRevoke", { ID: id })]);
    }
    await same({ kind: "leaseGrant", id: "0", ttl: MAX_LEASE_TTL + 1 });
    await same({ kind: "leaseLeases" });
  });

  it("generates the same sequence for the same seed, and different ones for different seeds", () => {
    const ctx = contextFor(0);
    expect(generate(7, 200, ctx)).toEqual(generate(7, 200, ctx));
    expect(generate(7, 200, ctx)).not.toEqual(generate(8, 200, ctx));
  });

  SEEDS.forEach((seed, index) => {
    it(`seed ${seed}: ${OPS} ops agree`, async () => {
      const ctx = contextFor(index);
      const ops = generate(seed, OPS, ctx);
      console.log(`differential seed ${seed} (${OPS} ops, prefix ${ctx.prefix})`);
      await runSequence(servers, seed, ops, ctx, allLeaseIds(ctx), coverage);
    });
  });

  it.skipIf(EXPLICIT !== undefined || SEEDS.length < 10 || OPS < 100)(
    "the sequences exercised what they are meant to",
    () => {
      const need = [
        "put:ok",
        "range:ok",
        "delete:ok",
        "txn:succeeded",
        "txn:failed",
        "txn:nested-ran",
        "txn:op:put",
        "txn:op:delete",
        "txn:op:range",
        "compact:ok",
        "leaseGrant:ok",
        "leaseRevoke:ok",
        "leaseTtl:ok",
        "leaseLeases:ok",
        "range:sorted",
        "range:limit",
        "range:from-key",
        "range:count-only",
        "range:keys-only",
        "range:at-revision",
        "range:filtered",
        "range:tie-cut-by-limit",
        "leaseTtl:unknown-lease",
        "leaseTtl:with-keys",
        "txn:error:nested-over-limit",
        "txn:error:etcdserver: mvcc: required revision has been compacted",
        "txn:error:etcdserver: key not found",
        "put:error:etcdserver: key is not provided",
        "put:error:etcdserver: key not found",
        "put:error:etcdserver: requested lease not found",
        "put:error:etcdserver: value is provided",
        "put:error:etcdserver: lease is provided",
        "range:error:etcdserver: mvcc: required revision has been compacted",
        "range:error:etcdserver: mvcc: required revision is a future revision",
        "txn:error:etcdserver: duplicate key given in txn request",
        "txn:error:etcdserver: too many operations in txn request",
        "compact:error:etcdserver: mvcc: required revision has been compacted",
        "compact:error:etcdserver: mvcc: required revision is a future revision",
        "leaseGrant:error:etcdserver: lease already exists",
        "leaseGrant:error:etcdserver: too large lease TTL",
        "leaseRevoke:error:etcdserver: requested lease not found",
      ];
      const missing = need.filter((n) => coverage.get(n) === 0);
      expect(missing, coverage.summary()).toEqual([]);
    },
  );
});
