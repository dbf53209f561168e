/**
 * Segmented write-ahead log on real files (format and recovery rules: storage/wal-format.ts).
 *
 * - Files: `<dir>/seg-<index>.wal`, consecutive indices; `<dir>/next.tmp` is the next segment,
 *   its head zero-filled in the background.
 * - Append: one frame per group commit, written with one `writev` (header + body chunks, no
 *   copy) at its offset on a descriptor opened with O_DSYNC, so the call returns once the data
 *   is durable: write and fdatasync in one system call and one thread-pool hop.
 * - Fill ahead: the current segment is kept zero-filled (and durable) a few MiB ahead of its end,
 *   one O_DSYNC zero write at a time, so appends overwrite synced zeros: they change no file size
 *   and the sync flushes data only. An O_DSYNC append that extends the file must commit the new
 *   size and block allocation to the file system journal; on this project's ext4 VM that made a
 *   1 KiB append about 1.5x slower, with four nodes writing at once (docs/benchmarks.md, "The
 *   log's first segment filled ahead").
 * - Next segment: once the current one is half full, the head of the next (the fill-ahead
 *   distance; the whole segment when the fill is off) is zero-filled in `next.tmp` the same
 *   way, so the first appends after a roll need not wait for a zero write. It used to be the
 *   whole segment, written buffered and synced at once: 64 MiB of write-back per node, all nodes
 *   at the same log position, and a second of half-rate service (docs/benchmarks.md, "Preparing
 *   the next segment in small synced writes").
 * - Roll: when a frame does not fit, the prepared file becomes the next segment (renamed, then
 *   its header frame written, then the directory synced). A frame larger than a segment gets a
 *   segment of its own that grows to fit.
 * - Recovery: segments are scanned in order; a torn tail of the last segment is zeroed; any other
 *   damage raises StorageCorruptError naming the file and offset. A last segment whose header
 *   never became durable (a roll cut short by the crash) is removed.
 * - Errors: a failed write or sync is fatal (StorageFailedError); the log refuses every later
 *   append, because after a failed fsync the kernel may have dropped the dirty pages.
 *
 * Invariants: at most one append is in flight; `end` is the offset after the last durable
 * frame of the last segment; `nextFrameNo` and `chain` describe that frame's successor. At most
 * one zero write is in flight, it starts at or after the end of the append in flight (so it
 * never covers a frame), and no append that would reach into it, and no roll, starts before it
 * completes (the append waits). Zero writes go through a descriptor of their own: Linux reports
 * a write-back error once per open file, so a zero write's sync on the appends' descriptor could
 * take the error of an append's pages and let that append report success. A zero write that
 * fails for lack of space (or writes short) only stops the filling; any other failure fails the
 * log, as the disk is failing.
 */
import { closeSync, constants, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync, writev, write, close } from 'node:fs';
import { join } from 'node:path';
import { BulwarkError, StorageCorruptError } from '../core/errors.ts';
import { encodeFrameHeader, encodeSegmentStart, FrameType, frameHeaderBytes, scanSegment } from '../storage/wal-format.ts';

