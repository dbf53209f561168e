/**
 * Assertions for internal invariants. A failed assertion is a bug in bulwark, never a
 * consequence of bad input: input from peers and clients is validated and dropped instead.
 * Assertions stay enabled in production; the driver stops the replica on one (fail stop).
 */

/** Thrown when an internal invariant does not hold. */
export class AssertionError extends Error {
  static override readonly name = 'AssertionError';
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

/** Asserts `cond`; throws AssertionError with `message` otherwise. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionError(message);
}

/** Marks a branch the type system proves unreachable. */
export function assertNever(value: never, what: string): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}

/** Documents that both outcomes of `cond` are legal here (TigerBeetle's `maybe`). Returns it. */
export function maybe(cond: boolean): boolean {
  return cond;
}
