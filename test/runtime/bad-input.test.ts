/**
 * Bad input on every listening port of a running node: random bytes, a frame header claiming
 * 4 GB, forged and replayed handshakes, unknown peers, bad packet MACs, undecodable frames,
 * thousands of idle connections, garbage on the metrics port, a replica flooding valid frames.
 * Each is rejected and counted (by reason, in /status), the node keeps serving, and its memory
 * stays bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { ProcessCluster, eventually } from './harness.ts';
import { clusterPaths, loadKeyFile } from '../../src/runtime/cluster-file.ts';
import { DerivedKeys } from '../../src/crypto/pairing.ts';
import { KeyRing, clientPrincipal, nodePrincipal } from '../../src/crypto/provider.ts';
import { defaultCrypto } from '../../src/crypto/sodium.ts';
import { publicKeysOf } from '../../src/runtime/driver.ts';
import { KvClient } from '../../src/services/kv/client.ts';
import type { TcpClient } from '../../src/runtime/client.ts';
import { encodeMessage } from '../../src/codec/messages.ts';

let cluster: ProcessCluster;
let client: TcpClient;
let port = 0;

before(async () => {
  // A short flood cut-off, so the flood test can watch the replica come back.
  cluster = await ProcessCluster.start({ u: 1, r: 1, runtime: { floodCutOffMs: 3000 } });
  port = cluster.cf.nodes[0]!.port;
  client = await cluster.client();
});

after(async () => {
  await client.close();
  await cluster.stop();
});

async function rejected(reason: string): Promise<number> {
  return (await cluster.status(0))?.rejected[reason] ?? 0;
}

async function stillServes(): Promise<void> {
  const kv = new KvClient(client);
  const v = `v${Math.random()}`;
  await kv.put('probe', v);
  assert.equal(await kv.get('probe'), v);
}

/** Opens a raw TCP connection and collects what the node sends until it closes. */
function raw(): Promise<{ socket: Socket; received: Buffer[]; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, received, closed }));
    socket.once('error', reject);
  });
}

/** Sends one HELLO on a fresh connection and checks the node closes it, counting `reason` once more. */
async function helloRefused(helloBytes: Uint8Array, reason: string): Promise<void> {
  const before = await rejected(reason);
  const c = await raw();
  c.socket.write(frame(helloBytes));
  await c.closed;
  assert.equal(await rejected(reason), before + 1);
}

function frame(b: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length, 0);
  return Buffer.concat([h, b]);
}

/** The key ring of client `id`, or of node `id` (its key file is in the test cluster's directory). */
async function ringOf(kind: 'client' | 'node', id: number): Promise<KeyRing> {
  const paths = clusterPaths(cluster.dir);
  const key = loadKeyFile(kind === 'client' ? paths.clientKey(id) : paths.nodeKey(id));
  const self = kind === 'client' ? clientPrincipal(id) : nodePrincipal(id);
  return new KeyRing(self, await defaultCrypto(), new DerivedKeys(self, key.privateKey, publicKeysOf(cluster.cf)));
}

function hello(kind: number, id: number, target: number, nonce: Uint8Array, magic = 'BWK1'): Buffer {
  const b = Buffer.alloc(45);
  Buffer.from(magic).copy(b, 0);
  b.writeUInt8(kind, 4);
  b.writeUInt32BE(id, 5);
  b.writeUInt32BE(target, 9);
  Buffer.from(nonce).copy(b, 13);
  return b;
}

/** The handshake transcript of a main-channel connection (channel byte 0). */
function transcript(kind: number, id: number, target: number, nonceD: Uint8Array, nonceL: Uint8Array): Buffer {
  const b = Buffer.alloc(74);
  b.writeUInt8(kind, 0);
  b.writeUInt32BE(id, 1);
  b.writeUInt32BE(target, 5);
  b.writeUInt8(0, 9);
  Buffer.from(nonceD).copy(b, 10);
  Buffer.from(nonceL).copy(b, 42);
  return b;
}

async function waitBytes(received: Buffer[], n: number): Promise<Buffer> {
  await eventually(`${n} bytes from the node`, () => Promise.resolve(Buffer.concat(received).length >= n), 5000);
  return Buffer.concat(received);
}

