import { spawn, spawnSync } from "node:child_process";
import type Dockerode from "dockerode";
import type { Plan, PlanHost } from "../../topology/plan.js";
import type { HostRecord, LabRecord } from "../state.js";
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
/**
 * Which `lab up` made the object: a lab name is unique per lab home, not per Docker Engine, so
 * removal goes by this id too and never touches another lab home's lab of the same name.
 */
export const LABEL_INSTANCE = "lab.dev/instance";

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
  /** The lab's instance id (LabRecord.instance), put on every object as LABEL_INSTANCE. */
  readonly instance: string;
  readonly baseImage?: string | undefined;
  readonly log?: (line: string) => void;
}

/**
 * Creates the lab's image (if needed), networks, volumes and containers; does not start them.
 * Refuses, before creating anything, when the engine already has an object of that name or a
 * lab of that name (see dockerConflicts).
 */
export async function createDockerLab(
  plan: Plan,
  filesRoot: (host: string) => string,
  o: DockerCreateOptions,
): Promise<{ image: string; imageBuilt: boolean; imageSeconds: number }> {
  const docker = await dockerClient();
  const conflicts = await dockerConflicts(docker, plan);
  if (conflicts.length > 0) throw new DockerConflictError(plan.lab, conflicts);
  const image = await ensureNodeImage({
    docker,
    ...(o.baseImage ? { baseImage: o.baseImage } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  if (image.built) await pruneNodeImages(docker, image.ref);
  const labels = { [LABEL_LAB]: plan.lab, [LABEL_INSTANCE]: o.instance };
  for (const n of plan.networks) {
    await docker.createNetwork({
      Name: n.name,
      Driver: "bridge",
      Internal: n.internal,
      Labels: labels,
      CheckDuplicate: true,
    });
  }
  for (const h of plan.hosts) await createContainer(docker, plan, h, image.ref, filesRoot(h.name), labels);
  return { image: image.ref, imageBuilt: image.built, imageSeconds: image.seconds };
}

/** An object `lab up` would create is already there (a line per object, saying whose it is). */
export class DockerConflictError extends Error {
  constructor(lab: string, conflicts: readonly string[]) {
    super(
      `this Docker Engine already has ${conflicts.length === 1 ? "an object" : "objects"} lab ${lab} needs or owns: ${conflicts.join("; ")}. ` +
        `Pick another --name, or remove them (a lab in another lab home: lab down --name ${lab} with that LAB_HOME; otherwise docker rm -f / docker network rm / docker volume rm)`,
    );
    this.name = "DockerConflictError";
  }
}

/**
 * What stands in the way of creating the plan's objects: a container, network or volume of the
 * same name, or any object labelled with this lab's name (a lab of that name made from another
 * lab home, or left behind when its lab home was deleted). Nothing is created or removed here.
 */
export async function dockerConflicts(docker: Dockerode, plan: Plan): Promise<string[]> {
  const owner = (labels: Record<string, string> | null | undefined) => {
    const lab = labels?.[LABEL_LAB];
    return lab === undefined ? "not made by lab" : `belongs to lab ${lab}`;
  };
  const found = new Map<string, string>();
  const containers = await docker.listContainers({ all: true });
  const wanted = new Set(plan.hosts.map((h) => h.name));
  for (const c of containers) {
    const names = (c.Names ?? []).map((n) => n.replace(/^\//, ""));
    const clash = names.find((n) => wanted.has(n));
    if (clash !== undefined || c.Labels?.[LABEL_LAB] === plan.lab)
      found.set(`container ${clash ?? names[0] ?? c.Id.slice(0, 12)}`, owner(c.Labels));
  }
  const networkNames = new Set(plan.networks.map((n) => n.name));
  for (const n of await docker.listNetworks()) {
    if (networkNames.has(n.Name) || n.Labels?.[LABEL_LAB] === plan.lab) found.set(`network ${n.Name}`, owner(n.Labels));
  }
  const volumeNames = new Set(plan.hosts.flatMap((h) => (h.volume ? [h.volume] : [])));
  const volumes = await docker.listVolumes();
  for (const v of volumes.Volumes ?? []) {
    if (volumeNames.has(v.Name) || v.Labels?.[LABEL_LAB] === plan.lab) found.set(`volume ${v.Name}`, owner(v.Labels));
  }
  return [...found].map(([what, whose]) => `${what} (${whose})`);
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
  labels: Record<string, string>,
): Promise<void> {
  const [first, ...others] = h.networks;
  const binds = [`${files}/etc/kubernetes:/etc/kubernetes`];
  if (h.volume) {
    await docker.createVolume({ Name: h.volume, Labels: { ...labels, [LABEL_HOST]: h.name } });
    binds.push(`${h.volume}:/var/lib/etcd`);
  }
  const publish = h.publish;
  const container = await docker.createContainer({
    name: h.name,
    Hostname: h.name,
    Image: image,
    Cmd: [`--name=${h.name}`, "--root=/", `--lab=${plan.lab}`],
    Labels: { ...labels, [LABEL_HOST]: h.name, [LABEL_ROLE]: h.role },
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

type ContainerInfo = Awaited<ReturnType<Dockerode.Container["inspect"]>>;

/**
 * The host's container when it is this lab's (its labels name the lab, the host and, for labs
 * that have one, the instance); undefined when there is none. A container of that name that
 * belongs to something else is an error saying whose it is: lab never starts or stops it.
 */
async function labContainer(lab: LabRecord, host: HostRecord): Promise<ContainerInfo | undefined> {
  let info: ContainerInfo;
  try {
    info = await (await dockerClient()).getContainer(host.name).inspect();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return undefined;
    throw e;
  }
  const labels = info.Config.Labels ?? {};
  const ours =
    labels[LABEL_LAB] === lab.name &&
    labels[LABEL_HOST] === host.name &&
    (lab.instance === undefined || labels[LABEL_INSTANCE] === lab.instance);
  if (!ours) {
    const whose =
      labels[LABEL_LAB] === undefined ? "not made by lab" : `lab ${labels[LABEL_LAB]} from another lab home`;
    throw new Error(
      `container ${host.name} is not lab ${lab.name}'s host (${whose}); lab leaves it alone: see docker inspect ${host.name}`,
    );
  }
  return info;
}

export async function dockerHostRunning(lab: LabRecord, host: HostRecord): Promise<boolean> {
  try {
    return (await labContainer(lab, host))?.State.Running ?? false;
  } catch {
    return false;
  }
}

export async function dockerStartHost(lab: LabRecord, host: HostRecord): Promise<void> {
  const info = await labContainer(lab, host);
  if (!info)
    throw new Error(`container ${host.name} of lab ${lab.name} is gone; lab down --name ${lab.name} removes the rest`);
  if (!info.State.Running) await (await dockerClient()).getContainer(info.Id).start();
}

export async function dockerStopHost(lab: LabRecord, host: HostRecord): Promise<void> {
  const info = await labContainer(lab, host);
  if (info?.State.Running) await (await dockerClient()).getContainer(info.Id).stop({ t: 15 });
}

/**
 * Removes every container, network and volume labelled with this lab and, when given, this
 * instance id (labs made before instance ids existed go by name alone); nothing else.
 */
export async function removeDockerLab(lab: string, instance: string | undefined): Promise<void> {
  const docker = await dockerClient();
  const filter = {
    label: [`${LABEL_LAB}=${lab}`, ...(instance === undefined ? [] : [`${LABEL_INSTANCE}=${instance}`])],
  };
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
