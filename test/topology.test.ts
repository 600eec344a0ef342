import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  builtinTopologies,
  formatDiagnostic,
  loadTopologyFile,
  resolveTopologyRef,
  TOPOLOGY_DIR,
  TopologyError,
} from "../src/topology/load.js";
import { type PortName, renderPlan } from "../src/topology/plan.js";
import { topologyJsonSchema } from "../src/topology/schema.js";

/**
 * Topology files: strict schema, defaults, every validation error with file, line and field
 * path; the built-in topologies; rendering into a plan (snapshot-tested).
 */

const FIXTURES = path.resolve(import.meta.dirname, "fixtures/topologies");
const fixture = (name: string) => path.join(FIXTURES, `${name}.yaml`);

function errorsOf(file: string): string[] {
  try {
    loadTopologyFile(file);
  } catch (e) {
    if (e instanceof TopologyError) return e.diagnostics.map(formatDiagnostic);
    throw e;
  }
  throw new Error(`${file} loaded without errors`);
}

describe("topology files", () => {
  it("ships the four topologies, all valid", () => {
    expect(builtinTopologies()).toEqual(["external-ha", "external-single", "stacked-ha", "stacked-single"]);
    for (const name of builtinTopologies()) {
      const { topology, warnings } = loadTopologyFile(resolveTopologyRef(name));
      expect(topology.name).toBe(name);
      expect(warnings).toEqual([]);
    }
    const ha = loadTopologyFile(resolveTopologyRef("external-ha")).topology;
    expect(ha).toMatchObject({
      controlPlane: { count: 3 },
      etcd: { placement: "external", members: 3 },
      loadBalancer: { enabled: true },
    });
  });

  it("fills in defaults (etcd's own, a load balancer for HA, port 6443)", () => {
    const t = loadTopologyFile(resolveTopologyRef("stacked-single")).topology;
    expect(t).toEqual({
      apiVersion: "lab.dev/v1alpha1",
      kind: "Topology",
      name: "stacked-single",
      description: "One control-plane host with a stacked store member (no high availability).",
      controlPlane: { count: 1 },
      etcd: {
        placement: "stacked",
        members: 1,
        heartbeatIntervalMs: 100,
        electionTimeoutMs: 1000,
        quotaBackendBytes: 2 * 1024 ** 3,
        snapshotCount: 100000,
        autoCompaction: undefined,
      },
      apiServer: { eventTTL: "1h", compactionInterval: "5m" },
      loadBalancer: { enabled: false },
      ports: { apiServer: 6443 },
    });
    expect(loadTopologyFile(fixture("full")).topology.ports.apiServer).toBe(7443);
  });

  it("names unknown fields with their line and a suggestion", () => {
    const file = fixture("unknown-field");
    expect(errorsOf(file)).toEqual([
      `${file}:6:3: controlPlane.cuont: unknown field "cuont"; did you mean "count"?`,
      `${file}:9:3: etcd.heartbeatInterval: unknown field "heartbeatInterval"; did you mean "heartbeatIntervalMs"?`,
    ]);
  });

  it("collects every bad value at once, saying what is allowed", () => {
    const file = fixture("bad-values");
    const errs = errorsOf(file);
    expect(errs).toHaveLength(5);
    expect(errs[0]).toBe(`${file}:1:13: apiVersion: apiVersion must be "lab.dev/v1alpha1"`);
    expect(errs).toContain(
      `${file}:3:7: name: name must be lower-case letters, digits and '-', starting and ending with a letter or digit`,
    );
    expect(errs).toContain(
      `${file}:5:10: controlPlane.count: controlPlane.count must be at most 7 (etcd recommends 3 or 5 members; more slows every write)`,
    );
    expect(errs.find((e) => e.includes("etcd.placement"))).toMatch(
      /:7:14: etcd\.placement: etcd\.placement must be "stacked"/,
    );
    expect(errs.find((e) => e.includes("ports.apiServer"))).toMatch(
      /:9:14: ports\.apiServer: ports\.apiServer must be a port from 1 to 65535$/,
    );
  });

  it("reports a missing required field at its parent", () => {
    const file = fixture("missing-placement");
    expect(errorsOf(file)).toEqual([`${file}:1:1: etcd: etcd is required`]);
  });

  it("checks fields against each other", () => {
    const file = fixture("cross-field");
    const errs = errorsOf(file);
    expect(errs).toEqual([
      `${file}:8:12: etcd.members: a stacked store has one member per control-plane host: etcd.members (5) must equal controlPlane.count (3), or be left out`,
      `${file}:10:22: etcd.electionTimeoutMs: etcd.electionTimeoutMs (1000) must be at least 5 times etcd.heartbeatIntervalMs (500), as etcd requires`,
      `${file}:13:16: etcd.autoCompaction.retention: with mode "revision", retention is a number of revisions (e.g. "1000"), not "1h"`,
    ]);
  });

  it("warns about an even member count and HA without a load balancer", () => {
    const { warnings } = loadTopologyFile(fixture("even-members"));
    expect(warnings.map((w) => w.message)).toEqual([
      "an even member count (4) tolerates no more failures than 3 members (quorum is 3 of 4); use an odd count",
      "with 2 API servers and no load balancer, clients reach only the first API server; losing its host loses the API",
    ]);
    expect(warnings[0]?.line).toBe(8);
  });

  it("reports broken YAML with its position", () => {
    const errs = errorsOf(fixture("broken"));
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/broken\.yaml:\d+:\d+: invalid YAML: /);
  });

  it("resolves names and paths, and says what exists", () => {
    expect(resolveTopologyRef("stacked-ha")).toBe(path.join(TOPOLOGY_DIR, "stacked-ha.yaml"));
    expect(() => resolveTopologyRef("stacked-hq")).toThrow(
      'no topology named "stacked-hq"; built-in topologies: external-ha, external-single, stacked-ha, stacked-single (or give a path to a YAML file)',
    );
    expect(() => resolveTopologyRef("/nonexistent/t.yaml")).toThrow("no such file");
  });

  it("exports a JSON Schema for editors, kept in topologies/topology.schema.json", () => {
    const schema = topologyJsonSchema();
    expect(schema.type).toBe("object");
    expect(schema.additionalProperties).toBe(false);
    const onDisk = JSON.parse(fs.readFileSync(path.join(TOPOLOGY_DIR, "topology.schema.json"), "utf8"));
    expect(onDisk, "run: node dist/src/cli/main.js topology schema > topologies/topology.schema.json").toEqual(schema);
  });
});

