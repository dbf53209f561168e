/**
 * Runs a stage's effects in order with persist barriers and group commit. Used by the node
 * driver and the TCP client alike.
 *
 * Invariants: an effect runs only after every barrier persist queued before it is durable
 * (a scoped persist, one with `then`, holds back only its own `then` effects);
 * persists reach the store in queue order, lazy ones included; persists queued while a write is
 * in flight are handed to the store together (one group commit).
 */
import type { Effect } from '../stages/types.ts';

/** Where persist effects go. */
export interface DurableWriter {
  /** `lazy`: nothing waits for this write, so the store may hold it for a later one. */
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[], lazy?: boolean): Promise<void>;
}

/** Ordered effect execution with persist barriers. */
export class EffectRunner {
  private readonly queue: Effect[] = [];
  /** Persists handed to the store (in queue order) and not yet passed by drain. */
  private readonly submitted = new Set<Effect>();
  /** Barrier persists whose write completed. */
  private readonly durable = new Set<Effect>();

  constructor(
    private readonly store: DurableWriter,
    private readonly execute: (e: Exclude<Effect, { kind: 'persist' }>) => void,
    private readonly onFatal: (e: unknown) => void,
  ) {}

  /** Queues effects and runs what the barriers allow. */
  run(effects: readonly Effect[]): void {
    if (effects.length === 0) return;
    this.queue.push(...effects);
    this.drain();
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const e = this.queue[0]!;
      if (e.kind !== 'persist') {
        this.queue.shift();
        this.execute(e);
        continue;
      }
      if (e.barrier !== false && !this.durable.has(e)) {
        // Blocked: hand every queued persist to the store now, in queue order, so they share
        // the group commit and no later write reaches the disk before an earlier one
        // (lazy ones included: a barrier record may name a body written lazily before it).
        this.submitQueued();
        return;
      }
      // A lazy persist is started here (if not already) and never waited for.
      if (!this.submitted.has(e)) this.submit(e);
      this.submitted.delete(e);
      this.durable.delete(e);
      this.queue.shift();
    }
  }

  private submitQueued(): void {
    for (const e of this.queue) if (e.kind === 'persist' && !this.submitted.has(e)) this.submit(e);
  }

  private submit(e: Extract<Effect, { kind: 'persist' }>): void {
    this.submitted.add(e);
    const lazy = e.barrier === false && (e.then === undefined || e.then.length === 0);
    const done = this.store.write(e.puts, e.deletes, lazy);
    done.then(
      () => {
        if (e.barrier === false) return;
        this.durable.add(e);
        this.drain();
      },
      (err: unknown) => {
        this.onFatal(err);
      },
    );
    if (e.then !== undefined && e.then.length > 0) {
      const then = e.then;
      done.then(
        () => {
          for (const t of then) this.execute(t);
        },
        () => undefined, // reported above
      );
    }
  }
}

/** A store that keeps writes in memory only (clients without a state directory, tests). */
export class MemoryWriter implements DurableWriter {
  readonly map = new Map<string, Uint8Array>();
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[]): Promise<void> {
    for (const [k, v] of puts) this.map.set(k, v);
    for (const k of deletes) this.map.delete(k);
    return Promise.resolve();
  }
}
