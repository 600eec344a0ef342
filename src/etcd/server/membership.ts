import type { ConfChange, ConfState } from "../../raft/index.js";
import { EtcdError } from "../errors.js";
import type { MemberImage } from "../wal/snapshot.js";

/**
 * The cluster's members as the state machine knows them: Raft's configuration (voters and
 * learners) plus what etcd shows for each member (name, peer and client URLs). Changes come only
 * from applied log entries, so every member holds the same list at the same index.
 *
 * A membership change travels as a Raft ConfChange whose context carries what Raft does not need
 * but the members do: the proposer's request ID (to answer its client) and the new member's peer
 * URLs. A member's name and client URLs arrive later, when it starts and publishes them.
 */

export interface Member {
  readonly id: bigint;
  readonly name: string;
  readonly peerUrls: string[];
  readonly clientUrls: string[];
  readonly isLearner: boolean;
}

export interface MemberChangeContext {
  readonly requestId: string;
  /** For additions: the new member's peer URLs. */
  readonly peerUrls?: string[];
}

export class Membership {
  private readonly byId = new Map<bigint, Member>();

  /** Members in ID order, as etcd lists them. */
  list(): Member[] {
    return [...this.byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: bigint): Member | undefined {
    return this.byId.get(id);
  }

  restore(images: readonly MemberImage[]): void {
    this.byId.clear();
    for (const m of images) this.byId.set(m.id, { ...m, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls] });
  }

  images(): MemberImage[] {
    return this.list().map((m) => ({ ...m }));
  }

  setAttributes(id: bigint, name: string, clientUrls: string[]): void {
    const m = this.byId.get(id);
    // A member removed before its publish committed: nothing to update.
    if (m) this.byId.set(id, { ...m, name, clientUrls: [...clientUrls] });
  }

  setPeerUrls(id: bigint, peerUrls: string[]): void {
    const m = this.byId.get(id);
    if (m) this.byId.set(id, { ...m, peerUrls: [...peerUrls] });
  }

  /** Why `cc` cannot be applied to the current membership, or undefined when it can. */
  validate(cc: ConfChange, ctx: MemberChangeContext | undefined): EtcdError | undefined {
    const existing = this.byId.get(cc.nodeId);
    switch (cc.type) {
      case "addLearnerNode":
        return existing ? new EtcdError("MemberExist") : this.urlClash(cc.nodeId, ctx?.peerUrls ?? []);
      case "addNode":
        if (!existing) return this.urlClash(cc.nodeId, ctx?.peerUrls ?? []);
        // An addNode for a known member is a promotion, which only a learner can take.
        return existing.isLearner ? undefined : new EtcdError("MemberExist");
      case "removeNode":
        return existing ? undefined : new EtcdError("MemberNotFound");
    }
  }

  private urlClash(id: bigint, peerUrls: readonly string[]): EtcdError | undefined {
    const wanted = new Set(peerUrls);
    for (const m of this.byId.values()) {
      if (m.id !== id && m.peerUrls.some((u) => wanted.has(u))) return new EtcdError("PeerURLExist");
    }
    return undefined;
  }

  /** Applies a change that validate() accepted. */
  apply(cc: ConfChange, ctx: MemberChangeContext | undefined): void {
    const existing = this.byId.get(cc.nodeId);
    switch (cc.type) {
      case "addLearnerNode":
      case "addNode":
        if (existing) this.byId.set(cc.nodeId, { ...existing, isLearner: false });
        else {
          this.byId.set(cc.nodeId, {
            id: cc.nodeId,
            name: "",
            peerUrls: [...(ctx?.peerUrls ?? [])],
            clientUrls: [],
            isLearner: cc.type === "addLearnerNode",
          });
        }
        break;
      case "removeNode":
        this.byId.delete(cc.nodeId);
        break;
    }
  }

  static confStateOf(members: readonly MemberImage[]): ConfState {
    return {
      voters: members.filter((m) => !m.isLearner).map((m) => m.id),
      learners: members.filter((m) => m.isLearner).map((m) => m.id),
    };
  }

  static encodeContext(ctx: MemberChangeContext): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(ctx));
  }

  static decodeContext(data: Uint8Array | undefined): MemberChangeContext | undefined {
    if (data === undefined || data.length === 0) return undefined;
    try {
      const v = JSON.parse(new TextDecoder().decode(data)) as MemberChangeContext;
      return typeof v.requestId === "string" ? v : undefined;
    } catch {
      return undefined;
    }
  }
}
