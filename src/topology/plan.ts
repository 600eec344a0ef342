import type { Topology } from "./schema.js";

/**
 * Rendering: topology → plan. A pure function: which hosts exist, which components each runs
 * (with the command lines and flags a real cluster would use: `etcd --name ...`,
 * `kube-apiserver --etcd-servers ...`), networks, volumes and published ports. A runtime then
 * applies the plan; nothing here touches the machine.
 *
 * Hosts are named as kind names nodes: LAB-control-plane-N, LAB-etcd-N (external store hosts),
 * LAB-lb. On Docker every host is a container on the lab's networks and components listen on
 * their usual ports (2379, 2380, 6443), addressed by container name; on the process runtime
 * every component is a local process on 127.0.0.1 with a port chosen free by the caller.
 */

export type RuntimeKind = "docker" | "process";
export type HostRole = "control-plane" | "etcd" | "load-balancer";

export interface PlanOptions {
  readonly lab: string;
  readonly runtime: RuntimeKind;
  /** The API endpoint's port on the machine (the load balancer's, or the single API server's). */
  readonly apiHostPort: number;
  /** Process runtime: the port of each listener, `portFor(host, "etcd-client" | "etcd-peer" | "apiserver")`. */
  readonly portFor?: (host: string, listener: PortName) => number;
  /** Process runtime: each host's root directory (Docker: "/"). */
  readonly hostRoot?: (host: string) => string;
}

export type PortName = "etcd-client" | "etcd-peer" | "apiserver" | "lb";

export interface Component {
  /** The static pod's name: etcd, kube-apiserver, lab-lb. */
  readonly name: "etcd" | "kube-apiserver" | "lab-lb";
  /** The manifest's path inside the host. */
  readonly manifest: string;
  /** The command line, with the component's familiar name first. */
  readonly command: readonly string[];
  readonly ports: readonly { readonly name: PortName; readonly port: number }[];
}

export interface PlanHost {
  readonly name: string;
  readonly role: HostRole;
  /** 1-based among hosts of its role. */
  readonly index: number;
  /** Docker networks the host joins. */
  readonly networks: readonly string[];
  /** Docker: a named volume mounted at the store's data directory. */
  readonly volume: string | undefined;
  /** A port published on 127.0.0.1 (only the API endpoint is). */
  readonly publish: { readonly containerPort: number; readonly hostPort: number } | undefined;
  readonly root: string;
  readonly components: readonly Component[];
}

export interface Plan {
  readonly lab: string;
  readonly runtime: RuntimeKind;
  readonly topology: Topology;
  readonly networks: readonly { readonly name: string; readonly internal: boolean }[];
  readonly hosts: readonly PlanHost[];
  /** The API endpoint as clients on this machine reach it. */
  readonly apiServerUrl: string;
  /** Store client URLs as the control-plane hosts reach them (lab etcdctl uses these). */
  readonly etcdEndpoints: readonly string[];
  /** Host names and IPs the API servers' serving certificate must cover. */
  readonly certificateNames: { readonly dns: readonly string[]; readonly ips: readonly string[] };
}

export const PKI_DIR = "etc/kubernetes/pki";
export const MANIFEST_DIR = "etc/kubernetes/manifests";
export const ETCD_DATA_DIR = "var/lib/etcd";
const DOCKER_PORTS: Record<PortName, number> = { "etcd-client": 2379, "etcd-peer": 2380, apiserver: 6443, lb: 6443 };

function join(root: string, rel: string): string {
  return root.endsWith("/") ? `${root}${rel}` : `${root}/${rel}`;
}

