/**
 * The replicated key-value store: a ReplicatedApp over string keys and values. It runs the five
 * per-key operations of model.ts (`applyKv`: get, put, delete, compare-and-set, increment) and
 * the extended commands (`KvCommand`: SET with options, MGET, MSET, multi-key DEL and EXISTS,
 * APPEND, STRLEN, DBSIZE, TYPE, EXPIRE, PTTL, SCAN), alone or as a `multi` request that runs a
 * list of commands atomically, in order, with one output each.
 *
 * Expiry uses agreed time only. `now` is the `time` of the batch being executed (the same on
 * every replica); a key whose deadline is <= `now` is absent. Expired keys are removed lazily
 * when a command touches them, and a bounded sweep per batch removes a few more. Which expired
 * entries are physically present may differ between replicas (one restored from a checkpoint,
 * one did not), but nothing observable depends on it: every read checks the deadline, `size`
 * and DBSIZE count live keys, and checkpoints hold live keys only.
 *
 * Checkpoint formats (both sorted by key, so equal states give equal bytes):
 * - v1, written when no live key has a deadline (byte for byte the format before expiry
 *   existed): u32 count, then (key, value) pairs;
 * - v2: u32 0xfffffffe (a v1 count that no v1 checkpoint can have), uint `now`, u32 count, then
 *   (key, value, optional uint deadline) triples.
 * `restore` reads both.
 *
 * Snapshots (`snapshot()`, for large states): the sorted list of live keys is taken at once;
 * entries are encoded later, piece by piece. Copy-on-write keeps them exact: before a key's
 * value or deadline changes, every open snapshot that has not yet saved the key saves its
 * pre-image, and reads it from there. `checkpoint()` is a snapshot read in one go, so both
 * produce the same bytes by construction.
 *
 * Replies fit one reply body (`replyBytesMax`): a read whose output would not fit, or a write
 * started when the rest of the budget could not hold its largest output, answers
 * `reply_too_large` and changes nothing. A malformed request executes as a no-op with a
 * `bad_request` reply (deterministic on every replica), never as an exception.
 */
import type { AppBatch, AppSnapshot, ReplicatedApp } from '../../app/contract.ts';
import { opBytesMax } from '../../codec/limits.ts';
import { optional, str, struct, tryDecodeWith, u32, uint, Writer, type Codec } from '../../codec/schema.ts';
import { assert } from '../../core/assert.ts';
import { BulwarkError } from '../../core/errors.ts';
import { Glob } from './glob.ts';
import { applyKv, commandIsRead, type KvCommand, type KvCommandOutput, type KvExpiry, type KvOp, type KvOutput, type KvRequest } from './model.ts';
import { decodeKvOp, decodeKvRequest, encodeKvCommandOutput, encodeKvOutput, joinKvMulti, keyBytesMax, multiReplyOverheadBytes, valueBytesMax } from './ops.ts';

const keyCodec = str(keyBytesMax);
const valueCodec = str(valueBytesMax);
const badRequest: KvOutput = { kind: 'error', code: 'bad_request' };
const utf8 = new TextEncoder();

/** Largest reply body the store produces (the wire limit of a reply). */
export const replyBytesMax = opBytesMax;
/** Largest output of any writing command (SET ... GET returns one old value). */
const writeOutputBytesMax = valueBytesMax + 64;
/** The encoded output of a command whose reply would not fit (encoded once). */
const tooLargeOutput = encodeKvCommandOutput({ kind: 'fail', code: 'reply_too_large' });
/** Deadline entries the per-batch sweep examines. */
const sweepMax = 32;
/** First u32 of a v2 checkpoint. */
const v2Magic = 0xffff_fffe;

/** A checkpoint handed to `KvStore.restore` does not decode; the store is left unchanged. */
export class KvCheckpointError extends BulwarkError {
  static override readonly name = 'KvCheckpointError';
  constructor(reason: string) {
    super('kv_bad_checkpoint', `kv checkpoint does not decode: ${reason}`);
  }
}

/** A key's value and deadline before the first change after a snapshot was taken. */
type PreImage = { readonly value: string | undefined; readonly deadline: number | undefined };

/** Bytes of checkpoint each `checkpoint()` piece covers (one snapshot read). */
const checkpointPieceBytes = 1 << 20;

/** In-memory replicated key-value store with deterministic expiry. */
export class KvStore implements ReplicatedApp {
  private readonly data = new Map<string, string>();
  /** Pre-images per open snapshot (copy-on-write); usually empty. */
  private readonly frozen = new Set<Map<string, PreImage>>();
  /**
   * Deadline (agreed ms) per key that has one.
   * Invariant: every key here is also in `data`.
   */
  private readonly deadlines = new Map<string, number>();
  /** Agreed time of the batch being executed, or of the last one (0 before any). */
  private now = 0;

