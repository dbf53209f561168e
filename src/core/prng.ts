/**
 * Seeded pseudo-random generator for the simulator (xoshiro128**, seeded through splitmix32).
 * The same seed gives the same sequence on every platform. Probabilities are integer ratios
 * so no floating-point rounding can make two runs of a seed diverge.
 */

/** Deterministic PRNG. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0 || 0x9e3779b9;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    // Mix the high part of seeds above 2^32 too.
    const hi = Math.floor(seed / 0x1_0000_0000) >>> 0;
    this.a = next() ^ hi;
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** Uniform integer in [0, 2^32). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    const span = hi - lo + 1;
    return lo + (this.nextU32() % span);
  }

  /** True with probability num/den. */
  chance(num: number, den: number): boolean {
    return this.nextU32() % den < num;
  }

  /** A uniformly chosen element. */
  pick<T>(xs: readonly T[]): T {
    const x = xs[this.nextU32() % xs.length];
    if (x === undefined) throw new RangeError('pick from an empty list');
    return x;
  }

  /** Fisher-Yates shuffle of a copy. */
  shuffle<T>(xs: readonly T[]): T[] {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.nextU32() % (i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** A child generator with its own stream. */
  fork(): Prng {
    return new Prng(this.nextU32() * 0x10000 + (this.nextU32() & 0xffff));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
