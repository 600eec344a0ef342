import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { defineLabSuite, labHarness } from "./helpers/lab-suite.js";

/**
 * The lab on the Docker runtime (a real Docker Engine; npm test starts dockerd when none answers):
 * the shared lifecycle suite for the four topologies, with containers built from the offline
 * node image, then what Docker adds: labels, the internal store network, one published port.
 */

const harness = labHarness("docker");

function docker(args: string[]): string {
  return execFileSync("docker", args, { encoding: "utf8" }).trim();
}

/** Containers, networks and volumes still labelled with this lab. */
async function leftovers(name: string): Promise<string[]> {
  const filter = `label=lab.dev/lab=${name}`;
  return [
    ...docker(["ps", "-q", "--filter", filter]).split("\n"),
    ...docker(["network", "ls", "-q", "--filter", filter]).split("\n"),
    ...docker(["volume", "ls", "-q", "--filter", filter]).split("\n"),
  ].filter(Boolean);
}

/** Running containers only (lab stop leaves stopped containers, networks and volumes in place). */
async function running(name: string): Promise<string[]> {
  return docker(["ps", "-q", "--filter", `label=lab.dev/lab=${name}`])
    .split("\n")
    .filter(Boolean);
}

describe("the Docker runtime's layout", () => {
  it("labels every object, keeps the store network internal, publishes only the endpoint on 127.0.0.1", async () => {
    const { ok } = harness;
    await ok(["up", "external-ha", "--name", "layout", "--runtime", "docker"]);
    try {
      const containers = docker([
        "ps",
        "--filter",
        "label=lab.dev/lab=layout",
        "--format",
        '{{.Names}} {{.Label "lab.dev/role"}} {{.Ports}}',
      ])
        .split("\n")
        .sort();
      expect(containers.map((c) => c.split(" ").slice(0, 2).join(" "))).toEqual([
        "layout-control-plane-1 control-plane",
        "layout-control-plane-2 control-plane",
        "layout-control-plane-3 control-plane",
        "layout-etcd-1 etcd",
        "layout-etcd-2 etcd",
        "layout-etcd-3 etcd",
        "layout-lb load-balancer",
      ]);
      const published = containers.filter((c) => c.includes("->"));
      expect(published).toHaveLength(1);
      expect(published[0]).toMatch(/^layout-lb load-balancer 127\.0\.0\.1:\d+->6443\/tcp$/);
      expect(docker(["network", "inspect", "layout-etcd", "--format", "{{.Internal}}"])).toBe("true");
      const storeNets = docker([
        "inspect",
        "layout-etcd-1",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
      ]);
      expect(storeNets.trim()).toBe("layout-etcd");
      const status = JSON.parse(await ok(["status", "--name", "layout", "-o", "json"]));
      expect(status.members.filter((m: { leader: boolean }) => m.leader)).toHaveLength(1);
      expect(status.apiServers.every((a: { ready: boolean }) => a.ready)).toBe(true);
    } finally {
      await ok(["down", "--name", "layout"]);
    }
    expect(await leftovers("layout")).toEqual([]);
  });
});

defineLabSuite("docker", harness, running, leftovers);
