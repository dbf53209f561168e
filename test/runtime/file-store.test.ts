/**
 * FileStore: durability, group atomicity and the recovery decision table (torn tail truncated,
 * corruption refused, never silently dropped), blobs, and crash-safe compaction.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/runtime/file-store.ts';
import { StorageCorruptError } from '../../src/core/errors.ts';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'bulwark-fs-'));
}
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

function same(a: ReadonlyMap<string, Uint8Array>, b: ReadonlyMap<string, Uint8Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!Buffer.from(v).equals(Buffer.from(b.get(k) ?? new Uint8Array([1, 2, 3, 4, 5])))) return false;
  return true;
}

test('writes survive a reopen: puts, overwrites, deletes, and 64 KiB+ values kept as blobs', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  const ps: Promise<void>[] = [];
  for (let i = 0; i < 500; i++) ps.push(s.write([[`k${i % 50}`, bytes(40, i & 255)]], i % 9 === 0 ? [`k${(i + 3) % 50}`] : []));
  ps.push(s.write([['big', bytes(200_000, 7)]], []));
  await Promise.all(ps);
  assert.ok(s.stats.syncs < 500, `group commit: ${s.stats.syncs} syncs for 501 writes`);
  await s.close();
  const r = FileStore.open(dir);
  assert.ok(same(s.map, r.map));
  assert.equal(r.map.get('big')?.length, 200_000);
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a blob key put, then deleted later in the log, recovers (its file is gone)', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  await s.write([['cp/1', bytes(100_000, 1)]], []);
  await s.write([['cp/2', bytes(100_000, 2)]], []);
  await s.write([], ['cp/1']);
  await s.close();
  assert.equal(readdirSync(join(dir, 'blobs')).length, 1, 'the deleted key\'s blob file was removed');
  const r = FileStore.open(dir);
  assert.deepEqual([...r.map.keys()], ['cp/2']);
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a torn group (records without their commit record) is not applied and is truncated', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  await s.write([['a', bytes(8, 1)]], []);
  await s.close();
  const log = join(dir, 'state.log.0');
  const good = readFileSync(log);
  // Re-append the same group's records without the final commit record (a crash mid-write).
  const commitLen = 8 + 3; // header + op + empty key
  const groupWithoutCommit = good.subarray(0, good.length - commitLen);
  const b = Buffer.from(groupWithoutCommit);
  b[b.length - 1] = 9; // a different value for 'a'
  // Fix the CRC of the modified record so the record itself is valid.
  const { crc32 } = await import('node:zlib');
  b.writeUInt32BE(crc32(b.subarray(8)), 4);
  appendFileSync(log, b);
  const r = FileStore.open(dir);
  assert.deepEqual(Buffer.from(r.map.get('a')!), Buffer.from(bytes(8, 1)), 'the uncommitted write is not visible');
  assert.equal(r.stats.tornTailBytes, b.length);
  assert.equal(readFileSync(log).length, good.length, 'truncated back to the last commit');
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('garbage at the end of the log is a torn tail: truncated', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  await s.write([['a', bytes(8, 1)]], []);
  await s.close();
  appendFileSync(join(dir, 'state.log.0'), Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 5]));
  const r = FileStore.open(dir);
  assert.equal(r.map.size, 1);
  assert.equal(r.stats.tornTailBytes, 9);
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a corrupt record followed by valid ones is corruption: StorageCorruptError, nothing truncated', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  for (let i = 0; i < 5; i++) await s.write([[`k${i}`, bytes(16, i)]], []);
  await s.close();
  const log = join(dir, 'state.log.0');
  const buf = readFileSync(log);
  buf[20] = buf[20]! ^ 0xff; // inside the first record's body
  writeFileSync(log, buf);
  assert.throws(() => FileStore.open(dir), (e: unknown) => e instanceof StorageCorruptError && /followed by valid records/.test(e.message));
  assert.equal(readFileSync(log).length, buf.length, 'the log was not truncated');
  rmSync(dir, { recursive: true, force: true });
});

test('a missing blob file is reported as corruption naming the key', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  await s.write([['cp/9', bytes(70_000, 3)]], []);
  await s.close();
  for (const f of readdirSync(join(dir, 'blobs'))) rmSync(join(dir, 'blobs', f));
  assert.throws(() => FileStore.open(dir), (e: unknown) => e instanceof StorageCorruptError && /cp\/9/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('compaction folds the log into a snapshot of the next generation; reopen is equal', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  const value = bytes(4000, 5);
  for (let i = 0; i < 2500; i++) await s.write([[`k${i % 300}`, value], ['cp', bytes(70_000, i & 255)]], []);
  assert.ok(s.stats.compactions >= 1, 'compacted at least once');
  await s.close();
  assert.ok(!existsSync(join(dir, 'state.log.0')), 'generation 0 log removed');
  const r = FileStore.open(dir);
  assert.ok(same(s.map, r.map));
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a crash after the new snapshot but before the old log is removed: the old log is ignored', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  // Fill generation 0 with stale values, and keep a copy of its log.
  for (let i = 0; i < 1000; i++) await s.write([[`k${i % 100}`, bytes(4000, 1)]], []);
  const staleLog = readFileSync(join(dir, 'state.log.0'));
  for (let i = 0; i < 2000; i++) await s.write([[`k${i % 100}`, bytes(4000, 2)]], []);
  assert.ok(s.stats.compactions >= 1);
  await s.close();
  // The crash left the generation-0 log behind.
  writeFileSync(join(dir, 'state.log.0'), staleLog);
  const r = FileStore.open(dir);
  assert.ok(same(s.map, r.map), 'no stale value came back');
  assert.ok(!existsSync(join(dir, 'state.log.0')), 'the stale log was removed');
  await r.close();
  rmSync(dir, { recursive: true, force: true });
});
