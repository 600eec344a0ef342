/**
 * When a member takes its next snapshot.
 *
 * etcd snapshots once `--snapshot-count` entries were applied since the last snapshot. Here every
 * member of a cluster would then snapshot at the same entry, and a snapshot of ours is the whole
 * store encoded (100,000 small revisions: ~11 MB, 0.2–0.7 s of wall time on a 2-core machine):
 * three members doing it at once held the slowest 0.1% of puts at 128 clients for 150–280 ms
 * (etcd's: ~90–110 ms). So voters take turns. With voters sorted by ID, the one of rank r > 0
 * snapshots once at least `snapshotCount` entries were applied since its last snapshot and the
 * applied index lies in its window: the `unit` entries that start r × unit past a multiple of
 * `snapshotCount`, unit = ⌊snapshotCount / (4 × voters)⌋; or, if it missed its window (a batch
 * of entries applied at once jumped over it), once twice `snapshotCount` were applied. The first
 * voter, a lone member, a learner, and every member when the unit is 0 snapshot as etcd does.
 *
 *   snapshotCount 40, voters [a, b, c] (sorted), unit ⌊40 / 12⌋ = 3:
 *     a at 40, 80, 120, ...    b in [43, 46): 43, 83, ...    c in [46, 49): 46, 86, ...
 *   b after installing a snapshot at 55 from the leader: not at 95 (outside its window) but at 123.
 */
export function snapshotDue(
  applied: number,
  snapshotIndex: number,
  snapshotCount: number,
  memberId: bigint,
  voters: readonly bigint[],
): boolean {
  const since = applied - snapshotIndex;
  if (since < snapshotCount) return false;
  const unit = Math.floor(snapshotCount / (4 * voters.length));
  const phase = rankOf(memberId, voters) * unit;
  if (phase === 0 || since >= 2 * snapshotCount) return true;
  // applied ≥ snapshotCount > phase here: the remainder is never negative.
  return (applied - phase) % snapshotCount < unit;
}

/** Where this member's window starts, past each multiple of `snapshotCount` (see above). */
export function snapshotPhase(snapshotCount: number, memberId: bigint, voters: readonly bigint[]): number {
  return rankOf(memberId, voters) * Math.floor(snapshotCount / (4 * voters.length));
}

/** The member's place among the voters sorted by ID; 0 when it is not a voter. */
function rankOf(memberId: bigint, voters: readonly bigint[]): number {
  if (!voters.includes(memberId)) return 0;
  return voters.filter((v) => v < memberId).length;
}