  /** Number of live keys (at the time of the last batch). */
  get size(): number {
    let expired = 0;
    for (const d of this.deadlines.values()) if (d <= this.now) expired++;
    return this.data.size - expired;
  }

  /** Current value of a key, null when absent or expired (for tests and status). */
  peek(key: string): string | null {
    const d = this.deadlines.get(key);
    if (d !== undefined && d <= this.now) return null;
    return this.data.get(key) ?? null;
  }

  /** Deadline of a live key, null when it has none or is absent (for tests). */
  peekDeadline(key: string): number | null {
    return this.peek(key) === null ? null : (this.deadlines.get(key) ?? null);
  }

  execute(batch: AppBatch): Uint8Array[] {
    assert(batch.time >= this.now, 'batch times never go back');
    this.now = batch.time;
    this.sweep();
    return batch.requests.map((r) => this.executeOne(r.op));
  }

  private executeOne(opBytes: Uint8Array): Uint8Array {
    const req: KvRequest | undefined = decodeKvRequest(opBytes);
    if (req === undefined) return encodeKvOutput(badRequest);
    if (req.kind !== 'multi') return this.runWithin(req, replyBytesMax);
    let budget = replyBytesMax - multiReplyOverheadBytes;
    const outputs: Uint8Array[] = [];
    for (const c of req.commands) {
      const encoded = this.runWithin(c, budget);
      budget -= encoded.length;
      outputs.push(encoded);
    }
    // Tag, count, and the outputs as they were encoded: the bytes of encodeKvReply(multi).
    const reply = joinKvMulti(outputs);
    assert(reply.length <= replyBytesMax, 'a multi reply fits its budget');
    return reply;
  }

  /** Runs a command; returns its encoded output, which takes at most `budget` bytes. */
  private runWithin(c: KvCommand, budget: number): Uint8Array {
    const read = commandIsRead(c);
    if (!read && budget < writeOutputBytesMax) return tooLargeOutput;
    const encoded = encodeKvCommandOutput(this.run(c));
    if (encoded.length <= budget) return encoded;
    assert(read, 'a write started within budget has an output that fits');
    return tooLargeOutput;
  }

  executeReadOnly(opBytes: Uint8Array): Uint8Array {
    const op = decodeKvOp(opBytes);
    if (op?.kind !== 'get') return encodeKvOutput(badRequest);
    return encodeKvOutput(applyKv(this.peek(op.key), op).output);
  }

  // -------------------------------------------------------------------------------------
  // Commands

  /** Value of a live key; an expired key is removed and reads as null. */
  private live(key: string): string | null {
    const v = this.data.get(key);
    if (v === undefined) return null;
    const d = this.deadlines.get(key);
    if (d !== undefined && d <= this.now) {
      this.touch(key);
      this.data.delete(key);
      this.deadlines.delete(key);
      return null;
    }
    return v;
  }

  /** Stores a value; `deadline` is 'clear', 'keep' or an agreed time (<= now: the key goes). */
  private write(key: string, value: string, deadline: 'clear' | 'keep' | number): void {
    if (typeof deadline === 'number' && deadline <= this.now) {
      this.remove(key);
      return;
    }
    this.touch(key);
    this.data.set(key, value);
    if (deadline === 'clear') this.deadlines.delete(key);
    else if (deadline !== 'keep') {
      // Re-inserting moves the key to the end of the sweep order.
      this.deadlines.delete(key);
      this.deadlines.set(key, deadline);
    }
  }

  private remove(key: string): boolean {
    const existed = this.live(key) !== null;
    this.touch(key);
    this.data.delete(key);
    this.deadlines.delete(key);
    return existed;
  }

  /** Absolute deadline of an expiry, or undefined when it is not a safe integer. */
  private deadlineOf(e: Extract<KvExpiry, { kind: 'in' | 'at' }>): number | undefined {
    const d = e.kind === 'in' ? this.now + e.ms : e.ms;
    return Number.isSafeInteger(d) ? d : undefined;
  }

