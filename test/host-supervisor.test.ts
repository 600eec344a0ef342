import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MEMBER_NODE_FLAGS } from "../src/etcd/node-flags.js";
import {
  type HostStatus,
  HostSupervisor,
  MANIFEST_CACHE_FILE,
  MANIFEST_SUBDIR,
  parseManifest,
  primeManifestCache,
  readManifest,
  resolveCommand,
  STATUS_FILE,
} from "../src/host/supervisor.js";
import type { Logger } from "../src/util/logger.js";

/** The host supervisor (a small kubelet) over real child processes: `sleep` stands in for a component. */

const roots: string[] = [];
const supervisors: HostSupervisor[] = [];

afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stop();
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function manifest(name: string, seconds: number): string {
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\nspec:\n  containers:\n  - name: ${name}\n    command: ["sleep", "${seconds}"]\n`;
}

function host(): {
  root: string;
  supervisor: HostSupervisor;
  warnings: string[];
  write(file: string, text: string): void;
} {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "lab-host-test-"));
  roots.push(root);
  const warnings: string[] = [];
  const logger: Logger = {
    debug() {},
    info() {},
    warn: (msg, fields) => warnings.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    error: (msg) => warnings.push(msg),
  };
  const supervisor = new HostSupervisor("h1", root, "/nonexistent-main.js", logger);
  supervisors.push(supervisor);
  const dir = path.join(root, MANIFEST_SUBDIR);
  fs.mkdirSync(dir, { recursive: true });
  return {
    root,
    supervisor,
    warnings,
    write: (file, text) => fs.writeFileSync(path.join(dir, file), text),
  };
}

function status(root: string): HostStatus {
  return JSON.parse(fs.readFileSync(path.join(root, STATUS_FILE), "utf8")) as HostStatus;
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const component = (root: string, name: string) => status(root).components.find((c) => c.name === name);

describe("familiar command names", () => {
  it("runs etcd as this program's store member, with the member's V8 flags before the script", () => {
    const r = resolveCommand(["etcd", "--name", "m1", "--data-dir", "/var/lib/etcd"], "/lab/main.js");
    expect(r).toEqual({
      file: process.execPath,
      args: [...MEMBER_NODE_FLAGS, "/lab/main.js", "etcd", "--name", "m1", "--data-dir", "/var/lib/etcd"],
      argv0: "etcd",
    });
    expect(MEMBER_NODE_FLAGS).toContain("--max-semi-space-size=4");
  });

  it("runs kube-apiserver and lab-lb without them, and any other command as it is", () => {
    expect(resolveCommand(["kube-apiserver", "--etcd-servers=x"], "/lab/main.js")).toEqual({
      file: process.execPath,
      args: ["/lab/main.js", "apiserver", "--etcd-servers=x"],
      argv0: "kube-apiserver",
    });
    expect(resolveCommand(["lab-lb", "--port=1"], "/lab/main.js").args).toEqual(["/lab/main.js", "lb", "--port=1"]);
    expect(resolveCommand(["sleep", "5"], "/lab/main.js")).toEqual({ file: "sleep", args: ["5"], argv0: "sleep" });
  });
});

describe("host supervisor", () => {
  it("runs each manifest's command, restarts it when it exits and when its manifest changes, stops it when the manifest goes", async () => {
    const h = host();
    h.write("a.yaml", manifest("a", 1000));
    h.supervisor.start();
    const first = await until("a to run", () =>
      alive(component(h.root, "a")?.pid) ? component(h.root, "a") : undefined,
    );

    // Killed from outside (a crash): the supervisor starts it again, counting the restart.
    process.kill(first.pid as number, "SIGKILL");
    const second = await until("a to be restarted", () => {
      const c = component(h.root, "a");
      return c?.pid && c.pid !== first.pid && alive(c.pid) ? c : undefined;
    });
    expect(second.restarts).toBe(1);
    expect(second.lastExit).toBe("signal SIGKILL");

    // An edited manifest restarts the component with the new command.
    h.write("a.yaml", manifest("a", 2000));
    h.supervisor.scan();
    const third = await until("a to restart with the new manifest", () => {
      const c = component(h.root, "a");
      return c?.pid && c.pid !== second.pid && c.manifestHash !== second.manifestHash && alive(c.pid) ? c : undefined;
    });
    expect(alive(second.pid)).toBe(false);
    expect(fs.readFileSync(`/proc/${third.pid}/cmdline`, "utf8").split("\0")).toContain("2000");

    // A removed manifest stops the component.
    fs.rmSync(path.join(h.root, MANIFEST_SUBDIR, "a.yaml"));
    h.supervisor.scan();
    await until("a to stop", () => !alive(third.pid) && component(h.root, "a") === undefined);
  });

  it("a broken manifest is reported once and does not disturb the others; an idle scan rewrites nothing", async () => {
    const h = host();
    h.write("good.yaml", manifest("good", 1000));
    h.write("bad.yaml", "apiVersion: v1\nkind: Pod\nspec: {}\n");
    h.supervisor.start();
    const good = await until("good to run", () =>
      alive(component(h.root, "good")?.pid) ? component(h.root, "good") : undefined,
    );
    const before = fs.statSync(path.join(h.root, STATUS_FILE)).mtimeMs;
    for (let i = 0; i < 3; i++) h.supervisor.scan();
    expect(h.warnings.filter((w) => w.startsWith("cannot read manifest"))).toHaveLength(1);
    expect(h.warnings[0]).toContain("metadata.name is required");
    expect(fs.statSync(path.join(h.root, STATUS_FILE)).mtimeMs).toBe(before);
    expect(component(h.root, "good")?.pid).toBe(good.pid);

    // Fixing the broken manifest starts it.
    h.write("bad.yaml", manifest("fixed", 1000));
    h.supervisor.scan();
    await until("the fixed manifest to run", () => alive(component(h.root, "fixed")?.pid));
    expect(component(h.root, "good")?.pid).toBe(good.pid);
  });

  it("keeps parsed manifests by content: primed entries are used, a damaged cache is rebuilt", () => {
    const h = host();
    const file = path.join(h.root, MANIFEST_SUBDIR, "a.yaml");
    const text = manifest("a", 1000);
    h.write("a.yaml", text);
    primeManifestCache(h.root, [{ file, text }]);
    const cacheFile = path.join(h.root, MANIFEST_CACHE_FILE);
    const cached = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as Record<string, unknown>;
    expect(Object.values(cached)).toEqual([{ name: "a", command: ["sleep", "1000"] }]);
    expect(readManifest(file, h.root)).toMatchObject(parseManifest(text, file));

    fs.writeFileSync(cacheFile, "{ not json");
    expect(readManifest(file, h.root)).toMatchObject({ name: "a", command: ["sleep", "1000"] });
    expect(Object.keys(JSON.parse(fs.readFileSync(cacheFile, "utf8")) as object)).toHaveLength(1);
  });
});
