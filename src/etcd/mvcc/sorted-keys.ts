/**
 * An ordered set of keys, kept as a list of sorted chunks so that inserting into 100k keys does not
 * move 100k array slots (a flat sorted array would), while range scans stay simple array walks.
 *
 * Keys are "binary strings": each byte of the etcd key is one UTF-16 code unit (latin1), so the
 * engine's `<` on strings is exactly etcd's byte-wise key order, and strings make cheap Map keys.
 */
const MAX_CHUNK = 512;

export class SortedKeys {
  private chunks: string[][] = [[]];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Inserts `key`; returns false when it was already present. */
  insert(key: string): boolean {
    const ci = this.chunkFor(key);
    const chunk = this.chunks[ci] as string[];
    const pos = lowerBound(chunk, key);
    if (chunk[pos] === key) return false;
    chunk.splice(pos, 0, key);
    this.count++;
    if (chunk.length > MAX_CHUNK) {
      this.chunks.splice(ci + 1, 0, chunk.splice(MAX_CHUNK / 2));
    }
    return true;
  }

  /** Removes `key`; returns false when it was absent. */
  delete(key: string): boolean {
    const ci = this.chunkFor(key);
    const chunk = this.chunks[ci] as string[];
    const pos = lowerBound(chunk, key);
    if (chunk[pos] !== key) return false;
    chunk.splice(pos, 1);
    this.count--;
    if (chunk.length === 0 && this.chunks.length > 1) this.chunks.splice(ci, 1);
    return true;
  }

  /**
   * Visits keys k with start <= k < end in order (end undefined: to the last key). The visitor
   * returns false to stop early. Mutating the set during a walk is not allowed.
   */
  walk(start: string, end: string | undefined, visit: (key: string) => boolean): void {
    const first = this.chunkFor(start);
    for (let ci = first; ci < this.chunks.length; ci++) {
      const chunk = this.chunks[ci] as string[];
      for (let i = ci === first ? lowerBound(chunk, start) : 0; i < chunk.length; i++) {
        const key = chunk[i] as string;
        if (end !== undefined && key >= end) return;
        if (!visit(key)) return;
      }
    }
  }

  /** The index of the chunk whose first key is the greatest one <= key (chunk 0 when none is). */
  private chunkFor(key: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const first = (this.chunks[mid] as string[])[0];
      if (first !== undefined && first <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(arr: readonly string[], key: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((arr[mid] as string) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
