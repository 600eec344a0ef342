import type { Message, NodeId } from "./types.js";

interface ReadIndexStatus {
  request: Message;
  /** The leader's commit index when the request arrived: the read may be served once applied. */
  index: number;
  acks: Set<NodeId>;
}

export function contextKey(ctx: Uint8Array): string {
  let s = "";
  for (const b of ctx) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * Read requests waiting for the leader to confirm that it is still leader: each is answered once
 * a quorum acks a heartbeat sent after it arrived. Requests are answered in arrival order, and a
 * quorum for a later request also confirms every earlier one.
 */
export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Queues a request (a duplicate context is ignored: the first one is already waiting). */
  addRequest(index: number, request: Message): void {
    const key = contextKey(request.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { request, index, acks: new Set() });
    this.queue.push(key);
  }

  /** Records a heartbeat ack for the request with this context; returns its acks so far. */
  recvAck(id: NodeId, ctx: Uint8Array): Set<NodeId> | undefined {
    const status = this.pending.get(contextKey(ctx));
    if (status === undefined) return undefined;
    status.acks.add(id);
    return status.acks;
  }

  /** Removes and returns the requests up to and including the one with this context. */
  advance(ctx: Uint8Array): { request: Message; index: number }[] {
    const key = contextKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: { request: Message; index: number }[] = [];
    for (const k of done) {
      const status = this.pending.get(k)!;
      this.pending.delete(k);
      out.push({ request: status.request, index: status.index });
    }
    return out;
  }

  /** The context of the newest pending request, which heartbeats carry. */
  lastPendingContext(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)!.request.context;
  }

  size(): number {
    return this.queue.length;
  }

  reset(): void {
    this.pending.clear();
    this.queue = [];
  }
}
