import { readFileSync } from "node:fs";
import { Authenticator, TokenFileError } from "../apiserver/auth.js";
import {
  type ApiServerConfig,
  ApiServerUsageError,
  apiServerFlagHelp,
  parseApiServerFlags,
} from "../apiserver/config.js";
import { ApiServer, type ListenSpec } from "../apiserver/server.js";
import { StoreClient } from "../apiserver/store-client.js";
import { createLogger } from "../util/logger.js";

/**
 * `lab apiserver [flags]`: one Kubernetes-compatible API server in the foreground, in this
 * process, with kube-apiserver's flag names for what it supports.
 */
export async function runApiServer(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(apiServerFlagHelp());
    return 0;
  }
  let config: ApiServerConfig;
  let warnings: string[];
  let authenticator: Authenticator;
  try {
    ({ config, warnings } = parseApiServerFlags(argv));
    authenticator = Authenticator.fromFiles(config.tokenAuthFile, config.clientCaFile);
  } catch (err) {
    if (err instanceof ApiServerUsageError || err instanceof TokenFileError) {
      process.stderr.write(`lab apiserver: ${err.message.split("\n").join("\nlab apiserver: ")}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.verbosity >= 4 ? "debug" : "info", { component: "apiserver" });
  for (const w of warnings) logger.warn(w);

  const store = new StoreClient({
    endpoints: config.etcdServers,
    tls:
      config.etcdTls && config.etcdCaFile
        ? {
            ca: readFileSync(config.etcdCaFile),
            cert: config.etcdCertFile ? readFileSync(config.etcdCertFile) : Buffer.alloc(0),
            key: config.etcdKeyFile ? readFileSync(config.etcdKeyFile) : Buffer.alloc(0),
          }
        : undefined,
  });
  const listen: ListenSpec[] = [];
  if (config.securePort > 0 && config.tlsCertFile && config.tlsPrivateKeyFile)
    listen.push({
      host: config.bindAddress,
      port: config.securePort,
      tls: {
        cert: readFileSync(config.tlsCertFile),
        key: readFileSync(config.tlsPrivateKeyFile),
        ca: config.clientCaFile ? readFileSync(config.clientCaFile) : undefined,
      },
      authenticate: true,
    });
  if (config.insecurePort > 0)
    listen.push({ host: config.insecureBindAddress, port: config.insecurePort, authenticate: false });

  let server: ApiServer;
  try {
    server = await ApiServer.start({
      store,
      etcdPrefix: config.etcdPrefix,
      listen,
      authenticator,
      logger,
      compactionIntervalMs: config.etcdCompactionIntervalMs,
      eventTtlSeconds: config.eventTtlSeconds,
    });
  } catch (err) {
    store.close();
    process.stderr.write(`lab apiserver: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  for (const a of server.addresses)
    logger.info(`serving ${a.tls ? "HTTPS" : "plain HTTP (no authentication)"}`, { address: `${a.host}:${a.port}` });
  logger.info("store", { endpoints: config.etcdServers, prefix: config.etcdPrefix });

  return new Promise<number>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info("shutting down", { signal });
      void server.stop().then(() => resolve(0));
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
}
