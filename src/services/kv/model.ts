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
