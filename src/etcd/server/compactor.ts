/**
 * Auto compaction as etcd's --auto-compaction-mode asks, as a pure decision: the server calls
 * `tick` every `intervalMs` and proposes a compaction to the revision it returns.
 *
 * - periodic (retention a duration): keep history for the retention. Every period (the retention,
 *   at most one hour) compact to the revision that was current one retention ago. Revisions are
 *   sampled every tenth of the period to know what "one retention ago" was.
 * - revision (retention a count): every 5 minutes, compact to current - retention.
 */
export type CompactionMode = "periodic" | "revision";

const HOUR = 60 * 60_000;
const REVISION_MODE_INTERVAL = 5 * 60_000;

export class AutoCompactor {
  private readonly samples: { at: number; revision: number }[] = [];
  private lastCompactionAt: number;
  private readonly period: number;

  constructor(
    private readonly mode: CompactionMode,
    private readonly retention: { readonly ms?: number; readonly revisions?: number },
    private readonly now: () => number,
  ) {
    this.period = Math.min(retention.ms ?? HOUR, HOUR);
    this.lastCompactionAt = now();
  }

  /** True when the configuration turns auto compaction on. */
  get enabled(): boolean {
    return this.mode === "revision" ? (this.retention.revisions ?? 0) > 0 : (this.retention.ms ?? 0) > 0;
  }

  get intervalMs(): number {
    return this.mode === "revision" ? REVISION_MODE_INTERVAL : Math.max(100, this.period / 10);
  }

  /** The revision to compact to now, or undefined when there is nothing to do. */
  tick(currentRevision: number, compactedRevision: number): number | undefined {
    if (!this.enabled) return undefined;
    let target: number;
    if (this.mode === "revision") {
      target = currentRevision - (this.retention.revisions ?? 0);
    } else {
      const t = this.now();
      this.samples.push({ at: t, revision: currentRevision });
      if (t - this.lastCompactionAt < this.period) return undefined;
      // The newest sample at least one retention old is what "one retention ago" was.
      const cutoff = t - (this.retention.ms ?? 0);
      let idx = -1;
      for (let i = 0; i < this.samples.length; i++) if ((this.samples[i] as { at: number }).at <= cutoff) idx = i;
      if (idx < 0) return undefined;
      target = (this.samples[idx] as { revision: number }).revision;
      this.samples.splice(0, idx);
      this.lastCompactionAt = t;
    }
    return target > compactedRevision && target > 0 ? target : undefined;
  }
}
