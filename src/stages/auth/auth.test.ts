/** Authentication stage: the request filter, cheapest check first (UpRight §5.1.2; Aardvark §3.4.1). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthCore } from './auth.ts';
import { clientPrincipal, nodePrincipal } from '../../crypto/provider.ts';
import { requestCoreBytes, membersOf } from '../common.ts';
import { sends, testCluster } from '../testing.ts';
import type { Effect } from '../types.ts';

const { cluster, ring } = testCluster(1, 1, 4, { authResendMs: 100 });
const auth = () => new AuthCore(cluster, 2, ring(nodePrincipal(2)));
const authPeers = membersOf(cluster.auth);

function request(client: number, reqId: number, op: number[], opts: { breakMac?: boolean; from?: number } = {}) {
  const body = new Uint8Array(op);
  const macs = ring(clientPrincipal(client)).authenticate(authPeers, requestCoreBytes(client, reqId, body));
  if (opts.breakMac === true) macs[2] = macs[2]!.map((x) => x ^ 1);
  return { kind: 'message' as const, from: clientPrincipal(opts.from ?? client), msg: { kind: 'request' as const, client, reqId, op: body, macs }, now: 0 };
}
const rejected = (es: Effect[]) => es.flatMap((e) => (e.kind === 'note' && e.note.type === 'rejected' ? [e.note.reason] : []));

test('an authenticated request is forwarded to every order replica with a row valid at each', () => {
  const a = auth();
  const out = sends(a.step(request(1, 1, [5])));
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

test('a retransmission is forwarded again at most once per authResendMs', () => {
  const a = auth();
  a.step(request(1, 1, [5]));
  assert.deepEqual(rejected(a.step({ ...request(1, 1, [5]), now: 50 })), ['resend_rate_limited']);
  assert.equal(sends(a.step({ ...request(1, 1, [5]), now: 100 })).length, cluster.order.nodes.length);
});

test('at most one pending request per client: a newer id replaces the older one', () => {
  const a = auth();
  a.step(request(1, 1, [5]));
  a.step(request(1, 2, [6]));
  a.step(request(2, 1, [6]));
  assert.equal(a.pendingCount, 2);
});
