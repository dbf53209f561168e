/**
 * Durable key/value state of one node, in plain files with O_DSYNC appends and atomic renames.
 * This is what a stage's `persist` effects write; the driver awaits `write()` before running the
 * effects behind a persist (write before send).
 *
 * Layout of a node's data directory:
 *   state.snap    snapshot: "BWS2", u32 generation, u32 count, then records; replaced atomically
 *                 (tmp, fsync, rename, fsync dir). Generation g means: replay state.log.<g> on top.
 *   state.log.<g> records appended since snapshot generation g; each record is
 *                 u32 length | u32 crc32 | u8 op (1 put, 2 delete, 3 put-blob, 4 commit) |
 *                 u16 key length | key | value. A commit record closes each group commit, and
 *                 recovery applies whole groups only.
 *   blobs/<hex>.<n> values of 64 KiB or more (checkpoints), written tmp + fsync + rename before
 *                 the log group that names them is written.
 *
 * Group commit: writes arriving while a log write is in flight are appended together in one
 * write(2) on a file opened with O_DSYNC (the write returns once the data is durable: write and
 * fdatasync in one system call and one thread-pool hop).
 *
 * Compaction (log above 8 MiB): write a snapshot of generation g+1, create state.log.<g+1>, then
 * delete state.log.<g>. A crash at any point leaves either the old snapshot with its log, or the
 * new snapshot with an empty or partial new log: never a log replayed over the wrong snapshot.
 *
 * Recovery decision table for the log tail:
 *   - records after the last commit record: a torn group; truncated (never applied);
 *   - a bad record (length or CRC) followed only by garbage: a torn write; truncated;
 *   - a bad record followed by a valid one: corruption; StorageCorruptError (the node must be
 *     repaired from its peers, never silently truncated).
 *
 * Invariants:
 * - after write() resolves, the writes survive a crash of the process or the machine;
 * - `map` equals snapshot + log + accepted writes;
 * - a write error is fatal: every later write is rejected (no retry, etcd's rule).
 */
