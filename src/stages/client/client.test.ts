/** Client stage (UpRight §5.1.1, §6.4.2; §7.4.3 for the read path). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientCore } from './client.ts';
import { clientPrincipal, nodePrincipal } from '../../crypto/provider.ts';
import { firstIndex, sends, testCluster } from '../testing.ts';
import { replyCoreBytes, requestCoreBytes, requestSignedBytes } from '../common.ts';
import { deriveCluster } from '../../core/config.ts';
import type { Effect } from '../types.ts';

const { cluster, ring } = testCluster(1, 1, 4, { clientRetryMs: 100, clientRetryMaxMs: 400, readTimeoutMs: 50 });
const op = new Uint8Array([1, 2, 3]);
/** A reply made by executor `exec` for client 1 (MAC'd), delivered by node `via` (default: exec). */
function reply(exec: number, reqId: number, result: number[], opts: { now?: number; via?: number; badMac?: boolean } = {}) {
  const r = new Uint8Array(result);
  let mac = ring(nodePrincipal(exec)).macFor(clientPrincipal(1), replyCoreBytes(exec, reqId, r));
  if (opts.badMac === true) mac = mac.map((x) => x ^ 1);
  return { kind: 'message' as const, from: nodePrincipal(opts.via ?? exec), msg: { kind: 'reply' as const, reqId, result: r, exec, mac }, now: opts.now ?? 10 };
}
function readReply(exec: number, result: number[]) {
  const r = new Uint8Array(result);
  const mac = ring(nodePrincipal(exec)).macFor(clientPrincipal(1), replyCoreBytes(exec, 1, r));
  return { kind: 'message' as const, from: nodePrincipal(exec), msg: { kind: 'readReply' as const, reqId: 1, result: r, seq: 5, exec, mac }, now: 1 };
}

function fresh(durable = new Map<string, Uint8Array>(), canaries = new Set<never>()) {
  return new ClientCore(cluster, 1, ring(clientPrincipal(1)), durable, canaries, { reserveBlock: 1, queueMax: 4 });
}

test('CS3: the request-id reservation is persisted before the first send', () => {
  const c = fresh();
  const effects = c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 });
  const p = firstIndex(effects, 'persist');
  const s = firstIndex(effects, 'send');
  assert.ok(p >= 0 && s > p, 'persist precedes send');
});

test('§6.4.2: the first send goes to the client relay (auth client mod n_auth), asking it to fan out', () => {
  const c = fresh();
  const out = sends(c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 }));
  assert.deepEqual(out.map((s) => s.to), [nodePrincipal(1)]); // n_auth = 4, client 1
  assert.ok(out[0]!.msg.kind === 'request' && out[0]!.msg.fanout);
});

test('a reply is accepted on r+1 matching replies from distinct executors, not before', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 7, op, readOnly: false, now: 0 });
  const results = (es: Effect[]) => es.filter((e) => e.kind === 'result');
  assert.equal(results(c.step(reply(0, 1, [9]))).length, 0);
  assert.equal(results(c.step(reply(0, 1, [9]))).length, 0, 'a duplicate from the same executor does not count');
  assert.equal(results(c.step(reply(1, 1, [8]))).length, 0, 'a different answer does not match');
  const done = results(c.step(reply(2, 1, [9])));
  assert.equal(done.length, 1);
  assert.deepEqual(done[0], { kind: 'result', callId: 7, reqId: 1, result: new Uint8Array([9]), readOnly: false });
});

test('replies naming a non-executor, with a bad MAC, or for other request ids are ignored', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 });
  const es = c.step(reply(3, 1, [1])); // node 3 hosts no exec replica when n_exec = 3
  assert.ok(es.some((e) => e.kind === 'note' && e.note.type === 'rejected'));
  const forged = c.step(reply(0, 1, [1], { badMac: true }));
  assert.ok(forged.some((e) => e.kind === 'note' && e.note.type === 'rejected' && e.note.reason === 'reply_bad_mac'));
  c.step(reply(1, 1, [1]));
  assert.equal(c.idle, false, 'the forged reply did not count towards r+1');
  c.step(reply(0, 2, [1]));
  c.step(reply(1, 2, [1]));
  assert.equal(c.idle, false);
});

test('replies forwarded by the home node count for the executor that made them', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 3, op, readOnly: false, now: 0 });
  c.step(reply(0, 1, [4], { via: 1 }));
  const done = c.step(reply(2, 1, [4], { via: 1 })).filter((e) => e.kind === 'result');
  assert.equal(done.length, 1);
});

