/**
 * Durable key/value state of one node: what a stage's `persist` effects write. The driver
 * awaits `write()` before running the effects behind a persist (write before send).
 *
 * Layout of a node's data directory:
 *   wal/seg-<i>.wal  the write-ahead log (runtime/wal.ts, storage/wal-format.ts): one frame per
 *                    group commit, CRC-32C chained across frames and segments, preallocated
 *                    segments, one O_DSYNC writev per group.
 *   state.snap       snapshot: the state through frame N, checksummed (CRC-32C); replaced
 *                    atomically (tmp, fdatasync, rename, fsync dir). Recovery loads it, then
 *                    replays frames after N.
 *   blobs/<hex>.<n>  values of 2 MiB or more, and keys the caller marks `ownFile` (execution
 *                    checkpoints): magic, length, CRC-32C, bytes; written tmp + fdatasync +
 *                    rename + fsync dir before the frame naming them.
 *
 * A frame body is a list of records: u8 op (1 put, 2 delete, 3 put-blob), u16 key length, key,
 * u32 value length, value. A frame is applied whole or not at all (a torn frame fails its CRC).
 *
 * Group commit: writes arriving while a frame is in flight go together into the next frame.
 *
 * Compaction: once the log holds `compactBytes` since the snapshot, the durable state through
 * the last durable frame is written as a new snapshot, then whole segments it covers are
 * deleted. A crash at any point leaves a snapshot and the frames after it.
 *
 * Corruption (a damaged frame with intact frames after it, damage in an earlier segment, a bad
 * snapshot, a bad or missing blob): StorageCorruptError naming the file, never a silent
 * truncation. Exception: blobs whose key the caller declares `repairable` (execution
 * checkpoints, which the replica can fetch from its peers and verify against agreed tokens)
 * are dropped and listed in `repaired`.
 *
 * Invariants:
 * - after write() resolves, the write survives a crash of the process or the machine;
 * - `map` equals the recovered state plus accepted writes; `durable` equals the state through
 *   the last durable frame (what a snapshot may contain);
 * - a write error is fatal: every later write is rejected (no retry, etcd's rule).
 */
import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageCorruptError } from '../core/errors.ts';
import { crc32c } from '../storage/crc32c.ts';
import { StorageFailedError, Wal, fsyncDir, type WalOptions } from './wal.ts';

export { StorageFailedError } from './wal.ts';

/**
 * Values at least this large live in their own file. Above the largest batch body (1 MiB by
 * default), so ordering's records stay in the log and only checkpoints get files.
 */
const blobBytesMin = 2 << 20;
const snapMagic = 0x42575333; // "BWS3"
const blobMagic = 0x4257424c; // "BWBL"

const opPut = 1;
const opDelete = 2;
const opPutBlob = 3;

/** Store tuning. */
export interface FileStoreOptions extends WalOptions {
  /** Log bytes since the snapshot that trigger compaction (default 16 MiB). */
  readonly compactBytes?: number;
  /** Keys whose damaged blob may be dropped (the replica refetches them from peers). */
  readonly repairable?: (key: string) => boolean;
  /** Keys that always get their own file, whatever their size (checkpoints). */
  readonly ownFile?: (key: string) => boolean;
  /** Group concurrent writes into one frame and one sync (default true; false: durability `sync`). */
  readonly groupCommit?: boolean;
  /**
   * Lazy writes (ones nothing waits for) are held up to this long for a write that must be
   * durable, and ride in its frame instead of costing a sync of their own (default 0: written at
   * once). Only with group commit.
   */
  readonly deferLazyMs?: number;
}

interface PendingWrite {
  readonly puts: readonly (readonly [string, Uint8Array])[];
  readonly deletes: readonly string[];
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  /** Nothing waits for it: it may wait for the next write that is waited for. */
  readonly lazy: boolean;
}

/** A durable value: inline bytes or the name of its blob file. */
type Stored = { readonly inline: Uint8Array } | { readonly blob: string };

/**
 * Appends one record to `out` as two chunks: its head (op, key, value length) and the value
 * itself, which the log writes from where it lies (writev) instead of copying it.
 */
