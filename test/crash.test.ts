import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { serviceOf } from "../src/etcd/proto-client.js";
import { type RunningNode, sleep, startLab } from "./helpers/nodes.js";
import { mulberry32 } from "./helpers/prng.js";

/**
 * Durability under SIGKILL: concurrent writers, the member killed at a random moment, restarted on
 * the same data directory, again and again. Every acknowledged write must still be there with its
 * revision, and nothing may appear that no client ever wrote.
 */

const KILLS = Number(process.env.LAB_CRASH_KILLS ?? 20);
const WRITERS = 16;

interface Ack {
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

type KvClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function kvClient(endpoint: string): KvClient {
  const KV = serviceOf("etcdserverpb.KV");
  return new KV(endpoint, grpc.credentials.createInsecure()) as unknown as KvClient;
}

function call<T>(client: KvClient, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    (client[method] as (r: object, cb: (e: Error | null, v: T) => void) => void).call(client, req, (err, value) =>
      err ? reject(err) : resolve(value),
    );
  });
}

describe("crash safety", () => {
  let node: RunningNode | undefined;
  afterAll(async () => {
    await node?.kill();
  });

  it(`keeps every acknowledged write across ${KILLS} SIGKILLs under concurrent load`, async () => {
    const seed = Number(process.env.LAB_CRASH_SEED ?? Date.now() % 1_000_000);
    const random = mulberry32(seed);
    const acked: Ack[] = [];
    const attempted = new Set<string>();
    // Small snapshot count: restarts exercise snapshot load plus log replay, not replay alone.
    const extraArgs = ["--snapshot-count", "150"];
    node = await startLab({ extraArgs });
    const { dataDir, clientPort, peerPort } = node;

    for (let round = 0; round < KILLS; round++) {
      const roundStart = acked.length;
      const client = kvClient(node.endpoint);
      let stop = false;
      const writers = Array.from({ length: WRITERS }, async (_, w) => {
        for (let seq = 0; !stop; seq++) {
          const key = `crash/${w}/${seq % 40}`;
          const value = `r${round}-w${w}-s${seq}`;
          attempted.add(`${key}=${value}`);
          try {
            const resp = await call<{ header: { revision: string } }>(client, "Put", {
              key: Buffer.from(key),
              value: Buffer.from(value),
            });
            acked.push({ key, value, revision: Number(resp.header.revision) });
          } catch (err) {
            if (!stop && process.env.LAB_CRASH_DEBUG) console.error(`writer ${w}: ${(err as Error).message}`);
            return; // the member died under us: this write may or may not have happened
          }
        }
      });
      await sleep(150 + random() * 600);
      expect(node.process.exitCode, `the member died by itself:\n${node.output()}`).toBeNull();
      await node.kill();
      stop = true;
      await Promise.all(writers);
      client.close();
      if (process.env.LAB_CRASH_DEBUG) console.error(`round ${round}: ${acked.length} acknowledged so far`);

      node = await startLab({ dataDir, clientPort, peerPort, extraArgs });
      const check = kvClient(node.endpoint);
      try {
        const revisions = new Set<number>();
        for (const ack of acked) {
          expect(revisions.has(ack.revision), `two acknowledged writes share revision ${ack.revision}`).toBe(false);
          revisions.add(ack.revision);
        }
        // This round's acknowledged writes, a sample of older ones (all of them in the last round),
        // each read at its own revision.
        const older = acked.slice(0, roundStart);
        const sample =
          round === KILLS - 1
            ? older
            : Array.from(
                { length: Math.min(300, older.length) },
                () => older[Math.floor(random() * older.length)] as Ack,
              );
        for (const ack of [...sample, ...acked.slice(roundStart)]) {
          const r = await call<{ kvs: { value: Buffer; mod_revision: string }[] }>(check, "Range", {
            key: Buffer.from(ack.key),
            revision: ack.revision,
          });
          const kv = r.kvs[0];
          expect(kv?.value.toString(), `seed ${seed}: ${ack.key} at ${ack.revision} after round ${round}`).toBe(
            ack.value,
          );
          expect(Number(kv?.mod_revision)).toBe(ack.revision);
        }
        // Nothing that was never written.
        const everything = await call<{ kvs: { key: Buffer; value: Buffer }[] }>(check, "Range", {
          key: Buffer.from("\0"),
          range_end: Buffer.from("\0"),
        });
        for (const kv of everything.kvs) {
          expect(attempted.has(`${kv.key.toString()}=${kv.value.toString()}`), `seed ${seed}: invented ${kv.key}`).toBe(
            true,
          );
        }
      } finally {
        check.close();
      }
    }
    // Writes went through in every round, not just the first.
    expect(acked.length).toBeGreaterThan(KILLS * 10);
    expect(new Set(acked.map((a) => a.value.split("-")[0])).size).toBe(KILLS);
    expect(node.output()).not.toMatch(/corrupt/);
  }, 300_000);
});
