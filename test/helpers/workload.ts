import type * as grpc from "@grpc/grpc-js";
import { HistoryRecorder } from "../../src/check/history.js";
import { checkHistory, checkRevisionsMonotonic, type LinearizabilityResult } from "../../src/check/linearizability.js";
import { connect, type EtcdClient, num } from "./grpc-client.js";
import { sleep } from "./nodes.js";

/**
 * A client workload for failure tests: sequential clients, each pinned to one member (moving to the
 * next after an error, as etcd clients fail over), doing puts, linearizable gets and
 * compare-and-swaps on a few keys, every operation recorded for the linearizability checker.
 *
 * Outcomes: a write that got an error may or may not have happened (the member may have proposed
 * it before failing), so it is "unknown"; a read that failed is dropped ("failed").
 */

export interface WorkloadOptions {
  readonly endpoints: () => string[];
  readonly clients: number;
  readonly keys: number;
  /** Per-request deadline in ms. */
  readonly deadlineMs?: number;
}

export interface WorkloadReport {
  readonly recorder: HistoryRecorder;
  /** Puts the store acknowledged: key → value → revision. */
  readonly acknowledged: Map<string, { value: string; revision: number }[]>;
  readonly okByPhase: number[];
  readonly errors: Map<string, number>;
}

export class Workload {
  readonly recorder = new HistoryRecorder();
  readonly acknowledged = new Map<string, { value: string; revision: number }[]>();
  readonly errors = new Map<string, number>();
  /** Successful operations since the last mark (to see that writes resume after a fault). */
  okSinceMark = 0;
  writesOkSinceMark = 0;
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private counter = 0;

  constructor(private readonly options: WorkloadOptions) {
    for (let c = 0; c < options.clients; c++) this.loops.push(this.client(c));
  }

  mark(): void {
    this.okSinceMark = 0;
    this.writesOkSinceMark = 0;
  }

  async waitWrites(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.writesOkSinceMark < n) {
      if (Date.now() > deadline) {
        throw new Error(
          `only ${this.writesOkSinceMark} writes succeeded in ${timeoutMs} ms; errors: ${JSON.stringify([...this.errors])}`,
        );
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  check(): { linearizable: LinearizabilityResult; revisions: ReturnType<typeof checkRevisionsMonotonic> } {
    const ops = this.recorder.operations();
    return { linearizable: checkHistory(ops, { timeoutMs: 60_000 }), revisions: checkRevisionsMonotonic(ops) };
  }

  private async client(index: number): Promise<void> {
    let endpointIndex = index;
    let client: EtcdClient | undefined;
    let endpoint = "";
    const lastSeen = new Map<string, { value: string | undefined; modRevision: number }>();
    while (this.running) {
      const endpoints = this.options.endpoints();
      if (endpoints.length === 0) {
        await sleep(50);
        continue;
      }
      const want = endpoints[endpointIndex % endpoints.length] as string;
      if (!client || endpoint !== want) {
        client?.close();
        client = connect(want, this.options.deadlineMs ?? 5000);
        endpoint = want;
      }
      const key = `w/k${Math.floor(Math.random() * this.options.keys)}`;
      const r = Math.random();
      try {
        if (r < 0.35) await this.put(index, client, key);
        else if (r < 0.65) lastSeen.set(key, await this.get(index, client, key));
        else if (r < 0.73) await this.delete(index, client, key);
        else await this.cas(index, client, key, lastSeen.get(key), r < 0.87 ? "modRevision" : "value");
        this.okSinceMark++;
      } catch (err) {
        const message = (err as grpc.ServiceError).details ?? (err as Error).message;
        this.errors.set(message, (this.errors.get(message) ?? 0) + 1);
        // Fail over to the next member, as clients do, after a short pause.
        endpointIndex++;
        client.close();
        client = undefined;
        await sleep(20);
      }
    }
    client?.close();
  }

  private acknowledge(key: string, value: string, revision: number): void {
    const list = this.acknowledged.get(key) ?? [];
    list.push({ value, revision });
    this.acknowledged.set(key, list);
  }

  private async put(clientId: number, client: EtcdClient, key: string): Promise<void> {
    const value = `v${++this.counter}`;
    const pending = this.recorder.invoke(clientId, { kind: "put", key, value });
    try {
      const res = await client.put(key, value);
      const revision = num(res.header.revision);
      pending.ok({ revision });
      this.writesOkSinceMark++;
      this.acknowledge(key, value, revision);
    } catch (err) {
      pending.unknown();
      throw err;
    }
  }

  private async get(
    clientId: number,
    client: EtcdClient,
    key: string,
  ): Promise<{ value: string | undefined; modRevision: number }> {
    const pending = this.recorder.invoke(clientId, { kind: "get", key });
    try {
      const res = await client.range(key);
      const kv = res.kvs[0];
      const out = {
        value: kv ? Buffer.from(kv.value).toString() : undefined,
        modRevision: kv ? num(kv.mod_revision) : 0,
        revision: num(res.header.revision),
      };
      pending.ok(out);
      return out;
    } catch (err) {
      pending.fail();
      throw err;
    }
  }

  private async delete(clientId: number, client: EtcdClient, key: string): Promise<void> {
    const pending = this.recorder.invoke(clientId, { kind: "delete", key });
    try {
      const res = await client.deleteRange(key);
      pending.ok({ deleted: num(res.deleted), revision: num(res.header.revision) });
      this.writesOkSinceMark++;
    } catch (err) {
      pending.unknown();
      throw err;
    }
  }

  /** A txn compare-and-set: on the mod revision last read, or on the value (absent: mod revision 0). */
  private async cas(
    clientId: number,
    client: EtcdClient,
    key: string,
    seen: { value: string | undefined; modRevision: number } | undefined,
    on: "modRevision" | "value",
  ): Promise<void> {
    const value = `c${++this.counter}`;
    const modRevision = seen?.modRevision ?? 0;
    const byValue = on === "value" && seen?.value !== undefined;
    const expect = byValue ? { value: seen?.value } : { modRevision };
    const compare = byValue
      ? { key: Buffer.from(key), target: 3 /* VALUE */, result: 0 /* EQUAL */, value: Buffer.from(seen?.value ?? "") }
      : { key: Buffer.from(key), target: 2 /* MOD */, result: 0 /* EQUAL */, mod_revision: String(modRevision) };
    const pending = this.recorder.invoke(clientId, { kind: "cas", key, expect, value });
    try {
      const res = await client.txn([{ request_put: { key, value } }], [compare]);
      const revision = num(res.header.revision);
      pending.ok({ succeeded: res.succeeded, revision });
      this.writesOkSinceMark++;
      if (res.succeeded) this.acknowledge(key, value, revision);
    } catch (err) {
      pending.unknown();
      throw err;
    }
  }
}
