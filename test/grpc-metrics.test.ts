import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metric, Pair } from "./helpers/etcdctl-diff.js";
import { httpGet, type RunningNode } from "./helpers/nodes.js";

/**
 * The grpc_server_* families of /metrics, side by side with etcd 3.4.23 started the same way:
 * go-grpc-prometheus' names and labels, counts per method and status code, and with
 * `--metrics extensive` the handling-time histogram that etcd's slow-request alert reads.
 */

const PUT = ['grpc_method="Put"', 'grpc_service="etcdserverpb.KV"', 'grpc_type="unary"'];
const RANGE = ['grpc_method="Range"', 'grpc_service="etcdserverpb.KV"', 'grpc_type="unary"'];
const WATCH = ['grpc_method="Watch"', 'grpc_service="etcdserverpb.Watch"', 'grpc_type="bidi_stream"'];

/** The series these tests read, as numbers, so that a change on both sides can be compared. */
async function snapshot(node: RunningNode): Promise<Record<string, number>> {
  const series: Array<[string, string, readonly string[]]> = [
    ["put started", "grpc_server_started_total", PUT],
    ["put ok", "grpc_server_handled_total", ['grpc_code="OK"', ...PUT]],
    ["put received", "grpc_server_msg_received_total", PUT],
    ["put sent", "grpc_server_msg_sent_total", PUT],
    ["range started", "grpc_server_started_total", RANGE],
    ["range ok", "grpc_server_handled_total", ['grpc_code="OK"', ...RANGE]],
    ["range out of range", "grpc_server_handled_total", ['grpc_code="OutOfRange"', ...RANGE]],
    ["range sent", "grpc_server_msg_sent_total", RANGE],
    ["put handling count", "grpc_server_handling_seconds_count", PUT],
    ["put handling under 10 s", "grpc_server_handling_seconds_bucket", [...PUT, 'le="10"']],
    ["watch started", "grpc_server_started_total", WATCH],
  ];
  const out: Record<string, number> = {};
  for (const [label, name, labels] of series) out[label] = await metric(node, name, labels);
  return out;
}

function change(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

describe("gRPC metrics with --metrics extensive: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start({ extraArgs: ["--metrics", "extensive"] });
  });
  afterAll(async () => {
    await pair?.stop();
  });

  it("count calls per method and status code, messages each way, and handling times", async () => {
    const before = await Promise.all(pair.sides.map((s) => snapshot(s.node)));
    await pair.run(["put", "k", "v1"]);
    await pair.run(["put", "k", "v2"]);
    await pair.run(["get", "k"]);
    const future = await pair.run(["get", "k", "--rev", "1000"]);
    expect(future.lab.stderr).toContain("required revision is a future revision");
    await pair.run(["watch", "k", "--rev", "1"], { timeoutMs: 1500 });
    const after = await Promise.all(pair.sides.map((s) => snapshot(s.node)));
    const [lab, etcd] = pair.sides.map((_, i) => change(before[i] ?? {}, after[i] ?? {}));
    expect(lab).toEqual(etcd);
    expect(lab).toMatchObject({
      "put started": 2,
      "put ok": 2,
      "put received": 2,
      "put sent": 2,
      "range ok": 1,
      "range out of range": 1,
      "put handling count": 2,
      "put handling under 10 s": 2,
      "watch started": 1,
    });
  });

  it("write every bucket of the handling-time histogram, with go-grpc-prometheus' bounds", async () => {
    for (const side of pair.sides) {
      const body = await httpGet(side.node.clientPort, "/metrics");
      const bounds = body
        .split("\n")
        .filter((l) => l.startsWith("grpc_server_handling_seconds_bucket{") && PUT.every((p) => l.includes(p)))
        .map((l) => /le="([^"]+)"/.exec(l)?.[1]);
      expect(bounds, side.name).toEqual([
        "0.005",
        "0.01",
        "0.025",
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1",
        "2.5",
        "5",
        "10",
        "+Inf",
      ]);
    }
  });
});

describe("gRPC metrics by default (basic): lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start();
  });
  afterAll(async () => {
    await pair?.stop();
  });

  it("count calls but keep no handling-time histogram", async () => {
    await pair.run(["put", "k", "v"]);
    for (const side of pair.sides) {
      const body = await httpGet(side.node.clientPort, "/metrics");
      expect(body, side.name).not.toContain("grpc_server_handling_seconds");
      expect(await metric(side.node, "grpc_server_handled_total", ['grpc_code="OK"', ...PUT]), side.name).toBe(1);
    }
  });
});
