import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { isMap, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { packageRoot } from "../util/paths.js";
import { API_VERSION, type Topology, type TopologyInput, TopologySchema } from "./schema.js";

/**
 * Loading a topology: YAML parse (with line numbers) → strict schema → defaults → one validation
 * pass that collects every problem. Each diagnostic names the file, the line and the field path,
 * and says what is allowed.
 */

export interface Diagnostic {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** The field path, e.g. "etcd.members" ("" for the whole document). */
  readonly path: string;
  readonly message: string;
}

export class TopologyError extends Error {
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
    this.name = "TopologyError";
  }
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.path ? `${d.path}: ` : ""}${d.message}`;
}

/** The directory of the built-in topologies (topologies/ at the package root). */
export const TOPOLOGY_DIR = path.join(packageRoot(), "topologies");

export function builtinTopologies(dir = TOPOLOGY_DIR): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -".yaml".length))
    .sort();
}

/** A built-in name (stacked-ha) or a path to the user's YAML file. */
export function resolveTopologyRef(ref: string, dir = TOPOLOGY_DIR): string {
  if (ref.includes("/") || ref.endsWith(".yaml") || ref.endsWith(".yml")) {
    if (!existsSync(ref))
      throw new TopologyError([{ file: ref, line: 0, column: 0, path: "", message: "no such file" }]);
    return ref;
  }
  const file = path.join(dir, `${ref}.yaml`);
  if (!existsSync(file)) {
    const known = builtinTopologies(dir);
    throw new TopologyError([
      {
        file: ref,
        line: 0,
        column: 0,
        path: "",
        message: `no topology named "${ref}"; built-in topologies: ${known.join(", ")} (or give a path to a YAML file)`,
      },
    ]);
  }
  return file;
}

export interface Loaded {
  readonly topology: Topology;
  readonly warnings: readonly Diagnostic[];
  readonly file: string;
}

export function loadTopologyFile(file: string): Loaded {
  return parseTopology(readFileSync(file, "utf8"), file);
}

function positionOf(node: Node | undefined | null, counter: LineCounter): { line: number; column: number } {
  const offset = node?.range?.[0];
  if (offset === undefined) return { line: 1, column: 1 };
  const p = counter.linePos(offset);
  return { line: p.line, column: p.col };
}

export function parseTopology(text: string, file = "<topology>"): Loaded {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new TopologyError(
      doc.errors.map((e) => {
        const p = e.linePos?.[0];
        return {
          file,
          line: p?.line ?? 1,
          column: p?.col ?? 1,
          path: "",
          message: `invalid YAML: ${e.message.split("\n")[0]}`,
        };
      }),
    );
  }
  const value: unknown = doc.toJS();
  const at = (p: readonly (string | number)[]): { line: number; column: number } => {
    // The deepest node that exists on the path (a missing field points at its parent).
    for (let n = p.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(p.slice(0, n), true);
      if (node && (isMap(node) || isSeq(node) || typeof node === "object")) {
        // For a map entry, point at the key's line when the value is a collection.
        return positionOf(node as Node, counter);
      }
    }
    return { line: 1, column: 1 };
  };
  const diag = (p: readonly (string | number)[], message: string): Diagnostic => ({
    file,
    ...at(p),
    path: p.join("."),
    message,
  });
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TopologyError([
      diag([], `a topology is a YAML mapping with apiVersion: ${API_VERSION} and kind: Topology`),
    ]);

  const parsed = TopologySchema.safeParse(value);
  if (!parsed.success) {
    const diagnostics: Diagnostic[] = [];
    for (const issue of parsed.error.issues) {
      const p = issue.path.filter((x): x is string | number => typeof x !== "symbol");
      if (issue.code === "unrecognized_keys") {
        const parent = p.length === 0 ? doc.contents : doc.getIn(p, true);
        for (const key of issue.keys) {
          // Point at the unknown key itself, not at its value.
          const pair = isMap(parent)
            ? parent.items.find((i) => (i.key as { value?: unknown } | null)?.value === key)
            : undefined;
          const where = pair ? positionOf(pair.key as Node, counter) : at([...p, key]);
          diagnostics.push({
            file,
            ...where,
            path: [...p, key].join("."),
            message: `unknown field "${key}"${suggestion(key, p)}`,
          });
        }
      } else if (issue.code === "invalid_type" && issue.input === undefined) {
        diagnostics.push(diag(p, `${p.join(".")} is required`));
      } else {
        diagnostics.push(diag(p, issue.message));
      }
    }
    throw new TopologyError(diagnostics);
  }
  const topology = withDefaults(parsed.data);
  const problems: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  validate(
    parsed.data,
    topology,
    (p, m) => problems.push(diag(p, m)),
    (p, m) => warnings.push(diag(p, m)),
  );
  if (problems.length > 0) throw new TopologyError(problems);
  return { topology, warnings, file };
}

const KNOWN_FIELDS: Record<string, string[]> = {
  "": ["apiVersion", "kind", "name", "description", "controlPlane", "etcd", "apiServer", "loadBalancer", "ports"],
  controlPlane: ["count"],
  etcd: [
    "placement",
    "members",
    "heartbeatIntervalMs",
    "electionTimeoutMs",
    "quotaBackendBytes",
    "snapshotCount",
    "autoCompaction",
  ],
  apiServer: ["eventTTL", "compactionInterval"],
  loadBalancer: ["enabled"],
  ports: ["apiServer"],
};

function suggestion(key: string, parent: readonly (string | number)[]): string {
  const known = KNOWN_FIELDS[parent.join(".")];
  if (!known) return "";
  const close = known.find((k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2);
  return close ? `; did you mean "${close}"?` : `; allowed here: ${known.join(", ")}`;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (dp[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const row = dp[i] as number[];
      const prev = dp[i - 1] as number[];
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  return (dp[a.length] as number[])[b.length] as number;
}

/** etcd's own defaults, and a load balancer whenever there is more than one API server. */
export function withDefaults(t: TopologyInput): Topology {
  const controlPlanes = t.controlPlane?.count ?? 1;
  const members = t.etcd.members ?? controlPlanes;
  const heartbeat = t.etcd.heartbeatIntervalMs ?? 100;
  return {
    apiVersion: API_VERSION,
    kind: "Topology",
    name: t.name,
    description: t.description ?? "",
    controlPlane: { count: controlPlanes },
    etcd: {
      placement: t.etcd.placement,
      members,
      heartbeatIntervalMs: heartbeat,
      electionTimeoutMs: t.etcd.electionTimeoutMs ?? 1000,
      quotaBackendBytes: t.etcd.quotaBackendBytes ?? 2 * 1024 ** 3,
      snapshotCount: t.etcd.snapshotCount ?? 100_000,
      autoCompaction: t.etcd.autoCompaction,
    },
    apiServer: {
      eventTTL: t.apiServer?.eventTTL ?? "1h",
      compactionInterval: t.apiServer?.compactionInterval ?? "5m",
    },
    loadBalancer: { enabled: t.loadBalancer?.enabled ?? controlPlanes > 1 },
    ports: { apiServer: t.ports?.apiServer ?? 6443 },
  };
}

function validate(
  input: TopologyInput,
  t: Topology,
  error: (path: (string | number)[], message: string) => void,
  warn: (path: (string | number)[], message: string) => void,
): void {
  if (t.etcd.placement === "stacked" && input.etcd.members !== undefined && input.etcd.members !== t.controlPlane.count)
    error(
      ["etcd", "members"],
      `a stacked store has one member per control-plane host: etcd.members (${input.etcd.members}) must equal controlPlane.count (${t.controlPlane.count}), or be left out`,
    );
  if (t.etcd.members % 2 === 0)
    warn(
      ["etcd", "members"],
      `an even member count (${t.etcd.members}) tolerates no more failures than ${t.etcd.members - 1} members (quorum is ${t.etcd.members / 2 + 1} of ${t.etcd.members}); use an odd count`,
    );
  if (t.etcd.electionTimeoutMs < 5 * t.etcd.heartbeatIntervalMs)
    error(
      ["etcd", input.etcd.electionTimeoutMs !== undefined ? "electionTimeoutMs" : "heartbeatIntervalMs"],
      `etcd.electionTimeoutMs (${t.etcd.electionTimeoutMs}) must be at least 5 times etcd.heartbeatIntervalMs (${t.etcd.heartbeatIntervalMs}), as etcd requires`,
    );
  if (t.controlPlane.count > 1 && !t.loadBalancer.enabled)
    warn(
      ["loadBalancer", "enabled"],
      `with ${t.controlPlane.count} API servers and no load balancer, clients reach only the first API server; losing its host loses the API`,
    );
  if (t.controlPlane.count === 1 && input.loadBalancer?.enabled === true)
    warn(["loadBalancer", "enabled"], "a load balancer in front of a single API server adds a hop and no availability");
  const ac = t.etcd.autoCompaction;
  if (ac?.mode === "revision" && !/^\d+$/.test(ac.retention))
    error(
      ["etcd", "autoCompaction", "retention"],
      `with mode "revision", retention is a number of revisions (e.g. "1000"), not "${ac.retention}"`,
    );
  if (ac?.mode === "periodic" && !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^\d+$/.test(ac.retention))
    error(
      ["etcd", "autoCompaction", "retention"],
      `with mode "periodic", retention is a duration (e.g. "1h") or a number of hours, not "${ac.retention}"`,
    );
}
