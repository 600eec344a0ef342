#!/usr/bin/env node
import { runApiServer } from "./apiserver.js";
import { runEtcd } from "./etcd.js";

/**
 * The `lab` command. Each subcommand runs in this process: `lab etcd` *is* the member, so the PID
 * that started it is the PID that failure drills signal.
 */

const USAGE = `lab: a Kubernetes control-plane lab

Usage:
  lab etcd [flags]     run one etcd-compatible store member in the foreground
                       (etcd's own flags and ETCD_* variables; lab etcd --help lists them)
  lab apiserver [flags]
                       run a Kubernetes-compatible API server (storage only) over the store
                       (kube-apiserver's flags; lab apiserver --help lists them)
  lab version          print the lab version and the etcd API level it speaks
  lab --help           this text
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case "etcd":
      return runEtcd(rest);
    case "apiserver":
      return runApiServer(rest);
    case "version":
    case "--version": {
      const { SERVER_VERSION } = await import("../etcd/server/server.js");
      process.stdout.write(`lab ${await labVersion()}\netcd API ${SERVER_VERSION}\n`);
      return 0;
    }
    default:
      process.stderr.write(`lab: unknown command "${command}"; run lab --help for the list\n`);
      return 2;
  }
}

async function labVersion(): Promise<string> {
  const { readFileSync } = await import("node:fs");
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A finished foreground command should not linger on open handles (gRPC timers and the like).
    if (code !== 0 || (process.argv[2] !== "etcd" && process.argv[2] !== "apiserver"))
      setImmediate(() => process.exit(code));
    else process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
