import type { Logger } from "../util/logger.js";
import type { StoreClient } from "./store-client.js";

/**
 * Periodic store compaction, as kube-apiserver's compactor does it. Every interval, each API
 * server tries a compare-and-swap on the `compact_rev_key` key (If Version == what it last saw
 * Then Put the current revision); the one that wins compacts the revision recorded one interval
 * earlier. So several API servers over one store compact once per interval, and a full interval
 * of history always stays for watchers that fall behind.
 */

export const COMPACT_REV_KEY = Buffer.from("compact_rev_key");

export class Compactor {
  private timer: NodeJS.Timeout | undefined;
  /** The key's version this server last saw. */
  private version = 0;
  /** The revision recorded at the previous successful CAS: compacted at the next one. */
  private previousRevision = 0;
  private running = false;

  constructor(
    private readonly store: StoreClient,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round: returns the revision compacted (0: none). */
  async tick(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      const res = await this.store.txn({
        compare: [{ result: 0, target: 0, key: COMPACT_REV_KEY, version: String(this.version) }],
        success: [
          { request_put: { key: COMPACT_REV_KEY, value: Buffer.from(String(this.previousRevision)), lease: "0" } },
        ],
        failure: [{ request_range: { key: COMPACT_REV_KEY } }],
      });
      if (!res.succeeded) {
        // Another API server compacted in this interval: follow its bookkeeping.
        const kv = res.responses[0]?.response_range?.kvs[0];
        this.version = kv ? Number(kv.version) : 0;
        this.previousRevision = 0;
        return 0;
      }
      this.version++;
      const target = this.previousRevision;
      this.previousRevision = res.revision;
      if (target <= 0) return 0;
      try {
        await this.store.compact(target);
        this.logger.info("compacted the store", { revision: target });
      } catch (e) {
        const message = (e as Error).message;
        if (!message.includes("compacted"))
          this.logger.warn("store compaction failed", { revision: target, error: message });
      }
      return target;
    } catch (e) {
      this.logger.warn("store compaction round failed", { error: (e as Error).message });
      return 0;
    } finally {
      this.running = false;
    }
  }
}
