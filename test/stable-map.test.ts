import { describe, expect, it } from "vitest";
import { StableMap } from "../src/util/stable-map.js";
import { mulberry32 } from "./helpers/prng.js";

describe("StableMap", () => {
  it("answers every operation as a Map does, through 5,000 random ones", () => {
    const rand = mulberry32(3);
    const stable = new StableMap<number, string>();
    const plain = new Map<number, string>();
    for (let i = 0; i < 5000; i++) {
      const key = Math.floor(rand() * 8);
      const op = rand();
      if (op < 0.4) {
        expect(stable.set(key, `v${i}`)).toBe(stable);
        plain.set(key, `v${i}`);
      } else if (op < 0.8) expect(stable.delete(key)).toBe(plain.delete(key));
      else if (op < 0.99) {
        expect(stable.get(key)).toBe(plain.get(key));
        expect(stable.has(key)).toBe(plain.has(key));
      } else {
        stable.clear();
        plain.clear();
      }
      expect(stable.size).toBe(plain.size);
      expect([...stable]).toEqual([...plain]);
      expect([...stable.keys()]).toEqual([...plain.keys()]);
      expect([...stable.values()]).toEqual([...plain.values()]);
    }
  });

  it("lets entries be deleted while it is iterated, as a Map does", () => {
    const stable = new StableMap<string, number>();
    for (let i = 0; i < 5; i++) stable.set(`k${i}`, i);
    const seen: number[] = [];
    for (const [key, value] of stable) {
      seen.push(value);
      stable.delete(key);
    }
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(stable.size).toBe(0);
    expect([...stable.entries()]).toEqual([]);
  });
});
