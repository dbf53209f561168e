/**
 * Runs a stage's effects in order with persist barriers and group commit. Used by the node
 * driver and the TCP client alike.
 *
 * Invariant: an effect runs only after every persist queued before it is durable; persists
 * queued while a write is in flight are handed to the store together (one group commit).
 */
import type { Effect } from '../stages/types.ts';

/** Where persist effects go. */
export interface DurableWriter {
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[]): Promise<void>;
}

/** Ordered effect execution with persist barriers. */
export class EffectRunner {
  private readonly queue: Effect[] = [];
  private readonly submitted = new Set<Effect>();
  private readonly durable = new Set<Effect>();

  constructor(
    private readonly store: DurableWriter,
    private readonly execute: (e: Exclude<Effect, { kind: 'persist' }>) => void,
    private readonly onFatal: (e: unknown) => void,
    private readonly onDurable?: () => void,
  ) {}

  /** Queues effects and runs what the barriers allow. */
  run(effects: readonly Effect[]): void {
    if (effects.length === 0) return;
    this.queue.push(...effects);
    this.drain();
  }

  /** Effects waiting behind a barrier. */
  get backlog(): number {
    return this.queue.length;
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const e = this.queue[0]!;
      if (e.kind === 'persist' && e.barrier === false) {
        // Started now, never waited for.
        this.queue.shift();
        this.store.write(e.puts, e.deletes).then(
          () => this.onDurable?.(),
          (err: unknown) => {
            this.onFatal(err);
          },
        );
        continue;
      }
      if (e.kind === 'persist') {
        if (!this.durable.has(e)) {
          this.submit();
          return;
        }
        this.durable.delete(e);
        this.queue.shift();
        continue;
      }
      this.queue.shift();
      this.execute(e);
    }
  }

  private submit(): void {
    for (const e of this.queue) {
      if (e.kind !== 'persist' || e.barrier === false || this.submitted.has(e)) continue;
      this.submitted.add(e);
      this.store.write(e.puts, e.deletes).then(
        () => {
          this.submitted.delete(e);
          this.durable.add(e);
          this.onDurable?.();
          this.drain();
        },
        (err: unknown) => {
          this.onFatal(err);
        },
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