test('retransmissions go to every auth replica with a timeout that doubles up to the maximum', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 });
  assert.equal(sends(c.step({ kind: 'tick', now: 99 })).length, 0);
  const r1 = sends(c.step({ kind: 'tick', now: 100 }));
  assert.equal(r1.length, 4);
  assert.equal(sends(c.step({ kind: 'tick', now: 299 })).length, 0, 'next timeout is 200 ms later');
  assert.equal(sends(c.step({ kind: 'tick', now: 300 })).length, 4);
  assert.equal(sends(c.step({ kind: 'tick', now: 699 })).length, 0);
  assert.equal(sends(c.step({ kind: 'tick', now: 700 })).length, 4, 'capped at 400 ms');
  assert.equal(sends(c.step({ kind: 'tick', now: 1100 })).length, 4);
});

test('read-only path: unanimous answers complete the read; a disagreement reissues it ordered with a new id', () => {
  const c = fresh();
  const first = sends(c.step({ kind: 'invoke', callId: 1, op, readOnly: true, now: 0 }));
  assert.equal(first.length, 1, 'to the home executor only');
  assert.ok(first[0]!.msg.kind === 'readRequest' && first[0]!.msg.fanout);
  assert.deepEqual(first[0]!.to, nodePrincipal(cluster.exec.nodes[1 % cluster.exec.nodes.length]!));
  c.step(readReply(0, [1]));
  c.step(readReply(1, [1]));
  const fallback = c.step(readReply(2, [2]));
  const ordered = sends(fallback);
  assert.ok(ordered.length > 0 && ordered.every((s) => s.msg.kind === 'request' && s.msg.reqId === 2));
  assert.ok(firstIndex(fallback, 'persist') < firstIndex(fallback, 'send'), 'the new id is reserved durably first');
});

test('read-only path: r+1 matching answers are not enough (all executors must agree)', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: true, now: 0 });
  c.step(readReply(0, [4]));
  const es = c.step(readReply(1, [4]));
  assert.equal(es.filter((e) => e.kind === 'result').length, 0);
  const timeout = sends(c.step({ kind: 'tick', now: 50 }));
  assert.ok(timeout.every((s) => s.msg.kind === 'request'), 'falls back to ordering after readTimeoutMs');
});

test('after a restart, request ids continue past the durable reservation', () => {
  const durable = new Map<string, Uint8Array>();
  const c = fresh(durable);
  for (const e of c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 })) {
    if (e.kind === 'persist') for (const [k, v] of e.puts) durable.set(k, v);
  }
  const again = fresh(durable);
  const out = sends(again.step({ kind: 'invoke', callId: 2, op, readOnly: false, now: 0 }));
  assert.ok(out.every((s) => s.msg.kind === 'request' && s.msg.reqId === 2));
});

test('a call the client cannot take is answered at once as refused (queue full, operation too large), never left hanging', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 });
  for (let i = 0; i < 4; i++) assert.equal(c.step({ kind: 'invoke', callId: 10 + i, op, readOnly: false, now: 0 }).filter((e) => e.kind === 'result').length, 0);
  const results = (es: Effect[]) => es.flatMap((e) => (e.kind === 'result' ? [e] : []));
  const full = results(c.step({ kind: 'invoke', callId: 20, op, readOnly: false, now: 0 }));
  assert.equal(full.length, 1);
  assert.equal(full[0]!.callId, 20);
  assert.equal(full[0]!.refused, 'client_queue_full');
  const big = results(c.step({ kind: 'invoke', callId: 21, op: new Uint8Array(cluster.config.requestBytesMax + 1), readOnly: false, now: 0 }));
  assert.equal(big.length, 1);
  assert.equal(big[0]!.refused, 'op_too_large');
});

test('read-only path: an executor that refuses (seq 0, restarted behind its read fence) sends the read to the ordered path at once', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: true, now: 0 });
  c.step(readReply(0, [1]));
  const r = new Uint8Array(0);
  const mac = ring(nodePrincipal(1)).macFor(clientPrincipal(1), replyCoreBytes(1, 1, r));
  const out = sends(c.step({ kind: 'message', from: nodePrincipal(1), msg: { kind: 'readReply', reqId: 1, result: r, seq: 0, exec: 1, mac }, now: 2 }));
  assert.ok(out.length > 0 && out.every((s) => s.msg.kind === 'request' && s.msg.reqId === 2));
});

