import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { kubectlBinary } from "./helpers/apiserver.js";
import { defineLabSuite, freePort, labHarness, processesOf } from "./helpers/lab-suite.js";
import { LAB_CLI, run } from "./helpers/nodes.js";

/**
 * The lab on the process runtime, end to end with the built CLI (the shared lifecycle suite), then
 * the bad inputs, each with a clear message and nothing half-created.
 */

const harness = labHarness("process");
const { home, lab, ok } = harness;

const processes = async (name: string) => processesOf(home, name).map(String);
defineLabSuite("process", harness, processes, processes);

describe("bad input", () => {
  it("an unknown topology names the built-in ones", async () => {
    const r = await lab(["up", "stacked-hq"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'no topology named "stacked-hq"; built-in topologies: external-ha, external-single, stacked-ha, stacked-single',
    );
  });

  it("a broken topology file gives file, line and field; nothing is created", async () => {
    const file = path.join(home, "bad.yaml");
    fs.writeFileSync(
      file,
      "apiVersion: lab.dev/v1alpha1\nkind: Topology\nname: bad\netcd:\n  placement: stacked\n  membres: 3\n",
    );
    const r = await lab(["up", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:6:3: etcd.membres: unknown field "membres"; did you mean "members"?`);
    expect(fs.existsSync(path.join(home, "labs", "bad"))).toBe(false);
  });

  it("a port in use is refused before anything starts", async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen({ host: "127.0.0.1", port: 0 }, () => resolve()));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      const r = await lab(["up", "stacked-single", "--name", "busy", "--port", String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`port ${port} on 127.0.0.1 is in use`);
      expect(fs.existsSync(path.join(home, "labs", "busy"))).toBe(false);
    } finally {
      srv.close();
    }
  });

  it("a second up of the same lab, the Docker runtime, and commands on a missing lab", async () => {
    await ok(["up", "stacked-single", "--name", "twice", "--port", String(await freePort())]);
    try {
      const again = await lab(["up", "stacked-single", "--name", "twice"]);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('lab "twice" already exists (running)');
      const noEngine = await run(
        process.execPath,
        [LAB_CLI, "up", "stacked-single", "--name", "dock", "--runtime", "docker"],
        {
          env: { LAB_HOME: home, DOCKER_SOCKET: path.join(home, "no-docker.sock") },
        },
      );
      expect(noEngine.code).toBe(1);
      expect(noEngine.stderr).toContain(
        `--runtime docker: no Docker Engine answers on ${path.join(home, "no-docker.sock")}`,
      );
      expect(noEngine.stderr).toContain("start dockerd, or use --runtime process");
      const unknown = await lab(["up", "stacked-single", "--name", "dock", "--runtime", "vm"]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain("--runtime vm: choose auto, docker or process");
      expect(fs.existsSync(path.join(home, "labs", "dock"))).toBe(false);
      const missing = await lab(["etcdctl", "--name", "nope", "--", "member", "list"]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('no such lab "nope"; labs here: twice');
      const listed = JSON.parse(await ok(["list", "-o", "json"]));
      expect(listed.map((l: { name: string }) => l.name)).toEqual(["twice"]);
    } finally {
      await ok(["down", "--name", "twice"]);
    }
  });
});

describe("several labs side by side", () => {
  it("runs two labs at once; lab down of one leaves the other untouched", async () => {
    await ok(["up", "stacked-single", "--name", "side-a", "--port", String(await freePort())]);
    await ok(["up", "external-single", "--name", "side-b", "--port", String(await freePort())]);
    try {
      const listed = JSON.parse(await ok(["list", "-o", "json"]));
      expect(
        listed.map((l: { name: string; running: number; hosts: number }) => `${l.name} ${l.running}/${l.hosts}`),
      ).toEqual(["side-a 1/1", "side-b 2/2"]);
      const a = JSON.parse(await ok(["status", "--name", "side-a", "-o", "json"]));
      const b = JSON.parse(await ok(["status", "--name", "side-b", "-o", "json"]));
      expect(a.endpoint).not.toBe(b.endpoint);
      // --merge adds each lab's context to the user's kubeconfig, as kind does.
      const merged = path.join(home, "merged-kubeconfig");
      fs.writeFileSync(merged, "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n");
      for (const n of ["side-a", "side-b"]) {
        const r = await run(process.execPath, [LAB_CLI, "kubeconfig", "--merge", "--name", n], {
          env: { LAB_HOME: home, KUBECONFIG: merged },
        });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toContain(`Set kubectl context to "lab-${n}"`);
      }
      const kubectl = (args: string[]) =>
        run(kubectlBinary("1.33"), [`--kubeconfig=${merged}`, ...args], { env: { HOME: home } });
      expect((await kubectl(["config", "current-context"])).stdout).toBe("lab-side-b\n");
      const viaA = await kubectl(["--context=lab-side-a", "get", "namespace", "default", "-o", "name"]);
      expect(viaA.stdout, viaA.stderr).toBe("namespace/default\n");
      await ok(["down", "--name", "side-a"]);
      expect(processesOf(home, "side-a")).toEqual([]);
      const still = JSON.parse(await ok(["status", "--name", "side-b", "-o", "json"]));
      expect(still.apiServers.every((s: { ready: boolean }) => s.ready)).toBe(true);
      expect(still.members.filter((m: { leader: boolean }) => m.leader)).toHaveLength(1);
    } finally {
      await lab(["down", "--name", "side-a"]);
      await ok(["down", "--name", "side-b"]);
    }
  });
});
