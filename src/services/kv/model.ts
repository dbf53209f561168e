/**
 * Semantics of one key-value operation on one key, as a pure function. The replicated store
 * (store.ts) and the linearizability checker (sim/checkers/linearizability.ts) both use it, so
 * "what the store does" and "what the checker expects" cannot drift apart.
 *
 * Values are strings; a missing key is `null`. `incr` treats a missing key as 0 and fails
 * without a change when the stored value is not a decimal integer in the safe range.
 */

/** One operation on one key. */
export type KvOp =
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'del'; readonly key: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expected: string | null; readonly next: string }
  | { readonly kind: 'incr'; readonly key: string; readonly delta: number };

/** Output of an operation. */
export type KvOutput =
  | { readonly kind: 'get'; readonly value: string | null }
  | { readonly kind: 'put' }
  | { readonly kind: 'del'; readonly existed: boolean }
  | { readonly kind: 'cas'; readonly swapped: boolean }
  | { readonly kind: 'incr'; readonly value: number }
  | { readonly kind: 'error'; readonly code: 'not_integer' | 'overflow' | 'bad_request' };

const integerPattern = /^-?(0|[1-9][0-9]{0,15})$/;

/** Applies `op` to the current value of its key; returns the next value and the output. */
export function applyKv(current: string | null, op: KvOp): { next: string | null; output: KvOutput } {
  switch (op.kind) {
    case 'get':
      return { next: current, output: { kind: 'get', value: current } };
    case 'put':
      return { next: op.value, output: { kind: 'put' } };
    case 'del':
      return { next: null, output: { kind: 'del', existed: current !== null } };
    case 'cas':
      if (current === op.expected) return { next: op.next, output: { kind: 'cas', swapped: true } };
      return { next: current, output: { kind: 'cas', swapped: false } };
    case 'incr': {
      let base = 0;
      if (current !== null) {
        if (!integerPattern.test(current)) return { next: current, output: { kind: 'error', code: 'not_integer' } };
        base = Number(current);
        if (!Number.isSafeInteger(base)) return { next: current, output: { kind: 'error', code: 'not_integer' } };
      }
      const value = base + op.delta;
      if (!Number.isSafeInteger(value)) return { next: current, output: { kind: 'error', code: 'overflow' } };
      return { next: String(value), output: { kind: 'incr', value } };
    }
  }
}

/** True when the operation cannot change state (eligible for the read-only path). */
export function isReadOnly(op: KvOp): boolean {
  return op.kind === 'get';
}

/** Structural equality of two outputs. */
export function outputsEqual(a: KvOutput, b: KvOutput): boolean {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'get':
      return a.value === (b as typeof a).value;
    case 'put':
      return true;
    case 'del':
      return a.existed === (b as typeof a).existed;
    case 'cas':
      return a.swapped === (b as typeof a).swapped;
    case 'incr':
      return a.value === (b as typeof a).value;
    case 'error':
      return a.code === (b as typeof a).code;
  }
}

// ---------------------------------------------------------------------------------------------
// Commands beyond the five per-key operations: multi-key reads and writes, expiry, scans, and a
// `multi` request that runs a list of commands atomically, in order. The RESP gateway
// (resp/gateway.ts) speaks these. Their semantics depend on the whole store (several keys, the
// agreed batch time), so they live in store.ts rather than in a per-key function like applyKv.

/**
 * What a write does to the key's deadline. Deadlines are agreed times in milliseconds (the
 * `time` of the batch that executes the command), never a replica's clock.
 */
export type KvExpiry =
  /** Remove any deadline (a plain SET). */
  | { readonly kind: 'clear' }
  /** Keep the deadline the key has (SET ... KEEPTTL). */
  | { readonly kind: 'keep' }
  /** Expire `ms` after the batch time (EX, PX); may be <= 0 (EXPIRE with a past time deletes). */
  | { readonly kind: 'in'; readonly ms: number }
  /** Expire at agreed time `ms` (EXAT, PXAT). */
  | { readonly kind: 'at'; readonly ms: number };