/** A full, legitimate handshake as client (or node) `id`; returns the open socket and the bytes sent. */
async function handshake(id: number, as: 'client' | 'node' = 'client'): Promise<{ socket: Socket; sent: Buffer[]; sendKey: Uint8Array; ring: KeyRing; closed: Promise<void>; received: Buffer[] }> {
  const ring = await ringOf(as, id);
  const kind = as === 'client' ? 2 : 1;
  const { socket, received, closed } = await raw();
  const nonceD = randomBytes(32);
  const h = frame(hello(kind, id, 0, nonceD));
  socket.write(h);
  const got = await waitBytes(received, 4 + 96);
  const nonceL = got.subarray(4, 36);
  received.length = 0;
  const t = transcript(kind, id, 0, nonceD, nonceL);
  const proof = frame(ring.sign(Buffer.concat([Buffer.from('bulwark-hs-v1/D'), t])));
  socket.write(proof);
  const pair = ring.macKeyFor(nodePrincipal(0));
  const sendKey = new Uint8Array(createHash('sha256').update('bulwark-session-v1|d2l').update(pair).update(nonceD).update(nonceL).digest());
  return { socket, sent: [h, proof], sendKey, ring, closed, received };
}

function packet(ring: KeyRing, key: Uint8Array, counter: bigint, frames: Uint8Array[], breakMac = false): Buffer {
  const body = Buffer.concat(frames.map((f) => frame(f)));
  const out = Buffer.alloc(4 + 8 + body.length + 16);
  out.writeUInt32BE(8 + body.length + 16, 0);
  out.writeBigUInt64BE(counter, 4);
  body.copy(out, 12);
  const mac = ring.provider.mac(key, out.subarray(4, 12 + body.length));
  Buffer.from(mac).copy(out, 12 + body.length);
  if (breakMac) out[out.length - 1]! ^= 1;
  return out;
}

test('random bytes on the node port: connection closed, counted, node keeps serving', async () => {
  const before = (await rejected('handshake_bad_hello')) + (await rejected('oversized_handshake_frame'));
  for (let i = 0; i < 5; i++) {
    const c = await raw();
    c.socket.write(randomBytes(4096));
    await c.closed;
  }
  const afterCount = (await rejected('handshake_bad_hello')) + (await rejected('oversized_handshake_frame'));
  assert.ok(afterCount >= before + 5, `5 rejections counted (${before} -> ${afterCount})`);
  await stillServes();
});

test('a frame header claiming 4 GB is refused from the header alone, before and after the handshake', async () => {
  const before = await rejected('oversized_handshake_frame');
  const c = await raw();
  c.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  await c.closed;
  assert.equal(await rejected('oversized_handshake_frame'), before + 1);
  const beforePacket = await rejected('oversized_packet');
  const hs = await handshake(5);
  hs.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
  await hs.closed;
  assert.equal(await rejected('oversized_packet'), beforePacket + 1);
  const s = await cluster.status(0);
  assert.ok(s !== undefined && s.rssBytes < 512 * 1024 * 1024, 'nothing of the claimed size was allocated');
  await stillServes();
});

test('a forged handshake (valid hello, signature by nobody) and an unknown peer are refused', async () => {
  const before = await rejected('handshake_bad_signature');
  const c = await raw();
  c.socket.write(frame(hello(2, 3, 0, randomBytes(32))));
  await waitBytes(c.received, 100);
  c.socket.write(frame(randomBytes(64)));
  await c.closed;
  assert.equal(await rejected('handshake_bad_signature'), before + 1);
  await helloRefused(hello(2, 99_999, 0, randomBytes(32)), 'handshake_unknown_peer');
  // The bulk (state-transfer) channel is for nodes only: a client asking for one is refused.
  await helloRefused(hello(2, 3, 0, randomBytes(32), 'BWB1'), 'handshake_bad_hello');
  await stillServes();
});

test('a replayed handshake fails: the node\u2019s fresh nonce invalidates the recorded proof', async () => {
  const hs = await handshake(6);
  await new Promise((r) => setTimeout(r, 100));
  hs.socket.destroy();
  const before = await rejected('handshake_bad_signature');
  const c = await raw();
  c.socket.write(hs.sent[0]!);
  await waitBytes(c.received, 100);
  c.socket.write(hs.sent[1]!);
  await c.closed;
  assert.equal(await rejected('handshake_bad_signature'), before + 1);
  await stillServes();
});

test('after the handshake: an undecodable frame is dropped and counted, a bad packet MAC closes the connection', async () => {
  const hs = await handshake(7);
  const beforeUndecodable = await rejected('undecodable_message');
  hs.socket.write(packet(hs.ring, hs.sendKey, 0n, [randomBytes(40), new Uint8Array([250, 1, 2])]));
  await eventually('undecodable frames counted', async () => (await rejected('undecodable_message')) >= beforeUndecodable + 2);
  const beforeMac = await rejected('bad_packet_mac');
  hs.socket.write(packet(hs.ring, hs.sendKey, 1n, [new Uint8Array([1])], true));
  await hs.closed;
  assert.equal(await rejected('bad_packet_mac'), beforeMac + 1);
  await stillServes();
});

