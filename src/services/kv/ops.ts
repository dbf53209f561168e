/**
 * Binary encoding of key-value operations and their outputs (the bytes inside a request and
 * a reply). Decoding is total: malformed bytes give a typed rejection, never an exception.
 */
import { array, bool, optional, str, tryDecodeWith, u8, u32, uint, struct, Writer, type Codec, type Reader } from '../../codec/schema.ts';
import { opBytesMax } from '../../codec/limits.ts';
import type { KvCommand, KvCommandOutput, KvExpiry, KvFailCode, KvOp, KvOutput, KvReply, KvRequest } from './model.ts';

/** Longest key in bytes. */
export const keyBytesMax = 1024;
/** Longest value in bytes. */
export const valueBytesMax = 60 * 1024;
/** Most keys in one command (MGET, MSET, DEL, EXISTS), and most commands in one multi. */
export const itemsMax = 0xffff;
/** Largest COUNT of one SCAN. */
export const scanCountMax = 0xffff;

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

// ---------------------------------------------------------------------------------------------
// Extended requests and replies (model.ts `KvRequest`, `KvReply`). Tags 1-5 (requests) and 1-6
// (replies) are the encodings above, byte for byte, so every request the five-op client sends is
// also a valid `KvRequest`; new kinds use tags from 10, and a multi uses tag 32. Decoding is
// total and canonical: an accepted body re-encodes to the same bytes.

const requestTags = { set: 10, mget: 11, mset: 12, delKeys: 13, exists: 14, append: 15, strlen: 16, dbsize: 17, type: 18, expire: 19, pttl: 20, scan: 21 } as const;
const replyTags = { set: 10, values: 11, int: 12, scan: 13, fail: 14 } as const;
const multiTag = 32;

/** The next byte, not consumed (the caller checked that one remains). */
function peekTag(r: Reader): number {
  const tag = r.u8();
  r.offset -= 1;
  return tag;
}
const whenCodes = ['always', 'nx', 'xx'] as const;
const expiryCodes = ['clear', 'keep', 'in', 'at'] as const;
const failCodes: readonly KvFailCode[] = ['too_large', 'reply_too_large', 'invalid_expire'];

/** A signed safe integer with one encoding of zero. */
const signed: Codec<number> = {
  desc: signedInt.desc,
  encode: (w, v) => {
    signedInt.encode(w, { negative: v < 0, magnitude: Math.abs(v) });
  },
  decode: (r) => {
    const s = signedInt.decode(r);
    if (s.negative && s.magnitude === 0) r.fail('negative zero');
    return s.negative ? -s.magnitude : s.magnitude;
  },
};
const keyList = array(key, itemsMax);
const entryList = array(struct({ key, value }), itemsMax);
const valueList = array(optional(value), itemsMax);
const match = optional(key);

function encodeExpiry(w: Writer, e: KvExpiry): void {
  w.u8(expiryCodes.indexOf(e.kind));
  if (e.kind === 'in' || e.kind === 'at') signed.encode(w, e.ms);
}

function decodeExpiry(r: Reader): KvExpiry {
  const kind = expiryCodes[r.u8()];
  if (kind === undefined) return r.fail('unknown expiry');
  if (kind === 'clear' || kind === 'keep') return { kind };
  return { kind, ms: signed.decode(r) };
}

function encodeCommand(w: Writer, c: KvCommand): void {
  switch (c.kind) {
    case 'get':
    case 'put':
    case 'del':
    case 'cas':
    case 'incr':
      w.raw(encodeKvOp(c));
      return;
    case 'set':
      w.u8(requestTags.set);
      key.encode(w, c.key);
      value.encode(w, c.value);
      w.u8(whenCodes.indexOf(c.when));
      bool.encode(w, c.get);
      encodeExpiry(w, c.expiry);
      return;
    case 'mget':
    case 'delKeys':
    case 'exists':
      w.u8(requestTags[c.kind]);
      keyList.encode(w, [...c.keys]);
      return;
    case 'mset':
      w.u8(requestTags.mset);
      entryList.encode(w, c.entries.map((e) => ({ key: e.key, value: e.value })));
      return;
    case 'append':
      w.u8(requestTags.append);
      key.encode(w, c.key);
      value.encode(w, c.value);
      return;
    case 'strlen':
    case 'type':
    case 'pttl':
      w.u8(requestTags[c.kind]);
      key.encode(w, c.key);
      return;
    case 'dbsize':
      w.u8(requestTags.dbsize);
      return;
    case 'expire':
      w.u8(requestTags.expire);
      key.encode(w, c.key);
      encodeExpiry(w, c.expiry);
      return;
    case 'scan':
      if (!Number.isInteger(c.count) || c.count < 1 || c.count > scanCountMax) throw new RangeError(`scan count out of range: ${c.count}`);
      w.u8(requestTags.scan);
      uint.encode(w, c.cursor);
      match.encode(w, c.match ?? undefined);
      u32.encode(w, c.count);
      return;
  }
}

