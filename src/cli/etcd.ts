import { type EtcdConfig, etcdFlagHelp, parseEtcdConfig, UsageError, wantsHelp } from "../etcd/config.js";
import { listenClients } from "../etcd/grpc/listener.js";
import { discoverCluster, PeerTransport } from "../etcd/peer/transport.js";
import { EtcdServer } from "../etcd/server/server.js";
import { createLogger } from "../util/logger.js";

/**
 * `lab etcd [flags]`: one store member in the foreground, in this very process (no wrapper), so
 * that drills can SIGKILL or SIGSTOP the PID that was started.
 */
export async function runEtcd(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(etcdFlagHelp());
    return 0;
  }
  let config: EtcdConfig;
  let warnings: string[];
  try {
    ({ config, warnings } = parseEtcdConfig(argv, process.env));
    checkSupported(config);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`lab etcd: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel === "panic" || config.logLevel === "fatal" ? "error" : config.logLevel, {
    name: config.name,
  });
  for (const w of warnings) logger.warn(w);

  let server: EtcdServer;
  try {
    server = await EtcdServer.start({
      config,
      logger,
      connectPeers: (ids, handlers) =>
        PeerTransport.start({
          memberId: ids.memberId,
          clusterId: ids.clusterId,
          listen: config.listenPeerUrls,
          logger,
          ...handlers,
        }),
      discoverCluster: () => discoverCluster(config, logger),
    });
  } catch (err) {
    process.stderr.write(
      `lab etcd: cannot start member ${config.name}: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
  let listeners: Awaited<ReturnType<typeof listenClients>>;
  try {
    listeners = await listenClients(server, logger);
  } catch (err) {
    await server.stop();
    process.stderr.write(`lab etcd: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  logger.info("ready to serve client requests", { addresses: listeners.clientAddresses });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info("received signal; shutting down", { signal });
      void listeners
        .close()
        .then(() => server.stop())
        .then(() => resolve(0));
    };
    server.onFatal = (err) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`lab etcd: member ${config.name} stops: ${err.message}\n`);
      void listeners
        .close()
        .then(() => server.stop())
        .then(() => resolve(1));
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
  });
}

/** What this build cannot do yet is refused up front, with what to do instead. */
function checkSupported(config: EtcdConfig): void {
  if (!config.initialCluster.has(config.name)) {
    throw new UsageError(
      `--initial-cluster has no member named "${config.name}" (the --name of this member). List it, e.g. --initial-cluster ${config.name}=http://127.0.0.1:2380`,
    );
  }
  for (const u of config.listenClientUrls) {
    if (u.protocol !== "http:") {
      throw new UsageError(
        `--listen-client-urls ${u.toString()}: TLS client listeners are not supported yet; use http://`,
      );
    }
  }
}