  private run(c: KvCommand): KvCommandOutput {
    switch (c.kind) {
      case 'get':
      case 'put':
      case 'del':
      case 'cas':
      case 'incr':
        return this.runOp(c);
      case 'set':
        return this.runSet(c);
      case 'mget':
        return { kind: 'values', values: c.keys.map((k) => this.live(k)) };
      case 'mset':
        for (const e of c.entries) this.write(e.key, e.value, 'clear');
        return { kind: 'put' };
      case 'delKeys': {
        let n = 0;
        for (const k of c.keys) if (this.remove(k)) n++;
        return { kind: 'int', value: n };
      }
      case 'exists': {
        let n = 0;
        for (const k of c.keys) if (this.live(k) !== null) n++;
        return { kind: 'int', value: n };
      }
      case 'append': {
        const next = (this.live(c.key) ?? '') + c.value;
        const length = utf8.encode(next).length;
        if (length > valueBytesMax) return { kind: 'fail', code: 'too_large' };
        this.write(c.key, next, 'keep');
        return { kind: 'int', value: length };
      }
      case 'strlen':
        return { kind: 'int', value: utf8.encode(this.live(c.key) ?? '').length };
      case 'dbsize':
        return { kind: 'int', value: this.size };
      case 'type':
        return { kind: 'int', value: this.live(c.key) === null ? 0 : 1 };
      case 'expire': {
        const deadline = this.deadlineOf(c.expiry);
        if (deadline === undefined) return { kind: 'fail', code: 'invalid_expire' };
        const v = this.live(c.key);
        if (v === null) return { kind: 'int', value: 0 };
        this.write(c.key, v, deadline);
        return { kind: 'int', value: 1 };
      }
      case 'pttl': {
        if (this.live(c.key) === null) return { kind: 'int', value: -2 };
        const d = this.deadlines.get(c.key);
        return { kind: 'int', value: d === undefined ? -1 : d - this.now };
      }
      case 'scan':
        return this.scan(c.cursor, c.match, c.count);
    }
  }

  /** One of the five per-key operations, through `applyKv`, with Redis' deadline rules. */
  private runOp(op: KvOp): KvOutput {
    const current = this.live(op.key);
    const { next, output } = applyKv(current, op);
    // A put or a successful cas replaces the value and drops its deadline (like SET); incr
    // changes the value in place and keeps it (like INCRBY).
    const replaces = op.kind === 'put' || (output.kind === 'cas' && output.swapped);
    if (next === null) this.remove(op.key);
    else if (replaces) this.write(op.key, next, 'clear');
    else if (next !== current) this.write(op.key, next, 'keep');
    return output;
  }

  private runSet(c: Extract<KvCommand, { kind: 'set' }>): KvCommandOutput {
    let deadline: 'clear' | 'keep' | number = c.expiry.kind === 'clear' || c.expiry.kind === 'keep' ? c.expiry.kind : 0;
    if (c.expiry.kind === 'in' || c.expiry.kind === 'at') {
      const d = this.deadlineOf(c.expiry);
      if (d === undefined) return { kind: 'fail', code: 'invalid_expire' };
      deadline = d;
    }
    const old = this.live(c.key);
    const allowed = c.when === 'always' || (c.when === 'nx' ? old === null : old !== null);
    if (allowed) this.write(c.key, c.value, deadline);
    return { kind: 'set', written: allowed, old: c.get ? old : null };
  }

