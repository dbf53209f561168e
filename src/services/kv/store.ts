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
 * Checkpoint formats (equal states give equal bytes in each):
 * - v3, what checkpoints are written in: u32 0xfffffffd, uint `now` (0 when no live key has a
 *   deadline), u32 P (the page count, a
 *   power of two), then P pages. Page p holds the live keys whose 32-bit hash has p as its top
 *   log2(P) bits, sorted by key: u32 count, then (key, value, optional uint deadline). P is a
 *   function of the live state's size only (about 4 KiB per page, at most 32768 pages);
 * - v1 (u32 count, then (key, value) pairs sorted by key) and v2 (u32 0xfffffffe, uint `now`,
 *   u32 count, then (key, value, optional deadline) triples), which earlier versions wrote.
 * `restore` reads all three.
 *
 * Snapshots: `snapshot()` freezes every page, `pagedSnapshot()` only the pages that changed
 * since the previous paged snapshot (incremental checkpoints: REFIT's and Dura-SMaRt's point
 * that a checkpoint should cost what changed, not the whole state). Every change to a stored
 * key marks its page (`touch`), and at a paged snapshot so does every key whose deadline has
 * passed. The key lists of the frozen pages are copied at once; entries are encoded later,
 * page by page. Copy-on-write keeps them exact: before a key's value or deadline changes,
 * every open snapshot that has not yet saved the key saves its pre-image, and reads it from
 * there. `checkpoint()` is a full snapshot read in one go, so all of them produce the same
 * bytes by construction.
 *
 * Replies fit one reply body (`replyBytesMax`): a read whose output would not fit, or a write
 * started when the rest of the budget could not hold its largest output, answers
 * `reply_too_large` and changes nothing. A malformed request executes as a no-op with a
 * `bad_request` reply (deterministic on every replica), never as an exception.
 */
import type { AppBatch, AppPagedSnapshot, AppSnapshot, ReplicatedApp } from '../../app/contract.ts';
import { opBytesMax } from '../../codec/limits.ts';
import { optional, str, struct, tryDecodeWith, u32, uint, Writer, type Codec, type Reader } from '../../codec/schema.ts';
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
/** First u32 of a v3 (paged) checkpoint. */
const v3Magic = 0xffff_fffd;

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

/** KvStore settings; every replica of a cluster must use the same ones. */
export interface KvStoreOptions {
  /** Aimed size of a checkpoint page (default 4 KiB; small values are for tests). */
  readonly pageBytes?: number;
}

/** In-memory replicated key-value store with deterministic expiry. */
export class KvStore implements ReplicatedApp {
  private readonly pageBytes: number;

