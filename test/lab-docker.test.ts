import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
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

describe("lab down on Docker", () => {
  it("removes the lab's networks although a container the lab does not own is attached, and leaves that container alone", async () => {
    const { ok } = harness;
    const stray = "lab-test-stray-endpoint";
    await ok(["up", "stacked-single", "--name", "stray", "--runtime", "docker"]);
    try {
      const first = docker(["ps", "-q", "--filter", "label=lab.dev/lab=stray"]).split("\n")[0] as string;
      const image = docker(["inspect", first, "--format", "{{.Config.Image}}"]);
      docker([
        "run",
        "-d",
        "--name",
        stray,
        "--entrypoint",
        "/usr/local/bin/node",
        image,
        "-e",
        "setInterval(() => {}, 1e9)",
      ]);
      const networks = docker(["network", "ls", "-q", "--filter", "label=lab.dev/lab=stray"])
        .split("\n")
        .filter(Boolean);
      expect(networks.length).toBeGreaterThan(0);
      // Docker refuses to remove a network while a running container has an endpoint on it.
      for (const n of networks) docker(["network", "connect", n, stray]);
      await ok(["down", "--name", "stray"]);
      expect(await leftovers("stray")).toEqual([]);
      expect(docker(["inspect", stray, "--format", "{{.State.Running}}"])).toBe("true");
    } finally {
      spawnSync("docker", ["rm", "-f", stray], { stdio: "ignore" });
      await harness.lab(["down", "--name", "stray"]);
    }
  });
});

describe("one Docker Engine, two lab homes", () => {
  it("refuses a lab name the engine already has, touching nothing of the lab that has it", async () => {
    const other = labHarness("docker");
    await harness.ok(["up", "stacked-single", "--name", "twin", "--runtime", "docker"]);
    try {
      const before = docker(["ps", "-q", "--no-trunc", "--filter", "label=lab.dev/lab=twin"]);
      const r = await other.lab(["up", "stacked-single", "--name", "twin", "--runtime", "docker"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("this Docker Engine already has objects lab twin needs or owns:");
      expect(r.stderr).toContain("container twin-control-plane-1 (belongs to lab twin)");
      expect(r.stderr).toContain("network twin (belongs to lab twin)");
      expect(r.stderr).toContain("lab down --name twin with that LAB_HOME");
      expect(fs.existsSync(path.join(other.home, "labs", "twin"))).toBe(false);
      // The first lab is whole and still serves.
      expect(docker(["ps", "-q", "--no-trunc", "--filter", "label=lab.dev/lab=twin"])).toBe(before);
      const status = JSON.parse(await harness.ok(["status", "--name", "twin", "-o", "json"]));
      expect(status.apiServers.every((a: { ready: boolean }) => a.ready)).toBe(true);
      expect((await other.lab(["down", "--name", "twin"])).stderr).toContain('no such lab "twin"');
    } finally {
      await harness.ok(["down", "--name", "twin"]);
    }
    expect(await leftovers("twin")).toEqual([]);
  });

  it("refuses a name whose network someone made by hand, and leaves that network alone", async () => {
    docker(["network", "create", "handmade"]);
    try {
      const r = await harness.lab(["up", "stacked-single", "--name", "handmade", "--runtime", "docker"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("this Docker Engine already has an object lab handmade needs or owns:");
      expect(r.stderr).toContain("network handmade (not made by lab)");
      expect(docker(["network", "ls", "-q", "--filter", "name=^handmade$"])).not.toBe("");
      expect(await leftovers("handmade")).toEqual([]);
      expect(fs.existsSync(path.join(harness.home, "labs", "handmade"))).toBe(false);
    } finally {
      spawnSync("docker", ["network", "rm", "handmade"], { stdio: "ignore" });
    }
  });
});

defineLabSuite("docker", harness, running, leftovers);

/**
 * A restart of the Docker daemon, only when this test run started the daemon (npm test does when
 * none answered, and exports its PID): an HA lab comes back by itself with its data.
 */
const ownedDockerd = Number(process.env.LAB_TEST_DOCKERD_PID ?? 0);
if (ownedDockerd > 0) {
  describe("a Docker daemon restart", () => {
    it("an HA lab comes back with its data", async () => {
      const { ok, home } = harness;
      await ok(["up", "stacked-ha", "--name", "daemon", "--runtime", "docker"]);
      try {
        const kubeconfig = path.join(home, "daemon.kubeconfig");
        fs.writeFileSync(kubeconfig, await ok(["kubeconfig", "--name", "daemon"]));
        const kubectl = (args: string[]) =>
          execFileSync(kubectlPath(), [`--kubeconfig=${kubeconfig}`, ...args], {
            encoding: "utf8",
            env: { ...process.env, HOME: home },
          });
        expect(kubectl(["create", "configmap", "survivor", "--from-literal=a=1"])).toBe("configmap/survivor created\n");
        process.kill(ownedDockerd, "SIGTERM");
        for (let i = 0; i < 600 && fs.existsSync(`/proc/${ownedDockerd}`); i++)
          await new Promise((r) => setTimeout(r, 100));
        const log = fs.openSync("/tmp/lab-dockerd.log", "a");
        const daemon = spawn(fs.existsSync("/usr/sbin/dockerd") ? "/usr/sbin/dockerd" : "dockerd", [], {
          detached: true,
          stdio: ["ignore", log, log],
        });
        daemon.unref();
        let back = "";
        for (let i = 0; i < 240; i++) {
          try {
            back = kubectl(["get", "configmap", "survivor", "-o", "jsonpath={.data.a}"]);
            if (back === "1") break;
          } catch {
            // the daemon, the containers or the API are still coming back
          }
          await new Promise((r) => setTimeout(r, 500));
        }
        expect(back).toBe("1");
        const status = JSON.parse(await ok(["status", "--name", "daemon", "-o", "json"]));
        expect(status.hosts.every((h: { running: boolean }) => h.running)).toBe(true);
        expect(status.members.filter((m: { leader: boolean }) => m.leader)).toHaveLength(1);
      } finally {
        await ok(["down", "--name", "daemon"]);
      }
    });
  });
}

function kubectlPath(): string {
  const dir = path.dirname(
    execFileSync("sh", ["-c", 'readlink -f "$(command -v kubectl)"'], { encoding: "utf8" }).trim(),
  );
  return path.join(dir, "kubectl.1.33");
}

describe("a failed image build", () => {
  it("says what Docker said and leaves nothing behind", async () => {
    const { lab, home } = harness;
    // A malformed reference fails in the engine itself (nothing is pulled: no registry is reachable).
    const r = await lab([
      "up",
      "stacked-single",
      "--name",
      "badimage",
      "--runtime",
      "docker",
      "--base-image",
      "Invalid/Ref:1",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^lab up: docker build of lab\/node:\w+ failed: .*invalid reference format.*check --base-image/m,
    );
    expect(await leftovers("badimage")).toEqual([]);
    expect(fs.existsSync(path.join(home, "labs", "badimage"))).toBe(false);
  });
});
