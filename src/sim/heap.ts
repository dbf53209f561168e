/**
 * Binary min-heap of simulator events ordered by (time, insertion order). The insertion
 * counter makes ties deterministic.
 */

/** A scheduled event. */
export interface Scheduled<T> {
  readonly time: number;
  readonly order: number;
  readonly item: T;
}

/** Min-heap keyed by (time, order). */
export class EventHeap<T> {
  private readonly xs: Scheduled<T>[] = [];
  private counter = 0;

  get size(): number {
    return this.xs.length;
  }

  push(time: number, item: T): void {
    const e: Scheduled<T> = { time, order: this.counter++, item };
    const xs = this.xs;
    xs.push(e);
    let i = xs.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(xs[i]!, xs[p]!)) break;
      [xs[i], xs[p]] = [xs[p]!, xs[i]!];
      i = p;
    }
  }

  pop(): Scheduled<T> | undefined {
    const xs = this.xs;
    if (xs.length === 0) return undefined;
    const top = xs[0]!;
    const last = xs.pop()!;
    if (xs.length > 0) {
      xs[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < xs.length && less(xs[l]!, xs[m]!)) m = l;
        if (r < xs.length && less(xs[r]!, xs[m]!)) m = r;
        if (m === i) break;
        [xs[i], xs[m]] = [xs[m]!, xs[i]!];
        i = m;
      }
    }
    return top;
  }

  peekTime(): number | undefined {
    return this.xs[0]?.time;
  }
}

function less<T>(a: Scheduled<T>, b: Scheduled<T>): boolean {
  return a.time < b.time || (a.time === b.time && a.order < b.order);
}
