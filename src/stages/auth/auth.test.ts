/** Authentication stage: the request filter, cheapest check first (UpRight §5.1.2; Aardvark §3.4.1). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthCore } from './auth.ts';
import { clientPrincipal, nodePrincipal } from '../../crypto/provider.ts';
import { requestCoreBytes, requestSignedBytes, membersOf } from '../common.ts';
import { deriveCluster } from '../../core/config.ts';
import { sends, testCluster } from '../testing.ts';
import type { Effect } from '../types.ts';

const { cluster, ring } = testCluster(1, 1, 4, { authResendMs: 100 });
const auth = () => new AuthCore(cluster, 2, ring(nodePrincipal(2)));
const authPeers = membersOf(cluster.auth);

function request(client: number, reqId: number, op: number[], opts: { breakMac?: boolean; from?: number; fanout?: boolean; sig?: Uint8Array } = {}) {
  const body = new Uint8Array(op);
  const macs = ring(clientPrincipal(client)).authenticate(authPeers, requestCoreBytes(client, reqId, body));
  if (opts.breakMac === true) macs[2] = macs[2]!.map((x) => x ^ 1);
  return { kind: 'message' as const, from: clientPrincipal(opts.from ?? client), msg: { kind: 'request' as const, client, reqId, op: body, macs, fanout: opts.fanout ?? false, sig: opts.sig }, now: 0 };
}
const rejected = (es: Effect[]) => es.flatMap((e) => (e.kind === 'note' && e.note.type === 'rejected' ? [e.note.reason] : []));

test('§6.2.3: a new request goes to the order primary first, with a row valid at every order replica', () => {
  const a = auth();
  const out = sends(a.step(request(1, 1, [5])));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.to, nodePrincipal(0), 'primary of view 0');
  const msg = out[0]!.msg;
  assert.ok(msg.kind === 'authReq');
  for (let i = 0; i < cluster.order.nodes.length; i++) {
    const orderRing = ring(nodePrincipal(cluster.order.nodes[i]!));
    assert.ok(orderRing.verifyAuthenticatorEntry(nodePrincipal(2), requestCoreBytes(1, 1, msg.op), msg.row, i));
  }
});

test('a retransmission is forwarded to every order replica', () => {
  const a = auth();
  a.step(request(1, 1, [5]));
  const out = sends(a.step({ ...request(1, 1, [5]), now: 10 }));
  assert.equal(out.length, cluster.order.nodes.length);
  for (const [i, s] of out.entries()) {
    assert.equal(s.msg.kind, 'authReq');
    const orderRing = ring(nodePrincipal(cluster.order.nodes[i]!));
    assert.ok(orderRing.verifyAuthenticatorEntry(nodePrincipal(2), requestCoreBytes(1, 1, s.msg.op), s.msg.row, i));
  }
});

test('each bad input is dropped and counted with its reason', () => {
  const a = auth();
  assert.deepEqual(rejected(a.step(request(1, 1, [5], { breakMac: true }))), ['bad_authenticator']);
  assert.deepEqual(rejected(a.step(request(99, 1, [5]))), ['unknown_client']);
  assert.deepEqual(rejected(a.step(request(1, 1, [5], { from: 2 }))), ['sender_mismatch']);
  a.step(request(1, 5, [5]));
  assert.deepEqual(rejected(a.step(request(1, 4, [5]))), ['stale_request']);
  assert.deepEqual(rejected(a.step({ ...request(1, 5, [6]), now: 1000 })), ['conflicting_request']);
});

test('blacklist on proof: a client that sent two bodies under one id is dropped first, until the entry expires', () => {
  const a = auth();
  a.step(request(1, 5, [5]));
  assert.deepEqual(rejected(a.step({ ...request(1, 5, [6]), now: 10 })), ['conflicting_request']);
  assert.deepEqual(rejected(a.step({ ...request(1, 6, [7]), now: 20 })), ['client_blacklisted'], 'even a well-formed newer request');
  assert.deepEqual(rejected(a.step({ ...request(1, 6, [7], { breakMac: true }), now: 30 })), ['client_blacklisted'], 'before any MAC is checked');
  assert.deepEqual(rejected(a.step({ ...request(2, 1, [7]), now: 30 })), [], 'other clients are served');
  const later = a.step({ ...request(1, 7, [8]), now: 10 + cluster.config.blacklistMs });
  assert.deepEqual(rejected(later), [], 'the entry expired');
  assert.equal(sends(later).length, 1);
});

test('a bad MAC is no proof: a different body under a known id with a MAC broken for this replica blacklists nothing', () => {
  const a = auth();
  a.step(request(1, 5, [5]));
  assert.deepEqual(rejected(a.step({ ...request(1, 5, [6], { breakMac: true }), now: 10 })), ['bad_authenticator']);
  assert.deepEqual(rejected(a.step({ ...request(1, 6, [7]), now: 20 })), []);
});

test('a retransmission is forwarded to all again at most once per authResendMs', () => {
  const a = auth();
  a.step(request(1, 1, [5]));
  assert.equal(sends(a.step({ ...request(1, 1, [5]), now: 10 })).length, cluster.order.nodes.length);
  assert.deepEqual(rejected(a.step({ ...request(1, 1, [5]), now: 50 })), ['resend_rate_limited']);
  assert.equal(sends(a.step({ ...request(1, 1, [5]), now: 110 })).length, cluster.order.nodes.length);
});

test('the client relay passes a first send on to the rest of the preferred quorum, as its core digest; others do not', () => {
  // Client 2's relay is auth index 2 (node 2); the preferred quorum is nodes 2, 3, 0.
  const relay = auth();
  const out = sends(relay.step(request(2, 1, [7], { fanout: true })));
  const relayed = out.filter((s) => s.msg.kind === 'requestDigest');
  assert.deepEqual(
    relayed.map((s) => s.to),
    [nodePrincipal(3), nodePrincipal(0)],
  );
  assert.ok(out.every((s) => s.msg.kind !== 'request'), 'no body is passed on');
  const d = relayed[0]!.msg;
  assert.ok(d.kind === 'requestDigest');
  assert.deepEqual(d.coreDigest, ring(nodePrincipal(2)).digest(requestCoreBytes(2, 1, new Uint8Array([7]))));
  const notRelay = auth();
  assert.equal(sends(notRelay.step(request(1, 1, [7], { fanout: true }))).filter((s) => s.msg.kind !== 'authReq').length, 0);
});

/** What client `client`'s relay (node `relay`) passes on of its request. */
function digestFrom(relay: number, client: number, reqId: number, op: number[], opts: { breakMac?: boolean; digestOf?: number[] } = {}) {
  const r = request(client, reqId, opts.digestOf ?? op, opts);
  const coreDigest = ring(clientPrincipal(client)).digest(requestCoreBytes(client, reqId, new Uint8Array(op)));
  return { kind: 'message' as const, from: nodePrincipal(relay), msg: { kind: 'requestDigest' as const, client, reqId, coreDigest, macs: r.msg.macs }, now: 0 };
}