function decodeCommand(r: Reader): KvCommand {
  const tag = r.u8();
  switch (tag) {
    case opTags.get:
    case opTags.del: {
      const k = key.decode(r);
      return tag === opTags.get ? { kind: 'get', key: k } : { kind: 'del', key: k };
    }
    case opTags.put: {
      const b = putBody.decode(r);
      return { kind: 'put', key: b.key, value: b.value };
    }
    case opTags.cas: {
      const b = casBody.decode(r);
      return { kind: 'cas', key: b.key, expected: b.expected ?? null, next: b.next };
    }
    case opTags.incr: {
      const b = incrBody.decode(r);
      if (b.negative && b.magnitude === 0) r.fail('negative zero');
      return { kind: 'incr', key: b.key, delta: b.negative ? -b.magnitude : b.magnitude };
    }
    case requestTags.set: {
      const k = key.decode(r);
      const v = value.decode(r);
      const when = whenCodes[r.u8()];
      if (when === undefined) r.fail('unknown set condition');
      const get = bool.decode(r);
      return { kind: 'set', key: k, value: v, when, get, expiry: decodeExpiry(r) };
    }
    case requestTags.mget:
      return { kind: 'mget', keys: keyList.decode(r) };
    case requestTags.delKeys:
      return { kind: 'delKeys', keys: keyList.decode(r) };
    case requestTags.exists:
      return { kind: 'exists', keys: keyList.decode(r) };
    case requestTags.mset:
      return { kind: 'mset', entries: entryList.decode(r) };
    case requestTags.append:
      return { kind: 'append', key: key.decode(r), value: value.decode(r) };
    case requestTags.strlen:
      return { kind: 'strlen', key: key.decode(r) };
    case requestTags.type:
      return { kind: 'type', key: key.decode(r) };
    case requestTags.pttl:
      return { kind: 'pttl', key: key.decode(r) };
    case requestTags.dbsize:
      return { kind: 'dbsize' };
    case requestTags.expire: {
      const k = key.decode(r);
      const expiry = decodeExpiry(r);
      if (expiry.kind !== 'in' && expiry.kind !== 'at') return r.fail('expire needs a time');
      return { kind: 'expire', key: k, expiry };
    }
    case requestTags.scan: {
      const cursor = uint.decode(r);
      const m = match.decode(r);
      const count = u32.decode(r);
      if (count < 1 || count > scanCountMax) r.fail(`scan count ${count}`);
      return { kind: 'scan', cursor, match: m ?? null, count };
    }
    default:
      return r.fail(`unknown command tag ${tag}`);
  }
}

const commandCodec: Codec<KvCommand> = { desc: { t: 'bytes', max: opBytesMax }, encode: encodeCommand, decode: decodeCommand };
const commandList = array(commandCodec, itemsMax);

/** Encodes a request. Throws RangeError when a key, value or count exceeds its limit. */
export function encodeKvRequest(req: KvRequest): Uint8Array {
  const w = new Writer(64);
  if (req.kind === 'multi') {
    w.u8(multiTag);
    commandList.encode(w, [...req.commands]);
  } else encodeCommand(w, req);
  return w.finish();
}

const requestCodec: Codec<KvRequest> = {
  desc: commandCodec.desc,
  encode: (w, v) => {
    w.raw(encodeKvRequest(v));
  },
  decode: (r) => {
    if (r.remaining > 0 && peekTag(r) === multiTag) {
      r.offset += 1;
      return { kind: 'multi', commands: commandList.decode(r) };
    }
    return decodeCommand(r);
  },
};

/** Decodes a request; undefined for malformed bytes (never throws). */
export function decodeKvRequest(b: Uint8Array): KvRequest | undefined {
  const res = tryDecodeWith(requestCodec, b);
  return res.ok ? res.value : undefined;
}

