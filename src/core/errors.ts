/**
 * Public error classes. Every operating error (bad config, bad input from a peer, storage
 * failure) is one of these, with a stable `code` and a message that names the cause.
 *
 * Bugs are not errors: they are assertion failures (see assert.ts) and stop the replica.
 */

/** Base class of every bulwark error. `code` is stable and machine-readable. */
export class BulwarkError extends Error {
  static override readonly name: string = 'BulwarkError';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = (this.constructor as typeof BulwarkError).name;
  }
}

/** One broken field of a configuration, with the path that names it. */
export interface ConfigProblem {
  /** Dotted path to the field, e.g. `nodes[2].stages`. */
  readonly path: string;
  readonly message: string;
}

/** A configuration failed validation; `problems` lists every broken field and relation. */
export class ConfigError extends BulwarkError {
  static override readonly name = 'ConfigError';
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(
      'config_invalid',
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p.path}: ${p.message}`).join('\n'),
    );
    this.problems = problems;
  }
}

/** Bytes from the network or disk could not be decoded. Never thrown past the codec. */
export class DecodeError extends BulwarkError {
  static override readonly name = 'DecodeError';
  /** Byte offset at which decoding failed. */
  readonly offset: number;
  constructor(reason: string, offset: number) {
    super('decode_failed', `cannot decode: ${reason} (at byte ${offset})`);
    this.offset = offset;
  }
}

/** A durable record could not be read back: the replica must repair from peers or stop. */
export class StorageCorruptError extends BulwarkError {
  static override readonly name = 'StorageCorruptError';
  readonly key: string;
  constructor(key: string, reason: string) {
    super('storage_corrupt', `durable record "${key}" is corrupt: ${reason}`);
    this.key = key;
  }
}
