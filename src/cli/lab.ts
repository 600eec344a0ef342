import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { dockerExec, dockerExecCapture } from "../lab/docker/runtime.js";
import { down, kubeconfigFor, LabError, type Progress, probeUrls, restart, start, stop, up } from "../lab/lifecycle.js";
import { componentsOf, execIn, isHostRunning, logsOf } from "../lab/runtime.js";
import { type LabRecord, labDir, listLabs, NoSuchLabError, readLab } from "../lab/state.js";
import { formatDiagnostic, TopologyError } from "../topology/load.js";

/**
 * The lab commands: up, down, list, status, logs, exec, stop, start, restart, kubeconfig,
 * etcdctl. `--name LAB` works on every command (default: the only lab there is, or the
 * topology's name for `up`); `-o json` on the read commands.
 */

interface Parsed {
  readonly positional: string[];
  readonly flags: Map<string, string>;
  /** Everything after "--". */
  readonly rest: string[];
}

const VALUE_FLAGS = new Set(["name", "runtime", "port", "o", "output", "wait", "base-image", "ca"]);
const BOOL_FLAGS = new Set(["merge", "json"]);

function parse(argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  let rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") {
      rest = argv.slice(i + 1) as string[];
      break;
    }
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      positional.push(a);
      continue;
    }
    const name = m[1] as string;
    if (BOOL_FLAGS.has(name)) {
      flags.set(name, m[2] ?? "true");
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new LabError(`unknown flag ${a}; lab --help lists the commands and their flags`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new LabError(`${a} needs a value`);
    flags.set(name === "output" ? "o" : name, value);
  }
  return { positional, flags, rest };
}

/** The lab a command is about: --name, or the only one there is. */
function labName(p: Parsed): string {
  const name = p.flags.get("name");
  if (name) return name;
  const labs = listLabs();
  if (labs.length === 1) return labs[0] as string;
  if (labs.length === 0) throw new LabError("there are no labs; lab up stacked-ha creates one");
  throw new LabError(`there are several labs (${labs.join(", ")}); say which with --name`);
}

function wantsJson(p: Parsed): boolean {
  const o = p.flags.get("o");
  if (o !== undefined && o !== "json" && o !== "text")
    throw new LabError(`-o ${o}: the output formats are json and text`);
  return o === "json";
}

const stdoutIsTty = process.stdout.isTTY === true;

