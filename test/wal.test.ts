import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { Wal, WalCorruptionError, type WalEntry } from "../src/etcd/wal/wal.js";
import { tempDir } from "./helpers/nodes.js";

const entry = (index: number, text = `entry-${index}`): WalEntry => ({ index, term: 1, data: Buffer.from(text) });

async function writeEntries(dir: string, n: number, options: { segmentBytes?: number } = {}): Promise<void> {
  const { wal } = Wal.open(dir, { fsync: true, ...options });
  for (let i = 1; i <= n; i++) await wal.append([entry(i)]);
  await wal.close();
}

/** Where a segment's records end: its preallocated zeros follow (a record never ends in a zero byte here). */
function recordsEnd(file: string): number {
  const data = fs.readFileSync(file);
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  return end;
}

function segments(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(".wal"))
    .sort();
}

describe("write-ahead log", () => {
  it("reads back what was appended, across reopen", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 50);
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => e.index)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(contents.entries[9]?.data.toString()).toBe("entry-10");
    expect(contents.warnings).toEqual([]);
    expect(wal.lastEntryIndex).toBe(50);
    await wal.close();
  });

  it("lets concurrent appends share fsyncs and resolves every one", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true });
    await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append([entry(i + 1)])));
    await wal.close();
    const reopened = Wal.open(dir, { fsync: true });
    expect(reopened.contents.entries).toHaveLength(200);
    await reopened.wal.close();
  });

  it("keeps the latest hard state and lets a later entry replace a suffix (log truncation)", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true });
    await wal.append([entry(1), entry(2), entry(3)], { term: 1, vote: 7n, commit: 1 });
    await wal.append([{ index: 2, term: 2, data: Buffer.from("replaced") }], { term: 2, vote: 9n, commit: 2 });
    await wal.close();
    const { wal: w2, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => [e.index, e.term, e.data.toString()])).toEqual([
      [1, 1, "entry-1"],
      [2, 2, "replaced"],
    ]);
    expect(contents.hardState).toEqual({ term: 2, vote: 9n, commit: 2 });
    await w2.close();
  });

  it("reads back indexes, terms and hard state fields beyond 32 bits, and refuses ones that are not log positions", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true });
    const big = 2 ** 40 + 5;
    await wal.append([{ index: big, term: 2 ** 33 + 1, data: Buffer.from("far") }], {
      term: Number.MAX_SAFE_INTEGER,
      vote: 2n ** 64n - 1n,
      commit: 2 ** 32,
    });
    expect(() => wal.append([{ index: -1, term: 1, data: Buffer.alloc(0) }])).toThrow(RangeError);
    expect(() => wal.append([], { term: 1.5, vote: 0n, commit: 0 })).toThrow(RangeError);
    await wal.close();
    const { wal: w2, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => [e.index, e.term, e.data.toString()])).toEqual([[big, 2 ** 33 + 1, "far"]]);
    expect(contents.hardState).toEqual({ term: Number.MAX_SAFE_INTEGER, vote: 2n ** 64n - 1n, commit: 2 ** 32 });
    await w2.close();
  });

  it("truncates a torn last record with a warning, and appends after it", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 10);
    const file = path.join(dir, segments(dir)[0] as string);
    // The crash cut the last record short: its last 5 bytes never reached the disk.
    const end = recordsEnd(file);
    const data = fs.readFileSync(file);
    data.fill(0, end - 5, end);
    fs.writeFileSync(file, data);
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(contents.warnings).toHaveLength(1);
    expect(contents.warnings[0]).toMatch(/truncated a torn record/);
    await wal.append([entry(10, "again")]);
    await wal.close();
    const again = Wal.open(dir, { fsync: true });
    expect(again.contents.entries.at(-1)?.data.toString()).toBe("again");
    expect(again.contents.warnings).toEqual([]);
    await again.wal.close();
  });

  it("treats garbage bytes at the tail (a torn write) as a torn record", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 3);
    const file = path.join(dir, segments(dir)[0] as string);
    // Both where the next record would go (inside the preallocated zeros) and past them.
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, Buffer.from([0x10, 0, 0, 0, 1, 2, 3]), 0, 7, recordsEnd(file));
    fs.closeSync(fd);
    fs.appendFileSync(file, Buffer.from([0x10, 0, 0, 0, 1, 2, 3]));
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries).toHaveLength(3);
    expect(contents.warnings).toHaveLength(1);
    await wal.append([entry(4)]);
    await wal.close();
    const again = Wal.open(dir, { fsync: true });
    expect(again.contents.entries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
    expect(again.contents.warnings).toEqual([]);
    await again.wal.close();
  });

  it("writes inside zeros it preallocated ahead of the records, and ends the log where they begin", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 20);
    const file = path.join(dir, segments(dir)[0] as string);
    const data = fs.readFileSync(file);
    expect(data.subarray(0, 8).toString("latin1")).toBe("LABWAL02");
    // The file is longer than its records: the rest is zeros, written by no one.
    expect(data.length).toBeGreaterThan(recordsEnd(file) + 1024 * 1024);
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => e.index)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(contents.warnings).toEqual([]);
    await wal.append([entry(21)]);
    await wal.close();
    // The new record went right after the old ones, not after the zeros.
    const end = recordsEnd(file);
    expect(end).toBeLessThan(fs.statSync(file).size);
    expect(Wal.open(dir, { fsync: true }).contents.entries.at(-1)?.index).toBe(21);
  });

  it("reads a version-1 segment (no zeros) and appends to it as it is", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 5);
    const file = path.join(dir, segments(dir)[0] as string);
    // What an earlier build wrote: magic LABWAL01, records up to the end of the file.
    const v1 = Buffer.from(fs.readFileSync(file).subarray(0, recordsEnd(file)));
    v1.write("01", 6, "latin1");
    fs.writeFileSync(file, v1);
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    await wal.append([entry(6)]);
    await wal.close();
    const after = fs.readFileSync(file);
    expect(after.subarray(0, 8).toString("latin1")).toBe("LABWAL01");
    expect(after.length).toBe(recordsEnd(file)); // still no zero tail an older build could not read
    expect(Wal.open(dir, { fsync: true }).contents.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("refuses to open when a record in the middle is corrupt, naming file and offset", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 10);
    const file = path.join(dir, segments(dir)[0] as string);
    const data = fs.readFileSync(file);
    data[40] = (data[40] as number) ^ 0xff; // inside the second record
    fs.writeFileSync(file, data);
    let error: unknown;
    try {
      Wal.open(dir, { fsync: true });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(WalCorruptionError);
    expect((error as WalCorruptionError).file).toBe(file);
    expect((error as Error).message).toMatch(/corrupt at offset \d+: checksum mismatch/);
    // Nothing was "repaired": the file is untouched.
    expect(fs.readFileSync(file).equals(data)).toBe(true);
  });

  it("refuses a corrupt record in a segment that is not the last one", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 40, { segmentBytes: 200 });
    const names = segments(dir);
    expect(names.length).toBeGreaterThan(2);
    const first = path.join(dir, names[0] as string);
    const data = fs.readFileSync(first);
    fs.writeFileSync(first, data.subarray(0, data.length - 3)); // a short tail, but not the last segment
    expect(() => Wal.open(dir, { fsync: true })).toThrow(WalCorruptionError);
  });

  it("leaves out the entries a snapshot holds (skipEntriesThrough), still checking them, and knows the last index", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true, segmentBytes: 150 });
    for (let i = 1; i <= 10; i++) await wal.append([entry(i)]);
    // A new leader's entries replace 8 and what followed, then the log goes on to 12.
    await wal.append([{ index: 8, term: 2, data: Buffer.from("re-8") }]);
    for (let i = 9; i <= 12; i++) await wal.append([{ index: i, term: 2, data: Buffer.from(`re-${i}`) }]);
    await wal.close();
    expect(segments(dir).length).toBeGreaterThan(2);
    const whole = Wal.open(dir, { fsync: true });
    await whole.wal.close();
    const shape = (es: readonly WalEntry[]) => es.map((e) => [e.index, e.term, e.data.toString()]);
    for (let skip = 0; skip <= 13; skip++) {
      const opened = Wal.open(dir, { fsync: true, skipEntriesThrough: skip });
      expect(shape(opened.contents.entries)).toEqual(shape(whole.contents.entries.filter((e) => e.index > skip)));
      expect(opened.wal.lastEntryIndex).toBe(12);
      await opened.wal.close();
    }
    // A rewrite below the skipped range still drops everything after it.
    const again = Wal.open(dir, { fsync: true });
    await again.wal.append([{ index: 3, term: 3, data: Buffer.from("re-3") }]);
    await again.wal.close();
    const skipped = Wal.open(dir, { fsync: true, skipEntriesThrough: 9 });
    expect(skipped.contents.entries).toEqual([]);
    expect(skipped.wal.lastEntryIndex).toBe(3);
    await skipped.wal.close();
    // A damaged entry is found even where its data would be skipped.
    const first = path.join(dir, segments(dir)[0] as string);
    const data = fs.readFileSync(first);
    data[40] = (data[40] as number) ^ 0xff;
    fs.writeFileSync(first, data);
    expect(() => Wal.open(dir, { fsync: true, skipEntriesThrough: 9 })).toThrow(WalCorruptionError);
  });

  it("rolls segments and reads entries across them in order", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 60, { segmentBytes: 256 });
    expect(segments(dir).length).toBeGreaterThan(3);
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries.map((e) => e.index)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    await wal.close();
  });

  it("drops segments a snapshot covers and replays only what follows it", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true, segmentBytes: 256 });
    for (let i = 1; i <= 60; i++) await wal.append([entry(i)]);
    const before = segments(dir).length;
    await wal.markSnapshot({ index: 50, term: 1 });
    expect(segments(dir).length).toBeLessThan(before);
    await wal.close();
    const { wal: w2, contents } = Wal.open(dir, { fsync: true });
    expect(contents.snapshot).toEqual({ index: 50, term: 1 });
    expect(contents.entries.map((e) => e.index)).toEqual([51, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
    await w2.close();
  });

  it("names an unsupported format version", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 1);
    const file = path.join(dir, segments(dir)[0] as string);
    const data = fs.readFileSync(file);
    data.write("99", 6, "latin1");
    fs.writeFileSync(file, data);
    expect(() => Wal.open(dir, { fsync: true })).toThrow(/format version 99 is not supported/);
  });

  it("stops acknowledging after a write failure", async () => {
    const dir = tempDir("wal");
    const { wal } = Wal.open(dir, { fsync: true });
    await wal.append([entry(1)]);
    // Simulate the disk going away under the log: close its descriptor behind its back.
    fs.closeSync((wal as unknown as { fd: number }).fd);
    await expect(wal.append([entry(2)])).rejects.toThrow(/stopped accepting writes/);
    await expect(wal.append([entry(3)])).rejects.toThrow(/stopped accepting writes/);
  });
});
