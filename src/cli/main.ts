#!/usr/bin/env node
import { LAB_COMMANDS } from "./commands.js";

/**
 * The `lab` command. Each subcommand runs in this process: `lab etcd` *is* the member, so the PID
 * that started it is the PID that failure drills signal. Subcommands are imported on demand:
 * a store member should not pay (in start time and memory) for the Docker client or the API server.
 */

const USAGE = `lab: a Kubernetes control-plane lab

Usage:
  lab up NAME|FILE [--name LAB] [--port N] [--runtime auto|docker|process] [--base-image IMAGE]
                       create and start a lab from a topology (lab topology list); auto picks
                       Docker when an engine answers, local processes otherwise
  lab down [--name LAB]                    remove the lab: everything of it, nothing else
  lab list | status [-o json]              the labs; one lab's hosts, store members, API servers
  lab kubeconfig [--merge]                 a kubeconfig for the lab (--merge: into ~/.kube/config)
  lab etcdctl -- ARGS                      the real etcdctl against the lab's store
  lab logs [HOST] | exec HOST -- CMD       a host's logs; run a command in a host
  lab stop|start|restart [HOST]            the whole lab, or one host
  lab etcd [flags]     run one etcd-compatible store member in the foreground
                       (etcd's own flags and ETCD_* variables; lab etcd --help lists them)
  lab apiserver [flags]
                       run a Kubernetes-compatible API server (storage only) over the store
                       (kube-apiserver's flags; lab apiserver --help lists them)
  lab lb [flags]       a TCP load balancer for API servers (health-checks /readyz)
  lab topology list|validate|schema
                       the built-in topologies; check a topology file; its JSON Schema
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
      return (await import("./etcd.js")).runEtcd(rest);
    case "apiserver":
      return (await import("./apiserver.js")).runApiServer(rest);
    case "topology":
      return (await import("./topology.js")).runTopology(rest);
    case "lb":
      return (await import("./lb.js")).runLoadBalancer(rest);
    case "host":
      return (await import("./host.js")).runHost(rest);
    case "version":
    case "--version": {
      const { SERVER_VERSION } = await import("../etcd/server/server.js");
      process.stdout.write(`lab ${await labVersion()}\netcd API ${SERVER_VERSION}\n`);
      return 0;
    }
    default:
      if (LAB_COMMANDS.includes(command)) return (await import("./lab.js")).runLabCommand(command, rest);
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

// `lab status | head` closes the pipe early: that is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A finished foreground command should not linger on open handles (gRPC timers and the like).
    if (code !== 0 || !["etcd", "apiserver", "lb", "host"].includes(process.argv[2] ?? ""))
      setImmediate(() => process.exit(code));
    else process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
