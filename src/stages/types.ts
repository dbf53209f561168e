/**
 * The contract between a pure stage state machine and the runtime that drives it
 * (the simulator or the Node driver).
 *
 * `step(event)` is synchronous, reads no clock, does no I/O, and returns effects. The driver
 * executes the effects in order:
 * - `send`: encode and send the message to each recipient (the driver authenticates the
 *   channel between nodes; client-facing authenticators are inside the messages);
 * - `persist`: apply the writes to this stage's durable store. A persist is a BARRIER: the
 *   effects after it run only once the write is durable. A crash before that loses the write
 *   and every effect behind it, never a subset of effects that depended on it;
 * - `result`: hand a completed client operation to the caller (client stage only);
 * - `note`: an observation for metrics, logs and the simulator's checkers; no protocol meaning.
 */
import type { Batch, Message } from '../codec/messages.ts';
import type { Principal } from '../crypto/provider.ts';

/** Input to a stage. `now` is milliseconds on the driver's clock (virtual in the simulator). */
export type StageEvent =
  | { readonly kind: 'message'; readonly from: Principal; readonly msg: Message; readonly now: number }
  | { readonly kind: 'tick'; readonly now: number };

/** Durable writes of one stage: keys are stage-local names, values opaque bytes. */
export interface PersistEffect {
  readonly kind: 'persist';
  readonly puts: readonly (readonly [string, Uint8Array])[];
  readonly deletes: readonly string[];
  /**
   * False for writes nothing later depends on (they may become durable after the effects behind
   * them run, and may be lost by a crash): drivers start them but do not wait.
   */
  readonly barrier?: boolean;
  /**
   * A scoped barrier (with `barrier: false`): these effects run once this write is durable;
   * nothing else waits for it. Only sends and notes.
   */
  readonly then?: readonly ScopedEffect[];
}

/** What may wait behind a scoped barrier. */
export type ScopedEffect = { readonly kind: 'send'; readonly to: readonly Principal[]; readonly msg: Message } | { readonly kind: 'note'; readonly note: Note };

/** Observation emitted by a stage (metrics, logs, checkers). */
export type Note =
  | {
      readonly type: 'executed';
      readonly seq: number;
      readonly history: Uint8Array;
      readonly batchDigest: Uint8Array;
      /** The agreed batch. */
      readonly batch: Batch;
      /** Time delivered to the application (when any request ran). */
      readonly time: number;
      /** Requests that ran (duplicates skipped) and their replies. */
      readonly results: readonly { readonly client: number; readonly reqId: number; readonly result: Uint8Array }[];
    }
  | { readonly type: 'checkpointTaken'; readonly seq: number; readonly token: Uint8Array }
  | { readonly type: 'checkpointLoaded'; readonly seq: number; readonly token: Uint8Array }
  | { readonly type: 'committed'; readonly seq: number; readonly view: number; readonly digest: Uint8Array }
  | { readonly type: 'stable'; readonly seq: number }
  | { readonly type: 'viewChangeStarted'; readonly view: number; readonly reason: string }
  | { readonly type: 'primarySuspected'; readonly view: number; readonly reason: string; readonly suspects: number; readonly needed: number }
  | { readonly type: 'viewEntered'; readonly view: number; readonly primary: number }
  | { readonly type: 'rejected'; readonly reason: string; readonly from: Principal }
  | { readonly type: 'safetyAlarm'; readonly detail: string };

/** Output of a stage. */
export type Effect =
  | { readonly kind: 'send'; readonly to: readonly Principal[]; readonly msg: Message }
  | PersistEffect
  /**
   * The outcome of a client call. `refused` (no reply exists): the call never left the client,
   * because its operation is larger than requestBytesMax or the client's queue was full.
   */
  | { readonly kind: 'result'; readonly callId: number; readonly reqId: number; readonly result: Uint8Array; readonly readOnly: boolean; readonly refused?: 'op_too_large' | 'client_queue_full' }
  | { readonly kind: 'note'; readonly note: Note };

/** Planted protocol bugs, switched on only by the simulator's canary mode. */
export type CanaryName =
  | 'commitQuorumSmall'
  | 'skipHistoryCheck'
  | 'clientAcceptsOneReply'
  | 'noPersistBeforeSend'
  | 'duplicateExecution'
  | 'cpTokenWithoutQuorum'
  | 'viewChangeIgnoresPrepared'
  | 'readWithoutQuorum';

/** Every canary, with what it breaks. */
export const canaryCatalogue: Readonly<Record<CanaryName, string>> = {
  commitQuorumSmall: 'order stage prepares and commits on a medium quorum minus one',
  skipHistoryCheck: 'execution takes batch contents without checking them against the agreed history hash',
  clientAcceptsOneReply: 'client accepts the first reply instead of r+1 matching ones',
  noPersistBeforeSend: 'persist is not a barrier: sends behind a write leave before it is durable',
  duplicateExecution: 'a retried request ordered twice is executed twice (no per-client dedup)',
  cpTokenWithoutQuorum: 'order stage adopts an execution checkpoint token from one executor',
  viewChangeIgnoresPrepared: 'the new primary ignores prepared batches and proposes null batches',
  readWithoutQuorum: 'read-only path accepts r+1 matching replies instead of all executors',
};

/** Set of active canaries; empty in every real deployment. */
export type Canaries = ReadonlySet<CanaryName>;

/** Deterministic random source handed to a stage (seeded by the driver). */
export interface RandomSource {
  /** Uniform integer in [0, 2^32). */
  nextU32(): number;
}

/** A stage state machine. */
export interface Stage {
  step(ev: StageEvent): Effect[];
}
