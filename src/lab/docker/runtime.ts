import { spawn, spawnSync } from "node:child_process";
import type Dockerode from "dockerode";
import type { Plan, PlanHost } from "../../topology/plan.js";
import type { HostRecord } from "../state.js";
import { ensureNodeImage } from "./image.js";

/**
 * The Docker runtime: one container per lab host, as kind does. Each container runs `lab host`
 * (the small kubelet) over the host's static pods; /etc/kubernetes is bind-mounted from the lab's
 * directory on this machine (credentials, manifests: edit a manifest and the component restarts);
 * each store member keeps its data in a named volume. Two networks per lab: LAB for the API
 * servers and the load balancer, LAB-etcd (internal) for store traffic, which only store members
 * and API servers join. Hosts address each other by container name. Only the API endpoint is
 * published, on 127.0.0.1. Every object carries labels naming the lab, host and role.
 */

export const LABEL_LAB = "lab.dev/lab";
export const LABEL_HOST = "lab.dev/host";
export const LABEL_ROLE = "lab.dev/role";

/** The Docker Engine's socket: $DOCKER_SOCKET, or the usual one. */
export function dockerSocket(): string {
  return process.env.DOCKER_SOCKET ?? "/var/run/docker.sock";
}

/** Loaded on first use: the process runtime and most commands never need the Docker client. */
export async function dockerClient(): Promise<Dockerode> {
  const { default: DockerodeClass } = await import("dockerode");
  return new DockerodeClass({ socketPath: dockerSocket() });
}

/** Whether a Docker Engine answers (and why not). */
export async function dockerAvailable(client?: Dockerode): Promise<{ ok: boolean; why: string }> {
  try {
    const docker = client ?? (await dockerClient());
    await Promise.race([
      docker.ping(),
      new Promise((_r, reject) => setTimeout(() => reject(new Error("no answer in 3 s")), 3_000)),
    ]);
    return { ok: true, why: `a Docker Engine answers on ${dockerSocket()}` };
  } catch (e) {
    return { ok: false, why: `no Docker Engine answers on ${dockerSocket()} (${(e as Error).message})` };
  }
}

export interface DockerCreateOptions {
  readonly baseImage?: string | undefined;
  readonly log?: (line: string) => void;
}

/** Creates the lab's image (if needed), networks, volumes and containers; does not start them. */
export async function createDockerLab(
  plan: Plan,
  filesRoot: (host: string) => string,
  o: DockerCreateOptions = {},
): Promise<{ image: string; imageBuilt: boolean; imageSeconds: number }> {
  const docker = await dockerClient();
  const image = await ensureNodeImage({
    docker,
    ...(o.baseImage ? { baseImage: o.baseImage } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  if (image.built) await pruneNodeImages(docker, image.ref);
  const labels = { [LABEL_LAB]: plan.lab };
  for (const n of plan.networks) {
    await docker.createNetwork({
      Name: n.name,
      Driver: "bridge",
      Internal: n.internal,
      Labels: labels,
      CheckDuplicate: true,
    });
  }
  for (const h of plan.hosts) await createContainer(docker, plan, h, image.ref, filesRoot(h.name));
  return { image: image.ref, imageBuilt: image.built, imageSeconds: image.seconds };
}

/**
 * Each rebuilt project gets a new node image (~150 MB): remove the older ones that no container
 * uses (an image in use by any lab, running or stopped, stays).
 */
async function pruneNodeImages(docker: Dockerode, keep: string): Promise<void> {
  const images = await docker.listImages({ filters: { label: ["lab.dev/image=node"] } });
  for (const img of images) {
    if ((img.RepoTags ?? []).includes(keep)) continue;
    const users = await docker.listContainers({ all: true, filters: { ancestor: [img.Id] } });
    if (users.length > 0) continue;
    await docker
      .getImage(img.Id)
      .remove({ force: false })
      .catch(() => undefined);
  }
}

async function createContainer(
  docker: Dockerode,
  plan: Plan,
  h: PlanHost,
  image: string,
  files: string,
): Promise<void> {
  const [first, ...others] = h.networks;
  const binds = [`${files}/etc/kubernetes:/etc/kubernetes`];
  if (h.volume) {
    await docker.createVolume({ Name: h.volume, Labels: { [LABEL_LAB]: plan.lab, [LABEL_HOST]: h.name } });
    binds.push(`${h.volume}:/var/lib/etcd`);
  }
  const publish = h.publish;
  const container = await docker.createContainer({
    name: h.name,
    Hostname: h.name,
    Image: image,
    Cmd: [`--name=${h.name}`, "--root=/", `--lab=${plan.lab}`],
    Labels: { [LABEL_LAB]: plan.lab, [LABEL_HOST]: h.name, [LABEL_ROLE]: h.role },
    ...(publish ? { ExposedPorts: { [`${publish.containerPort}/tcp`]: {} } } : {}),
    HostConfig: {
      Binds: binds,
      // Back after a Docker daemon restart, unless lab stop stopped it.
      RestartPolicy: { Name: "unless-stopped" },
      ...(publish
        ? {
            PortBindings: {
              [`${publish.containerPort}/tcp`]: [{ HostIp: "127.0.0.1", HostPort: String(publish.hostPort) }],
            },
          }
        : {}),
    },
    NetworkingConfig: first ? { EndpointsConfig: { [first]: { Aliases: [h.name] } } } : {},
  });
  for (const n of others)
    await docker.getNetwork(n).connect({ Container: container.id, EndpointConfig: { Aliases: [h.name] } });
}

export async function dockerHostRunning(host: HostRecord): Promise<boolean> {
  try {
    const info = await (await dockerClient()).getContainer(host.name).inspect();
    return info.State.Running && (info.Config.Labels?.[LABEL_HOST] ?? "") === host.name;
  } catch {
    return false;
  }
}

export async function dockerStartHost(host: HostRecord): Promise<void> {
  const c = (await dockerClient()).getContainer(host.name);
  const info = await c.inspect();
  if (!info.State.Running) await c.start();
}

export async function dockerStopHost(host: HostRecord): Promise<void> {
  const c = (await dockerClient()).getContainer(host.name);
  try {
    const info = await c.inspect();
    if (info.State.Running) await c.stop({ t: 15 });
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
  }
}

/** Removes every container, network and volume labelled with this lab (and nothing else). */
export async function removeDockerLab(lab: string): Promise<void> {
  const docker = await dockerClient();
  const filter = { label: [`${LABEL_LAB}=${lab}`] };
  const containers = await docker.listContainers({ all: true, filters: filter });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: false })));
  for (const n of await docker.listNetworks({ filters: filter })) await removeNetwork(docker, n.Id, n.Name);
  const volumes = await docker.listVolumes({ filters: filter });
  for (const v of volumes.Volumes ?? []) await docker.getVolume(v.Name).remove();
}

