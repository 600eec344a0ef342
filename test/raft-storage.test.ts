import { describe, expect, it } from "vitest";
import {
  bootstrapSnapshot,
  type Entry,
  ErrCompacted,
  ErrProposalDropped,
  MemoryStorage,
  NONE,
  RawNode,
} from "../src/raft/index.js";

const entry = (index: number, term: number, text = `${index}@${term}`): Entry => ({
  index,
  term,
  type: "normal",
  data: new TextEncoder().encode(text),
});

const texts = (ents: Entry[]): string[] => ents.map((e) => new TextDecoder().decode(e.data));

describe("MemoryStorage.append", () => {
  it("appends after the last entry, replaces an overlapping suffix, ignores what a snapshot covers", () => {
    const s = new MemoryStorage();
    s.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    const before = s.entries(1, 4, Number.POSITIVE_INFINITY);
    s.append([entry(4, 1)]);
    expect(s.lastIndex()).toBe(4);
    // A new leader's entries from index 3 on replace 3 and 4.
    s.append([entry(3, 2), entry(4, 2), entry(5, 2)]);
    expect(texts(s.entries(1, 6, Number.POSITIVE_INFINITY))).toEqual(["1@1", "2@1", "3@2", "4@2", "5@2"]);
    // What an earlier entries() call returned is the caller's: later appends do not change it.
    expect(texts(before)).toEqual(["1@1", "2@1", "3@1"]);
    s.compact(2);
    // Entries at or below the compaction point are ignored, the rest replaces from index 3.
    s.append([entry(2, 9), entry(3, 3)]);
    expect(texts(s.entries(3, 4, Number.POSITIVE_INFINITY))).toEqual(["3@3"]);
    expect(s.lastIndex()).toBe(3);
    expect(() => s.entries(2, 3, Number.POSITIVE_INFINITY)).toThrow(ErrCompacted);
    expect(() => s.append([entry(5, 3)])).toThrow(/missing log entry/);
  });

  it("keeps every entry of a long log in order (appends one at a time)", () => {
    const s = new MemoryStorage();
    for (let i = 1; i <= 50_000; i++) s.append([entry(i, 1, String(i))]);
    expect(s.lastIndex()).toBe(50_000);
    expect(texts(s.entries(49_998, 50_001, Number.POSITIVE_INFINITY))).toEqual(["49998", "49999", "50000"]);
  });
});

describe("RawNode.proposeBatch", () => {
  const singleVoter = (): { rn: RawNode; storage: MemoryStorage } => {
    const storage = new MemoryStorage();
    storage.applySnapshot(bootstrapSnapshot([1n], [], 1, 1));
    storage.setHardState({ term: 1, vote: NONE, commit: 1 });
    const rn = new RawNode({ id: 1n, electionTick: 10, heartbeatTick: 1, storage, random: () => 0 });
    return { rn, storage };
  };

  it("appends the commands as consecutive entries of one proposal", () => {
    const { rn, storage } = singleVoter();
    rn.campaign();
    let rd = rn.ready();
    storage.append(rd.entries);
    rn.advance();
    const lastBefore = storage.lastIndex();
    rn.proposeBatch(["a", "b", "c"].map((t) => new TextEncoder().encode(t)));
    rd = rn.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([lastBefore + 1, lastBefore + 2, lastBefore + 3]);
    expect(texts(rd.entries)).toEqual(["a", "b", "c"]);
  });

  it("accepts none of them without a leader", () => {
    const { rn } = singleVoter();
    expect(() => rn.proposeBatch([new Uint8Array([1]), new Uint8Array([2])])).toThrow(ErrProposalDropped);
    expect(rn.hasReady()).toBe(false);
  });
});