test('a relayed core digest is vouched for without the body: an AUTH-DIGEST to the primary, rows valid at every order replica', () => {
  const a = auth();
  const out = sends(a.step(digestFrom(1, 1, 1, [5])));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.to, nodePrincipal(0));
  const msg = out[0]!.msg;
  assert.ok(msg.kind === 'authDigest');
  for (let i = 0; i < cluster.order.nodes.length; i++) {
    const orderRing = ring(nodePrincipal(cluster.order.nodes[i]!));
    assert.ok(orderRing.verifyAuthenticatorEntry(nodePrincipal(2), requestCoreBytes(1, 1, new Uint8Array([5])), msg.row, i));
  }
});

test('a relayed core digest: only from an auth replica, only under the client MAC, and no body-less vouching with signatures on', () => {
  const a = auth();
  assert.deepEqual(rejected(a.step({ ...digestFrom(1, 1, 1, [5]), from: clientPrincipal(1) })), ['sender_mismatch']);
  assert.deepEqual(rejected(a.step(digestFrom(1, 1, 1, [5], { digestOf: [6] }))), ['bad_authenticator'], 'a digest the client never MACed');
  assert.deepEqual(rejected(a.step(digestFrom(1, 1, 1, [5], { breakMac: true }))), ['bad_authenticator']);
  const signed = new AuthCore(deriveCluster({ ...cluster.config, clientSignatures: true }), 2, ring(nodePrincipal(2)));
  assert.deepEqual(rejected(signed.step(digestFrom(1, 1, 1, [5]))), ['missing_signature']);
  // With signatures on the relay passes the whole request on (they cover the body).
  const relayOut = sends(signed.step(request(2, 1, [7], { fanout: true, sig: ring(clientPrincipal(2)).sign(requestSignedBytes(requestCoreBytes(2, 1, new Uint8Array([7])))) })));
  assert.equal(relayOut.filter((s) => s.msg.kind === 'request').length, 2);
});

