/**
 * Checkpoints and state transfer on the simulated cluster (issue 4 items 4 and 5): sequential
 * checkpoint turns, chunked transfer from several seeders or from one, and seeders that lie. A
 * replica down across many checkpoint intervals comes back after the others garbage-collected
 * what it missed, so it must install an order checkpoint and transfer an execution checkpoint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from '../../src/sim/harness.ts';
import { nodePrincipal } from '../../src/crypto/provider.ts';
import type { StateTransferMode } from '../../src/core/config.ts';
import type { ByzantineBehaviour } from '../../src/sim/byzantine.ts';
import { decodePack, execManifestCodec } from '../../src/stages/exec/exec.ts';
import { tryDecodeWith } from '../../src/codec/schema.ts';

/** Node 2 misses many checkpoints, then comes back; returns who served it which parts. */
function recoverNode2(mode: StateTransferMode, byzantine?: ReadonlyMap<number, ReadonlySet<ByzantineBehaviour>>): { h: Harness; served: Map<number, number> } {
  // A down replica is faulty too: with a Byzantine seeder as well, that takes u = 2.
  const u = byzantine === undefined ? 1 : 2;
  const h = new Harness({ u, r: 1, keys: 40, valueBytes: 40, stateTransfer: mode, tunables: { checkpointInterval: 4, checkpointChunkBytes: 64 }, ...(byzantine !== undefined ? { byzantine } : {}) });
  const served = new Map<number, number>();
  h.world.onDelivery((from, to, msg) => {
    if (to.kind === 'node' && to.id === 2 && from.kind === 'node' && msg.kind === 'checkpointData' && msg.part > 0) served.set(from.id, (served.get(from.id) ?? 0) + 1);
  });
  h.runOps(40);
  h.world.crash(nodePrincipal(2));
  h.runOps(120);
  h.world.restart(nodePrincipal(2));
  h.runOps(30);
  h.idle(2_000_000);
  assert.ok(h.notesOf('checkpointLoaded', 2).length >= 1, 'node 2 installed checkpoints (order and execution)');
  const exec2 = h.world.replica(2)?.exec;
  const exec0 = h.world.replica(0)?.exec;
  assert.ok(exec2 !== undefined && exec0 !== undefined);
  assert.equal(exec2.next, exec0.next, 'node 2 executes at the head again');
  assert.deepEqual(Buffer.from(exec2.appCheckpoint()), Buffer.from(exec0.appCheckpoint()), 'same state as a peer');
  assert.deepEqual(h.problems(), []);
  return { h, served };
}

test('collaborative transfer: a recovering executor takes the chunks of one checkpoint from both execution peers', () => {
  const { served } = recoverNode2('collaborative');
  assert.ok((served.get(0) ?? 0) > 0 && (served.get(1) ?? 0) > 0, `chunks came from both peers: ${JSON.stringify([...served])}`);
});

test('single-sender transfer: every chunk comes from one peer', () => {
  const { served } = recoverNode2('single');
  assert.equal(served.size, 1, `chunks came from one peer: ${JSON.stringify([...served])}`);
});

for (const mode of ['collaborative', 'single'] as const) {
  test(`${mode} transfer: a seeder sending corrupted chunks is skipped and the state still matches`, () => {
    // Node 3 is the first seeder node 2 asks (peers rotate from the asker's index).
    const { h } = recoverNode2(mode, new Map([[3, new Set(['wrongCheckpoint'] as const)]]));
    assert.ok(h.notes.some((n) => n.node === 2 && n.note.type === 'rejected' && n.note.reason === 'checkpoint_data_mismatch'), 'the bad part was seen and rejected');
  });
}

test('sequential checkpoints: replica i serialises checkpoint s only after batch s + i*floor(P/3) ran; coordinated: right after s', () => {
  for (const checkpoints of ['sequential', 'coordinated'] as const) {
    const h = new Harness({ u: 1, r: 1, checkpoints, tunables: { checkpointInterval: 9, checkpointSliceMs: 0 } });
    h.runOps(150);
    const execAt = new Map<string, number>();
    for (const n of h.notes) if (n.note.type === 'executed') execAt.set(`${n.node}:${n.note.seq}`, n.atUs);
    let checked = 0;
    for (const n of h.notes) {
      if (n.note.type !== 'checkpointTaken') continue;
      const delay = checkpoints === 'sequential' ? n.node * 3 : 0;
      const due = execAt.get(`${n.node}:${n.note.seq + delay}`);
      // Serialising starts after batch s + delay ran, or when the replica sat idle for a while.
      if (due !== undefined) {
        assert.ok(n.atUs >= due, `${checkpoints}: node ${n.node} took ${n.note.seq} at ${n.atUs}, before batch ${n.note.seq + delay} ran at ${due}`);
        checked++;
      }
      if (checkpoints === 'coordinated') {
        const after = execAt.get(`${n.node}:${n.note.seq + 1}`);
        if (after !== undefined) assert.ok(n.atUs <= after, `coordinated: node ${n.node} finished ${n.note.seq} before running the next batch`);
      }
    }
    assert.ok(checked >= 6, `${checkpoints}: enough checkpoints seen (${checked})`);
    assert.deepEqual(h.problems(), []);
  }
});