/** How long removeNetwork keeps retrying a network that still has endpoints. */
const NETWORK_REMOVE_ATTEMPTS = 50;
const NETWORK_REMOVE_PAUSE_MS = 200;

/**
 * Removes a network. Docker refuses (403 "has active endpoints") while a container still holds an
 * endpoint on it: one force-removed a moment ago whose endpoint the daemon has not released yet,
 * or a container the lab does not own that someone attached by hand. Endpoints left over are
 * disconnected (their containers stay) and the removal is retried for up to ~10 s.
 */
async function removeNetwork(docker: Dockerode, id: string, name: string): Promise<void> {
  const network = docker.getNetwork(id);
  for (let attempt = 1; ; attempt++) {
    try {
      await network.remove();
      return;
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status === 404) return;
      if (status !== 403 || attempt >= NETWORK_REMOVE_ATTEMPTS) {
        throw new Error(
          `cannot remove the lab's network ${name}: ${(e as Error).message.trim()}; see \`docker network inspect ${name}\`, then run lab down again`,
        );
      }
      const info = (await network.inspect().catch(() => undefined)) as
        | { Containers?: Record<string, unknown> }
        | undefined;
      for (const container of Object.keys(info?.Containers ?? {}))
        await network.disconnect({ Container: container, Force: true }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, NETWORK_REMOVE_PAUSE_MS));
    }
  }
}

/** Runs a command in a host with this terminal's stdio (the docker CLI handles the TTY). */
export function dockerExec(host: string, cmd: readonly string[], interactive: boolean): Promise<number> {
  const tty = interactive && process.stdin.isTTY === true && process.stdout.isTTY === true;
  return new Promise((resolve) => {
    const child = spawn("docker", ["exec", ...(interactive ? ["-i"] : []), ...(tty ? ["-t"] : []), host, ...cmd], {
      stdio: "inherit",
    });
    child.on("error", (e) => {
      process.stderr.write(`lab: cannot run the docker command: ${e.message}\n`);
      resolve(127);
    });
    child.on("exit", (code) => resolve(code ?? 1));
  });
}

/** Runs a command in a host and returns its output (for probes and logs). */
export function dockerExecCapture(
  host: string,
  cmd: readonly string[],
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("docker", ["exec", host, ...cmd], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

export async function dockerLogs(host: HostRecord): Promise<string> {
  const out: string[] = [];
  try {
    const buf = (await (
      await dockerClient()
    )
      .getContainer(host.name)
      .logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    out.push(`==> ${host.name}: supervisor <==\n${demux(buf)}`);
  } catch (e) {
    out.push(`==> ${host.name}: ${(e as Error).message}`);
  }
  const pods = dockerExecCapture(host.name, [
    "sh",
    "-c",
    'for f in /var/log/pods/*.log; do echo "==> $(basename "$f") <=="; cat "$f"; done',
  ]);
  if (pods.code === 0) out.push(pods.stdout.replace(/==> (\S+)\.log <==/g, `==> ${host.name}: $1 <==`));
  return out.join("\n");
}

/** Docker's multiplexed log stream (8-byte frame headers) to text. */
function demux(buf: Buffer): string {
  let out = "";
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    out += buf.subarray(i + 8, i + 8 + size).toString("utf8");
    i += 8 + size;
  }
  return i === 0 ? buf.toString("utf8") : out;
}
