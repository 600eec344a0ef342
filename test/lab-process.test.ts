import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kubectlBinary } from "./helpers/apiserver.js";
import { LAB_CLI, run, tempDir } from "./helpers/nodes.js";

/**
 * The lab on the process runtime, end to end with the built CLI: for each of the four
 * topologies, `lab up`, the real etcdctl through `lab etcdctl`, the real kubectl through
 * `lab kubeconfig`, a control-plane host stopped (HA keeps the API through the load balancer),
 * `lab stop` + `lab start` keeping the data, and `lab down` leaving nothing behind. Then the
 * bad inputs, each with a clear message and nothing half-created.
 */

const home = tempDir("lab-home");
const env = { LAB_HOME: home };
const lab = (args: string[], timeoutMs = 90_000) => run(process.execPath, [LAB_CLI, ...args], { env, timeoutMs });
const kubectl = kubectlBinary("1.33");

async function ok(args: string[]): Promise<string> {
  const r = await lab(args);
  if (r.code !== 0) throw new Error(`lab ${args.join(" ")} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** PIDs of processes whose command line mentions this lab's directory. */
function processesOf(name: string): number[] {
  const dir = path.join(home, "labs", name);
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

afterAll(async () => {
  // Whatever a failed test left running: lab down removes it (only this suite's labs, in its LAB_HOME).
  const labsDir = path.join(home, "labs");
  if (fs.existsSync(labsDir)) for (const name of fs.readdirSync(labsDir)) await lab(["down", "--name", name]);
});

describe.each([
  { topology: "stacked-single", members: 1, ha: false },
  { topology: "stacked-ha", members: 3, ha: true },
  { topology: "external-single", members: 1, ha: false },
  { topology: "external-ha", members: 3, ha: true },
])("lab up $topology (process runtime)", ({ topology, members, ha }) => {
  const name = `t-${topology}`;
  const kubeconfig = path.join(home, `${name}.kubeconfig`);
  const k = (args: string[]) => run(kubectl, [`--kubeconfig=${kubeconfig}`, ...args], { env: { HOME: home } });

  it("comes up with every member, one leader and a working API", async () => {
    const out = await ok(["up", topology, "--name", name, "--port", String(await freePort())]);
    expect(out).toContain(`Lab ${name} is ready`);
    const list = await ok(["etcdctl", "--name", name, "--", "member", "list", "-w", "json"]);
    expect(JSON.parse(list).members).toHaveLength(members);
    const status = JSON.parse(await ok(["status", "--name", name, "-o", "json"]));
    expect(status.members.filter((m: { leader: boolean }) => m.leader)).toHaveLength(1);
    expect(status.apiServers.every((a: { ready: boolean }) => a.ready)).toBe(true);
    fs.writeFileSync(kubeconfig, await ok(["kubeconfig", "--name", name]));
    const created = await k(["create", "configmap", "hello", "--from-literal=greeting=hi"]);
    expect(created.stdout, created.stderr).toBe("configmap/hello created\n");
    const stored = await ok([
      "etcdctl",
      "--name",
      name,
      "--",
      "get",
      "/registry/configmaps/default/hello",
      "--print-value-only",
    ]);
    expect(JSON.parse(stored).data).toEqual({ greeting: "hi" });
  });

  it(
    ha ? "keeps the API through the load balancer when a control-plane host stops" : "stops and starts one host",
    async () => {
      const host = `${name}-control-plane-1`;
      await ok(["stop", host, "--name", name]);
      const status = JSON.parse(await ok(["status", "--name", name, "-o", "json"]));
      expect(status.hosts.find((h: { name: string }) => h.name === host).running).toBe(false);
      if (ha) {
        for (let i = 0; i < 5; i++) {
          const r = await k(["get", "configmap", "hello", "-o", "name"]);
          expect(r.stdout, r.stderr).toBe("configmap/hello\n");
        }
      }
      await ok(["start", host, "--name", name]);
    },
  );

  it("keeps its data across lab stop and lab start, on the same endpoint", async () => {
    const before = fs.readFileSync(kubeconfig, "utf8");
    await ok(["stop", "--name", name]);
    expect(processesOf(name), (await lab(["logs", "--name", name])).stdout).toEqual([]);
    await ok(["start", "--name", name]);
    expect(await ok(["kubeconfig", "--name", name])).toBe(before);
    const r = await k(["get", "configmap", "hello", "-o", "jsonpath={.data.greeting}"]);
    expect(r.stdout, r.stderr).toBe("hi");
  });

  it("lab down leaves no process or file of the lab", async () => {
    expect(processesOf(name).length).toBeGreaterThan(0);
    const logs = (await lab(["logs", "--name", name])).stdout;
    expect(await ok(["down", "--name", name])).toBe(`Deleted lab ${name}\n`);
    expect(processesOf(name), logs).toEqual([]);
    expect(fs.existsSync(path.join(home, "labs", name))).toBe(false);
    const after = await lab(["status", "--name", name]);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain(`no such lab "${name}"`);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0 }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

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
      const docker = await lab(["up", "stacked-single", "--name", "dock", "--runtime", "docker"]);
      expect(docker.code).toBe(1);
      expect(docker.stderr).toContain("use --runtime process");
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
