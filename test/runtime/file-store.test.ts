/**
 * FileStore on the segmented write-ahead log: durability, group atomicity, the recovery
 * decision table (torn tail zeroed, corruption refused and never truncated), checksummed blobs
 * (repairable keys dropped, others refused), segment rolling and crash-safe compaction.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore, SplitStore } from '../../src/runtime/file-store.ts';
import { StorageCorruptError } from '../../src/core/errors.ts';
import { scanSegment } from '../../src/storage/wal-format.ts';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'bulwark-fs-'));
}
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

function same(a: ReadonlyMap<string, Uint8Array>, b: ReadonlyMap<string, Uint8Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || !Buffer.from(v).equals(Buffer.from(w))) return false;
  }
  return true;
}

function segments(dir: string): string[] {
  return readdirSync(join(dir, 'wal'))
    .filter((f) => f.endsWith('.wal'))
    .sort()
    .map((f) => join(dir, 'wal', f));
}

/** Offset just past the last frame of a segment file. */
function segmentEnd(path: string): number {
  return scanSegment(readFileSync(path), true).end;
}

const small = { segmentBytes: 64 * 1024, preallocate: false };

test('writes survive a reopen: puts, overwrites, deletes, and 2 MiB+ values kept as blobs', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  const ps: Promise<void>[] = [];
  for (let i = 0; i < 500; i++) ps.push(s.write([[`k${i % 50}`, bytes(40, i & 255)]], i % 9 === 0 ? [`k${(i + 3) % 50}`] : []));
  ps.push(s.write([['big', bytes(3_000_000, 7)]], []));
  await Promise.all(ps);
  assert.ok(s.stats.syncs < 500, `group commit: ${s.stats.syncs} frames for 501 writes`);
  await s.close();
  const r = FileStore.open(dir);
  assert.ok(same(s.map, r.map));
  assert.equal(r.map.get('big')?.length, 3_000_000);
  assert.equal(readdirSync(join(dir, 'blobs')).length, 1, 'the big value has its own file');
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

const cpFiles = { ownFile: (k: string): boolean => k.startsWith('cp') };

test('a blob key put, then deleted later in the log, recovers (its file is gone)', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, cpFiles);
  await s.write([['cp/1', bytes(100_000, 1)]], []);
  await s.write([['cp/2', bytes(100_000, 2)]], []);
  await s.write([], ['cp/1']);
  await s.close();
  assert.equal(readdirSync(join(dir, 'blobs')).length, 1, "the deleted key's blob file was removed");
  const r = FileStore.open(dir, cpFiles);
  assert.deepEqual([...r.map.keys()], ['cp/2']);
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a torn frame at the end of the last segment is not applied; its bytes are zeroed; writing goes on', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, small);
  await s.write([['a', bytes(8, 1)]], []);
  await s.write([['b', bytes(300, 2)]], []);
  await s.close();
  const [seg] = segments(dir);
  const buf = readFileSync(seg!);
  const end = segmentEnd(seg!);
  // Re-create the tail as a crash would leave it: the last frame's first 100 bytes only.
  const lastStart = scanSegment(buf, true).frames.at(-1)!.offset;
  const torn = Buffer.from(buf);
  torn.fill(0, lastStart + 100, end);
  writeFileSync(seg!, torn);
  const r = FileStore.open(dir, small);
  assert.equal(r.map.get('b'), undefined, 'the torn write is not visible');
  assert.deepEqual(Buffer.from(r.map.get('a')!), Buffer.from(bytes(8, 1)));
  assert.equal(r.stats.tornTailBytes, 100);
  assert.ok(readFileSync(seg!).subarray(lastStart).every((x) => x === 0), 'the torn bytes were zeroed');
  await r.write([['c', bytes(5, 3)]], []);
  await r.close();
  const again = FileStore.open(dir, small);
  assert.deepEqual([...again.map.keys()].sort(), ['a', 'c']);
  assert.equal(again.stats.tornTailBytes, 0);
  await again.close();
  rmSync(dir, { recursive: true, force: true });
});

