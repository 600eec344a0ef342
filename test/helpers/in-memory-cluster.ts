import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseEtcdConfig } from "../../src/etcd/config.js";
import { EtcdServer, type PeerHandlers, type PeerLink } from "../../src/etcd/server/server.js";
import type { Message } from "../../src/raft/index.js";
import { createLogger } from "../../src/util/logger.js";

/**
 * Members of one cluster in this process, their peer messages passed through memory, so a test can
 * see exactly which message a member sent when, relative to what else it did (the real transport
 * and real processes are covered elsewhere). Each message is handed over on a later turn of the
 * event loop, as a socket would, and every send and delivery is written to `journal` in order.
 */
/** The body of a plain put, as `EtcdServer.propose` takes it (every field as the gRPC layer gives it). */
export function putCommand(key: string) {
  return {
    put: {
      key: Buffer.from(key),
      value: Buffer.from("v"),
      lease: "0",
      prev_kv: false,
      ignore_value: false,
      ignore_lease: false,
    },
  };
}

export type JournalEntry =
  | { readonly kind: "sent"; readonly from: bigint; readonly message: Message }
  | { readonly kind: "note"; readonly text: string };

export class InMemoryCluster {
  readonly journal: JournalEntry[] = [];
  readonly servers: EtcdServer[] = [];
  private readonly handlers = new Map<bigint, PeerHandlers>();
  /** Messages for which this says true wait in `held` until release(). */
  private holding: ((from: bigint, m: Message) => boolean) | undefined;
  private held: Message[] = [];

  private constructor(readonly root: string) {}

  /** Starts `size` members with data directories under a fresh temporary directory. */
  static async start(size: number, extraFlags: readonly string[] = []): Promise<InMemoryCluster> {
    const cluster = new InMemoryCluster(fs.mkdtempSync(path.join(os.tmpdir(), "lab-in-memory-cluster-")));
    // The URLs only name the members (their IDs derive from them): nothing listens on them.
    const names = Array.from({ length: size }, (_, i) => `m${i + 1}`);
    const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${2380 + i}`).join(",");
    try {
      const started = names.map((name, i) => {
        const { config } = parseEtcdConfig(
          [
            `--name=${name}`,
            `--data-dir=${path.join(cluster.root, name)}`,
            `--initial-advertise-peer-urls=http://127.0.0.1:${2380 + i}`,
            `--listen-client-urls=http://127.0.0.1:${2379 + 10 * (i + 1)}`,
            `--advertise-client-urls=http://127.0.0.1:${2379 + 10 * (i + 1)}`,
            `--initial-cluster=${initialCluster}`,
            "--initial-cluster-token=in-memory",
            ...extraFlags,
          ],
          {},
        );
        return EtcdServer.start({
          config,
          logger: createLogger("error", { name }),
          connectPeers: async (ids, handlers) => cluster.link(ids.memberId, handlers),
        });
      });
      cluster.servers.push(...(await Promise.all(started)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** From now on, messages that `test` picks are held back (in order) until release(). */
  hold(test: (from: bigint, m: Message) => boolean): void {
    this.holding = test;
  }

  /** Delivers the held messages, in the order they were sent, and holds no more. */
  release(): void {
    this.holding = undefined;
    const held = this.held;
    this.held = [];
    for (const message of held) setImmediate(() => this.handlers.get(message.to)?.onMessage(message));
  }

  note(text: string): void {
    this.journal.push({ kind: "note", text });
  }

  /** Waits (event-loop turns, no deadline of its own) until every member follows one leader. */
  async leader(): Promise<EtcdServer> {
    for (;;) {
      const lead = this.servers[0]?.leaderId ?? 0n;
      const agreed = lead !== 0n && this.servers.every((s) => s.leaderId === lead);
      const leader = this.servers.find((s) => s.memberId === lead);
      if (agreed && leader) return leader;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  private link(self: bigint, handlers: PeerHandlers): PeerLink {
    this.handlers.set(self, handlers);
    const others = (): bigint[] => [...this.handlers.keys()].filter((id) => id !== self);
    return {
      send: (messages) => {
        for (const message of messages) {
          this.journal.push({ kind: "sent", from: self, message });
          if (this.holding?.(self, message)) {
            this.held.push(message);
            continue;
          }
          setImmediate(() => this.handlers.get(message.to)?.onMessage(message));
        }
      },
      request: async (to, kind, body) => {
        const target = this.handlers.get(to);
        if (!target) throw new Error(`no member ${to.toString(16)}`);
        return target.onRequest(self, kind, body);
      },
      addPeer: () => {},
      updatePeer: () => {},
      removePeer: () => {},
      close: async () => {
        this.handlers.delete(self);
      },
      setFaults: () => {
        throw new Error("the in-memory cluster has no fault hook");
      },
      clearFaults: () => {},
      faults: () => ({}),
      stats: () => ({}),
      activePeers: () => others().length,
      reachable: (peer) => this.handlers.has(peer),
    };
  }
}
