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
