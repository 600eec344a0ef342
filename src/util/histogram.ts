/**
 * A Prometheus histogram: counts of observations at or below each upper bound, plus their sum
 * and count, rendered in the text exposition format (buckets cumulative, ending with `+Inf`).
 */
export class Histogram {
  private readonly counts: number[];
  private total = 0;
  private sum = 0;

  /** `bounds`: the buckets' upper bounds, ascending. */
  constructor(readonly bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!((bounds[i] as number) > (bounds[i - 1] as number))) throw new RangeError("histogram bounds must ascend");
    }
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.total++;
    this.sum += value;
    // Only the first bucket that holds it; render() accumulates.
    const i = this.bounds.findIndex((b) => value <= b);
    if (i >= 0) this.counts[i] = (this.counts[i] as number) + 1;
  }

  get count(): number {
    return this.total;
  }

  render(name: string, help: string): string[] {
    return [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`, ...this.samples(name)];
  }

  /**
   * The sample lines alone, for one labelled series of a histogram family. `labels` is what goes
   * inside the braces before `le`, e.g. `grpc_method="Put"`.
   */
  samples(name: string, labels = ""): string[] {
    const prefix = labels === "" ? "" : `${labels},`;
    const suffix = labels === "" ? "" : `{${labels}}`;
    const out: string[] = [];
    let cumulative = 0;
    this.bounds.forEach((b, i) => {
      cumulative += this.counts[i] as number;
      out.push(`${name}_bucket{${prefix}le="${b}"} ${cumulative}`);
    });
    out.push(
      `${name}_bucket{${prefix}le="+Inf"} ${this.total}`,
      `${name}_sum${suffix} ${this.sum}`,
      `${name}_count${suffix} ${this.total}`,
    );
    return out;
  }
}

/** `count` bounds from `start`, each `factor` times the one before (Prometheus' ExponentialBuckets). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}