function encodeCommandOutput(w: Writer, o: KvCommandOutput): void {
  switch (o.kind) {
    case 'get':
    case 'put':
    case 'del':
    case 'cas':
    case 'incr':
    case 'error':
      w.raw(encodeKvOutput(o));
      return;
    case 'set':
      w.u8(replyTags.set);
      bool.encode(w, o.written);
      optional(value).encode(w, o.old ?? undefined);
      return;
    case 'values':
      w.u8(replyTags.values);
      valueList.encode(w, o.values.map((v) => v ?? undefined));
      return;
    case 'int':
      w.u8(replyTags.int);
      signed.encode(w, o.value);
      return;
    case 'scan':
      w.u8(replyTags.scan);
      uint.encode(w, o.cursor);
      keyList.encode(w, [...o.keys]);
      return;
    case 'fail':
      w.u8(replyTags.fail);
      w.u8(failCodes.indexOf(o.code));
      return;
  }
}

function decodeCommandOutput(r: Reader): KvCommandOutput {
  const tag = r.u8();
  switch (tag) {
    case outTags.get:
      return { kind: 'get', value: optional(value).decode(r) ?? null };
    case outTags.put:
      return { kind: 'put' };
    case outTags.del:
      return { kind: 'del', existed: bool.decode(r) };
    case outTags.cas:
      return { kind: 'cas', swapped: bool.decode(r) };
    case outTags.incr:
      return { kind: 'incr', value: signed.decode(r) };
    case outTags.error: {
      const code = errorCodes[r.u8()];
      return code === undefined ? r.fail('unknown error code') : { kind: 'error', code };
    }
    case replyTags.set:
      return { kind: 'set', written: bool.decode(r), old: optional(value).decode(r) ?? null };
    case replyTags.values:
      return { kind: 'values', values: valueList.decode(r).map((v) => v ?? null) };
    case replyTags.int:
      return { kind: 'int', value: signed.decode(r) };
    case replyTags.scan:
      return { kind: 'scan', cursor: uint.decode(r), keys: keyList.decode(r) };
    case replyTags.fail: {
      const code = failCodes[r.u8()];
      return code === undefined ? r.fail('unknown fail code') : { kind: 'fail', code };
    }
    default:
      return r.fail(`unknown reply tag ${tag}`);
  }
}

const outputCodec: Codec<KvCommandOutput> = { desc: commandCodec.desc, encode: encodeCommandOutput, decode: decodeCommandOutput };
const outputList = array(outputCodec, itemsMax);

/** Encodes the output of one command, without the multi wrapper. */
export function encodeKvCommandOutput(o: KvCommandOutput): Uint8Array {
  const w = new Writer(16);
  encodeCommandOutput(w, o);
  return w.finish();
}

/** Encodes a reply. */
export function encodeKvReply(reply: KvReply): Uint8Array {
  const w = new Writer(64);
  if (reply.kind === 'multi') {
    w.u8(multiTag);
    outputList.encode(w, [...reply.outputs]);
  } else encodeCommandOutput(w, reply);
  return w.finish();
}

const replyCodec: Codec<KvReply> = {
  desc: commandCodec.desc,
  encode: (w, v) => {
    w.raw(encodeKvReply(v));
  },
  decode: (r) => {
    if (r.remaining > 0 && peekTag(r) === multiTag) {
      r.offset += 1;
      return { kind: 'multi', outputs: outputList.decode(r) };
    }
    return decodeCommandOutput(r);
  },
};

/** Decodes a reply; undefined for malformed bytes (never throws). */
export function decodeKvReply(b: Uint8Array): KvReply | undefined {
  const res = tryDecodeWith(replyCodec, b);
  return res.ok ? res.value : undefined;
}

/** Bytes a multi request or reply adds around its commands or outputs (tag and count). */
export const multiReplyOverheadBytes = 3;

/**
 * A multi request from commands already encoded with `encodeKvRequest` (one command each, no
 * multi): the same bytes as `encodeKvRequest({ kind: 'multi', commands })`, without encoding
 * the commands again. Its length is 3 plus the sum of theirs.
 */
export function joinKvMulti(encoded: readonly Uint8Array[]): Uint8Array {
  if (encoded.length > itemsMax) throw new RangeError(`multi longer than ${itemsMax}: ${encoded.length}`);
  let length = multiReplyOverheadBytes;
  for (const e of encoded) length += e.length;
  const w = new Writer(length);
  w.u8(multiTag);
  w.u16(encoded.length);
  for (const e of encoded) w.raw(e);
  return w.finish();
}
