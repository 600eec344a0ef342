import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kubectlBinary } from "./apiserver.js";
import { freePort, LAB_CLI, run, tempDir } from "./nodes.js";

export { freePort };

/**
 * The lab lifecycle suite, shared by the runtimes: for each of the four topologies, `lab up`,
 * the real etcdctl through `lab etcdctl`, the real kubectl through `lab kubeconfig`, a
 * control-plane host stopped (HA keeps the API through the load balancer), `lab stop` +
 * `lab start` keeping the data, and `lab down` leaving nothing behind.
 */

export function labHarness(runtime: "process" | "docker") {
  const home = tempDir(`lab-home-${runtime}`);
  const env = { LAB_HOME: home };
  const lab = (args: string[], timeoutMs = 180_000) => run(process.execPath, [LAB_CLI, ...args], { env, timeoutMs });
  async function ok(args: string[]): Promise<string> {
    const r = await lab(args);
    if (r.code !== 0) throw new Error(`lab ${args.join(" ")} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
    return r.stdout;
  }
  return { home, lab, ok };
}

/** PIDs of processes whose command line mentions this lab's directory. */
export function processesOf(home: string, name: string): number[] {
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

export function defineLabSuite(
  runtime: "process" | "docker",
  harness: ReturnType<typeof labHarness>,
  /** What of the lab still runs (processes, or running containers). */
  running: (name: string) => Promise<string[]>,
  /** Whatever of the lab is still there (processes, or containers, networks and volumes). */
  leftovers: (name: string) => Promise<string[]>,
): void {
  const { home, lab, ok } = harness;
  const kubectl = kubectlBinary("1.33");

  afterAll(async () => {
    const labsDir = path.join(home, "labs");
    if (fs.existsSync(labsDir)) for (const name of fs.readdirSync(labsDir)) await lab(["down", "--name", name]);
  });

  describe.each([
    { topology: "stacked-single", members: 1, ha: false },
    { topology: "stacked-ha", members: 3, ha: true },
    { topology: "external-single", members: 1, ha: false },
    { topology: "external-ha", members: 3, ha: true },
  ])(`lab up $topology (${runtime} runtime)`, ({ topology, members, ha }) => {
    const name = `${runtime === "docker" ? "d" : "t"}-${topology}`;
    const kubeconfig = path.join(home, `${name}.kubeconfig`);
    const k = (args: string[]) => run(kubectl, [`--kubeconfig=${kubeconfig}`, ...args], { env: { HOME: home } });

    it("comes up with every member, one leader and a working API", async () => {
      const out = await ok(["up", topology, "--name", name, "--runtime", runtime, "--port", String(await freePort())]);
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
      expect(await running(name), (await lab(["logs", "--name", name])).stdout).toEqual([]);
      await ok(["start", "--name", name]);
      expect(await ok(["kubeconfig", "--name", name])).toBe(before);
      const r = await k(["get", "configmap", "hello", "-o", "jsonpath={.data.greeting}"]);
      expect(r.stdout, r.stderr).toBe("hi");
    });

    it("lab down leaves no process or file of the lab", async () => {
      expect((await leftovers(name)).length).toBeGreaterThan(0);
      const logs = (await lab(["logs", "--name", name])).stdout;
      expect(await ok(["down", "--name", name])).toBe(`Deleted lab ${name}\n`);
      expect(await leftovers(name), logs).toEqual([]);
      expect(fs.existsSync(path.join(home, "labs", name))).toBe(false);
      const after = await lab(["status", "--name", name]);
      expect(after.code).toBe(1);
      expect(after.stderr).toContain(`no such lab "${name}"`);
    });
  });
}