test('incremental checkpoints: unchanged pages are reused, each distinct chunk is stored once, and a restart recovers from them', () => {
  // 60 keys of 200 bytes with 256-byte pages: about 64 pages; a checkpoint interval of 4 batches
  // writes a few keys, so most pages of a checkpoint are the previous one's.
  const h = new Harness({ u: 1, r: 1, keys: 60, valueBytes: 200, tunables: { checkpointInterval: 4, checkpointChunkBytes: 256 } });
  h.runOps(300);
  const exec0 = h.world.replica(0)?.exec;
  assert.ok(exec0 !== undefined);
  const { fresh, reused } = exec0.lastCheckpointChunks;
  assert.ok(reused > 2 * fresh, `most chunks reused: fresh ${fresh}, reused ${reused}`);
  // On disk: the manifests of the checkpoints held, and packs holding every chunk they name,
  // each pack with at least one chunk still named (the others were deleted).
  const disk = h.world.durableOf(nodePrincipal(0));
  const manifests = [...disk.keys()].filter((k) => /^x\/cp\/\d+$/.test(k));
  assert.deepEqual(manifests.map((k) => Number(k.slice(5))).sort((a, b) => a - b), [...exec0.checkpointSeqs].sort((a, b) => a - b));
  const named = new Set<string>();
  for (const k of manifests) {
    const res = tryDecodeWith(execManifestCodec, disk.get(k)!);
    assert.ok(res.ok);
    for (const d of res.value.chunks) named.add(Buffer.from(d).toString('hex'));
  }
  const packs = [...disk.keys()].filter((k) => k.startsWith('x/cp/p/'));
  // A pack outlives the checkpoints naming its chunks only while over half of it is still live.
  assert.ok(packs.length <= exec0.checkpointSeqs.length * 3, `few packs: ${packs.length}`);
  const stored = new Set<string>();
  for (const k of packs) {
    const chunks = decodePack(disk.get(k)!);
    assert.ok(chunks !== undefined, `${k} decodes`);
    const names = chunks.map((c) => Buffer.from(c.hash).toString('hex'));
    assert.ok(names.some((n) => named.has(n)), `${k} holds a chunk still named`);
    for (const n of names) stored.add(n);
  }
  for (const n of named) assert.ok(stored.has(n), `chunk ${n} is in a pack`);
  // A crash and restart recovers the state from those chunks, then catches up.
  h.world.crash(nodePrincipal(0));
  h.runOps(20);
  h.world.restart(nodePrincipal(0));
  h.runOps(60);
  h.idle(1_000_000);
  const again = h.world.replica(0)?.exec;
  const exec1 = h.world.replica(1)?.exec;
  assert.ok(again !== undefined && exec1 !== undefined);
  assert.equal(again.next, exec1.next);
  assert.deepEqual(Buffer.from(again.appCheckpoint()), Buffer.from(exec1.appCheckpoint()));
  assert.deepEqual(h.problems(), []);
});

test('a pack that is truncated, extended or random does not decode (recovery then drops it and refetches)', () => {
  const h = new Harness({ u: 1, r: 1, keys: 20, valueBytes: 100, tunables: { checkpointInterval: 4, checkpointChunkBytes: 256 } });
  h.runOps(60);
  const disk = h.world.durableOf(nodePrincipal(0));
  const pack = [...disk.entries()].find(([k]) => k.startsWith('x/cp/p/'))?.[1];
  assert.ok(pack !== undefined && decodePack(pack) !== undefined);
  assert.equal(decodePack(pack.subarray(0, pack.length - 1)), undefined);
  assert.equal(decodePack(Buffer.concat([pack, Buffer.from([0])])), undefined);
  for (let seed = 1; seed <= 200; seed++) {
    const junk = Buffer.alloc(4 + seed * 3, seed);
    junk.writeUInt16BE(seed % 5, 0);
    assert.doesNotThrow(() => decodePack(junk));
  }
});
