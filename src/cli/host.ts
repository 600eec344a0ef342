import { HostSupervisor } from "../host/supervisor.js";
import { LAB_MAIN } from "../lab/process-runtime.js";
import { createLogger } from "../util/logger.js";

/**
 * `lab host --name HOST --root DIR`: a lab host's supervisor (a small kubelet for the static pods
 * in DIR/etc/kubernetes/manifests). `lab up` starts one per host; on Docker it is the container's
 * entrypoint.
 */
export async function runHost(argv: readonly string[]): Promise<number> {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) {
      process.stderr.write(
        `lab host: unexpected argument "${a}"; usage: lab host --name=HOST --root=DIR [--lab=LAB]\n`,
      );
      return 2;
    }
    flags.set(m[1] as string, m[2] as string);
  }
  const name = flags.get("name");
  const root = flags.get("root");
  if (!name || !root) {
    process.stderr.write("lab host: --name=HOST and --root=DIR are required\n");
    return 2;
  }
  const logger = createLogger("info", { host: name, ...(flags.get("lab") ? { lab: flags.get("lab") } : {}) });
  const supervisor = new HostSupervisor(name, root, LAB_MAIN, logger);
  supervisor.start();
  process.on("exit", (code) => logger.info("host supervisor exits", { code }));
  logger.info("host supervisor running", { pid: process.pid, root });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("stopping the host", { signal });
      void supervisor.stop().then(() => resolve(0));
    };
    // A supervisor that fails takes its components down with it rather than orphaning them.
    process.on("uncaughtException", (e) => {
      logger.error("host supervisor failed; stopping its components", { error: e.stack ?? e.message });
      void supervisor.stop().then(() => process.exit(1));
    });
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
  });
}
