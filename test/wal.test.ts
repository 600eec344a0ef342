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

  it("truncates a torn last record with a warning, and appends after it", async () => {
    const dir = tempDir("wal");
    await writeEntries(dir, 10);
    const file = path.join(dir, segments(dir)[0] as string);
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 5); // the crash cut the last record short
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
    fs.appendFileSync(file, Buffer.from([0x10, 0, 0, 0, 1, 2, 3]));
    const { wal, contents } = Wal.open(dir, { fsync: true });
    expect(contents.entries).toHaveLength(3);
    expect(contents.warnings).toHaveLength(1);
    await wal.close();
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