test('the body arriving for a request vouched for by digest: an AUTH-REQ with it to every order replica at once', () => {
  const a = auth();
  a.step(digestFrom(1, 1, 1, [5]));
  // A relayed duplicate of the digest is an ordinary retransmission (no body to add).
  const dup = sends(a.step({ ...digestFrom(1, 1, 1, [5]), now: 5 }));
  assert.ok(dup.length === cluster.order.nodes.length && dup.every((s) => s.msg.kind === 'authDigest'));
  // The client's own retransmission brings the body: sent at once, inside the rate limit.
  const out = sends(a.step({ ...request(1, 1, [5]), now: 10 }));
  assert.equal(out.length, cluster.order.nodes.length);
  for (const s of out) assert.ok(s.msg.kind === 'authReq' && s.msg.op[0] === 5);
  assert.deepEqual(rejected(a.step({ ...request(1, 1, [5]), now: 20 })), ['resend_rate_limited'], 'then the usual limit');
  // A conflicting body under the vouched id is still proof against the client.
  assert.deepEqual(rejected(a.step({ ...request(1, 1, [6]), now: 30 })), ['conflicting_request']);
});

test('a request relayed by another auth replica is accepted on the client MAC; from a non-auth node it is not', () => {
  const a = auth();
  const ev = request(3, 1, [9]);
  const relayed = { ...ev, from: nodePrincipal(1) };
  assert.equal(sends(a.step(relayed)).length, 1);
  const fromClientOfOther = { ...request(3, 2, [9]), from: clientPrincipal(7) };
  assert.deepEqual(rejected(a.step(fromClientOfOther)), ['sender_mismatch']);
});

test('at most one pending request per client: a newer id replaces the older one', () => {
  const a = auth();
  a.step(request(1, 1, [5]));
  a.step(request(1, 2, [6]));
  a.step(request(2, 1, [6]));
  assert.equal(a.pendingCount, 2);
});

test('signed client requests: a good signature is forwarded; a bad one is dropped, and blacklists the client only when it came straight from it', () => {
  const base = testCluster(1, 1, 4, { authResendMs: 100 });
  const signed = deriveCluster({ ...base.cluster.config, clientSignatures: true });
  const a = new AuthCore(signed, 2, base.ring(nodePrincipal(2)));
  const sign = (client: number, reqId: number, op: number[]) => base.ring(clientPrincipal(client)).sign(requestSignedBytes(requestCoreBytes(client, reqId, new Uint8Array(op))));
  const good = a.step(request(1, 1, [5], { sig: sign(1, 1, [5]) }));
  assert.deepEqual(rejected(good), []);
  assert.equal(sends(good).length, 1, 'forwarded to the primary');
  assert.deepEqual(rejected(a.step(request(2, 1, [5]))), ['missing_signature']);
  assert.deepEqual(rejected(a.step(request(2, 1, [5], { sig: sign(2, 1, [5]) }))), [], 'a missing signature blacklists nothing');
  assert.deepEqual(rejected(a.step(request(3, 1, [5], { sig: sign(3, 1, [6]) }))), ['bad_signature'], 'a signature over another body');
  assert.deepEqual(rejected(a.step(request(3, 2, [5], { sig: sign(3, 2, [5]) }))), ['client_blacklisted'], 'client 3 proved itself faulty');
  // Relayed by auth replica 0: the relay could have broken the signature, so no blacklisting.
  assert.deepEqual(rejected(a.step({ ...request(0, 1, [5], { sig: sign(0, 1, [6]) }), from: nodePrincipal(0) })), ['bad_signature']);
  assert.deepEqual(rejected(a.step(request(0, 1, [5], { sig: sign(0, 1, [5]) }))), [], 'client 0 is not blacklisted');
  // A client's signature does not verify for another client's request.
  assert.deepEqual(rejected(a.step(request(2, 2, [5], { sig: sign(1, 2, [5]) }))), ['bad_signature']);
  assert.deepEqual(rejected(a.step(request(2, 3, [5], { sig: sign(2, 3, [5]) }))), ['client_blacklisted']);
});

test('signed client requests off: a signature, even a broken one, is ignored', () => {
  const a = auth();
  assert.deepEqual(rejected(a.step(request(1, 1, [5], { sig: new Uint8Array(64) }))), []);
});

test('r=0: the relay is the whole preferred quorum; it passes nothing on and still sends its AUTH-REQ', () => {
  const c0 = testCluster(1, 0);
  assert.equal(c0.cluster.authRowsPrimary, 1);
  const peers = membersOf(c0.cluster.auth);
  const client = 1;
  const relayId = c0.cluster.auth.nodes[client % peers.length]!;
  const relay = new AuthCore(c0.cluster, relayId, c0.ring(nodePrincipal(relayId)));
  const body = Uint8Array.of(7);
  const macs = c0.ring(clientPrincipal(client)).authenticate(peers, requestCoreBytes(client, 1, body));
  const out = sends(relay.step({ kind: 'message', from: clientPrincipal(client), msg: { kind: 'request', client, reqId: 1, op: body, macs, fanout: true, sig: undefined }, now: 0 }));
  assert.deepEqual(out.map((s) => s.msg.kind), ['authReq']);
});