test('signed client requests: each ordered request carries a signature over its core; a retransmission carries the same one', () => {
  const signed = deriveCluster({ ...cluster.config, clientSignatures: true });
  const c = new ClientCore(signed, 1, ring(clientPrincipal(1)), new Map(), new Set(), { reserveBlock: 1, queueMax: 4 });
  const first = sends(c.step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 }))[0]!.msg;
  assert.ok(first.kind === 'request' && first.sig !== undefined);
  assert.ok(ring(nodePrincipal(0)).verifyFrom(clientPrincipal(1), requestSignedBytes(requestCoreBytes(1, first.reqId, op)), first.sig), 'verifies under the client key');
  const again = sends(c.step({ kind: 'tick', now: 1_000 }))[0]!.msg;
  assert.ok(again.kind === 'request' && again.reqId === first.reqId && again.sig !== undefined && Buffer.from(again.sig).equals(Buffer.from(first.sig)));
  const unsigned = sends(fresh().step({ kind: 'invoke', callId: 1, op, readOnly: false, now: 0 }))[0]!.msg;
  assert.ok(unsigned.kind === 'request' && unsigned.sig === undefined, 'no signature when the cluster has them off');
});

/**
 * Runs `n` operations of a fresh client; an operation whose first send went to the relay alone
 * fails there when `relayFails(i)` (its retransmission to every auth replica then succeeds).
 * Returns the indexes of the operations whose first send took the relay path.
 */
function relayPathOps(n: number, relayFails: (i: number) => boolean): number[] {
  const c = fresh();
  const onRelay: number[] = [];
  let now = 0;
  for (let i = 0; i < n; i++) {
    const first = sends(c.step({ kind: 'invoke', callId: i, op, readOnly: false, now }));
    const viaRelay = first.length === 1;
    if (viaRelay) onRelay.push(i);
    if (viaRelay && relayFails(i)) {
      now += 1000;
      assert.equal(sends(c.step({ kind: 'tick', now })).length, 4, 'the retransmission goes to every auth replica');
    }
    const reqId = i + 1;
    c.step(reply(0, reqId, [1], { now: now + 1 }));
    const done = c.step(reply(1, reqId, [1], { now: now + 2 })).filter((e) => e.kind === 'result');
    assert.equal(done.length, 1, `operation ${i} completes`);
    now += 10;
  }
  return onRelay;
}

test('a relay path that keeps failing is tried again after ever longer spans of sends to every auth replica', () => {
  // Spans of 32, 64, 128: the relay path is tried at operations 0, 33, 98 and 227.
  assert.deepEqual(relayPathOps(300, () => true), [0, 33, 98, 227]);
  // Failures at 5 (span 32: back on the relay at 38), at 38 again at once (span 64: back at
  // 103), then at 150 after a good stretch (span 32: back at 183).
  const ops = relayPathOps(200, (i) => i === 5 || i === 38 || i === 150);
  const on = (from: number, to: number) => ops.filter((i) => i >= from && i <= to);
  assert.deepEqual(on(5, 38), [5, 38]);
  assert.deepEqual(on(39, 104), [103, 104], 'a span of 64 after the relay path failed again at once');
  assert.deepEqual(on(150, 184), [150, 183, 184], 'a failure after a good stretch: a span of 32 again');
});

test('read-only path: after a read timed out, the next reads go to every executor directly for a span', () => {
  const c = fresh();
  c.step({ kind: 'invoke', callId: 1, op, readOnly: true, now: 0 });
  c.step({ kind: 'tick', now: 50 }); // the read times out: ordered instead
  for (const e of [0, 1]) c.step({ kind: 'message', from: nodePrincipal(e), msg: { kind: 'reply', reqId: 2, result: new Uint8Array([9]), exec: e, mac: ring(nodePrincipal(e)).macFor(clientPrincipal(1), replyCoreBytes(e, 2, new Uint8Array([9]))) }, now: 60 });
  const next = sends(c.step({ kind: 'invoke', callId: 2, op, readOnly: true, now: 70 }));
  assert.equal(next.length, cluster.exec.nodes.length, 'to every executor');
  assert.ok(next.every((s) => s.msg.kind === 'readRequest' && !s.msg.fanout));
});
