/**
 * The segmented log on real files: segments preallocated in the background are used by later
 * rolls; the current segment is zero-filled ahead of its end without ever covering a frame;
 * every appended frame comes back in order after a reopen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal } from '../../src/runtime/wal.ts';

const append = (wal: Wal, body: Uint8Array): Promise<number> =>
  new Promise((resolve, reject) => {
    wal.append([body.subarray(0, 10), body.subarray(10)], (err, frameNo) => (err === null ? resolve(frameNo) : reject(err)));
  });

test('rolls use segments zero-filled in the background; a reopen returns every frame in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-wal-'));
  const { wal, recovery } = Wal.open(dir, { segmentBytes: 64 * 1024 });
  assert.equal(recovery.created, true);
  const bodies: Uint8Array[] = [];
  let last = 0;
  for (let i = 0; i < 60; i++) {
    const body = new Uint8Array(5000).fill(i + 1);
    bodies.push(body);
    // Frame numbers increase; each segment's header frame takes one too.
    const frameNo = await append(wal, body);
    assert.ok(frameNo > last, `frame ${frameNo} after ${last}`);
    last = frameNo;
    // Give the background preparation a chance between appends, as a live node would.
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(wal.stats.rolls >= 3, `rolled ${wal.stats.rolls} times`);
  assert.ok(wal.stats.preallocatedUsed >= 1, `used ${wal.stats.preallocatedUsed} preallocated segments`);
  await wal.close();
  assert.ok(readdirSync(dir).filter((f) => f.endsWith('.wal')).length >= 4);
  const again = Wal.open(dir, { segmentBytes: 64 * 1024 });
  assert.equal(again.recovery.frames.length, 60);
  again.recovery.frames.forEach((f, i) => assert.deepEqual(Buffer.from(f.body), Buffer.from(bodies[i]!)));
  await again.wal.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the first segment is zero-filled ahead of its end; an append reaching into the fill waits for it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-wal-'));
  const segmentBytes = 1 << 20;
  const ahead = 64 * 1024;
  const { wal } = Wal.open(dir, { segmentBytes, fillAheadBytes: ahead });
  const seg = join(dir, readdirSync(dir).find((f) => f.endsWith('.wal'))!);
  // Opening started a zero write right after the header; the first append would overlap it.
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < 40; i++) {
    const body = new Uint8Array(3000).fill(i + 1);
    bodies.push(body);
    await append(wal, body);
  }
  assert.equal(wal.stats.appendsWaited >= 1, true, 'the first append waited for the fill');
  // Let the fill catch up, then the file reaches at least half the distance past the frames.
  for (let i = 0; i < 200 && statSync(seg).size < wal.stats.bytes + ahead / 2; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(statSync(seg).size >= wal.stats.bytes + ahead / 2, `segment is ${statSync(seg).size} bytes after ${wal.stats.bytes} bytes of frames`);
  assert.ok(statSync(seg).size <= segmentBytes, 'the fill stops at the segment size');
  assert.ok(wal.stats.filledAhead >= ahead / 2);
  await wal.close();
  const again = Wal.open(dir, { segmentBytes, fillAheadBytes: ahead });
  assert.equal(again.recovery.tornBytes, 0, 'the zeros after the last frame are not a torn tail');
  assert.equal(again.recovery.frames.length, bodies.length);
  again.recovery.frames.forEach((f, i) => assert.deepEqual(Buffer.from(f.body), Buffer.from(bodies[i]!)));
  // The reopened log appends after the zeros' start, and a third open still finds every frame.
  await append(again.wal, new Uint8Array(100).fill(99));
  await again.wal.close();
  const third = Wal.open(dir, { segmentBytes, fillAheadBytes: 0 });
  assert.equal(third.recovery.frames.length, bodies.length + 1);
  await third.wal.close();
  rmSync(dir, { recursive: true, force: true });
});

test('fill ahead off: the segment grows only with its frames', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-wal-'));
  const { wal } = Wal.open(dir, { segmentBytes: 1 << 20, fillAheadBytes: 0 });
  const seg = join(dir, readdirSync(dir).find((f) => f.endsWith('.wal'))!);
  for (let i = 0; i < 5; i++) await append(wal, new Uint8Array(1000).fill(i + 1));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(wal.stats.filledAhead, 0);
  assert.ok(statSync(seg).size < 10_000, `segment is ${statSync(seg).size} bytes`);
  await wal.close();
  assert.throws(() => Wal.open(dir, { fillAheadBytes: -1 }), /fillAheadBytes/);
  rmSync(dir, { recursive: true, force: true });
});

test('the next segment is prepared only as far as the fill-ahead distance; the fill carries on after the roll', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-wal-'));
  const segmentBytes = 1 << 20;
  const ahead = 64 * 1024;
  const { wal } = Wal.open(dir, { segmentBytes, fillAheadBytes: ahead });
  const tmp = join(dir, 'next.tmp');
  const body = new Uint8Array(4000).fill(7);
  // Past half the segment, next.tmp is zero-filled to the fill-ahead distance and no further.
  while (wal.stats.bytes < segmentBytes / 2 + 8000) await append(wal, body);
  for (let i = 0; i < 200 && !(readdirSync(dir).includes('next.tmp') && statSync(tmp).size >= ahead); i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(statSync(tmp).size, ahead, 'next.tmp holds the head of a segment, not a whole one');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(statSync(tmp).size, ahead, 'and stays there');
  // Roll into it (the rolling append may wait for a zero write still in flight in the old
  // segment); the first appends after the roll overwrite its zeros without waiting for a fill.
  while (wal.stats.rolls === 0) await append(wal, body);
  assert.equal(wal.stats.preallocatedUsed, 1);
  const waitedBefore = wal.stats.appendsWaited;
  for (let i = 0; i < 3; i++) await append(wal, body);
  assert.equal(wal.stats.appendsWaited, waitedBefore, 'no append waited after the roll');
  const second = join(dir, readdirSync(dir).filter((f) => f.endsWith('.wal')).sort()[1]!);
  // Then the fill keeps the new segment zero-filled ahead of its frames.
  for (let i = 0; i < 40; i++) await append(wal, body);
  for (let i = 0; i < 200 && statSync(second).size < 44 * 4024 + ahead / 2; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(statSync(second).size >= 44 * 4024 + ahead / 2, `second segment is ${statSync(second).size} bytes`);
  assert.ok(statSync(second).size < segmentBytes, 'never zero-filled whole at once');
  await wal.close();
  const again = Wal.open(dir, { segmentBytes, fillAheadBytes: ahead });
  assert.equal(again.recovery.tornBytes, 0);
  assert.equal(again.recovery.frames.length, wal.stats.appends);
  await again.wal.close();
  rmSync(dir, { recursive: true, force: true });
});

test('with the fill off, the next segment is still prepared whole', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-wal-'));
  const segmentBytes = 256 * 1024;
  const { wal } = Wal.open(dir, { segmentBytes, fillAheadBytes: 0 });
  const tmp = join(dir, 'next.tmp');
  while (wal.stats.bytes < segmentBytes / 2 + 8000) await append(wal, new Uint8Array(4000).fill(3));
  for (let i = 0; i < 200 && !(readdirSync(dir).includes('next.tmp') && statSync(tmp).size >= segmentBytes); i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(statSync(tmp).size, segmentBytes);
  await wal.close();
  rmSync(dir, { recursive: true, force: true });
});