import { close, closeSync, constants, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, write, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { BulwarkError, StorageCorruptError } from '../core/errors.ts';

/** Values at least this large live in their own file. */
const blobBytesMin = 64 * 1024;
/** The log is folded into a new snapshot once it exceeds this. */
const compactLogBytes = 8 << 20;
const snapMagic = Buffer.from('BWS2');

const opPut = 1;
const opDelete = 2;
const opPutBlob = 3;
const opCommit = 4;

/** A storage write failed; the node must stop. */
export class StorageFailedError extends BulwarkError {
  static override readonly name = 'StorageFailedError';
  constructor(what: string, cause: unknown) {
    super('storage_failed', `storage failure (${what}): ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

interface PendingWrite {
  readonly puts: readonly (readonly [string, Uint8Array])[];
  readonly deletes: readonly string[];
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

function encodeRecord(op: number, key: string, value: Uint8Array | undefined): Buffer {
  const k = Buffer.from(key, 'utf8');
  const v = value ?? new Uint8Array(0);
  const body = Buffer.allocUnsafe(1 + 2 + k.length + v.length);
  body.writeUInt8(op, 0);
  body.writeUInt16BE(k.length, 1);
  k.copy(body, 3);
  body.set(v, 3 + k.length);
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(body.length, 0);
  head.writeUInt32BE(crc32(body), 4);
  return Buffer.concat([head, body]);
}

interface Parsed {
  readonly op: number;
  readonly key: string;
  readonly value: Uint8Array;
  /** Offset just past this record. */
  readonly end: number;
}

/** Parses records; returns them and the offset of the first unparsable byte. */
function parseRecords(buf: Buffer): { records: Parsed[]; end: number; bad: boolean } {
  const records: Parsed[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < 8) return { records, end: off, bad: true };
    const len = buf.readUInt32BE(off);
    const crc = buf.readUInt32BE(off + 4);
    if (len < 3 || off + 8 + len > buf.length) return { records, end: off, bad: true };
    const body = buf.subarray(off + 8, off + 8 + len);
    if (crc32(body) !== crc) return { records, end: off, bad: true };
    const op = body.readUInt8(0);
    const klen = body.readUInt16BE(1);
    if (3 + klen > body.length || op < opPut || op > opCommit) return { records, end: off, bad: true };
    off += 8 + len;
    records.push({ op, key: body.toString('utf8', 3, 3 + klen), value: new Uint8Array(body.subarray(3 + klen)), end: off });
  }
  return { records, end: off, bad: false };
}

/** Whether a valid record starts anywhere after `start` (then the bad record is corruption). */
function validRecordAfter(buf: Buffer, start: number): boolean {
  for (let off = start + 1; off + 8 <= buf.length; off++) {
    const len = buf.readUInt32BE(off);
    if (len < 3 || len > 1 << 26 || off + 8 + len > buf.length) continue;
    if (crc32(buf.subarray(off + 8, off + 8 + len)) === buf.readUInt32BE(off + 4)) return true;
  }
  return false;
}

function openLog(path: string): number {
  return openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC, 0o644);
}

function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** File-backed durable store with group commit. */
export class FileStore {
  /** Current contents (what a restart would recover, plus accepted writes). */
  readonly map = new Map<string, Uint8Array>();
  /** Blob file holding each large value, by key. */
  private readonly blobOf = new Map<string, string>();
  private blobSeq = 0;
  private logFd: number;
  private logBytes: number;
  private generation: number;
  private readonly queue: PendingWrite[] = [];
  private flushing = false;
  private failed: Error | undefined;
  private closed = false;
  /** Group commits, writes, compactions, and bytes truncated at recovery. */
  readonly stats = { syncs: 0, writes: 0, compactions: 0, tornTailBytes: 0 };

  private constructor(
    private readonly dir: string,
    generation: number,
    logFd: number,
    logBytes: number,
  ) {
    this.generation = generation;
    this.logFd = logFd;
    this.logBytes = logBytes;
  }

  private logPath(gen: number): string {
    return join(this.dir, `state.log.${gen}`);
  }

  /** Opens (creating if needed) the store in `dir` and recovers its contents. */
  static open(dir: string): FileStore {
    mkdirSync(join(dir, 'blobs'), { recursive: true });
    const snapPath = join(dir, 'state.snap');
    const map = new Map<string, Uint8Array>();
    const blobs = new Map<string, string>();
    let generation = 0;
    if (existsSync(snapPath)) {
      const snap = readFileSync(snapPath);
      if (snap.length < 12 || !snap.subarray(0, 4).equals(snapMagic)) throw new StorageCorruptError(snapPath, 'bad snapshot header');
      generation = snap.readUInt32BE(4);
      const count = snap.readUInt32BE(8);
      const parsed = parseRecords(snap.subarray(12));
      if (parsed.bad || parsed.records.length !== count) throw new StorageCorruptError(snapPath, `snapshot has ${parsed.records.length} readable records of ${count}`);
      for (const r of parsed.records) FileStore.apply(map, blobs, r, snapPath);
    }
    const logPath = join(dir, `state.log.${generation}`);
    const fd = openLog(logPath);
    const logBuf = readFileSync(logPath);
    const parsed = parseRecords(logBuf);
    if (parsed.bad && validRecordAfter(logBuf, parsed.end)) {
      closeSync(fd);
      throw new StorageCorruptError(logPath, `corrupt record at byte ${parsed.end} followed by valid records`);
    }
    let group: Parsed[] = [];
    let committedEnd = 0;
    for (const r of parsed.records) {
      if (r.op === opCommit) {
        for (const g of group) FileStore.apply(map, blobs, g, logPath);
        group = [];
        committedEnd = r.end;
      } else group.push(r);
    }
    const tornTail = logBuf.length - committedEnd;
    if (tornTail > 0) {
      ftruncateSync(fd, committedEnd);
      fsyncSync(fd);
    }
    for (const [key, name] of blobs) {
      try {
        map.set(key, new Uint8Array(readFileSync(join(dir, 'blobs', name))));
      } catch (e) {
        closeSync(fd);
        throw new StorageCorruptError(join(dir, 'blobs', name), `blob of key ${key} is missing: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const store = new FileStore(dir, generation, fd, committedEnd);
    store.stats.tornTailBytes = tornTail;
    for (const [k, v] of map) store.map.set(k, v);
    for (const [k, name] of blobs) {
      store.blobOf.set(k, name);
      store.blobSeq = Math.max(store.blobSeq, Number(name.slice(name.indexOf('.') + 1)) + 1);
    }
    // Files nothing names: blobs of an unfinished group, logs of older generations.
    const live = new Set(blobs.values());
    for (const f of readdirSync(join(dir, 'blobs'))) if (!live.has(f)) rmSync(join(dir, 'blobs', f), { force: true });
    for (const f of readdirSync(dir)) {
      if (/^state\.log\.\d+$/.test(f) && f !== `state.log.${generation}`) rmSync(join(dir, f), { force: true });
      if (f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
    }
    return store;
  }

  private static apply(map: Map<string, Uint8Array>, blobs: Map<string, string>, r: Parsed, file: string): void {
    if (r.op === opDelete) {
      map.delete(r.key);
      blobs.delete(r.key);
    } else if (r.op === opPut) {
      map.set(r.key, r.value);
      blobs.delete(r.key);
    } else if (r.op === opPutBlob) {
      const name = Buffer.from(r.value).toString('utf8');
      if (!/^[0-9a-f]*\.[0-9]+$/.test(name)) throw new StorageCorruptError(file, `bad blob name for key ${r.key}`);
      // Loaded after the replay: a later record may delete the key (and its file is gone).
      map.delete(r.key);
      blobs.set(r.key, name);
    }
  }

  /** Makes `puts` and `deletes` durable (group-committed with concurrent writes). */
  write(puts: readonly (readonly [string, Uint8Array])[], deletes: readonly string[]): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new StorageFailedError('write', 'store is closed'));
    for (const [k, v] of puts) this.map.set(k, v);
    for (const k of deletes) this.map.delete(k);
    return new Promise((resolve, reject) => {
      this.queue.push({ puts, deletes, resolve, reject });
      if (!this.flushing) this.flush();
    });
  }

  private flush(): void {
    if (this.queue.length === 0 || this.failed !== undefined) {
      this.flushing = false;
      return;
    }
    this.flushing = true;
    const group = this.queue.splice(0, this.queue.length);
    const chunks: Buffer[] = [];
    /** Blob files superseded by this group, removed once its records are durable. */
    const superseded: string[] = [];
    const supersede = (k: string): void => {
      const old = this.blobOf.get(k);
      if (old !== undefined) superseded.push(old);
      this.blobOf.delete(k);
    };
    try {
      for (const w of group) {
        for (const [k, v] of w.puts) {
          supersede(k);
          if (v.length >= blobBytesMin) {
            const name = `${Buffer.from(k).toString('hex')}.${this.blobSeq++}`;
            this.writeBlob(name, v);
            this.blobOf.set(k, name);
            chunks.push(encodeRecord(opPutBlob, k, Buffer.from(name)));
          } else {
            chunks.push(encodeRecord(opPut, k, v));
          }
        }
        for (const k of w.deletes) {
          supersede(k);
          chunks.push(encodeRecord(opDelete, k, undefined));
        }
      }
    } catch (e) {
      this.fail(new StorageFailedError('blob write', e), group);
      return;
    }
    chunks.push(encodeRecord(opCommit, '', undefined));
    const buf = Buffer.concat(chunks);
    write(this.logFd, buf, 0, buf.length, null, (err) => {
      if (err !== null) return this.fail(new StorageFailedError('log append (O_DSYNC)', err), group);
      this.logBytes += buf.length;
      this.stats.syncs += 1;
      this.stats.writes += group.length;
      for (const name of superseded) rmSync(join(this.dir, 'blobs', name), { force: true });
      for (const w of group) w.resolve();
      if (this.logBytes > compactLogBytes) {
        try {
          this.compact();
        } catch (e) {
          this.fail(new StorageFailedError('compaction', e), []);
          return;
        }
      }
      this.flush();
    });
  }

  private writeBlob(name: string, v: Uint8Array): void {
    const tmp = join(this.dir, 'blobs', `${name}.tmp`);
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, v);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, 'blobs', name));
    fsyncDir(join(this.dir, 'blobs'));
  }

  /** Folds the log into a snapshot of the next generation, then starts that generation's log. */
  private compact(): void {
    const next = this.generation + 1;
    const records: Buffer[] = [];
    for (const [k, v] of this.map) {
      const blob = this.blobOf.get(k);
      // Large values already sit in their own durable files: the snapshot names them.
      records.push(blob !== undefined ? encodeRecord(opPutBlob, k, Buffer.from(blob)) : encodeRecord(opPut, k, v));
    }
    const head = Buffer.allocUnsafe(12);
    snapMagic.copy(head, 0);
    head.writeUInt32BE(next, 4);
    head.writeUInt32BE(records.length, 8);
    const tmp = join(this.dir, 'state.snap.tmp');
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, Buffer.concat([head, ...records]));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const newFd = openLog(this.logPath(next));
    fsyncDir(this.dir);
    renameSync(tmp, join(this.dir, 'state.snap'));
    fsyncDir(this.dir);
    const old = this.logFd;
    const oldPath = this.logPath(this.generation);
    this.logFd = newFd;
    this.generation = next;
    this.logBytes = 0;
    this.stats.compactions += 1;
    close(old, () => {
      rmSync(oldPath, { force: true });
    });
  }

  private fail(e: Error, group: readonly PendingWrite[]): void {
    this.failed = e;
    this.flushing = false;
    for (const w of group) w.reject(e);
    for (const w of this.queue.splice(0)) w.reject(e);
  }

  /** Size of the current log in bytes (for metrics). */
  get logSize(): number {
    return this.logBytes;
  }

  /** Closes the log once pending writes complete; later writes are rejected. */
  async close(): Promise<void> {
    while (this.flushing) await new Promise((r) => setTimeout(r, 1));
    if (this.closed) return;
    this.closed = true;
    closeSync(this.logFd);
  }
}