function pushRecord(out: Uint8Array[], op: number, key: string, value: Uint8Array): void {
  const k = Buffer.from(key, 'utf8');
  const head = Buffer.allocUnsafe(1 + 2 + k.length + 4);
  head.writeUInt8(op, 0);
  head.writeUInt16BE(k.length, 1);
  k.copy(head, 3);
  head.writeUInt32BE(value.length, 3 + k.length);
  out.push(head);
  if (value.length > 0) out.push(value);
}

/** Parses a frame body or snapshot body; throws StorageCorruptError on malformed bytes. */
function parseRecords(buf: Uint8Array, file: string): { op: number; key: string; value: Uint8Array }[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: { op: number; key: string; value: Uint8Array }[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + 7 > b.length) throw new StorageCorruptError(file, `record at byte ${off} is cut short`);
    const op = b.readUInt8(off);
    const klen = b.readUInt16BE(off + 1);
    if (op < opPut || op > opPutBlob || off + 7 + klen > b.length) throw new StorageCorruptError(file, `bad record at byte ${off}`);
    const key = b.toString('utf8', off + 3, off + 3 + klen);
    const vlen = b.readUInt32BE(off + 3 + klen);
    const vstart = off + 7 + klen;
    if (vstart + vlen > b.length) throw new StorageCorruptError(file, `record for key ${key} overruns its frame`);
    out.push({ op, key, value: b.subarray(vstart, vstart + vlen) });
    off = vstart + vlen;
  }
  return out;
}

function encodeBlob(v: Uint8Array): Uint8Array[] {
  const head = Buffer.allocUnsafe(20);
  head.writeUInt32BE(blobMagic, 0);
  head.writeUInt32BE(1, 4);
  head.writeUInt32BE(Math.floor(v.length / 2 ** 32), 8);
  head.writeUInt32BE(v.length >>> 0, 12);
  head.writeUInt32BE(crc32c(v), 16);
  return [head, v];
}

/** Reads and verifies a blob file; returns the value or why it is unusable. */
function readBlob(path: string): Uint8Array | string {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    return `unreadable: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (b.length < 20 || b.readUInt32BE(0) !== blobMagic || b.readUInt32BE(4) !== 1) return 'bad header';
  const len = b.readUInt32BE(8) * 2 ** 32 + b.readUInt32BE(12);
  if (len !== b.length - 20) return `length ${len} but ${b.length - 20} bytes`;
  const v = b.subarray(20);
  if (crc32c(v) !== b.readUInt32BE(16)) return 'checksum mismatch';
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function writeFileDurably(dir: string, name: string, chunks: readonly Uint8Array[]): void {
  const tmp = join(dir, `${name}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    for (const c of chunks) writeSync(fd, c);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  fsyncDir(dir);
}

/**
 * The same as writeFileDurably, off the event loop (thread-pool calls): a checkpoint of many
 * megabytes must not stall message handling while it reaches the disk.
 */
