/**
 * The application contract (UpRight Appendix B, in idiomatic TypeScript).
 *
 * A replicated application is a deterministic state machine. bulwark delivers it totally
 * ordered batches; every correct execution replica calls it with the same batches in the same
 * order and must get the same replies and the same checkpoints.
 *
 * Rules for implementers (thesis §7.1, APPS1-4):
 * - never read the wall clock or Math.random: use `batch.time` (agreed, strictly increasing
 *   across delivered batches) and a PRNG seeded with `batch.seed`;
 * - `execute` returns exactly one reply per request, in request order;
 * - `checkpoint()` is deterministic: two replicas that executed the same batches return the
 *   same bytes; `restore(checkpoint())` reproduces the state exactly;
 * - a thrown exception is a bug in the application; the replica stops (fail stop) rather than
 *   diverge from its peers.
 */

/** One client request inside a batch. */
export interface AppRequest {
  readonly client: number;
  readonly reqId: number;
  readonly op: Uint8Array;
}

/** A batch as delivered to the application. Only non-empty batches are delivered. */
export interface AppBatch {
  /** Sequence number of the batch in the total order (consecutive among all batches). */
  readonly seq: number;
  /** Agreed time in milliseconds; strictly increases from one delivered batch to the next. */
  readonly time: number;
  /** Agreed seed for the batch's pseudo-random numbers. */
  readonly seed: number;
  readonly requests: readonly AppRequest[];
}

/** A deterministic service replicated by bulwark. */
export interface ReplicatedApp {
  /** Executes a batch; returns one reply per request, in order. */
  execute(batch: AppBatch): Uint8Array[];
  /** Answers a read-only request from the current state without changing it. */
  executeReadOnly(op: Uint8Array): Uint8Array;
  /** Serialises the whole state deterministically. */
  checkpoint(): Uint8Array;
  /** Replaces the whole state with a checkpoint produced by `checkpoint()`. */
  restore(data: Uint8Array): void;
}

/** Creates a fresh application instance (one per execution replica, and on restart). */
export type AppFactory = () => ReplicatedApp;
