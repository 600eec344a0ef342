/**
 * Recording a history for the linearizability checker: each client calls `invoke` just before it sends a request and
 * resolves the handle as soon as it knows the outcome.
 *
 *   const recorder = new HistoryRecorder();
 *   const pending = recorder.invoke(clientId, { kind: "put", key: "x", value: "a" });
 *   try {
 *     const response = await client.put("x", "a");
 *     pending.ok({ revision: response.header.revision });
 *   } catch (error) {
 *     if (refusedBeforeSending(error)) pending.fail();   // definitely no effect
 *     else pending.unknown();                              // timeout, connection lost: may have happened
 *   }
 *   ...
 *   checkHistory(recorder.operations());
 *
 * Times come from a monotonic clock (performance.now(), milliseconds), never the wall clock, which can jump.
 */

import { performance } from "node:perf_hooks";
import type { ClientId, Operation, OperationInput, Outcome, OutputOf } from "./linearizability.js";

export interface PendingOperation<O> {
  /** The operation completed with this output. */
  ok(output: O): void;
  /** The operation definitely had no effect (refused before it was sent, or an error that guarantees it). */
  fail(): void;
  /** The outcome is not known (timeout, connection lost): it may take effect at any time, or never. */
  unknown(): void;
}

interface MutableRecord {
  readonly clientId: ClientId;
  readonly input: OperationInput;
  readonly invokedAt: number;
  returnedAt: number | undefined;
  outcome: Outcome<unknown> | undefined;
}

export class HistoryRecorder {
  private readonly records: MutableRecord[] = [];
  /** Each client's operation in flight: clients are sequential, which the per-client revision check relies on. */
  private readonly inFlight = new Map<ClientId, MutableRecord>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Records the invocation; throws if the client already has an operation in flight. */
  invoke<I extends OperationInput>(clientId: ClientId, input: I): PendingOperation<OutputOf<I>> {
    const busy = this.inFlight.get(clientId);
    if (busy !== undefined) {
      throw new Error(`client ${clientId} invoked ${input.kind} while its ${busy.input.kind} is still in flight`);
    }
    const record: MutableRecord = {
      clientId,
      input,
      invokedAt: this.now(),
      returnedAt: undefined,
      outcome: undefined,
    };
    this.records.push(record);
    this.inFlight.set(clientId, record);
    const resolve = (outcome: Outcome<unknown>) => {
      if (record.outcome !== undefined) {
        throw new Error(`client ${clientId}'s ${input.kind} was already resolved (${record.outcome.status})`);
      }
      record.returnedAt = this.now();
      record.outcome = outcome;
      this.inFlight.delete(clientId);
    };
    return {
      ok: (output) => resolve({ status: "ok", output }),
      fail: () => resolve({ status: "failed" }),
      unknown: () => resolve({ status: "unknown" }),
    };
  }

  /** How many operations were invoked. */
  get size(): number {
    return this.records.length;
  }

  /**
   * The history so far, in invocation order. Operations still in flight count as of unknown outcome: whoever takes
   * the history has stopped waiting for them.
   */
  operations(): Operation[] {
    const now = this.now();
    return this.records.map(
      (r) =>
        ({
          clientId: r.clientId,
          input: r.input,
          invokedAt: r.invokedAt,
          returnedAt: r.returnedAt ?? now,
          outcome: r.outcome ?? { status: "unknown" },
        }) as Operation,
    );
  }
}