async function writeFileDurablyAsync(dir: string, name: string, chunks: readonly Uint8Array[]): Promise<void> {
  const tmp = join(dir, `${name}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writev([...chunks]);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** File-backed durable store with group commit on a segmented write-ahead log. */
export class FileStore {
  /** Current contents (what a restart would recover, plus accepted writes). */
  readonly map = new Map<string, Uint8Array>();
  /** Keys whose damaged blobs were dropped at open (repairable keys only). */
  readonly repaired: string[] = [];
  /** State through the last durable frame. */
  private readonly durable = new Map<string, Stored>();
  private blobSeq = 0;
  private readonly queue: PendingWrite[] = [];
  private flushing = false;
  private failed: Error | undefined;
  private closed = false;
  private bytesSinceSnapshot = 0;
  /** The snapshot write in flight, if any. */
  private compacting: Promise<void> | undefined;
  private lastDurableFrame = -1;
  private readonly compactBytes: number;
  private readonly ownFile: (key: string) => boolean;
  private readonly groupCommit: boolean;
  private readonly deferLazyMs: number;
  /** Set while only lazy writes are queued: writes them when it fires. */
  private lazyTimer: NodeJS.Timeout | undefined;
  /** Group commits, writes, compactions, and bytes zeroed at a torn tail during recovery. */
  readonly stats = { syncs: 0, writes: 0, compactions: 0, tornTailBytes: 0 };

  private constructor(
    private readonly dir: string,
    private readonly wal: Wal,
    opts: FileStoreOptions,
  ) {
    this.compactBytes = opts.compactBytes ?? 16 << 20;
    this.ownFile = opts.ownFile ?? (() => false);
    this.groupCommit = opts.groupCommit ?? true;
    this.deferLazyMs = this.groupCommit ? (opts.deferLazyMs ?? 0) : 0;
  }

  /** Opens (creating if needed) the store in `dir` and recovers its contents. */
  static open(dir: string, opts: FileStoreOptions = {}): FileStore {
    mkdirSync(join(dir, 'blobs'), { recursive: true });
    for (const f of readdirSync(dir)) if (/^state\.log\.\d+$/.test(f)) throw new StorageCorruptError(join(dir, f), 'data directory of an older bulwark version (state.log.*); start from a fresh directory');
    const snapPath = join(dir, 'state.snap');
    const durable = new Map<string, Stored>();
    let through = -1;
    if (existsSync(snapPath)) {
      const snap = readFileSync(snapPath);
      if (snap.length < 24 || snap.readUInt32BE(0) !== snapMagic || snap.readUInt32BE(4) !== 1) throw new StorageCorruptError(snapPath, 'bad snapshot header');
      if (crc32c(snap, 0, 0, snap.length - 4) !== snap.readUInt32BE(snap.length - 4)) throw new StorageCorruptError(snapPath, 'snapshot checksum mismatch');
      through = snap.readUInt32BE(8) * 2 ** 32 + snap.readUInt32BE(12) - 1;
      const count = snap.readUInt32BE(16);
      const records = parseRecords(snap.subarray(20, snap.length - 4), snapPath);
      if (records.length !== count) throw new StorageCorruptError(snapPath, `snapshot has ${records.length} records of ${count}`);
      for (const r of records) FileStore.apply(durable, r, snapPath);
    }
    const walDir = join(dir, 'wal');
    if (through >= 0 && (!existsSync(walDir) || !readdirSync(walDir).some((f) => f.endsWith('.wal')))) {
      throw new StorageCorruptError(walDir, `the log is missing but the snapshot ends at frame ${through}`);
    }
    const { wal, recovery } = Wal.open(walDir, opts);
    let replayed = 0;
    let lastFrame = through;
    for (const f of recovery.frames) {
      if (f.frameNo <= through) continue;
      for (const r of parseRecords(f.body, walDir)) FileStore.apply(durable, r, walDir);
      replayed += f.body.length;
      lastFrame = f.frameNo;
    }
    if (through >= 0 && recovery.firstFrameNo > through + 1) {
      void wal.close();
      throw new StorageCorruptError(walDir, `the log starts at frame ${recovery.firstFrameNo} but the snapshot ends at frame ${through}`);
    }
    const store = new FileStore(dir, wal, opts);
    store.stats.tornTailBytes = recovery.tornBytes;
    store.bytesSinceSnapshot = replayed;
    store.lastDurableFrame = lastFrame;
    const repairable = opts.repairable ?? (() => false);
    for (const s of durable.values()) if ('blob' in s) store.blobSeq = Math.max(store.blobSeq, Number(s.blob.slice(s.blob.indexOf('.') + 1)) + 1);
    for (const [key, s] of durable) {
      if ('inline' in s) {
        store.map.set(key, s.inline);
        store.durable.set(key, s);
        continue;
      }
      const v = readBlob(join(dir, 'blobs', s.blob));
      if (typeof v === 'string') {
        if (!repairable(key)) throw new StorageCorruptError(join(dir, 'blobs', s.blob), `blob of key ${key}: ${v}`);
        store.repaired.push(key);
        continue;
      }
      store.map.set(key, v);
      store.durable.set(key, s);
    }
    // A dropped key must not come back from the log on the next start.
    if (store.repaired.length > 0) store.writeSnapshot();
    // Files nothing names: blobs of an unfinished group, temporary files.
    const live = new Set<string>();
    for (const s of store.durable.values()) if ('blob' in s) live.add(s.blob);
    for (const f of readdirSync(join(dir, 'blobs'))) if (!live.has(f)) rmSync(join(dir, 'blobs', f), { force: true });
    for (const f of readdirSync(dir)) if (f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
    return store;
  }

  private static apply(map: Map<string, Stored>, r: { op: number; key: string; value: Uint8Array }, file: string): void {
    if (r.op === opDelete) map.delete(r.key);
    else if (r.op === opPut) map.set(r.key, { inline: r.value });
    else {
      const name = Buffer.from(r.value).toString('utf8');
      if (!/^[0-9a-f]*\.[0-9]+$/.test(name)) throw new StorageCorruptError(file, `bad blob name for key ${r.key}`);
      map.set(r.key, { blob: name });
    }
  }

  /**
   * Makes `puts` and `deletes` durable (group-committed with concurrent writes). A `lazy` write
   * (one the caller does not wait for) may be held up to `deferLazyMs` for the next write that is
   * waited for; writes still reach the log in call order.
   */
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[], lazy = false): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new StorageFailedError('write', 'store is closed'));
    for (const [k, v] of puts) this.map.set(k, v);
    for (const k of deletes) this.map.delete(k);
    return new Promise((resolve, reject) => {
      this.queue.push({ puts, deletes, resolve, reject, lazy });
      if (!this.flushing) this.flush();
    });
  }

  /** Starts the next group commit, unless only deferrable lazy writes wait (then arms the timer). */
  private flush(force = false): void {
    if (this.queue.length === 0 || this.failed !== undefined) {
      this.flushing = false;
      return;
    }
    if (!force && this.deferLazyMs > 0 && this.queue.every((w) => w.lazy)) {
      this.flushing = false;
      this.lazyTimer ??= setTimeout(() => {
        this.lazyTimer = undefined;
        if (!this.flushing) this.flush(true);
      }, this.deferLazyMs);
      return;
    }
    if (this.lazyTimer !== undefined) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
    }
    this.flushing = true;
    const group = this.queue.splice(0, this.groupCommit ? this.queue.length : 1);
    const chunks: Uint8Array[] = [];
    /** What the durable map becomes once the frame is durable, in order. */
    const changes: [string, Stored | undefined][] = [];
    /** Blob files to make durable before the frame that names them. */
    const blobs: Promise<void>[] = [];
    for (const w of group) {
      for (const [k, v] of w.puts) {
        if (v.length >= blobBytesMin || this.ownFile(k)) {
          const name = `${Buffer.from(k).toString('hex')}.${this.blobSeq++}`;
          blobs.push(writeFileDurablyAsync(join(this.dir, 'blobs'), name, encodeBlob(v)));
          pushRecord(chunks, opPutBlob, k, Buffer.from(name));
          changes.push([k, { blob: name }]);
        } else {
          pushRecord(chunks, opPut, k, v);
          changes.push([k, { inline: v }]);
        }
      }
      for (const k of w.deletes) {
        pushRecord(chunks, opDelete, k, new Uint8Array(0));
        changes.push([k, undefined]);
      }
    }
    if (blobs.length === 0) this.appendGroup(group, chunks, changes);
    else {
      Promise.all(blobs).then(
        () => {
          this.appendGroup(group, chunks, changes);
        },
        (e: unknown) => {
          this.fail(new StorageFailedError('blob write', e), group);
        },
      );
    }
  }

  /** Appends a group's frame; once durable, resolves its writes and starts the next group. */
  private appendGroup(group: readonly PendingWrite[], chunks: readonly Uint8Array[], changes: readonly [string, Stored | undefined][]): void {
    if (this.failed !== undefined) {
      for (const w of group) w.reject(this.failed);
      return;
    }
    this.wal.append(chunks, (err, frameNo) => {
      if (err !== null) return this.fail(err, group);
      let size = 0;
      for (const c of chunks) size += c.length;
      this.bytesSinceSnapshot += size;
      this.lastDurableFrame = frameNo;
      const superseded: string[] = [];
      for (const [k, s] of changes) {
        const old = this.durable.get(k);
        if (old !== undefined && 'blob' in old && (s === undefined || !('blob' in s) || s.blob !== old.blob)) superseded.push(old.blob);
        if (s === undefined) this.durable.delete(k);
        else this.durable.set(k, s);
      }
      this.stats.syncs += 1;
      this.stats.writes += group.length;
      for (const w of group) w.resolve();
      try {
        for (const name of superseded) rmSync(join(this.dir, 'blobs', name), { force: true });
        if (this.bytesSinceSnapshot > this.compactBytes) this.compact();
      } catch (e) {
        this.fail(new StorageFailedError('compaction', e), []);
        return;
      }
      this.flush();
    });
  }

  /** The snapshot file's bytes: the durable state through the last durable frame. */
  private snapshotParts(): Uint8Array[] {
    const records: Uint8Array[] = [];
    for (const [k, s] of this.durable) {
      if ('inline' in s) pushRecord(records, opPut, k, s.inline);
      else pushRecord(records, opPutBlob, k, Buffer.from(s.blob));
    }
    const head = Buffer.allocUnsafe(20);
    head.writeUInt32BE(snapMagic, 0);
    head.writeUInt32BE(1, 4);
    const next = this.lastDurableFrame + 1;
    head.writeUInt32BE(Math.floor(next / 2 ** 32), 8);
    head.writeUInt32BE(next >>> 0, 12);
    head.writeUInt32BE(this.durable.size, 16);
    let crc = crc32c(head);
    for (const r of records) crc = crc32c(r, crc);
    const tail = Buffer.allocUnsafe(4);
    tail.writeUInt32BE(crc, 0);
    return [head, ...records, tail];
  }

  /** Writes the snapshot synchronously (at open, before anything else runs). */
  private writeSnapshot(): void {
    writeFileDurably(this.dir, 'state.snap', this.snapshotParts());
  }

  /**
   * Snapshot of the durable state, written off the event loop while groups keep being
   * appended (their frames come after the snapshot's); then removal of the segments it covers.
   */
  private compact(): void {
    if (this.compacting !== undefined) return;
    const through = this.lastDurableFrame;
    const parts = this.snapshotParts();
    this.bytesSinceSnapshot = 0;
    this.compacting = writeFileDurablyAsync(this.dir, 'state.snap', parts).then(
      () => {
        this.compacting = undefined;
        this.wal.removeBefore(through + 1);
        this.stats.compactions += 1;
      },
      (e: unknown) => {
        this.compacting = undefined;
        this.fail(new StorageFailedError('compaction', e), []);
      },
    );
  }

  private fail(e: Error, group: readonly PendingWrite[]): void {
    this.failed ??= e;
    this.flushing = false;
    if (this.lazyTimer !== undefined) clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    for (const w of group) w.reject(this.failed);
    for (const w of this.queue.splice(0)) w.reject(this.failed);
  }

  /** Log bytes since the last snapshot (for metrics). */
  get logSize(): number {
    return this.bytesSinceSnapshot;
  }

  /** Log segments on disk. */
  get segments(): number {
    return this.wal.segmentCount;
  }

  /** Closes the log once pending writes complete; later writes are rejected. */
  async close(): Promise<void> {
    // Every queued write goes out first, held lazy ones included (a group finishing meanwhile
    // may leave only lazy writes queued, and would hold them); a write accepted while a
    // compaction is awaited goes out too: nothing is accepted and then dropped.
    for (;;) {
      while (this.flushing || (this.queue.length > 0 && this.failed === undefined)) {
        if (!this.flushing) this.flush(true);
        await new Promise((r) => setTimeout(r, 1));
      }
      if (this.compacting === undefined) break;
      await this.compacting;
    }
    if (this.lazyTimer !== undefined) clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    if (this.closed) return;
    this.closed = true;
    await this.wal.close();
  }
}

/**
 * Durability `none`: the same surface as FileStore, nothing written. A node that restarts
 * comes back empty and rebuilds its state from its peers.
 */
export class VolatileStore {
  /** Current contents. */
  readonly map = new Map<string, Uint8Array>();
  /** Never any: nothing is read back. */
  readonly repaired: string[] = [];
  /** Counters (always zero but writes). */
  readonly stats = { syncs: 0, writes: 0, compactions: 0, tornTailBytes: 0 };
  readonly logSize = 0;
  readonly segments = 0;

  /** Applies the writes in memory and resolves at once. */
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[]): Promise<void> {
    for (const [k, v] of puts) this.map.set(k, v);
    for (const k of deletes) this.map.delete(k);
    this.stats.writes += 1;
    return Promise.resolve();
  }

  /** Nothing to close. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** What SplitStore needs of each part (FileStore and VolatileStore both fit). */
interface StorePart {
  readonly map: Map<string, Uint8Array>;
  readonly repaired: readonly string[];
  readonly stats: { readonly syncs: number; readonly writes: number; readonly compactions: number; readonly tornTailBytes: number };
  readonly logSize: number;
  readonly segments: number;
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[], lazy?: boolean): Promise<void>;
  close(): Promise<void>;
}

/**
 * A node's storage as two stores: execution checkpoints (large, written in the background) in
 * their own store, everything else in the main one, so the order log's group commits never
 * queue behind checkpoint files. Each store keeps the order of the writes it gets; a write that
 * touches both resolves when both parts are durable. Nothing in the main store refers to a
 * checkpoint key, so the two may reach the disk in either order.
 */
export class SplitStore {
  /** Current contents of both stores. */
  readonly map: Map<string, Uint8Array>;

  constructor(
    private readonly main: StorePart,
    private readonly side: StorePart,
    private readonly isSide: (key: string) => boolean,
  ) {
    this.map = new Map([...main.map, ...side.map]);
  }

  /** Keys dropped as damaged by either store. */
  get repaired(): readonly string[] {
    return [...this.main.repaired, ...this.side.repaired];
  }

  /** Counters of both stores, summed. */
  get stats(): { syncs: number; writes: number; compactions: number; tornTailBytes: number } {
    const a = this.main.stats;
    const b = this.side.stats;
    return { syncs: a.syncs + b.syncs, writes: a.writes + b.writes, compactions: a.compactions + b.compactions, tornTailBytes: a.tornTailBytes + b.tornTailBytes };
  }

  /** Log bytes of both stores. */
  get logSize(): number {
    return this.main.logSize + this.side.logSize;
  }

  /** Log segments of both stores. */
  get segments(): number {
    return this.main.segments + this.side.segments;
  }

  /** Routes each put and delete to its store. */
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[], lazy = false): Promise<void> {
    const sidePuts = puts.filter(([k]) => this.isSide(k));
    const sideDeletes = deletes.filter((k) => this.isSide(k));
    const mainPuts = sidePuts.length === 0 ? puts : puts.filter(([k]) => !this.isSide(k));
    const mainDeletes = sideDeletes.length === 0 ? deletes : deletes.filter((k) => !this.isSide(k));
    for (const [k, v] of puts) this.map.set(k, v);
    for (const k of deletes) this.map.delete(k);
    const parts: Promise<void>[] = [];
    if (mainPuts.length > 0 || mainDeletes.length > 0) parts.push(this.main.write(mainPuts, mainDeletes, lazy));
    if (sidePuts.length > 0 || sideDeletes.length > 0) parts.push(this.side.write(sidePuts, sideDeletes, lazy));
    if (parts.length === 1) return parts[0]!;
    return Promise.all(parts).then(() => undefined);
  }

  /** Closes both stores. */
  async close(): Promise<void> {
    await Promise.all([this.main.close(), this.side.close()]);
  }
}