  constructor(options: KvStoreOptions = {}) {
    this.pageBytes = options.pageBytes ?? pageTargetBytes;
    assert(Number.isSafeInteger(this.pageBytes) && this.pageBytes >= 1, 'pageBytes is a positive integer');
  }

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
  /** Sum of `entryWeight` over `data` (expired entries still stored included). */
  private bytes = 0;
  /** Page count `members` and `dirty` are kept for; 0 until the first `pagedSnapshot`. */
  private pages = 0;
  /** Keys stored (live or expired) per page, for `pages` pages. */
  private members: Set<string>[] = [];
  /** Pages whose content may have changed since the last `pagedSnapshot`. */
  private readonly dirty = new Set<number>();
  /** Every page counts as changed at the next `pagedSnapshot` (none taken yet, or a restore). */
  private allDirty = true;

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
      this.dropEntry(key);
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
    this.setEntry(key, value);
    if (deadline === 'clear') this.deadlines.delete(key);
    else if (deadline !== 'keep') {
      // Re-inserting moves the key to the end of the sweep order.
      this.deadlines.delete(key);
      this.deadlines.set(key, deadline);
    }
  }

  private remove(key: string): boolean {
    const existed = this.live(key) !== null;
    if (!this.data.has(key)) return existed; // nothing stored: no page changes
    this.touch(key);
    this.dropEntry(key);
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
      if (d <= this.now) this.dropEntry(key);
      else this.deadlines.set(key, d);
    }
  }

  // -------------------------------------------------------------------------------------
  // Checkpoints

  /** Records that a key's value or deadline is about to change: its page, and pre-images. */
  private touch(key: string): void {
    if (this.pages > 0 && !this.allDirty) this.dirty.add(pageOf(key, this.pages));
    if (this.frozen.size === 0) return;
    for (const pre of this.frozen) if (!pre.has(key)) pre.set(key, { value: this.data.get(key), deadline: this.deadlines.get(key) });
  }

  /** Stores a value (every write of `data` goes through here, after `touch`). */
  private setEntry(key: string, value: string): void {
    const old = this.data.get(key);
    if (old === undefined) {
      this.bytes += entryWeight(key, value);
      if (this.pages > 0) this.members[pageOf(key, this.pages)]!.add(key);
    } else this.bytes += value.length - old.length;
    this.data.set(key, value);
  }

  /** Removes a stored entry (every delete of `data` goes through here, after `touch`). */
  private dropEntry(key: string): void {
    const old = this.data.get(key);
    if (old === undefined) return;
    this.bytes -= entryWeight(key, old);
    if (this.pages > 0) this.members[pageOf(key, this.pages)]!.delete(key);
    this.data.delete(key);
  }

  /**
   * One pass over the deadlines: the page count for the live state, the expired entries still
   * stored (which every replica may hold differently, so they never count), and whether a live
   * key has a deadline (then the checkpoint header carries the agreed time: reads after a
   * restore need it; without deadlines an unchanged state checkpoints the same bytes).
   */
  private sizePages(): { pages: number; expired: string[]; timed: boolean } {
    const expired: string[] = [];
    let expiredBytes = 0;
    let timed = false;
    for (const [k, d] of this.deadlines) {
      if (d > this.now) {
        timed = true;
        continue;
      }
      expired.push(k);
      expiredBytes += entryWeight(k, this.data.get(k)!);
    }
    return { pages: pageCountFor(this.bytes - expiredBytes, this.pageBytes), expired, timed };
  }

  checkpoint(): Uint8Array {
    const snap = this.snapshot();
    const pieces: Uint8Array[] = [];
    for (let p = snap.read(checkpointPieceBytes); p !== undefined; p = snap.read(checkpointPieceBytes)) pieces.push(p);
    snap.close();
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  /** A full snapshot: every page, read in pieces. It leaves the pages' change tracking alone. */
  snapshot(): AppSnapshot {
    const { pages, timed } = this.sizePages();
    const lists: string[][] = Array.from({ length: pages }, () => []);
    for (const k of this.data.keys()) lists[pageOf(k, pages)]!.push(k);
    const paged = this.freeze(pages, timed, lists);
    let done = false;
    const close = (): void => {
      done = true;
      paged.close();
    };
    return {
      read: (hint: number): Uint8Array | undefined => {
        const pieces: Uint8Array[] = [];
        let n = 0;
        while (!done && n < hint) {
          const page = paged.nextPage();
          if (page === undefined) done = true;
          else {
            assert(page !== null, 'a full snapshot has every page');
            pieces.push(page);
            n += page.length;
          }
        }
        if (pieces.length === 0) {
          close();
          return undefined;
        }
        return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, n);
      },
      close,
    };
  }

  /**
   * An incremental snapshot: a page that no write, delete or expiry touched since the previous
   * `pagedSnapshot()` comes back as null. The first one after construction or `restore`, and
   * the first after the page count changed, has every page.
   */
  pagedSnapshot(): AppPagedSnapshot {
    const { pages, expired, timed } = this.sizePages();
    if (pages !== this.pages) {
      this.pages = pages;
      this.members = Array.from({ length: pages }, () => new Set<string>());
      for (const k of this.data.keys()) this.members[pageOf(k, pages)]!.add(k);
      this.allDirty = true;
    }
    for (const k of expired) this.dirty.add(pageOf(k, pages));
    const lists: (string[] | undefined)[] = new Array<string[] | undefined>(pages);
    for (let p = 0; p < pages; p++) if (this.allDirty || this.dirty.has(p)) lists[p] = [...this.members[p]!];
    this.dirty.clear();
    this.allDirty = false;
    return this.freeze(pages, timed, lists);
  }

  /**
   * Freezes the state: the header, then page p from `lists[p]` (the keys stored in it now; a
   * missing list makes the page null). Values come from pre-images for keys changed later.
   */
  private freeze(pages: number, timed: boolean, lists: readonly (string[] | undefined)[]): AppPagedSnapshot {
    const now = this.now;
    const pre = new Map<string, PreImage>();
    this.frozen.add(pre);
    let next = -1; // -1: the header is still to come
    const close = (): void => {
      next = pages;
      this.frozen.delete(pre);
    };
    return {
      nextPage: (): Uint8Array | null | undefined => {
        if (next >= pages) {
          close();
          return undefined;
        }
        if (next === -1) {
          next = 0;
          const w = new Writer(32);
          w.u32(v3Magic);
          w.uint(timed ? now : 0);
          w.u32(pages);
          return w.finish();
        }
        const keys = lists[next++];
        if (keys === undefined) return null;
        keys.sort();
        const entries: { key: string; value: string; deadline: number | undefined }[] = [];
        let size = 4;
        for (const key of keys) {
          const saved = pre.get(key);
          const value = saved !== undefined ? saved.value : this.data.get(key);
          const deadline = saved !== undefined ? saved.deadline : this.deadlines.get(key);
          if (value === undefined || (deadline !== undefined && deadline <= now)) continue;
          entries.push({ key, value, deadline });
          size += key.length + value.length + 16;
        }
        const w = new Writer(size);
        w.u32(entries.length);
        for (const e of entries) entryV2.encode(w, e);
        // Pages stay in memory until their checkpoints go: no spare capacity if the estimate was short.
        return w.length <= size ? w.finish() : w.copy();
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
    this.bytes = 0;
    this.pages = 0;
    this.members = [];
    this.dirty.clear();
    this.allDirty = true;
    this.now = res.value.now;
    for (const e of res.value.entries) {
      this.setEntry(e.key, e.value);
      if (e.deadline !== undefined) this.deadlines.set(e.key, e.deadline);
    }
  }
}

/** What an entry counts for in the page sizing (UTF-16 lengths: the same on every replica). */
function entryWeight(key: string, value: string): number {
  return key.length + value.length + 8;
}

/**
 * Aimed size of a checkpoint page. A write makes its whole page be serialised again at the next
 * checkpoint, so scattered writes into a large state cost about a page each; a page costs 36
 * bytes of manifest (a 512 MB state: 32768 pages, a 1.2 MB manifest). 4 KiB rather than 16: with
 * 32 clients writing 4 KiB values at random into a 13 MB state, the bytes serialised and hashed
 * per write fall to about a third, and a 4-node bench rose 1.2-1.3x (docs/benchmarks.md).
 */
const pageTargetBytes = 4 << 10;
/** Most pages (a power of two); with the header page, within the manifest's chunk limit. */
const pagesMax = 1 << 15;

/** Pages for a live state of `bytes`: a power of two, about `pageBytes` each. */
function pageCountFor(bytes: number, pageBytes: number): number {
  let pages = 1;
  while (pages < pagesMax && pages * pageBytes < bytes) pages *= 2;
  return pages;
}

/** The page of a key among `pages` (a power of two): the top bits of its hash, so pages follow SCAN order. */
function pageOf(key: string, pages: number): number {
  return pages === 1 ? 0 : keyHash(key) >>> (32 - Math.log2(pages));
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

/** Checkpoint layout (v1, v2 or v3, see the module header). */
const snapshotCodec: Codec<Snapshot> = {
  desc: { t: 'array', item: entryV2, max: 0xffff_ffff },
  encode: () => {
    throw new Error('use KvStore.checkpoint');
  },
  decode: (r) => {
    let n = u32.decode(r);
    if (n === v3Magic) return decodeV3(r);
    const v2 = n === v2Magic;
    let now = 0;
    if (v2) {
      now = uint.decode(r);
      n = u32.decode(r);
    }
    const entries: Snapshot['entries'][number][] = [];
    decodeEntries(r, n, v2, now, entries, undefined);
    return { now, entries };
  },
};

/** v3: the header, then every page with its keys in order; each key must belong to its page. */
function decodeV3(r: Reader): Snapshot {
  const now = uint.decode(r);
  const pages = u32.decode(r);
  if (pages < 1 || pages > pagesMax || (pages & (pages - 1)) !== 0) r.fail(`page count ${pages} is not a power of two up to ${pagesMax}`);
  const entries: Snapshot['entries'][number][] = [];
  for (let p = 0; p < pages; p++) decodeEntries(r, u32.decode(r), true, now, entries, (key) => pageOf(key, pages) === p);
  return { now, entries };
}

/** Reads `n` entries (sorted by key when `sorted`), none expired at `now`, each passing `belongs`. */
function decodeEntries(r: Reader, n: number, sorted: boolean, now: number, into: Snapshot['entries'][number][], belongs: ((key: string) => boolean) | undefined): void {
  // Each entry takes at least 8 bytes (two lengths): a larger count is hostile.
  if (n > r.remaining / 8) r.fail(`entry count ${n} exceeds what ${r.remaining} bytes can hold`);
  let previous: string | undefined;
  for (let i = 0; i < n; i++) {
    const e: Snapshot['entries'][number] = sorted ? entryV2.decode(r) : entryV1.decode(r);
    if (e.deadline !== undefined && e.deadline <= now) r.fail(`key ${JSON.stringify(e.key)} expired before the checkpoint`);
    if (sorted && previous !== undefined && previous >= e.key) r.fail('keys are not sorted');
    if (belongs !== undefined && !belongs(e.key)) r.fail(`key ${JSON.stringify(e.key)} is on the wrong page`);
    previous = e.key;
    into.push(e);
  }
}