describe("rendering a plan", () => {
  const load = (name: string) => loadTopologyFile(resolveTopologyRef(name)).topology;

  it.each(["stacked-single", "stacked-ha", "external-single", "external-ha"])("docker: %s", (name) => {
    const plan = renderPlan(load(name), { lab: name, runtime: "docker", apiHostPort: 6443 });
    expect(plan).toMatchSnapshot();
  });

  it("stacked-ha on docker: three hosts with a member and an API server each, a load balancer, one published port", () => {
    const plan = renderPlan(load("stacked-ha"), { lab: "demo", runtime: "docker", apiHostPort: 6443 });
    expect(plan.hosts.map((h) => `${h.name}:${h.role}:${h.components.map((c) => c.name).join("+")}`)).toEqual([
      "demo-control-plane-1:control-plane:etcd+kube-apiserver",
      "demo-control-plane-2:control-plane:etcd+kube-apiserver",
      "demo-control-plane-3:control-plane:etcd+kube-apiserver",
      "demo-lb:load-balancer:lab-lb",
    ]);
    expect(plan.hosts.filter((h) => h.publish).map((h) => h.name)).toEqual(["demo-lb"]);
    expect(plan.networks).toEqual([
      { name: "demo", internal: false },
      { name: "demo-etcd", internal: true },
    ]);
    const etcd = plan.hosts[1]?.components[0]?.command ?? [];
    expect(etcd).toContain(
      "--initial-cluster=demo-control-plane-1=http://demo-control-plane-1:2380,demo-control-plane-2=http://demo-control-plane-2:2380,demo-control-plane-3=http://demo-control-plane-3:2380",
    );
    const api = plan.hosts[1]?.components[1]?.command ?? [];
    expect(api[0]).toBe("kube-apiserver");
    expect(api).toContain(
      "--etcd-servers=http://demo-control-plane-2:2379,http://demo-control-plane-1:2379,http://demo-control-plane-3:2379",
    );
  });

  it("external-ha on docker: store hosts only on the internal network", () => {
    const plan = renderPlan(load("external-ha"), { lab: "x", runtime: "docker", apiHostPort: 7000 });
    const store = plan.hosts.filter((h) => h.role === "etcd");
    expect(store.map((h) => h.name)).toEqual(["x-etcd-1", "x-etcd-2", "x-etcd-3"]);
    for (const h of store) expect(h.networks).toEqual(["x-etcd"]);
    expect(plan.hosts.find((h) => h.role === "load-balancer")?.publish).toEqual({
      containerPort: 6443,
      hostPort: 7000,
    });
  });

  it("process runtime: every listener on 127.0.0.1 with the ports it was given", () => {
    let next = 30000;
    const ports = new Map<string, number>();
    const portFor = (host: string, name: PortName) => {
      const key = `${host}/${name}`;
      if (!ports.has(key)) ports.set(key, next++);
      return ports.get(key) as number;
    };
    const plan = renderPlan(load("stacked-ha"), {
      lab: "p",
      runtime: "process",
      apiHostPort: 6443,
      portFor,
      hostRoot: (h) => `/state/p/hosts/${h}`,
    });
    expect(plan).toMatchSnapshot();
    for (const h of plan.hosts)
      for (const c of h.components)
        for (const arg of c.command) expect(arg).not.toMatch(/0\.0\.0\.0|p-control-plane-\d:\d/);
    expect(plan.apiServerUrl).toBe("https://127.0.0.1:6443");
  });
});
