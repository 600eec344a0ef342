import { describe, expect, it } from "vitest";
import { crc32c } from "../src/util/crc32c.js";
import { mulberry32 } from "./helpers/prng.js";

describe("crc32c", () => {
  it("gives the published CRC-32C check values", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
    // RFC 3720 (iSCSI), appendix B.4.
    expect(crc32c(Buffer.alloc(32, 0x00))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i)))).toBe(0x46dd794e);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it("continues over pieces and checksums a range as a view of it would be", () => {
    const rand = mulberry32(7);
    const data = Buffer.from(Array.from({ length: 300 }, () => Math.floor(rand() * 256)));
    for (let i = 0; i < 200; i++) {
      const start = Math.floor(rand() * data.length);
      const end = start + Math.floor(rand() * (data.length - start + 1));
      const mid = start + Math.floor((end - start) / 2);
      const whole = crc32c(data.subarray(start, end));
      expect(crc32c(data, 0, start, end)).toBe(whole);
      expect(crc32c(data.subarray(mid, end), crc32c(data.subarray(start, mid)))).toBe(whole);
      expect(crc32c(data, crc32c(data, 0, start, mid), mid, end)).toBe(whole);
    }
  });
});
