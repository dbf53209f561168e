/**
 * Trace hash of a simulation run: a rolling 64-bit (two 32-bit FNV-1a lanes) hash over every
 * processed event and the bytes of every delivered message. Two runs of one seed must end
 * with the same hash; a difference means something outside the seed (a clock, a Map order
 * that depends on timing, Math.random) leaked into the run.
 */

/** Rolling trace hash. */
export class Trace {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193;
  /** Number of entries folded in. */
  count = 0;

  private mixNumber(x: number): void {
    const lo = x >>> 0;
    const hi = Math.floor(x / 0x1_0000_0000) >>> 0;
    this.h1 = Math.imul(this.h1 ^ lo, 0x01000193) >>> 0;
    this.h2 = Math.imul(this.h2 ^ hi ^ this.h1, 0x01000193) >>> 0;
  }

  private mixString(s: string): void {
    for (let i = 0; i < s.length; i++) {
      this.h1 = Math.imul(this.h1 ^ s.charCodeAt(i), 0x01000193) >>> 0;
    }
    this.h2 = Math.imul(this.h2 ^ this.h1, 0x01000193) >>> 0;
  }

  /** Folds in an event without payload. */
  add(time: number, kind: string, who: string): void {
    this.count += 1;
    this.mixNumber(time);
    this.mixString(kind);
    this.mixString(who);
  }

  /** Folds in an event with payload bytes. */
  addBytes(time: number, kind: string, who: string, bytes: Uint8Array): void {
    this.add(time, kind, who);
    let h = this.h1;
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
    this.h1 = h;
    this.mixNumber(bytes.length);
  }

  /** Hex digest of everything folded in so far. */
  digest(): string {
    return this.h1.toString(16).padStart(8, '0') + this.h2.toString(16).padStart(8, '0');
  }
}