test('garbage after the last frame is a torn tail: zeroed', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, small);
  await s.write([['a', bytes(8, 1)]], []);
  await s.close();
  const [seg] = segments(dir);
  const end = segmentEnd(seg!);
  const buf = Buffer.concat([readFileSync(seg!).subarray(0, end), Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 5]), Buffer.alloc(100)]);
  writeFileSync(seg!, buf);
  const r = FileStore.open(dir, small);
  assert.equal(r.map.size, 1);
  assert.equal(r.stats.tornTailBytes, 9);
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a damaged frame followed by intact ones is corruption: StorageCorruptError naming the file, nothing changed', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, small);
  for (let i = 0; i < 5; i++) await s.write([[`k${i}`, bytes(16, i)]], []);
  await s.close();
  const [seg] = segments(dir);
  const buf = readFileSync(seg!);
  const f = scanSegment(buf, true).frames[1]!;
  buf[f.offset + 30] = buf[f.offset + 30]! ^ 0xff;
  writeFileSync(seg!, buf);
  assert.throws(
    () => FileStore.open(dir, small),
    (e: unknown) => e instanceof StorageCorruptError && e.message.includes('seg-0000000000.wal') && /valid frame follows/.test(e.message),
  );
  assert.deepEqual(readFileSync(seg!), buf, 'the log was not truncated or repaired');
  rmSync(dir, { recursive: true, force: true });
});

