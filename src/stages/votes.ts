/**
 * Vote counting shared by the stages: per round (a sequence number), each voter backs at most
 * one value; values are keyed by a string (usually a digest in hex). A second vote of the same
 * voter for another value in the same round is ignored, so a Byzantine voter counts once.
 *
 * Invariant: for every round, the voter sets of its values are disjoint.
 */

/** A value and the voters backing it. */
export interface Tally<V> {
  readonly value: V;
  readonly voters: ReadonlySet<number>;
}

/** Votes per round and value. */
export class VoteTable<V> {
  private readonly rounds = new Map<number, Map<string, { value: V; voters: Set<number> }>>();
  private readonly voted = new Map<number, Map<number, string>>();

  /**
   * Records `voter`'s vote for `value` (keyed `key`) in `round`. Returns the tally of the value
   * the voter backs in that round (its first vote wins).
   */
  add(round: number, key: string, value: V, voter: number): Tally<V> {
    let byVoter = this.voted.get(round);
    let byKey = this.rounds.get(round);
    if (byVoter === undefined || byKey === undefined) {
      byVoter = new Map();
      byKey = new Map();
      this.voted.set(round, byVoter);
      this.rounds.set(round, byKey);
    }
    const earlier = byVoter.get(voter);
    if (earlier !== undefined) return byKey.get(earlier)!;
    let tally = byKey.get(key);
    if (tally === undefined) {
      tally = { value, voters: new Set() };
      byKey.set(key, tally);
    }
    tally.voters.add(voter);
    byVoter.set(voter, key);
    return tally;
  }

  /** Tallies of a round, in first-vote order. */
  tallies(round: number): Tally<V>[] {
    return [...(this.rounds.get(round)?.values() ?? [])];
  }

  /** The tally of one value in a round. */
  get(round: number, key: string): Tally<V> | undefined {
    return this.rounds.get(round)?.get(key);
  }

  /** Forgets one round. */
  delete(round: number): void {
    this.rounds.delete(round);
    this.voted.delete(round);
  }

  /** Forgets every round <= `round`. */
  deleteUpTo(round: number): void {
    for (const r of [...this.rounds.keys()]) if (r <= round) this.delete(r);
  }

  /** Forgets every round < `round`. */
  deleteBelow(round: number): void {
    this.deleteUpTo(round - 1);
  }

  /** Number of rounds with votes. */
  get size(): number {
    return this.rounds.size;
  }
}