test('thousands of idle connections: pending handshakes are capped, the node serves, memory stays bounded', { timeout: 60_000 }, async () => {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  const count = Math.min(3000, Number.isFinite(limit) ? limit - 300 : 3000);
  assert.ok(count >= 1000, `the file descriptor limit (${limit}) allows at least 1000 connections`);
  const rssBefore = (await cluster.status(0))!.rssBytes;
  const beforeCap = await rejected('too_many_pending_connections');
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    sockets.push(s);
  }
  await eventually('the cap rejected the excess', async () => (await rejected('too_many_pending_connections')) > beforeCap);
  const during = (await cluster.status(0))!;
  assert.ok(during.pendingHandshakes <= 256, `pending handshakes capped (${during.pendingHandshakes})`);
  await stillServes();
  assert.ok(during.rssBytes - rssBefore < 200 * 1024 * 1024, `memory growth ${((during.rssBytes - rssBefore) / 1048576).toFixed(0)} MiB stays bounded`);
  const beforeTimeout = await rejected('handshake_timeout');
  await eventually('idle handshakes time out', async () => (await rejected('handshake_timeout')) > beforeTimeout, 15_000);
  for (const s of sockets) s.destroy();
  await eventually('no pending handshakes left', async () => (await cluster.status(0))!.pendingHandshakes === 0, 15_000);
  await stillServes();
});

test('garbage on the metrics port: answered or closed, /metrics keeps working', async () => {
  const mport = cluster.cf.nodes[0]!.metricsPort;
  const answers: Buffer[] = [];
  await new Promise<void>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: mport });
    s.on('data', (d: Buffer) => answers.push(d));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.on('connect', () => {
      // A line break makes the garbage a complete (malformed) request line.
      s.write(Buffer.concat([randomBytes(2048), Buffer.from('\r\n\r\n')]));
      setTimeout(() => s.destroy(), 500);
    });
  });
  assert.match(Buffer.concat(answers).toString('latin1'), /^HTTP\/1\.1 400/, 'the server answered 400 Bad Request');
  const res = await fetch(`http://127.0.0.1:${mport}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.match(text, /bulwark_rejected_inputs_total\{[^}]*reason="handshake_bad_signature"/);
  await stillServes();
});

test('a replica flooding valid frames is cut off for runtime.floodCutOffMs, refused meanwhile, then reconnected', { timeout: 60_000 }, async () => {
  // Speak as node 3 with its own key. The real node 3 is stopped so that its connection does not
  // replace ours; the cluster (u = 1) serves without it.
  cluster.signal(3, 'SIGSTOP');
  try {
    const before = await rejected('peer_flood_disconnected');
    const hs = await handshake(3, 'node');
    const conn = { open: true };
    void hs.closed.then(() => {
      conn.open = false;
    });
    // VIEW-HINTs: valid, authenticated, cheap for the node; 1000 per packet.
    const frames = Array.from({ length: 1000 }, () => encodeMessage({ kind: 'viewHint', view: 0 }));
    // Flood until cut off, for at most 20 s. Waiting for 'drain' keeps the flood sustained at the
    // node's reading pace: on a loaded machine a fixed number of packets written at once could
    // all sit in this process's socket buffer and reach the node after the loop ended.
    let counter = 0n;
    const deadline = Date.now() + 20_000;
    while (conn.open && Date.now() < deadline) {
      const flushed = hs.socket.write(packet(hs.ring, hs.sendKey, counter, frames));
      counter += 1n;
      if (!flushed) await Promise.race([new Promise((r) => hs.socket.once('drain', r)), hs.closed]);
      else await new Promise((r) => setImmediate(r));
    }
    await Promise.race([hs.closed, new Promise((r) => setTimeout(r, 5_000))]);
    assert.ok(!conn.open, `disconnected while flooding (still open after ${counter} packets of 1000 frames in 20 s)`);
    assert.equal(await rejected('peer_flood_disconnected'), before + 1);
    const s = (await cluster.status(0))!;
    assert.ok(s.inbox.cutOff.n3 !== undefined && s.inbox.cutOff.n3 > 0, 'n3 listed as cut off');
    assert.ok((s.inbox.dropped.n3?.flood_cut_off ?? 0) > 0, 'its queued and later messages dropped');
    // Refused while cut off, even with a valid identity.
    await helloRefused(hello(1, 3, 0, randomBytes(32)), 'handshake_peer_cut_off');
    await stillServes();
  } finally {
    cluster.signal(3, 'SIGCONT');
  }
  // After the period node 0 dials node 3 again.
  await eventually('node 0 reconnects to node 3', async () => ((await cluster.status(0))?.peers ?? []).includes('n3'), 20_000);
  await stillServes();
});
