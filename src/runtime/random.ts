/** RandomSource for the real runtime: the OS random source, read in blocks. */
import { randomBytes } from 'node:crypto';
import type { RandomSource } from '../stages/types.ts';

/** Cryptographically random u32s from a refilled buffer. */
export class OsRandom implements RandomSource {
  private buf = randomBytes(4096);
  private off = 0;
  nextU32(): number {
    if (this.off + 4 > this.buf.length) {
      this.buf = randomBytes(4096);
      this.off = 0;
    }
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
}

/** Monotonic milliseconds that start near the wall clock (batch times stay meaningful). */
export function monotonicClock(): () => number {
  const wall = Date.now();
  const start = performance.now();
  return () => wall + (performance.now() - start);
}
