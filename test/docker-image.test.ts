import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureNodeImage, imageTag, NODE_IMAGE_REPO, parseLdd } from "../src/lab/docker/image.js";

/**
 * The lab node image with a real Docker Engine (started here when none answers): built once
 * (`FROM scratch`, out of this machine's Node.js, libraries, busybox, etcdctl and the built
 * project), reused by tag, and run offline (no network but the container's loopback): Node.js,
 * the `lab` wrapper, a shell, etcdctl, and a real `lab etcd` member answering etcdctl from inside
 * its container. Every container made here carries the label lab.dev/test=docker-image and is
 * removed at the end; the image stays for later tests.
 */

const SOCKET = "/var/run/docker.sock";
const DOCKERD = "/usr/sbin/dockerd";
const TEST_LABEL = "lab.dev/test";
const TEST_LABELS = { [TEST_LABEL]: "docker-image" };
const CLI = ["/usr/local/bin/node", "/lab/dist/src/cli/main.js"];

const docker = new Docker({ socketPath: SOCKET });
let dockerd: ChildProcess | undefined;
let dockerdLog = "";

beforeAll(async () => {
  if (!(await engineAnswers())) await startDockerd();
  await removeTestContainers(); // whatever a crashed earlier run left
}, 90_000);

afterAll(async () => {
  try {
    await removeTestContainers();
  } finally {
    if (dockerd) {
      await stopDockerd(dockerd);
      fs.rmSync(path.dirname(dockerdLog), { recursive: true, force: true });
    }
  }
}, 90_000);

