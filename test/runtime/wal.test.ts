/**
 * The segmented log on real files: segments preallocated in the background are used by later
 * rolls; every appended frame comes back in order after a reopen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