/** A storage write failed; the node must stop. */
export class StorageFailedError extends BulwarkError {
  static override readonly name = 'StorageFailedError';
  constructor(what: string, cause: unknown) {
    super('storage_failed', `storage failure (${what}): ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** Log tuning. */
export interface WalOptions {
  /** Bytes per segment (default 64 MiB). */
  readonly segmentBytes?: number;
  /** Zero-fill the next segment in the background (default true). */
  readonly preallocate?: boolean;
  /**
   * Keep the current segment zero-filled this many bytes ahead of its end (default 4 MiB; 0 turns
   * the fill off). Ignored when `preallocate` is false.
   */
  readonly fillAheadBytes?: number;
}

/** What opening the log found. */
export interface WalRecovery {
  /** Data frames in order. */
  readonly frames: { readonly frameNo: number; readonly body: Uint8Array }[];
  /** Bytes zeroed at the torn tail of the last segment. */
  readonly tornBytes: number;
  /** Segments on disk after recovery. */
  readonly segments: number;
  /** Frame number of the first segment's header frame. */
  readonly firstFrameNo: number;
  /** True when no log existed and an empty one was created. */
  readonly created: boolean;
}

const segName = (index: number): string => `seg-${String(index).padStart(10, '0')}.wal`;
const segPattern = /^seg-(\d{10})\.wal$/;
const zeroChunk = new Uint8Array(1 << 20);

/** Syncs a directory so renames and creations in it are durable. */
export function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function openDsync(path: string): number {
  return openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_DSYNC, 0o644);
}

/** Segmented write-ahead log with preallocation and fatal write errors. */
export class Wal {
  private fd: number;
  private segIndex: number;
  private end: number;
  private chain: number;
  private frameNo: number;
  /** Segment index and first frame number of every segment on disk. */
  private readonly segments: { index: number; firstFrameNo: number }[];
  private busy = false;
  private failed: Error | undefined;
  private closed = false;
  private preparing = false;
  /** `next.tmp` holds `nextHeadBytes` of durable zeros. */
  private prepared = false;
  /** How much of the next segment `next.tmp` zero-fills: the fill-ahead distance, or all of it when the fill is off. */
  private readonly nextHeadBytes: number;
  private readonly segmentBytes: number;
  private readonly preallocate: boolean;
  private readonly fillAheadBytes: number;
  private readonly fillChunkBytes: number;
  /** Offsets of the current segment below this are allocated and durable (frames or zeros). */
  private filled: number;
  /** The zero write in flight, if any. */
  private filling: { readonly from: number; readonly to: number } | undefined;
  /** End of the append in flight, if any. */
  private busyEnd = 0;
  /** An append waiting for the zero write in flight. */
  private waiting: (() => void) | undefined;
  /** close() was called: no new zero write starts. */
  private closing = false;
  /** Filling stopped for good (no space left). */
  private fillStopped = false;
  /** Appends, rolls, bytes written, preallocated segments used, and bytes zero-filled ahead. */
  readonly stats = { appends: 0, rolls: 0, bytes: 0, preallocatedUsed: 0, filledAhead: 0, appendsWaited: 0 };

  private constructor(
    private readonly dir: string,
    opts: WalOptions,
    state: { fd: number; segIndex: number; end: number; chain: number; frameNo: number; segments: { index: number; firstFrameNo: number }[] },
  ) {
    this.segmentBytes = opts.segmentBytes ?? 64 << 20;
    this.preallocate = opts.preallocate ?? true;
    const ahead = opts.fillAheadBytes ?? 4 << 20;
    this.fillAheadBytes = this.preallocate ? ahead : 0;
    this.fillChunkBytes = this.fillAheadBytes > 0 ? Math.max(4096, Math.min(zeroChunk.length, Math.floor(ahead / 4))) : zeroChunk.length;
    this.nextHeadBytes = this.fillAheadBytes > 0 ? Math.min(this.segmentBytes, this.fillAheadBytes) : this.segmentBytes;
    this.filled = fstatSync(state.fd).size;
    this.fd = state.fd;
    this.segIndex = state.segIndex;
    this.end = state.end;
    this.chain = state.chain;
    this.frameNo = state.frameNo;
    this.segments = state.segments;
  }

  /** Opens (creating if needed) the log in `dir`, recovering its frames. */
  static open(dir: string, opts: WalOptions = {}): { wal: Wal; recovery: WalRecovery } {
    const ahead = opts.fillAheadBytes;
    if (ahead !== undefined && (!Number.isSafeInteger(ahead) || ahead < 0)) throw new RangeError(`fillAheadBytes must be a non-negative integer, got ${ahead}`);
    mkdirSync(dir, { recursive: true });
    rmSync(join(dir, 'next.tmp'), { force: true });
    let indices = readdirSync(dir)
      .map((f) => segPattern.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (let i = 1; i < indices.length; i++) {
      if (indices[i] !== indices[i - 1]! + 1) throw new StorageCorruptError(join(dir, segName(indices[i - 1]! + 1)), 'log segment missing');
    }
    const frames: { frameNo: number; body: Uint8Array }[] = [];
    const segments: { index: number; firstFrameNo: number }[] = [];
    let tornBytes = 0;
    let prev: { chain: number; next: number } | undefined;
    let tail: { index: number; end: number; chain: number; next: number } | undefined;
    for (let i = 0; i < indices.length; i++) {
      const index = indices[i]!;
      const path = join(dir, segName(index));
      const bytes = readFileSync(path);
      const last = i === indices.length - 1;
      const scan = scanSegment(bytes, last);
      if (last && scan.end === 0 && scan.verdict !== 'corrupt' && i > 0) {
        // A roll cut short by the crash: the header never became durable. The previous
        // segment is the last one.
        rmSync(path);
        fsyncDir(dir);
        indices = indices.slice(0, i);
        break;
      }
      if (scan.verdict === 'corrupt') throw new StorageCorruptError(path, scan.reason ?? 'corrupt segment');
      if (scan.end === 0) {
        // The only segment, and its header is missing: a fresh log.
        rmSync(path);
        indices = [];
        break;
      }
      if (scan.segIndex !== index) throw new StorageCorruptError(path, `segment header names index ${scan.segIndex}`);
      if (prev !== undefined && (scan.prevChain !== prev.chain || scan.firstFrameNo !== prev.next)) {
        throw new StorageCorruptError(path, 'segment does not continue the previous segment (chain CRC or frame number)');
      }
      if (scan.verdict === 'torn') {
        const fd = openSync(path, 'r+');
        try {
          for (let off = scan.end; off < scan.dirtyEnd; off += zeroChunk.length) writeSync(fd, zeroChunk, 0, Math.min(zeroChunk.length, scan.dirtyEnd - off), off);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        tornBytes += scan.dirtyEnd - scan.end;
      }
      for (const f of scan.frames) frames.push({ frameNo: f.frameNo, body: f.body });
      segments.push({ index, firstFrameNo: scan.firstFrameNo! });
      prev = { chain: scan.chain, next: scan.nextFrameNo };
      tail = { index, end: scan.end, chain: scan.chain, next: scan.nextFrameNo };
    }
    if (tail === undefined) {
      const index = 0;
      const fd = openDsync(join(dir, segName(index)));
      const start = encodeSegmentStart(index, 0, 0);
      writeSync(fd, start.bytes, 0, start.bytes.length, 0);
      fsyncDir(dir);
      segments.push({ index, firstFrameNo: 0 });
      const wal = new Wal(dir, opts, { fd, segIndex: index, end: start.bytes.length, chain: start.chain, frameNo: 1, segments });
      wal.fillAhead();
      return { wal, recovery: { frames, tornBytes, segments: 1, firstFrameNo: 0, created: true } };
    }
    const fd = openDsync(join(dir, segName(tail.index)));
    const wal = new Wal(dir, opts, { fd, segIndex: tail.index, end: tail.end, chain: tail.chain, frameNo: tail.next, segments });
    // The next segment is prepared once this one is half full (append), not at start: four
    // nodes starting together would otherwise write 256 MiB of zeros while they begin serving.
    if (tail.end > wal.segmentBytes / 2) wal.prepareNext();
    wal.fillAhead();
    return { wal, recovery: { frames, tornBytes, segments: segments.length, firstFrameNo: segments[0]!.firstFrameNo, created: false } };
  }

  /** Frame number the next append gets. */
  get nextFrameNo(): number {
    return this.frameNo;
  }

  /** Segments on disk. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /**
   * Appends one data frame whose body is the concatenation of `chunks`; `done` runs once it is
   * durable (with its frame number) or failed. One append at a time.
   */
  append(chunks: readonly Uint8Array[], done: (err: Error | null, frameNo: number) => void): void {
    if (this.failed !== undefined) return done(this.failed, -1);
    if (this.closed) return done(new StorageFailedError('log append', 'log is closed'), -1);
    if (this.busy) return done(new StorageFailedError('log append', 'an append is already in flight'), -1);
    let size = frameHeaderBytes;
    for (const c of chunks) size += c.length;
    const rolls = this.end + size > this.segmentBytes && this.end > frameHeaderBytes + 20;
    if (this.filling !== undefined && (rolls || this.end + size > this.filling.from)) {
      // It would reach into the zero write in flight, or roll away its descriptor: wait for it.
      this.busy = true;
      this.stats.appendsWaited += 1;
      this.waiting = () => {
        this.busy = false;
        this.append(chunks, done);
      };
      return;
    }
    try {
      if (rolls) this.roll();
    } catch (e) {
      return done(this.fail(new StorageFailedError('log segment roll', e)), -1);
    }
    const frameNo = this.frameNo;
    const { header, chain } = encodeFrameHeader(FrameType.data, frameNo, chunks, this.chain);
    this.busy = true;
    this.busyEnd = this.end + size;
    writev(this.fd, [header, ...chunks], this.end, (err, written) => {
      this.busy = false;
      if (err !== null) return done(this.fail(new StorageFailedError('log append (O_DSYNC writev)', err)), -1);
      if (written !== size) return done(this.fail(new StorageFailedError('log append', `short write: ${written} of ${size} bytes`)), -1);
      this.end += size;
      this.chain = chain;
      this.frameNo = frameNo + 1;
      this.stats.appends += 1;
      this.stats.bytes += size;
      if (this.end > this.filled) this.filled = this.end;
      if (this.end > this.segmentBytes / 2) this.prepareNext();
      this.fillAhead();
      done(null, frameNo);
    });
  }

  /** Removes whole segments all of whose frames are below `frameNo` (they are in a snapshot). */
  removeBefore(frameNo: number): void {
    let removed = false;
    while (this.segments.length > 1 && this.segments[1]!.firstFrameNo <= frameNo) {
      const s = this.segments.shift()!;
      rmSync(join(this.dir, segName(s.index)), { force: true });
      removed = true;
    }
    if (removed) fsyncDir(this.dir);
  }

  private roll(): void {
    const index = this.segIndex + 1;
    const path = join(this.dir, segName(index));
    const tmp = join(this.dir, 'next.tmp');
    let filled = 0;
    if (this.prepared && existsSync(tmp)) {
      renameSync(tmp, path);
      this.stats.preallocatedUsed += 1;
      filled = this.nextHeadBytes;
    }
    this.prepared = false;
    const fd = openDsync(path);
    const start = encodeSegmentStart(index, this.frameNo, this.chain);
    writeSync(fd, start.bytes, 0, start.bytes.length, 0);
    fsyncDir(this.dir);
    const old = this.fd;
    close(old, () => {});
    this.fd = fd;
    this.segIndex = index;
    this.end = start.bytes.length;
    this.filled = Math.max(filled, this.end);
    this.chain = start.chain;
    this.segments.push({ index, firstFrameNo: this.frameNo });
    this.frameNo += 1;
    this.stats.rolls += 1;
    if (this.preallocate) this.prepareNext();
  }

  /**
   * Starts one O_DSYNC zero write past the filled part of the current segment when less than half
   * the fill-ahead distance is left, never below the end of the append in flight.
   */
  private fillAhead(): void {
    if (this.fillAheadBytes === 0 || this.fillStopped || this.filling !== undefined || this.closing || this.failed !== undefined) return;
    const base = this.busy ? this.busyEnd : this.end;
    if (this.filled - base >= this.fillAheadBytes / 2) return;
    const from = Math.max(this.filled, base);
    const to = Math.min(this.segmentBytes, from + this.fillChunkBytes, base + this.fillAheadBytes);
    if (to <= from) return;
    let fd: number;
    try {
      fd = openSync(join(this.dir, segName(this.segIndex)), constants.O_WRONLY | constants.O_DSYNC);
    } catch {
      this.fillStopped = true;
      return;
    }
    this.filling = { from, to };
    write(fd, zeroChunk, 0, to - from, from, (err, written) => {
      close(fd, () => {});
      this.filling = undefined;
      if (err !== null && err.code !== 'ENOSPC') {
        this.fail(new StorageFailedError('log fill ahead (O_DSYNC write)', err));
      } else if (err !== null || written !== to - from) {
        // No room for more zeros: appends grow the file from here, as without the fill.
        this.fillStopped = true;
      } else {
        this.stats.filledAhead += to - from;
        if (to > this.filled) this.filled = to;
      }
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting !== undefined) waiting();
      else this.fillAhead();
    });
  }

  /**
   * Zero-fills the head of `next.tmp` in the background: the fill-ahead distance (the whole
   * segment when the fill is off), one O_DSYNC chunk at a time. Small synced writes keep the
   * disk's other writers moving; one buffered 64 MiB write and its fsync stalled every node's
   * appends for about a second, with all nodes preparing at the same log position.
   */
  private prepareNext(): void {
    if (!this.preallocate || this.preparing || this.prepared || this.closing || this.failed !== undefined) return;
    this.preparing = true;
    let fd: number;
    try {
      fd = openSync(join(this.dir, 'next.tmp'), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DSYNC, 0o644);
    } catch {
      this.preparing = false;
      return;
    }
    const size = this.nextHeadBytes;
    let off = 0;
    const step = (): void => {
      if (this.closing) {
        close(fd, () => {});
        this.preparing = false;
        return;
      }
      if (off >= size) {
        close(fd, () => {});
        this.preparing = false;
        this.prepared = true;
        return;
      }
      const n = Math.min(this.fillChunkBytes, size - off);
      write(fd, zeroChunk, 0, n, off, (err, written) => {
        if (err !== null || written !== n) {
          // Preallocation is an optimisation: a later roll creates the segment directly.
          close(fd, () => {});
          this.preparing = false;
          return;
        }
        off += n;
        step();
      });
    };
    step();
  }

  private fail(e: Error): Error {
    this.failed ??= e;
    return this.failed;
  }

  /** Closes the log (after the append in flight, if any). */
  async close(): Promise<void> {
    this.closing = true;
    while (this.busy || this.filling !== undefined || this.preparing) await new Promise((r) => setTimeout(r, 1));
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
