/**
 * The replicated key-value store: a ReplicatedApp over string keys and values, with get, put,
 * delete, compare-and-set and increment. Semantics per key are model.ts's `applyKv`.
 *
 * Checkpoint format: u32 count, then (key, value) pairs sorted by key (deterministic).
 * A malformed request executes as a no-op with a `bad_request` error reply (deterministic on
 * every replica), never as an exception.
 */
import type { AppBatch, ReplicatedApp } from '../../app/contract.ts';
import { str, struct, tryDecodeWith, Writer, type Codec } from '../../codec/schema.ts';
import { applyKv, type KvOutput } from './model.ts';
import { decodeKvOp, encodeKvOutput, keyBytesMax, valueBytesMax } from './ops.ts';

const keyCodec = str(keyBytesMax);
const valueCodec = str(valueBytesMax);
const badRequest: KvOutput = { kind: 'error', code: 'bad_request' };

/** In-memory replicated key-value store. */
export class KvStore implements ReplicatedApp {
  private readonly data = new Map<string, string>();

  /** Number of keys. */
  get size(): number {
    return this.data.size;
  }

  /** Current value of a key (for tests and status). */
  peek(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  execute(batch: AppBatch): Uint8Array[] {
    return batch.requests.map((r) => {
      const op = decodeKvOp(r.op);
      if (op === undefined) return encodeKvOutput(badRequest);
      const { next, output } = applyKv(this.data.get(op.key) ?? null, op);
      if (next === null) this.data.delete(op.key);
      else this.data.set(op.key, next);
      return encodeKvOutput(output);
    });
  }

  executeReadOnly(opBytes: Uint8Array): Uint8Array {
    const op = decodeKvOp(opBytes);
    if (op?.kind !== 'get') return encodeKvOutput(badRequest);
    return encodeKvOutput(applyKv(this.data.get(op.key) ?? null, op).output);
  }

  checkpoint(): Uint8Array {
    const keys = [...this.data.keys()].sort();
    const w = new Writer(64 + keys.length * 32);
    w.u32(keys.length);
    for (const k of keys) {
      keyCodec.encode(w, k);
      valueCodec.encode(w, this.data.get(k)!);
    }
    return w.finish();
  }

  restore(data: Uint8Array): void {
    const res = tryDecodeWith(snapshotCodec, data);
    if (!res.ok) throw new Error(`kv checkpoint does not decode: ${res.error.message}`);
    this.data.clear();
    for (const [k, v] of res.value) this.data.set(k, v);
  }
}

/** Checkpoint layout: u32 count, then (key, value) pairs sorted by key. */
const snapshotCodec: Codec<[string, string][]> = {
  desc: { t: 'array', item: struct({ key: keyCodec, value: valueCodec }), max: 0xffff_ffff },
  encode: () => {
    throw new Error('use KvStore.checkpoint');
  },
  decode: (r) => {
    const n = r.u32();
    // Each entry takes at least 8 bytes (two lengths): a larger count is hostile.
    if (n > r.remaining / 8) r.fail(`entry count ${n} exceeds what ${r.remaining} bytes can hold`);
    const out: [string, string][] = [];
    for (let i = 0; i < n; i++) out.push([keyCodec.decode(r), valueCodec.decode(r)]);
    return out;
  },
};