export function renderPlan(t: Topology, o: PlanOptions): Plan {
  const docker = o.runtime === "docker";
  if (!docker && (!o.portFor || !o.hostRoot))
    throw new Error("renderPlan: the process runtime needs portFor and hostRoot");
  const port = (host: string, name: PortName): number =>
    docker ? DOCKER_PORTS[name] : (o.portFor as NonNullable<PlanOptions["portFor"]>)(host, name);
  const address = (host: string): string => (docker ? host : "127.0.0.1");
  const bind = docker ? "0.0.0.0" : "127.0.0.1";
  const rootOf = (host: string): string => (docker ? "/" : (o.hostRoot as NonNullable<PlanOptions["hostRoot"]>)(host));
  const network = `${o.lab}`;
  const storeNetwork = `${o.lab}-etcd`;

  const controlPlanes = Array.from({ length: t.controlPlane.count }, (_, i) => `${o.lab}-control-plane-${i + 1}`);
  const storeHosts =
    t.etcd.placement === "stacked"
      ? controlPlanes
      : Array.from({ length: t.etcd.members }, (_, i) => `${o.lab}-etcd-${i + 1}`);
  const peerUrl = (h: string) => `http://${address(h)}:${port(h, "etcd-peer")}`;
  const clientUrl = (h: string) => `http://${address(h)}:${port(h, "etcd-client")}`;
  const initialCluster = storeHosts.map((h) => `${h}=${peerUrl(h)}`).join(",");

  const etcdComponent = (h: string): Component => {
    const root = rootOf(h);
    const e = t.etcd;
    const command = [
      "etcd",
      `--name=${h}`,
      `--data-dir=${join(root, ETCD_DATA_DIR)}`,
      `--listen-client-urls=http://${bind}:${port(h, "etcd-client")}`,
      `--advertise-client-urls=${clientUrl(h)}`,
      `--listen-peer-urls=http://${bind}:${port(h, "etcd-peer")}`,
      `--initial-advertise-peer-urls=${peerUrl(h)}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=${o.lab}`,
      `--heartbeat-interval=${e.heartbeatIntervalMs}`,
      `--election-timeout=${e.electionTimeoutMs}`,
      `--quota-backend-bytes=${e.quotaBackendBytes}`,
      `--snapshot-count=${e.snapshotCount}`,
      ...(e.autoCompaction
        ? [
            `--auto-compaction-mode=${e.autoCompaction.mode}`,
            `--auto-compaction-retention=${e.autoCompaction.retention}`,
          ]
        : []),
    ];
    return {
      name: "etcd",
      manifest: join(root, `${MANIFEST_DIR}/etcd.yaml`),
      command,
      ports: [
        { name: "etcd-client", port: port(h, "etcd-client") },
        { name: "etcd-peer", port: port(h, "etcd-peer") },
      ],
    };
  };

  const apiServerComponent = (h: string, i: number): Component => {
    const root = rootOf(h);
    // A stacked API server talks to its own member first, then the others (kubeadm lists only the
    // local one; listing all lets ours fail over when the local member dies).
    const local = t.etcd.placement === "stacked" ? [h] : [];
    const rest = storeHosts.filter((s) => !local.includes(s));
    const rotated =
      t.etcd.placement === "stacked" ? rest : [...rest.slice(i % rest.length), ...rest.slice(0, i % rest.length)];
    const pki = join(root, PKI_DIR);
    return {
      name: "kube-apiserver",
      manifest: join(root, `${MANIFEST_DIR}/kube-apiserver.yaml`),
      command: [
        "kube-apiserver",
        `--bind-address=${bind}`,
        `--secure-port=${port(h, "apiserver")}`,
        `--etcd-servers=${[...local, ...rotated].map(clientUrl).join(",")}`,
        "--etcd-prefix=/registry",
        `--tls-cert-file=${pki}/apiserver.crt`,
        `--tls-private-key-file=${pki}/apiserver.key`,
        `--client-ca-file=${pki}/ca.crt`,
        `--token-auth-file=${pki}/tokens.csv`,
        `--etcd-compaction-interval=${t.apiServer.compactionInterval}`,
        `--event-ttl=${t.apiServer.eventTTL}`,
      ],
      ports: [{ name: "apiserver", port: port(h, "apiserver") }],
    };
  };

  const hosts: PlanHost[] = [];
  const single = controlPlanes.length === 1 && !t.loadBalancer.enabled;
  controlPlanes.forEach((h, i) => {
    const components = [...(t.etcd.placement === "stacked" ? [etcdComponent(h)] : []), apiServerComponent(h, i)];
    hosts.push({
      name: h,
      role: "control-plane",
      index: i + 1,
      networks: [network, storeNetwork],
      volume: docker && t.etcd.placement === "stacked" ? `${h}-etcd` : undefined,
      publish:
        single || (!t.loadBalancer.enabled && i === 0)
          ? { containerPort: port(h, "apiserver"), hostPort: o.apiHostPort }
          : undefined,
      root: rootOf(h),
      components,
    });
  });
  if (t.etcd.placement === "external") {
    storeHosts.forEach((h, i) => {
      hosts.push({
        name: h,
        role: "etcd",
        index: i + 1,
        networks: [storeNetwork],
        volume: docker ? `${h}-data` : undefined,
        publish: undefined,
        root: rootOf(h),
        components: [etcdComponent(h)],
      });
    });
  }
  if (t.loadBalancer.enabled) {
    const h = `${o.lab}-lb`;
    const listen = docker ? DOCKER_PORTS.lb : o.apiHostPort;
    hosts.push({
      name: h,
      role: "load-balancer",
      index: 1,
      networks: [network],
      volume: undefined,
      publish: docker ? { containerPort: listen, hostPort: o.apiHostPort } : undefined,
      root: rootOf(h),
      components: [
        {
          name: "lab-lb",
          manifest: join(rootOf(h), `${MANIFEST_DIR}/lab-lb.yaml`),
          command: [
            "lab",
            "lb",
            `--listen=${bind}:${listen}`,
            ...controlPlanes.map((cp) => `--backend=${address(cp)}:${port(cp, "apiserver")}`),
            "--health-path=/readyz",
          ],
          ports: [{ name: "lb", port: listen }],
        },
      ],
    });
  }
  return {
    lab: o.lab,
    runtime: o.runtime,
    topology: t,
    networks: docker
      ? [
          { name: network, internal: false },
          { name: storeNetwork, internal: true },
        ]
      : [],
    hosts,
    apiServerUrl: `https://127.0.0.1:${o.apiHostPort}`,
    etcdEndpoints: storeHosts.map(clientUrl),
    certificateNames: {
      dns: [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        ...controlPlanes,
        ...(t.loadBalancer.enabled ? [`${o.lab}-lb`] : []),
      ],
      ips: ["127.0.0.1"],
    },
  };
}