  /**
   * SCAN: live keys in order of (hash, key), from hash `cursor` on; at least `count` of them
   * unless fewer remain, and never part of a hash's keys (so the next cursor, the last hash + 1,
   * skips nothing). The MATCH filter applies to the keys visited, as in Redis, so a call may
   * return no key and a non-zero cursor.
   */
  private scan(cursor: number, match: string | null, count: number): KvCommandOutput {
    const candidates: { hash: number; key: string }[] = [];
    for (const [key] of this.data) {
      if (this.peek(key) === null) continue;
      const hash = keyHash(key);
      if (hash >= cursor) candidates.push({ hash, key });
    }
    candidates.sort((a, b) => a.hash - b.hash || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let end = Math.min(count, candidates.length);
    while (end > 0 && end < candidates.length && candidates[end]!.hash === candidates[end - 1]!.hash) end++;
    const visited = candidates.slice(0, end);
    const next = end === candidates.length ? 0 : visited[end - 1]!.hash + 1;
    const glob = match === null ? undefined : new Glob(match);
    const keys = visited.map((c) => c.key).filter((k) => glob === undefined || glob.matches(k));
    return { kind: 'scan', cursor: next, keys };
  }

  /** Removes up to `sweepMax` expired entries; the others examined move to the back. */
  private sweep(): void {
    if (this.deadlines.size === 0) return;
    const examined: [string, number][] = [];
    for (const entry of this.deadlines) {
      examined.push(entry);
      if (examined.length >= sweepMax) break;
    }
    for (const [key, d] of examined) {
      // Re-inserting an unexpired deadline changes no content; removing an entry does.
      if (d <= this.now) this.touch(key);
      this.deadlines.delete(key);
      if (d <= this.now) this.data.delete(key);
      else this.deadlines.set(key, d);
    }
  }

  // -------------------------------------------------------------------------------------
  // Checkpoints

  /** Saves a key's pre-image in every open snapshot that has not saved it yet. */
  private touch(key: string): void {
    if (this.frozen.size === 0) return;
    for (const pre of this.frozen) if (!pre.has(key)) pre.set(key, { value: this.data.get(key), deadline: this.deadlines.get(key) });
  }

  checkpoint(): Uint8Array {
    const snap = this.snapshot();
    const pieces: Uint8Array[] = [];
    for (let p = snap.read(checkpointPieceBytes); p !== undefined; p = snap.read(checkpointPieceBytes)) pieces.push(p);
    snap.close();
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  snapshot(): AppSnapshot {
    const now = this.now;
    const keys = [...this.data.keys()].filter((k) => this.peek(k) !== null).sort();
    const timed = keys.some((k) => this.deadlines.has(k));
    const pre = new Map<string, PreImage>();
    this.frozen.add(pre);
    let next = -1; // -1: the header is still to come
    const close = (): void => {
      next = keys.length;
      this.frozen.delete(pre);
    };
    return {
      read: (hint: number): Uint8Array | undefined => {
        if (next >= keys.length) {
          close();
          return undefined;
        }
        const w = new Writer(Math.min(hint, 64 << 20) + 256);
        if (next === -1) {
          if (timed) {
            w.u32(v2Magic);
            w.uint(now);
          }
          w.u32(keys.length);
          next = 0;
        }
        while (next < keys.length && w.length < hint) {
          const k = keys[next++]!;
          const saved = pre.get(k);
          const value = saved !== undefined ? saved.value : this.data.get(k);
          assert(value !== undefined, 'a key live at the snapshot has a value or a pre-image');
          keyCodec.encode(w, k);
          valueCodec.encode(w, value);
          if (timed) deadlineCodec.encode(w, saved !== undefined ? saved.deadline : this.deadlines.get(k));
        }
        return w.finish();
      },
      close,
    };
  }

  restore(data: Uint8Array): void {
    const res = tryDecodeWith(snapshotCodec, data);
    if (!res.ok) throw new KvCheckpointError(res.error.message);
    assert(this.frozen.size === 0, 'restore while a snapshot is open');
    this.data.clear();
    this.deadlines.clear();
    this.now = res.value.now;
    for (const e of res.value.entries) {
      this.data.set(e.key, e.value);
      if (e.deadline !== undefined) this.deadlines.set(e.key, e.deadline);
    }
  }
}

/** Fixed 32-bit hash of a key (FNV-1a over UTF-16 code units): the SCAN order. */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const deadlineCodec = optional(uint);
const entryV1 = struct({ key: keyCodec, value: valueCodec });
const entryV2 = struct({ key: keyCodec, value: valueCodec, deadline: deadlineCodec });

interface Snapshot {
  readonly now: number;
  readonly entries: readonly { readonly key: string; readonly value: string; readonly deadline?: number | undefined }[];
}

/** Checkpoint layout (v1 or v2, see the module header). */
const snapshotCodec: Codec<Snapshot> = {
  desc: { t: 'array', item: entryV2, max: 0xffff_ffff },
  encode: () => {
    throw new Error('use KvStore.checkpoint');
  },
  decode: (r) => {
    let n = u32.decode(r);
    const v2 = n === v2Magic;
    let now = 0;
    if (v2) {
      now = uint.decode(r);
      n = u32.decode(r);
    }
    // Each entry takes at least 8 bytes (two lengths): a larger count is hostile.
    if (n > r.remaining / 8) r.fail(`entry count ${n} exceeds what ${r.remaining} bytes can hold`);
    const entries: Snapshot['entries'][number][] = [];
    let previous: string | undefined;
    for (let i = 0; i < n; i++) {
      const e: Snapshot['entries'][number] = v2 ? entryV2.decode(r) : entryV1.decode(r);
      if (e.deadline !== undefined && e.deadline <= now) r.fail(`key ${JSON.stringify(e.key)} expired before the checkpoint`);
      if (v2 && previous !== undefined && previous >= e.key) r.fail('v2 keys are not sorted');
      previous = e.key;
      entries.push(e);
    }
    return { now, entries };
  },
};
