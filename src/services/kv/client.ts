/**
 * Typed client API of the replicated key-value store. It turns calls into encoded operations
 * and hands them to any `Invoker` (the simulator's client, the TCP client of the runtime).
 */
import { BulwarkError } from '../../core/errors.ts';
import type { KvOp, KvOutput } from './model.ts';
import { decodeKvOutput, encodeKvOp } from './ops.ts';

/** Something that can run an operation against the replicated service. */
export interface Invoker {
  /** Runs `op`; `readOnly` asks for the unordered read path. Resolves with the reply bytes. */
  invoke(op: Uint8Array, readOnly: boolean): Promise<Uint8Array>;
}

/** The store answered with an error (for example incr on a non-integer value). */
export class KvError extends BulwarkError {
  static override readonly name = 'KvError';
  constructor(code: string, message: string) {
    super(`kv_${code}`, message);
  }
}

/** Typed key-value client. */
export class KvClient {
  constructor(private readonly invoker: Invoker) {}

  /** Runs one operation and returns its decoded output. */
  async run(op: KvOp): Promise<KvOutput> {
    const reply = await this.invoker.invoke(encodeKvOp(op), op.kind === 'get');
    const out = decodeKvOutput(reply);
    if (out === undefined) throw new KvError('bad_reply', `undecodable reply to ${op.kind} ${JSON.stringify(op.key)}`);
    if (out.kind === 'error') throw new KvError(out.code, `${op.kind} ${JSON.stringify(op.key)} failed: ${out.code}`);
    if (out.kind !== op.kind) throw new KvError('bad_reply', `reply of kind ${out.kind} to ${op.kind}`);
    return out;
  }

  /** Value of `key`, or null when absent. */
  async get(key: string): Promise<string | null> {
    const o = await this.run({ kind: 'get', key });
    return o.kind === 'get' ? o.value : null;
  }

  /** Sets `key` to `value`. */
  async put(key: string, value: string): Promise<void> {
    await this.run({ kind: 'put', key, value });
  }

  /** Deletes `key`; true when it existed. */
  async del(key: string): Promise<boolean> {
    const o = await this.run({ kind: 'del', key });
    return o.kind === 'del' && o.existed;
  }

  /** Sets `key` to `next` only if its value is `expected` (null: absent); true when it did. */
  async cas(key: string, expected: string | null, next: string): Promise<boolean> {
    const o = await this.run({ kind: 'cas', key, expected, next });
    return o.kind === 'cas' && o.swapped;
  }

  /** Adds `delta` to the integer at `key` (absent counts as 0); returns the new value. */
  async incr(key: string, delta = 1): Promise<number> {
    const o = await this.run({ kind: 'incr', key, delta });
    if (o.kind !== 'incr') throw new KvError('bad_reply', 'incr reply without a value');
    return o.value;
  }
}
