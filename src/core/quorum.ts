/**
 * Replica counts and quorum sizes of UpRight's u/r fault model (thesis Table 6.1, §6.2.1).
 *
 * `u`: faults of any kind tolerated while staying live ("up").
 * `r`: commission (Byzantine) faults tolerated while staying safe ("right").
 *
 * Invariants (checked by tests and by `quorums`):
 * - two medium quorums of a stage of n >= 2u+r+1 intersect in at least r+1 replicas,
 *   so in at least one correct replica;
 * - a medium quorum is reachable with u replicas down: n - u >= medium;
 * - any r+1 replicas include a correct one.
 */

/** Minimum replica count of each stage for a given (u, r). */
export interface StageCounts {
  /** Authentication stage: u + max(u,r) + r + 1 (indirect learning, one-step transferable). */
  readonly auth: number;
  /** Order stage: 2u + r + 1 (multi-proposer consensus). */
  readonly order: number;
  /** Execution stage: u + max(u,r) + 1 (single correct proposer, tokens learned indirectly). */
  readonly exec: number;
}

/** Minimum replicas per stage (UpRight thesis Table 6.1). */
export function stageCounts(u: number, r: number): StageCounts {
  const m = Math.max(u, r);
  return { auth: u + m + r + 1, order: 2 * u + r + 1, exec: u + m + 1 };
}

/** Quorum sizes within one stage of `n` replicas. */
export interface Quorums {
  /** r + 1: contains at least one correct replica. */
  readonly small: number;
  /** n - u: reachable with u replicas down; two of them share a correct replica. */
  readonly medium: number;
  /** n: every replica. */
  readonly large: number;
}

/** Quorum sizes of a stage of `n` replicas under (u, r) (thesis §6.2.1, digest D7.1). */
export function quorums(n: number, u: number, r: number): Quorums {
  return { small: r + 1, medium: n - u, large: n };
}

/** Number of replicas in which any two sets of sizes a and b out of n must overlap. */
export function minOverlap(n: number, a: number, b: number): number {
  return Math.max(0, a + b - n);
}