test('segments roll and chain; damage in an earlier segment is corruption even at its end', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { ...small, compactBytes: 1 << 30 });
  for (let i = 0; i < 400; i++) await s.write([[`k${i % 40}`, bytes(1000, i & 255)]], []);
  assert.ok(s.segments >= 4, `rolled into ${s.segments} segments`);
  await s.close();
  const r = FileStore.open(dir, small);
  assert.ok(same(s.map, r.map));
  await r.close();
  const first = segments(dir)[0]!;
  const buf = readFileSync(first);
  const frames = scanSegment(buf, false).frames;
  const lastFrame = frames.at(-1)!;
  buf[lastFrame.offset + 40] = buf[lastFrame.offset + 40]! ^ 1;
  writeFileSync(first, buf);
  assert.throws(() => FileStore.open(dir, small), (e: unknown) => e instanceof StorageCorruptError && /not the last/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('a missing segment in the middle of the log is corruption', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { ...small, compactBytes: 1 << 30 });
  for (let i = 0; i < 300; i++) await s.write([[`k${i % 40}`, bytes(1000, 1)]], []);
  await s.close();
  const segs = segments(dir);
  assert.ok(segs.length >= 3);
  rmSync(segs[1]!);
  assert.throws(() => FileStore.open(dir, small), (e: unknown) => e instanceof StorageCorruptError && /segment missing/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('a damaged blob: corruption naming the key, unless the key is repairable (then dropped, and it stays dropped)', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { ownFile: (k) => k.startsWith('x/cp/') });
  await s.write([['x/cp/9', bytes(700, 3)]], []);
  await s.write([['o/big', bytes(2_500_000, 4)]], []);
  await s.close();
  const blobFor = (key: string): string => join(dir, 'blobs', readdirSync(join(dir, 'blobs')).find((f) => f.startsWith(Buffer.from(key).toString('hex')))!);
  const cp = blobFor('x/cp/9');
  const b = readFileSync(cp);
  b[500] = b[500]! ^ 0x40;
  writeFileSync(cp, b);
  assert.throws(() => FileStore.open(dir), (e: unknown) => e instanceof StorageCorruptError && /x\/cp\/9/.test(e.message) && /checksum/.test(e.message));
  const repairable = (k: string): boolean => k.startsWith('x/cp/');
  const r = FileStore.open(dir, { repairable });
  assert.deepEqual(r.repaired, ['x/cp/9']);
  assert.deepEqual([...r.map.keys()], ['o/big']);
  await r.close();
  const again = FileStore.open(dir, { repairable });
  assert.deepEqual(again.repaired, [], 'the dropped key does not come back from the log');
  assert.deepEqual([...again.map.keys()], ['o/big']);
  await again.close();
  // A damaged blob of a key that is not repairable stops the node.
  rmSync(blobFor('o/big'));
  assert.throws(() => FileStore.open(dir, { repairable }), (e: unknown) => e instanceof StorageCorruptError && /o\/big/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('compaction writes a snapshot and removes covered segments; reopen is equal; a damaged snapshot is refused', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { ...small, compactBytes: 200 * 1024, ...cpFiles });
  for (let i = 0; i < 1500; i++) await s.write([[`k${i % 300}`, bytes(400, i & 255)], ['cp', bytes(70_000, i & 255)]], i % 7 === 0 ? [`k${(i + 1) % 300}`] : []);
  assert.ok(s.stats.compactions >= 2, `compacted ${s.stats.compactions} times`);
  assert.ok(s.segments <= 6, `old segments removed (${s.segments} left)`);
  await s.close();
  assert.equal(readdirSync(join(dir, 'blobs')).length, 1, 'superseded blobs removed');
  const r = FileStore.open(dir, small);
  assert.ok(same(s.map, r.map));
  await r.close();
  const snap = readFileSync(join(dir, 'state.snap'));
  snap[snap.length >> 1] = snap[snap.length >> 1]! ^ 2;
  writeFileSync(join(dir, 'state.snap'), snap);
  assert.throws(() => FileStore.open(dir, small), (e: unknown) => e instanceof StorageCorruptError && /snapshot checksum/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('copies of the directory taken while writes are in flight recover every write acknowledged before the copy', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { ...small, compactBytes: 256 * 1024 });
  const acked = new Map<string, number>();
  const copies: { path: string; ackedBefore: Map<string, number> }[] = [];
  let version = 0;
  for (let round = 0; round < 30; round++) {
    const ps: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      const key = `k${(round * 20 + i) % 97}`;
      const v = ++version;
      const value = bytes(50 + (v % 3000), v & 255);
      new DataView(value.buffer).setUint32(0, v);
      ps.push(s.write([[key, value]], []).then(() => {
        if ((acked.get(key) ?? 0) < v) acked.set(key, v);
      }));
    }
    if (round % 5 === 4) {
      const path = `${dir}-copy${round}`;
      const ackedBefore = new Map(acked);
      cpSync(dir, path, { recursive: true });
      copies.push({ path, ackedBefore });
    }
    await Promise.all(ps);
  }
  await s.close();
  for (const c of copies) {
    const r = FileStore.open(c.path, small);
    for (const [key, v] of c.ackedBefore) {
      const got = r.map.get(key);
      assert.ok(got !== undefined, `acknowledged ${key} lost in ${c.path}`);
      // Each value starts with its version: a recovered value is at least as new as the acked one.
      const gotVersion = new DataView(got.buffer, got.byteOffset).getUint32(0);
      assert.ok(gotVersion >= v, `${key} went back from version ${v} to ${gotVersion}`);
    }
    await r.close();
    rmSync(c.path, { recursive: true, force: true });
  }
  assert.ok(!existsSync(join(dir, 'state.log.0')));
  rmSync(dir, { recursive: true, force: true });
});

test('an older data directory format is refused with a clear error', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'state.log.0'), Buffer.from([1, 2, 3]));
  assert.throws(() => FileStore.open(dir), (e: unknown) => e instanceof StorageCorruptError && /older bulwark version/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('SplitStore: checkpoint keys go to their own store, the rest to the main one; a write touching both resolves when both are durable; both reopen', async () => {
  const dir = tempDir();
  const isCp = (k: string): boolean => k.startsWith('x/cp/');
  const open = (): SplitStore => new SplitStore(FileStore.open(dir), FileStore.open(join(dir, 'checkpoints'), { ownFile: isCp, repairable: isCp }), isCp);
  const s = open();
  await s.write([['o/s/1', bytes(10, 1)], ['x/cp/4/0', bytes(100, 2)]], []);
  await s.write([['x/cp/4', bytes(20, 3)]], ['o/s/1']);
  assert.deepEqual([...s.map.keys()].sort(), ['x/cp/4', 'x/cp/4/0']);
  assert.equal(readdirSync(join(dir, 'checkpoints', 'blobs')).length, 2, 'each checkpoint part in its own file, under checkpoints/');
  assert.equal(existsSync(join(dir, 'blobs')) ? readdirSync(join(dir, 'blobs')).length : 0, 0, 'nothing of the checkpoint in the main store');
  await s.close();
  const r = open();
  assert.ok(same(s.map, r.map));
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The keys a store in `dir` recovers, sorted; the directory is removed afterwards. */
async function keysAfterReopen(dir: string): Promise<string[]> {
  const s = FileStore.open(dir);
  const keys = [...s.map.keys()].sort();
  await s.close();
  rmSync(dir, { recursive: true, force: true });
  return keys;
}

test('deferLazyMs: a lazy write waits for the next waited-for write and shares its frame; alone, the timer or close writes it', async () => {
  const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  // Held: no sync until a write that is waited for comes; then one frame carries both, in order.
  const dir = tempDir();
  const s = FileStore.open(dir, { deferLazyMs: 60_000 });
  let lazyDone = false;
  void s.write([['k', bytes(3, 1)]], [], true).then(() => {
    lazyDone = true;
  });
  await settle(50);
  assert.equal(s.stats.syncs, 0, 'the lazy write is held');
  assert.equal(lazyDone, false);
  await s.write([['k', bytes(3, 2)], ['m', bytes(1, 9)]], []);
  assert.equal(s.stats.syncs, 1, 'one frame for both');
  await settle(0);
  assert.equal(lazyDone, true, 'the lazy write is durable with it');
  // Alone, close writes it before closing.
  void s.write([['z', bytes(2, 7)]], [], true);
  await s.close();
  const r = FileStore.open(dir);
  assert.deepEqual([...r.map.keys()].sort(), ['k', 'm', 'z']);
  assert.equal(r.map.get('k')![0], 2, 'the later write wins');
  await r.close();
  rmSync(dir, { recursive: true, force: true });

  // Queued behind a group in flight when close is called: still written.
  const dir1 = tempDir();
  const q = FileStore.open(dir1, { deferLazyMs: 60_000 });
  const first = q.write([['a', bytes(1, 1)]], []);
  void q.write([['b', bytes(1, 2)]], [], true);
  await q.close();
  await first;
  assert.deepEqual(await keysAfterReopen(dir1), ['a', 'b']);

  // Accepted while close() awaits a compaction: written too.
  const dirC = tempDir();
  const w = FileStore.open(dirC, { deferLazyMs: 60_000, compactBytes: 1 });
  await w.write([['a', bytes(64, 1)]], []); // its frame starts a compaction
  const closing = w.close();
  void w.write([['late', bytes(1, 3)]], [], true);
  await closing;
  assert.deepEqual(await keysAfterReopen(dirC), ['a', 'late']);

  // Alone, the timer writes it.
  const dir2 = tempDir();
  const t = FileStore.open(dir2, { deferLazyMs: 20 });
  await t.write([['a', bytes(1, 1)]], [], true);
  assert.equal(t.stats.syncs, 1);
  await t.close();
  rmSync(dir2, { recursive: true, force: true });

  // Without the option a lazy write is synced at once; so is every write with durability `sync`.
  for (const opts of [{}, { deferLazyMs: 60_000, groupCommit: false }]) {
    const dir3 = tempDir();
    const u = FileStore.open(dir3, opts);
    void u.write([['b', bytes(1, 1)]], [], true);
    await settle(50);
    assert.equal(u.stats.syncs, 1, JSON.stringify(opts));
    await u.close();
    rmSync(dir3, { recursive: true, force: true });
  }
});