describe("the lab node image", () => {
  it("ldd output: libraries and the loader, nothing for vdso; a missing library is an error", () => {
    const out = [
      "\tlinux-vdso.so.1 (0x00007ffd1a3f2000)",
      "\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f0e1c200000)",
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1c01f000)",
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c6b6000)",
    ].join("\n");
    expect(parseLdd("node", out)).toEqual([
      "/lib/x86_64-linux-gnu/libstdc++.so.6",
      "/lib/x86_64-linux-gnu/libc.so.6",
      "/lib64/ld-linux-x86-64.so.2",
    ]);
    expect(() => parseLdd("node", "\tlibfoo.so.1 => not found")).toThrow(/node needs libfoo\.so\.1/);
  });

  it("is built once, then reused by its tag", async () => {
    const tag = imageTag();
    // Start cold under a tag of this test's own: the default image may be in use by labs (of
    // this run or another), and an image in use is never removed from under them.
    const coldTag = `${tag}-cold-${process.pid}`;
    const expected = `${NODE_IMAGE_REPO}:${coldTag}`;
    await removeImage(expected);
    try {
      const lines: string[] = [];
      const cold = await ensureNodeImage({ docker, tag: coldTag, log: (l) => lines.push(l) });
      expect(cold.ref).toBe(expected);
      expect(cold.built).toBe(true);
      expect(lines.some((l) => l.includes(`Successfully tagged ${expected}`))).toBe(true);

      const warm = await ensureNodeImage({ docker, tag: coldTag });
      expect(warm).toEqual({ ref: expected, built: false, seconds: expect.any(Number) });

      const info = await docker.getImage(expected).inspect();
      expect(info.Config.Labels).toMatchObject({ "lab.dev/image": "node", "lab.dev/tag": coldTag });
      expect(info.Config.Entrypoint).toEqual([...CLI, "host"]);
      expect(info.Config.Env).toContain("ETCDCTL_API=3");
      process.stdout.write(
        `docker-image: ${expected} is ${(info.Size / 1e6).toFixed(1)} MB; ` +
          `cold build ${cold.seconds} s, warm ${warm.seconds} s\n`,
      );
    } finally {
      await removeImage(expected); // made here, for this test only
    }
    // Without a tag, the image is the one named by this machine's inputs.
    expect((await ensureNodeImage({ docker })).ref).toBe(`${NODE_IMAGE_REPO}:${tag}`);
  }, 300_000);

  it("reports a failed build with the engine's message", async () => {
    await expect(ensureNodeImage({ docker, baseImage: "Not/A-Valid-Reference" })).rejects.toThrow(
      /docker build of lab\/node:\w+ failed: invalid reference format/,
    );
  }, 120_000);

  it("builds on a base image too (here the node image itself, so no registry is needed)", async () => {
    const base = await nodeImage();
    const expected = `${NODE_IMAGE_REPO}:${imageTag(base)}`;
    expect(expected).not.toBe(base);
    await removeImage(expected);
    const derived = await ensureNodeImage({ docker, baseImage: base });
    try {
      expect(derived).toMatchObject({ ref: expected, built: true });
      const r = await runIn(["/bin/sh", "-c", "node --version && lab --help"], derived.ref);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(process.version);
      expect(r.stdout).toContain("lab etcd");
    } finally {
      await removeImage(expected); // made here, for this test only
    }
  }, 300_000);

  it("runs the host's Node.js offline", async () => {
    const r = await runIn(["/usr/local/bin/node", "--version"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(process.version);
  }, 90_000);

  it("has a shell, /tmp for everyone, and the lab wrapper", async () => {
    const sh = await runIn(["/bin/sh", "-c", "echo ok && stat -c %a /tmp"]);
    expect(sh.code, sh.stderr).toBe(0);
    expect(sh.stdout).toBe("ok\n1777\n");

    const help = await runIn(["/bin/sh", "-c", "/usr/local/bin/lab --help"]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("lab etcd");
  }, 90_000);

  it("has the host's etcdctl", async () => {
    requireHostEtcdctl();
    const r = await runIn(["/usr/local/bin/etcdctl", "version"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/etcdctl version: \d+\.\d+/);
  }, 90_000);

  it("runs `lab host` by default (the runtime passes --name and --root)", async () => {
    const container = await docker.createContainer({
      Image: await nodeImage(),
      Cmd: ["--name=h1", "--root=/"],
      Labels: TEST_LABELS,
      HostConfig: { NetworkMode: "none" },
    });
    try {
      await container.start();
      const logs = await waitFor(
        async () => {
          const { stdout, stderr } = demux(await container.logs({ stdout: true, stderr: true }));
          return /host supervisor running/.test(stdout + stderr) ? stdout + stderr : undefined;
        },
        20_000,
        "the host supervisor to start",
      );
      expect(logs).toContain("h1");
      expect((await container.inspect()).State.Running).toBe(true);
    } finally {
      await container.remove({ force: true });
    }
  }, 90_000);

  it("runs a lab etcd member that etcdctl reaches from inside the container", async () => {
    requireHostEtcdctl();
    const container = await docker.createContainer({
      Image: await nodeImage(),
      Entrypoint: [
        ...CLI,
        "etcd",
        "--name",
        "m1",
        "--data-dir",
        "/tmp/m1",
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "m1=http://127.0.0.1:2380",
      ],
      Labels: TEST_LABELS,
      HostConfig: { NetworkMode: "none" },
    });
    try {
      await container.start();
      const etcdctl = (...args: string[]) => execIn(container, ["etcdctl", "--endpoints", "127.0.0.1:2379", ...args]);
      let last = "";
      await waitFor(
        async () => {
          if (!(await container.inspect()).State.Running) {
            const { stdout, stderr } = demux(await container.logs({ stdout: true, stderr: true }));
            throw new Error(`the etcd container exited:\n${stdout}${stderr}`);
          }
          const r = await etcdctl("endpoint", "health");
          last = r.stdout + r.stderr;
          // etcdctl 3.4 reports endpoint health on stderr.
          return r.code === 0 && /is healthy/.test(last) ? true : undefined;
        },
        30_000,
        () => `etcdctl endpoint health (last answer: ${last.trim()})`,
      );
      const put = await etcdctl("put", "greeting", "hello");
      expect(put.stdout.trim(), put.stderr).toBe("OK");
      const get = await etcdctl("get", "greeting");
      expect(get.stdout, get.stderr).toBe("greeting\nhello\n");
    } finally {
      await container.remove({ force: true });
    }
  }, 90_000);
});

// ---------------------------------------------------------------------------------------------

async function nodeImage(): Promise<string> {
  return (await ensureNodeImage({ docker })).ref;
}

function requireHostEtcdctl(): void {
  try {
    execFileSync("/bin/sh", ["-c", "command -v etcdctl"], { stdio: "ignore" });
  } catch {
    throw new Error("etcdctl is not installed on this machine (scripts/test.sh installs etcd-client)");
  }
}

async function engineAnswers(): Promise<boolean> {
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

async function startDockerd(): Promise<void> {
  if (!fs.existsSync(DOCKERD))
    throw new Error(
      `no Docker Engine answers on ${SOCKET} and ${DOCKERD} is not installed: ` +
        "these tests need a Docker Engine (apt-get install docker.io)",
    );
  dockerdLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lab-dockerd-")), "dockerd.log");
  const log = fs.openSync(dockerdLog, "a");
  const child = spawn(DOCKERD, [`--host=unix://${SOCKET}`], { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  dockerd = child;
  let exited: string | undefined;
  child.once("exit", (code, signal) => {
    exited = `exited (${signal ?? code})`;
  });
  const deadline = Date.now() + 60_000;
  while (!(await engineAnswers())) {
    if (exited !== undefined || Date.now() > deadline) {
      const tail = fs.readFileSync(dockerdLog, "utf8").split("\n").slice(-20).join("\n");
      if (exited === undefined) await stopDockerd(child);
      dockerd = undefined;
      throw new Error(`dockerd ${exited ?? "did not answer within 60 s"}; the end of ${dockerdLog}:\n${tail}`);
    }
    await sleep(250);
  }
}

async function stopDockerd(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
  }, 30_000);
  await gone;
  clearTimeout(timer);
}

async function removeTestContainers(): Promise<void> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${TEST_LABEL}=${TEST_LABELS[TEST_LABEL]}`] },
  });
  for (const c of containers) await docker.getContainer(c.Id).remove({ force: true });
}

async function removeImage(ref: string): Promise<void> {
  try {
    await docker.getImage(ref).remove();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs ENTRYPOINT in a new container of the node image (or IMAGE), without a network; returns its exit and output. */
async function runIn(entrypoint: string[], image?: string): Promise<Output> {
  const container = await docker.createContainer({
    Image: image ?? (await nodeImage()),
    Entrypoint: entrypoint,
    Labels: TEST_LABELS,
    HostConfig: { NetworkMode: "none" },
  });
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const { stdout, stderr } = demux(await container.logs({ stdout: true, stderr: true }));
    return { code: StatusCode, stdout, stderr };
  } finally {
    await container.remove({ force: true });
  }
}

/** docker exec: runs CMD in a running container. */
async function execIn(container: Docker.Container, cmd: string[]): Promise<Output> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on("data", (b: Buffer) => out.push(b));
  const stderr = new PassThrough().on("data", (b: Buffer) => err.push(b));
  await new Promise<void>((resolve, reject) => {
    stream.on("end", resolve);
    stream.on("close", resolve);
    stream.on("error", reject);
    docker.modem.demuxStream(stream, stdout, stderr);
  });
  // The output can end a moment before the engine records the exit code.
  let info = await exec.inspect();
  for (let i = 0; info.Running && i < 50; i++) {
    await sleep(100);
    info = await exec.inspect();
  }
  return {
    code: info.ExitCode ?? -1,
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
  };
}

/** Splits Docker's multiplexed log stream (8-byte frame headers: stream, 0, 0, 0, length). */
function demux(buf: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let at = 0;
  while (at + 8 <= buf.length) {
    const length = buf.readUInt32BE(at + 4);
    const frame = buf.subarray(at + 8, at + 8 + length);
    (buf[at] === 2 ? err : out).push(frame);
    at += 8 + length;
  }
  return { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${typeof what === "string" ? what : what()}`);
    await sleep(300);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
