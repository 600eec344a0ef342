import { describe, expect, it } from "vitest";
import { exponentialBuckets, Histogram } from "../src/util/histogram.js";

describe("Histogram", () => {
  it("renders cumulative buckets, +Inf, sum and count in the Prometheus text format", () => {
    const h = new Histogram([0.5, 1, 2]);
    for (const v of [0.1, 0.5, 0.7, 2, 5]) h.observe(v);
    expect(h.render("x_seconds", "How long x took.")).toEqual([
      "# HELP x_seconds How long x took.",
      "# TYPE x_seconds histogram",
      'x_seconds_bucket{le="0.5"} 2', // 0.5 is at or below its bound
      'x_seconds_bucket{le="1"} 3',
      'x_seconds_bucket{le="2"} 4',
      'x_seconds_bucket{le="+Inf"} 5',
      "x_seconds_sum 8.3",
      "x_seconds_count 5",
    ]);
    expect(h.count).toBe(5);
  });

  it("refuses bounds that do not ascend", () => {
    expect(() => new Histogram([1, 1])).toThrow("ascend");
  });

  it("makes etcd's exponential buckets", () => {
    expect(exponentialBuckets(0.001, 2, 4)).toEqual([0.001, 0.002, 0.004, 0.008]);
  });
});