function checklist(): Progress {
  let current = "";
  let started = 0;
  return {
    step(title) {
      current = title;
      started = Date.now();
      if (stdoutIsTty) process.stdout.write(` • ${title} ...`);
    },
    done(detail) {
      const ms = Date.now() - started;
      const line = ` ✓ ${current}${detail ? `: ${detail}` : ""} (${(ms / 1000).toFixed(1)}s)`;
      process.stdout.write(stdoutIsTty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
    fail(detail) {
      const line = ` ✗ ${current}: ${detail}`;
      process.stdout.write(stdoutIsTty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
  };
}

// -------------------------------------------------------------------------------- commands

async function cmdUp(p: Parsed): Promise<number> {
  const ref = p.positional[0];
  if (!ref || p.positional.length > 1)
    throw new LabError("lab up takes one topology: a name (lab topology list) or a YAML file");
  const portText = p.flags.get("port");
  const port = portText !== undefined ? Number(portText) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535))
    throw new LabError(`--port ${portText}: a port from 1 to 65535`);
  const runtime = p.flags.get("runtime") ?? "auto";
  if (runtime !== "auto" && runtime !== "docker" && runtime !== "process")
    throw new LabError(`--runtime ${runtime}: choose auto, docker or process`);
  const started = Date.now();
  const progress = checklist();
  let record: LabRecord;
  try {
    ({ record } = await up({
      topology: ref,
      name: p.flags.get("name"),
      port,
      runtime,
      baseImage: p.flags.get("base-image"),
      progress,
      onRuntime: (kind, why) =>
        process.stdout.write(`Creating lab ${p.flags.get("name") ?? ref} on the ${kind} runtime (${why})\n`),
    }));
  } catch (e) {
    if (e instanceof LabError) progress.fail(e.message);
    throw e;
  }
  process.stdout.write(
    [
      "",
      `Lab ${record.name} is ready in ${((Date.now() - started) / 1000).toFixed(1)}s: ${record.topology.controlPlane.count} API server(s), ${record.etcdEndpoints.length} store member(s) (${record.topology.etcd.placement}).`,
      `API endpoint: ${record.apiServerUrl}`,
      "",
      "Next:",
      `  lab kubeconfig --name ${record.name} > ${record.name}.kubeconfig`,
      `  kubectl --kubeconfig ${record.name}.kubeconfig get namespaces`,
      `  lab etcdctl --name ${record.name} -- member list -w table`,
      `  lab status --name ${record.name}`,
      `  lab down --name ${record.name}`,
      "",
    ].join("\n"),
  );
  return 0;
}

async function cmdDown(p: Parsed): Promise<number> {
  const name = p.flags.get("name") ?? p.positional[0] ?? labName(p);
  await down(name);
  process.stdout.write(`Deleted lab ${name}\n`);
  return 0;
}

async function cmdList(p: Parsed): Promise<number> {
  const labs: { name: string; runtime: string; topology: string; hosts: number; running: number; endpoint: string }[] =
    [];
  for (const n of listLabs()) {
    const r = readLab(n);
    let running = 0;
    for (const h of r.hosts) if (await isHostRunning(r, h)) running++;
    labs.push({
      name: n,
      runtime: r.runtime,
      topology: path.basename(r.topologyFile, ".yaml"),
      hosts: r.hosts.length,
      running,
      endpoint: r.apiServerUrl,
    });
  }
  if (wantsJson(p)) {
    process.stdout.write(`${JSON.stringify(labs, null, 2)}\n`);
    return 0;
  }
  if (labs.length === 0) {
    process.stdout.write("No labs. lab up stacked-ha creates one.\n");
    return 0;
  }
  process.stdout.write(
    table(
      ["NAME", "RUNTIME", "TOPOLOGY", "HOSTS", "ENDPOINT"],
      labs.map((l) => [l.name, l.runtime, l.topology, `${l.running}/${l.hosts} running`, l.endpoint]),
    ),
  );
  return 0;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("   ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

interface MemberStatus {
  endpoint: string;
  id: string;
  leader: boolean;
  term: string;
  revision: string;
  dbSize: string;
  error: string;
}

/** A member that did not answer: only its endpoint and why. */
function unreachableMember(endpoint: string, error: string): MemberStatus {
  return { endpoint, id: "", leader: false, term: "", revision: "", dbSize: "", error };
}

async function memberStatus(endpoint: string): Promise<MemberStatus> {
  const hostPort = endpoint.replace(/^https?:\/\//, "");
  // Loaded here: gRPC and the .proto files cost startup time that only `lab status` needs.
  const [{ credentials }, { serviceOf }] = await Promise.all([
    import("@grpc/grpc-js"),
    import("../etcd/proto-client.js"),
  ]);
  const client = new (serviceOf("etcdserverpb.Maintenance"))(hostPort, credentials.createInsecure());
  return new Promise((resolve) => {
    (
      client as unknown as Record<
        string,
        (r: object, o: object, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void
      >
    ).Status?.call(client, {}, { deadline: Date.now() + 2_000 }, (err, res) => {
      client.close();
      if (err) {
        resolve(unreachableMember(endpoint, err.details || err.message));
        return;
      }
      const s = res as {
        header: { member_id: string; revision: string };
        leader: string;
        raftTerm: string;
        dbSize: string;
      };
      resolve({
        endpoint,
        id: BigInt(s.header.member_id).toString(16),
        leader: s.leader === s.header.member_id,
        term: s.raftTerm,
        revision: s.header.revision,
        dbSize: s.dbSize,
        error: "",
      });
    });
  });
}

/**
 * Endpoints for etcdctl as host:port: with an http:// scheme etcdctl sends it in the HTTP/2
 * :authority, which our store's HTTP/2 layer refuses (a known difference from etcd).
 */
function etcdctlEndpoints(record: LabRecord): string {
  return record.etcdEndpoints.map((e) => e.replace(/^https?:\/\//, "")).join(",");
}

/** Store members seen from inside a control-plane host (Docker: the store network is internal). */
function membersInside(record: LabRecord): MemberStatus[] {
  const host = record.hosts.find((h) => h.role === "control-plane")?.name as string;
  const r = dockerExecCapture(host, [
    "etcdctl",
    `--endpoints=${etcdctlEndpoints(record)}`,
    "endpoint",
    "status",
    "-w",
    "json",
  ]);
  // etcdctl prints member IDs as JSON numbers beyond 2^53: read them as strings.
  let parsed: {
    Endpoint: string;
    Status: { header: { member_id: string; revision: number }; leader: string; raftTerm: number; dbSize: number };
  }[] = [];
  try {
    parsed = JSON.parse(r.stdout.replace(/([:[,]\s*)(\d{16,})(?=\s*[,}\]])/g, '$1"$2"'));
  } catch {
    parsed = [];
  }
  return record.etcdEndpoints.map((endpoint) => {
    const s = parsed.find((x) => `http://${x.Endpoint}` === endpoint);
    if (!s) return unreachableMember(endpoint, r.stderr.trim().split("\n").pop() ?? "no answer");
    return {
      endpoint,
      id: BigInt(s.Status.header.member_id).toString(16),
      leader: String(s.Status.leader) === String(s.Status.header.member_id),
      term: String(s.Status.raftTerm),
      revision: String(s.Status.header.revision),
      dbSize: String(s.Status.dbSize),
      error: "",
    };
  });
}

async function cmdStatus(p: Parsed): Promise<number> {
  const record = readLab(labName(p));
  const ca = fs.readFileSync(path.join(labDir(record.name), "pki", "ca.crt"));
  const hosts: {
    name: string;
    role: string;
    running: boolean;
    pid: number;
    components: { name: string; pid: number; restarts: number; lastExit: string }[];
  }[] = [];
  for (const h of record.hosts) {
    const running = await isHostRunning(record, h);
    const components = await componentsOf(record, h);
    hosts.push({
      name: h.name,
      role: h.role,
      running,
      pid: running && record.runtime === "process" ? h.pid : 0,
      components: components.map((c) => ({
        name: c.name,
        pid: c.pid ?? 0,
        restarts: c.restarts,
        lastExit: c.lastExit ?? "",
      })),
    });
  }
  const members =
    record.runtime === "docker" ? membersInside(record) : await Promise.all(record.etcdEndpoints.map(memberStatus));
  const apiTargets =
    record.runtime === "docker"
      ? record.hosts
          .filter((h) => h.role === "control-plane")
          .map((h) => ({ host: h.name, url: `https://${h.name}:6443` }))
      : Object.entries(record.ports)
          .filter(([k]) => k.endsWith("/apiserver"))
          .map(([k, port]) => ({ host: k.split("/")[0] as string, url: `https://127.0.0.1:${port}` }));
  const apiServers = await Promise.all(
    apiTargets.map(async ({ host, url }) => {
      if (record.runtime === "docker") {
        const r = dockerExecCapture(host, [
          "/usr/local/bin/node",
          "/lab/dist/src/cli/main.js",
          "probe",
          "--ca=/etc/kubernetes/pki/ca.crt",
          `${url}/readyz`,
        ]);
        return { host, url, ready: r.code === 0, detail: r.code === 0 ? "" : (r.stdout + r.stderr).trim() };
      }
      const problem = await probeUrls([`${url}/readyz`], ca);
      return { host, url, ready: problem === undefined, detail: problem ?? "" };
    }),
  );
  const status = {
    name: record.name,
    runtime: record.runtime,
    state: record.state,
    endpoint: record.apiServerUrl,
    hosts,
    members,
    apiServers,
  };
  if (wantsJson(p)) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(
    `Lab ${record.name} (${record.runtime} runtime, ${record.state}), API endpoint ${record.apiServerUrl}\n\n`,
  );
  process.stdout.write(
    table(
      ["HOST", "ROLE", "STATE", "PID", "COMPONENTS"],
      hosts.map((h) => [
        h.name,
        h.role,
        h.running ? "running" : "stopped",
        h.pid ? String(h.pid) : "-",
        h.components
          .map((c) => `${c.name}(pid ${c.pid || "-"}${c.restarts ? `, ${c.restarts} restarts` : ""})`)
          .join(" "),
      ]),
    ),
  );
  process.stdout.write("\n");
  process.stdout.write(
    table(
      ["STORE MEMBER", "ID", "LEADER", "TERM", "REVISION", "DB SIZE", "ERROR"],
      members.map((m) => [
        m.endpoint,
        m.id,
        m.error ? "" : m.leader ? "yes" : "no",
        m.term,
        m.revision,
        m.dbSize,
        m.error,
      ]),
    ),
  );
  process.stdout.write("\n");
  process.stdout.write(
    table(
      ["API SERVER", "URL", "READY"],
      apiServers.map((a) => [a.host, a.url, a.ready ? "yes" : `no ${a.detail}`]),
    ),
  );
  return 0;
}

async function cmdLogs(p: Parsed): Promise<number> {
  const record = readLab(labName(p));
  const host = p.positional[0];
  const hosts = host ? record.hosts.filter((h) => h.name === host) : record.hosts;
  if (host && hosts.length === 0)
    throw new LabError(
      `lab ${record.name} has no host "${host}"; its hosts: ${record.hosts.map((h) => h.name).join(", ")}`,
    );
  for (const h of hosts) process.stdout.write(`${await logsOf(record, h)}\n`);
  return 0;
}

async function cmdExec(p: Parsed): Promise<number> {
  const record = readLab(labName(p));
  const hostName = p.positional[0];
  const h = record.hosts.find((x) => x.name === hostName);
  if (!h)
    throw new LabError(
      `lab exec HOST -- COMMAND: lab ${record.name} has hosts ${record.hosts.map((x) => x.name).join(", ")}`,
    );
  const cmd = p.rest.length > 0 ? p.rest : record.runtime === "docker" ? ["/bin/sh"] : [process.env.SHELL || "/bin/sh"];
  // On the process runtime a host is a directory: the command runs there, with the store's endpoints at hand.
  return execIn(record, h, cmd, {
    LAB_HOST: h.name,
    ETCDCTL_API: "3",
    ETCDCTL_ENDPOINTS: etcdctlEndpoints(record),
  });
}

async function cmdStopStart(verb: "stop" | "start" | "restart", p: Parsed): Promise<number> {
  const name = labName(p);
  const host = p.positional[0];
  if (verb === "stop") await stop(name, host);
  else if (verb === "start") await start(name, host, 60_000, host ? undefined : checklist());
  else await restart(name, host, host ? undefined : checklist());
  process.stdout.write(
    `${verb === "stop" ? "Stopped" : verb === "start" ? "Started" : "Restarted"} ${host ?? `lab ${name}`}\n`,
  );
  return 0;
}

function cmdKubeconfig(p: Parsed): number {
  const record = readLab(labName(p));
  const config = kubeconfigFor(record);
  if (p.flags.get("merge") !== "true") {
    process.stdout.write(config);
    return 0;
  }
  // Like kind: add (or replace) this lab's cluster, user and context in ~/.kube/config.
  const file = process.env.KUBECONFIG?.split(":")[0] || path.join(os.homedir(), ".kube", "config");
  const existing = fs.existsSync(file)
    ? ((parseYaml(fs.readFileSync(file, "utf8")) as Record<string, unknown[]> | null) ?? {})
    : {};
  const mine = parseYaml(config) as Record<string, unknown[]>;
  const merged: Record<string, unknown> = { apiVersion: "v1", kind: "Config", ...existing };
  for (const key of ["clusters", "users", "contexts"]) {
    const list = (Array.isArray(existing[key]) ? existing[key] : []) as { name: string }[];
    const add = mine[key] as { name: string }[];
    merged[key] = [...list.filter((e) => !add.some((a) => a.name === e.name)), ...add];
  }
  merged["current-context"] = `lab-${record.name}`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, toYaml(merged), { mode: 0o600 });
  process.stderr.write(`Set kubectl context to "lab-${record.name}" in ${file}\n`);
  return 0;
}

async function cmdEtcdctl(p: Parsed): Promise<number> {
  const record = readLab(labName(p));
  if (record.runtime === "docker") {
    // The store's network is internal: etcdctl runs inside a control-plane host.
    const host = record.hosts.find((h) => h.role === "control-plane")?.name as string;
    return dockerExec(host, ["etcdctl", `--endpoints=${etcdctlEndpoints(record)}`, ...p.rest], false);
  }
  const found = spawnSync("sh", ["-c", "command -v etcdctl"], { encoding: "utf8" });
  const etcdctl = found.stdout.trim();
  if (!etcdctl)
    throw new LabError(
      "etcdctl is not installed: on Debian or Ubuntu, sudo apt-get install etcd-client; or download etcd's release and put etcdctl on PATH",
    );
  const r = spawnSync(etcdctl, [`--endpoints=${etcdctlEndpoints(record)}`, ...p.rest], {
    stdio: "inherit",
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  return r.status ?? 1;
}

/** `lab probe [--ca FILE] URL...`: exit 0 when every URL is healthy (used inside lab hosts). */
async function cmdProbe(p: Parsed): Promise<number> {
  const caFile = p.flags.get("ca");
  const problem = await probeUrls(p.positional, caFile ? fs.readFileSync(caFile) : undefined);
  if (problem) {
    process.stdout.write(`${problem}\n`);
    return 1;
  }
  return 0;
}

export async function runLabCommand(command: string, argv: readonly string[]): Promise<number> {
  try {
    const p = parse(argv);
    switch (command) {
      case "up":
        return await cmdUp(p);
      case "down":
        return await cmdDown(p);
      case "list":
        return await cmdList(p);
      case "probe":
        return await cmdProbe(p);
      case "status":
        return await cmdStatus(p);
      case "logs":
        return await cmdLogs(p);
      case "exec":
        return await cmdExec(p);
      case "stop":
      case "start":
      case "restart":
        return await cmdStopStart(command, p);
      case "kubeconfig":
        return cmdKubeconfig(p);
      case "etcdctl":
        return await cmdEtcdctl(p);
      default:
        throw new LabError(`unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof LabError || e instanceof NoSuchLabError) {
      process.stderr.write(`lab ${command}: ${e.message}\n`);
      return 1;
    }
    if (e instanceof TopologyError) {
      for (const d of e.diagnostics) process.stderr.write(`lab ${command}: ${formatDiagnostic(d)}\n`);
      return 1;
    }
    throw e;
  }
}
