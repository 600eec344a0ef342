/**
 * The command-line flags that start one store member on given addresses, with etcd's own flag
 * names, so that the same list starts our `lab etcd` or a real etcd (tests, benchmarks, and the
 * lab's rendered hosts).
 */
export interface MemberAddress {
  readonly name: string;
  readonly dataDir: string;
  /** Hosts default to 127.0.0.1. */
  readonly clientHost?: string;
  readonly clientPort: number;
  readonly peerHost?: string;
  readonly peerPort: number;
}

export interface MemberArgsOptions {
  /** `name=peerURL,...`; just this member when absent. */
  readonly initialCluster?: string;
  readonly initialClusterState?: "new" | "existing";
  readonly initialClusterToken?: string;
}

export function peerUrlOf(m: Pick<MemberAddress, "peerHost" | "peerPort">): string {
  return `http://${m.peerHost ?? "127.0.0.1"}:${m.peerPort}`;
}

export function clientUrlOf(m: Pick<MemberAddress, "clientHost" | "clientPort">): string {
  return `http://${m.clientHost ?? "127.0.0.1"}:${m.clientPort}`;
}

/** `name=peerURL` for each member, comma-separated, as --initial-cluster takes it. */
export function initialClusterOf(members: readonly MemberAddress[]): string {
  return members.map((m) => `${m.name}=${peerUrlOf(m)}`).join(",");
}

export function memberArgs(m: MemberAddress, options: MemberArgsOptions = {}): string[] {
  const client = clientUrlOf(m);
  const peer = peerUrlOf(m);
  return [
    "--name",
    m.name,
    "--data-dir",
    m.dataDir,
    "--listen-client-urls",
    client,
    "--advertise-client-urls",
    client,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    options.initialCluster ?? `${m.name}=${peer}`,
    ...(options.initialClusterState ? ["--initial-cluster-state", options.initialClusterState] : []),
    ...(options.initialClusterToken ? ["--initial-cluster-token", options.initialClusterToken] : []),
  ];
}
