/**
 * Binary encoding of key-value operations and their outputs (the bytes inside a request and
 * a reply). Decoding is total: malformed bytes give a typed rejection, never an exception.
 */
import { bool, optional, str, tryDecodeWith, u8, uint, struct, Writer } from '../../codec/schema.ts';
import type { KvOp, KvOutput } from './model.ts';

/** Longest key in bytes. */
export const keyBytesMax = 1024;
/** Longest value in bytes. */
export const valueBytesMax = 60 * 1024;

const key = str(keyBytesMax);
const value = str(valueBytesMax);
const opTags = { get: 1, put: 2, del: 3, cas: 4, incr: 5 } as const;
const keyOnly = struct({ key });
const putBody = struct({ key, value });
const casBody = struct({ key, expected: optional(value), next: value });
const incrBody = struct({ key, negative: bool, magnitude: uint });

/** Encodes an operation. Throws RangeError when a key or value exceeds its limit. */
export function encodeKvOp(op: KvOp): Uint8Array {
  const w = new Writer(32 + op.key.length);
  w.u8(opTags[op.kind]);
  switch (op.kind) {
    case 'get':
    case 'del':
      keyOnly.encode(w, { key: op.key });
      break;
    case 'put':
      putBody.encode(w, { key: op.key, value: op.value });
      break;
    case 'cas':
      casBody.encode(w, { key: op.key, expected: op.expected ?? undefined, next: op.next });
      break;
    case 'incr':
      incrBody.encode(w, { key: op.key, negative: op.delta < 0, magnitude: Math.abs(op.delta) });
      break;
  }
  return w.finish();
}

/** Decodes an operation; undefined for malformed bytes. */
export function decodeKvOp(b: Uint8Array): KvOp | undefined {
  if (b.length === 0) return undefined;
  const tag = b[0];
  const body = b.subarray(1);
  switch (tag) {
    case opTags.get: {
      const r = tryDecodeWith(keyOnly, body);
      return r.ok ? { kind: 'get', key: r.value.key } : undefined;
    }
    case opTags.put: {
      const r = tryDecodeWith(putBody, body);
      return r.ok ? { kind: 'put', key: r.value.key, value: r.value.value } : undefined;
    }
    case opTags.del: {
      const r = tryDecodeWith(keyOnly, body);
      return r.ok ? { kind: 'del', key: r.value.key } : undefined;
    }
    case opTags.cas: {
      const r = tryDecodeWith(casBody, body);
      return r.ok ? { kind: 'cas', key: r.value.key, expected: r.value.expected ?? null, next: r.value.next } : undefined;
    }
    case opTags.incr: {
      const r = tryDecodeWith(incrBody, body);
      if (!r.ok) return undefined;
      if (r.value.negative && r.value.magnitude === 0) return undefined; // one encoding of zero
      return { kind: 'incr', key: r.value.key, delta: r.value.negative ? -r.value.magnitude : r.value.magnitude };
    }
    default:
      return undefined;
  }
}

const signedInt = struct({ negative: bool, magnitude: uint });
const outTags = { get: 1, put: 2, del: 3, cas: 4, incr: 5, error: 6 } as const;
const errorCodes = ['not_integer', 'overflow', 'bad_request'] as const;

/** Encodes an output. */
export function encodeKvOutput(o: KvOutput): Uint8Array {
  const w = new Writer(16);
  w.u8(outTags[o.kind]);
  switch (o.kind) {
    case 'get':
      optional(value).encode(w, o.value ?? undefined);
      break;
    case 'put':
      break;
    case 'del':
      bool.encode(w, o.existed);
      break;
    case 'cas':
      bool.encode(w, o.swapped);
      break;
    case 'incr':
      signedInt.encode(w, { negative: o.value < 0, magnitude: Math.abs(o.value) });
      break;
    case 'error':
      u8.encode(w, errorCodes.indexOf(o.code));
      break;
  }
  return w.finish();
}

/** Decodes an output; undefined for malformed bytes. */
export function decodeKvOutput(b: Uint8Array): KvOutput | undefined {
  if (b.length === 0) return undefined;
  const body = b.subarray(1);
  switch (b[0]) {
    case outTags.get: {
      const r = tryDecodeWith(optional(value), body);
      return r.ok ? { kind: 'get', value: r.value ?? null } : undefined;
    }
    case outTags.put:
      return body.length === 0 ? { kind: 'put' } : undefined;
    case outTags.del: {
      const r = tryDecodeWith(bool, body);
      return r.ok ? { kind: 'del', existed: r.value } : undefined;
    }
    case outTags.cas: {
      const r = tryDecodeWith(bool, body);
      return r.ok ? { kind: 'cas', swapped: r.value } : undefined;
    }
    case outTags.incr: {
      const r = tryDecodeWith(signedInt, body);
      if (!r.ok) return undefined;
      if (r.value.negative && r.value.magnitude === 0) return undefined; // one encoding of zero
      return { kind: 'incr', value: r.value.negative ? -r.value.magnitude : r.value.magnitude };
    }
    case outTags.error: {
      const r = tryDecodeWith(u8, body);
      const code = r.ok ? errorCodes[r.value] : undefined;
      return code === undefined ? undefined : { kind: 'error', code };
    }
    default:
      return undefined;
  }
}
