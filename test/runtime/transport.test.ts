/**
 * The transport's two channels (Dura-SMaRt §4.3: state transfer must not block ordering): between
 * two real Transports on loopback, checkpoint data rides its own connection, so a protocol message
 * sent after megabytes of it arrives before them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transport, bulkKinds } from '../../src/runtime/transport.ts';
import { clusterPaths, initCluster, loadKeyFile } from '../../src/runtime/cluster-file.ts';
import { publicKeysOf } from '../../src/runtime/driver.ts';
import { DerivedKeys } from '../../src/crypto/pairing.ts';
import { KeyRing, nodePrincipal } from '../../src/crypto/provider.ts';
import { defaultCrypto } from '../../src/crypto/sodium.ts';
import { freePorts } from '../../src/cli/cluster.ts';

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('state transfer rides the bulk connection: a PREPARE sent after 48 MiB of checkpoint data overtakes it', { timeout: 60_000 }, async () => {
  assert.ok(bulkKinds.has('checkpointData') && bulkKinds.has('catchUp') && !bulkKinds.has('prepare'));
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-transport-'));
  const cf = initCluster({ dir, u: 1, r: 0, clients: 1 });
  const crypto = await defaultCrypto();
  const ring = (id: number) => new KeyRing(nodePrincipal(id), crypto, new DerivedKeys(nodePrincipal(id), loadKeyFile(clusterPaths(dir).nodeKey(id)).privateKey, publicKeysOf(cf)));
  const [port] = await freePorts(1);
  const got: string[] = [];
  const receiver = new Transport({
    keys: ring(1),
    listen: { host: '127.0.0.1', port: port! },
    dial: new Map(),
    known: (p) => p.kind === 'node',
    onMessage: (_from, msg) => got.push(msg.kind),
    onReject: () => undefined,
  });
  const sender = new Transport({
    keys: ring(0),
    dial: new Map([[1, { host: '127.0.0.1', port: port! }]]),
    known: (p) => p.kind === 'node',
    onMessage: () => undefined,
    onReject: () => undefined,
    queueBytesMax: 128 << 20,
  });
  try {
    await receiver.start();
    await sender.start();
    await until('both channels up', () => receiver.connectedPeers().includes('n0') && receiver.bulkPeers().includes('n0'));
    const chunk = new Uint8Array(1 << 20);
    const chunks = 48;
    for (let part = 0; part < chunks; part++) sender.send([nodePrincipal(1)], { kind: 'checkpointData', seq: 64, part, data: chunk });
    sender.send([nodePrincipal(1)], { kind: 'prepare', view: 0, seq: 65, digest: new Uint8Array(32) });
    await until('everything delivered', () => got.length === chunks + 1, 30_000);
    const at = got.indexOf('prepare');
    assert.ok(at < chunks, `the PREPARE arrived after ${at} of ${chunks} chunks, not behind all of them`);
    assert.deepEqual(got.filter((k) => k !== 'prepare').length, chunks, 'every chunk arrived');
  } finally {
    await sender.stop();
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
