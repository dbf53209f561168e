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
 * - `snapshot()` (optional, for large states) freezes the state as of now and hands out the
 *   same bytes `checkpoint()` would return, piece by piece, while `execute` keeps changing the
 *   live state (copy-on-write). bulwark reads a snapshot in slices between batches, so a large
 *   checkpoint never stops the event loop for long; without it, bulwark calls `checkpoint()`;
 * - `pagedSnapshot()` (optional, incremental checkpoints) is a snapshot cut into pages whose
 *   boundaries depend on the state only; a page that did not change since the previous
 *   `pagedSnapshot()` comes back as null, and bulwark reuses that page's bytes, hash and file
 *   from the previous checkpoint instead of serialising, hashing and writing it again. The pages
 *   concatenated equal `checkpoint()`;
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
  /**
   * Optional: freezes the current state and returns a reader of its checkpoint bytes. The
   * concatenation of everything `read` returns equals what `checkpoint()` returns at this
   * moment, whatever `execute` does meanwhile. Several snapshots may be open at once; `restore`
   * may be called only when none is.
   */
  snapshot?(): AppSnapshot;
  /**
   * Optional: like `snapshot()`, but handed out page by page, with unchanged pages left out
   * (see `AppPagedSnapshot`). The first call, the first after `restore`, and any call whose page
   * count differs from the previous one's must return every page. bulwark takes paged snapshots
   * at the same sequence numbers on every replica, so which pages are null is deterministic
   * too; it never reads them out of order and finishes one before it reads the next.
   */
  pagedSnapshot?(): AppPagedSnapshot;
}

/** A frozen state handed out page by page (see `ReplicatedApp.pagedSnapshot`). */
export interface AppPagedSnapshot {
  /**
   * The next page: its bytes; null when it equals, byte for byte, the page at the same position
   * in the previous paged snapshot; undefined once every page was returned. Page boundaries are a
   * function of the frozen state, so two replicas with the same state cut the same pages.
   */
  nextPage(): Uint8Array | null | undefined;
  /** Ends the snapshot; the application stops keeping the frozen state. Idempotent. */
  close(): void;
}

/** A frozen state being serialised (see `ReplicatedApp.snapshot`). */
export interface AppSnapshot {
  /**
   * The next piece of the checkpoint: non-empty, about `hint` bytes (it may be longer to finish
   * an entry), or undefined once everything was returned.
   */
  read(hint: number): Uint8Array | undefined;
  /** Ends the snapshot; the application stops keeping the frozen state. Idempotent. */
  close(): void;
}

/**
 * A snapshot over bytes already serialised (what bulwark uses for applications without
 * `snapshot()`): returns slices of `data`.
 */
export function bytesSnapshot(data: Uint8Array): AppSnapshot {
  let off = 0;
  return {
    read(hint: number): Uint8Array | undefined {
      if (off >= data.length) return undefined;
      const end = Math.min(data.length, off + Math.max(1, hint));
      const piece = data.subarray(off, end);
      off = end;
      return piece;
    },
    close(): void {
      off = data.length;
    },
  };
}

/** Creates a fresh application instance (one per execution replica, and on restart). */
export type AppFactory = () => ReplicatedApp;