/** One command of the extended set; the first five kinds are `KvOp` with unchanged meaning. */
export type KvCommand =
  | KvOp
  /** SET with its options: `when` nx/xx conditions, `get` returns the old value, `expiry`. */
  | { readonly kind: 'set'; readonly key: string; readonly value: string; readonly when: 'always' | 'nx' | 'xx'; readonly get: boolean; readonly expiry: KvExpiry }
  | { readonly kind: 'mget'; readonly keys: readonly string[] }
  | { readonly kind: 'mset'; readonly entries: readonly { readonly key: string; readonly value: string }[] }
  /** Deletes every key; the output counts those that existed (DEL k1 k2 ...). */
  | { readonly kind: 'delKeys'; readonly keys: readonly string[] }
  /** Counts the keys that exist, a key named twice counting twice (EXISTS). */
  | { readonly kind: 'exists'; readonly keys: readonly string[] }
  /** Appends to the value (absent: empty); the output is the new length in UTF-8 bytes. */
  | { readonly kind: 'append'; readonly key: string; readonly value: string }
  /** Length of the value in UTF-8 bytes, 0 when absent. */
  | { readonly kind: 'strlen'; readonly key: string }
  | { readonly kind: 'dbsize' }
  /** 1 when the key exists (a string), 0 when not. */
  | { readonly kind: 'type'; readonly key: string }
  /** Sets the deadline of an existing key (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT); output 1 or 0. */
  | { readonly kind: 'expire'; readonly key: string; readonly expiry: Extract<KvExpiry, { kind: 'in' | 'at' }> }
  /** Milliseconds left before the key expires; -1 without a deadline, -2 when absent. */
  | { readonly kind: 'pttl'; readonly key: string }
  /**
   * Up to `count` keys from `cursor` on, keeping those matching the glob `match` (Redis syntax).
   * Keys are visited in order of a fixed 32-bit hash, and the cursor is the next hash to visit
   * (0: start, and 0 again when done), so a key present for the whole scan is returned at least
   * once and never twice.
   */
  | { readonly kind: 'scan'; readonly cursor: number; readonly match: string | null; readonly count: number };

/** Why a command failed without changing anything (beyond the per-key `KvOutput` errors). */
export type KvFailCode =
  /** A value would exceed the longest value the store keeps (APPEND). */
  | 'too_large'
  /** The reply would not fit in one reply body; the command did not run. */
  | 'reply_too_large'
  /** The deadline is not a safe integer once the batch time is added. */
  | 'invalid_expire';

/** Output of one command. */
export type KvCommandOutput =
  | KvOutput
  /** SET: `written` false when nx/xx prevented it; `old` is the previous value when `get` was asked. */
  | { readonly kind: 'set'; readonly written: boolean; readonly old: string | null }
  | { readonly kind: 'values'; readonly values: readonly (string | null)[] }
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'scan'; readonly cursor: number; readonly keys: readonly string[] }
  | { readonly kind: 'fail'; readonly code: KvFailCode };

/** A request body of the store: one command, or several run atomically in order. */
export type KvRequest = KvCommand | { readonly kind: 'multi'; readonly commands: readonly KvCommand[] };

/** A reply body of the store: the output of one command, or one output per command of a multi. */
export type KvReply = KvCommandOutput | { readonly kind: 'multi'; readonly outputs: readonly KvCommandOutput[] };

/** True when the command never changes state (expired keys aside, which are absent either way). */
export function commandIsRead(cmd: KvCommand): boolean {
  switch (cmd.kind) {
    case 'get':
    case 'mget':
    case 'exists':
    case 'strlen':
    case 'dbsize':
    case 'type':
    case 'pttl':
    case 'scan':
      return true;
    default:
      return false;
  }
}
