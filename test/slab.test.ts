import { describe, expect, it } from "vitest";
import { SlabCopier } from "../src/util/slab.js";

describe("SlabCopier (long-lived copies apart from Node's buffer pool)", () => {
  it("copies bytes into shared slabs of its own, large ones into buffers of their own", () => {
    const copier = new SlabCopier(1024);
    const source = Buffer.from("value-1");
    const a = copier.copy(source);
    const b = copier.copy(Buffer.from("value-2"));
    source.write("XXXXX");
    expect(a.toString()).toBe("value-1");
    expect(b.toString()).toBe("value-2");
    // Small copies share a slab, which no other buffer of the process comes from.
    expect(a.buffer).toBe(b.buffer);
    expect(a.buffer).not.toBe(Buffer.from("pooled").buffer);
    expect(a.buffer.byteLength).toBe(1024);
    // Over an eighth of the slab: a buffer of its own, and the slab goes on being filled.
    const large = copier.copy(Buffer.alloc(129, 7));
    expect(large.buffer.byteLength).toBe(129);
    expect(large.every((x) => x === 7)).toBe(true);
    expect(copier.copy(Buffer.from("c")).buffer).toBe(a.buffer);
    expect(copier.copy(new Uint8Array(0)).length).toBe(0);
  });

  it("starts a new slab when a copy does not fit in what is left, without overlapping", () => {
    const copier = new SlabCopier(256);
    const copies = Array.from({ length: 40 }, (_, i) => copier.copy(Buffer.alloc(30, i)));
    expect(copies.every((c, i) => c.every((x) => x === i))).toBe(true);
    const slabs = new Set(copies.map((c) => c.buffer));
    // 8 copies of 30 bytes fit in 256: 40 copies take 5 slabs.
    expect(slabs.size).toBe(5);
  });

  it("hands out room to be written in place from the same slabs, never overlapping a copy", () => {
    const copier = new SlabCopier(256);
    const copied = copier.copy(Buffer.from("first"));
    const room = copier.allocate(10);
    room.fill(9);
    expect(room.buffer).toBe(copied.buffer);
    expect(room.length).toBe(10);
    expect(copied.toString()).toBe("first");
    expect(copier.copy(Buffer.from("after")).toString()).toBe("after");
    expect(room.every((x) => x === 9)).toBe(true);
    expect(copier.allocate(33).buffer.byteLength).toBe(33);
    expect(copier.allocate(0).length).toBe(0);
  });

  it("refuses a slab size it cannot use", () => {
    expect(() => new SlabCopier(10)).toThrow(/slab size must be an integer of at least 64 bytes, not 10/);
    expect(() => new SlabCopier(100.5)).toThrow(/slab size must be an integer/);
  });
});
