/**
 * Authentication stage (UpRight §5.1.2, §6.4; request filter after Aardvark §3.4.1).
 *
 * Checks each client request, cheapest check first, and forwards authenticated requests to
 * every order replica as AUTH-REQ, carrying this replica's row of a matrix signature: one MAC
 * per order replica over the request core. The order primary batches a request once it holds
 * max(u,r)+r+1 rows; each backup then finds at least max(u,r)+1 rows valid for itself.
 *
 * Filter order (each step drops and counts on failure):
 *   1. channel sender is the client named in the request (no spoofing);
 *   2. client is authorised;
 *   3. body within requestBytesMax;
 *   4. this replica's MAC entry of the client's authenticator verifies;
 *   5. request id: older than the last forwarded -> drop (stale); equal -> a retransmission:
 *      forward the same AUTH-REQ again at most once per authResendMs; newer -> becomes the
 *      client's single pending request (replacing the previous one) and is forwarded.
 *
 * Auth replicas never talk to each other and may diverge (§6.4). Bodies are ordered inline
 * (no FETCH/COMMAND round), so this stage keeps no durable state: after a restart it simply
 * forwards what clients retransmit. See docs/protocol.md "Deviations".
 *
 * Invariants:
 * - at most one pending (forwarded, maybe unordered) request per client;
 * - the pending request id per client never decreases.
 */
import type { Cluster } from '../../core/config.ts';
import { assert } from '../../core/assert.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import { bytesEqual, clientPrincipal } from '../../crypto/provider.ts';
import type { Message, MsgOf } from '../../codec/messages.ts';
import type { Effect, StageEvent } from '../types.ts';
import { membersOf, Outbox, requestCoreBytes } from '../common.ts';

interface Pending {
  readonly reqId: number;
  readonly opDigest: Uint8Array;
  readonly authReq: MsgOf<'authReq'>;
  forwardedAt: number;
}

/** Authentication stage state machine of one auth replica. */
export class AuthCore {
  private readonly out = new Outbox();
  private readonly orderPeers: Principal[];
  /** This replica's index in the auth stage. */
  private readonly index: number;
  /** Last forwarded request per client. Invariant: one entry per client at most. */
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly cluster: Cluster,
    nodeId: number,
    private readonly keys: KeyRing,
  ) {
    const idx = cluster.auth.indexOf.get(nodeId);
    assert(idx !== undefined, `node ${nodeId} hosts no auth replica`);
    this.index = idx;
    this.orderPeers = membersOf(cluster.order);
  }

  /** Number of clients with a pending request. */
  get pendingCount(): number {
    return this.pending.size;
  }

  step(ev: StageEvent): Effect[] {
    if (ev.kind === 'message') this.onMessage(ev.from, ev.msg, ev.now);
    return this.out.drain();
  }

  private reject(reason: string, from: Principal): void {
    this.out.note({ type: 'rejected', reason, from });
  }

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (msg.kind !== 'request') {
      this.reject('unexpected_kind', from);
      return;
    }
    if (from.kind !== 'client' || from.id !== msg.client) {
      this.reject('sender_mismatch', from);
      return;
    }
    if (!this.cluster.clients.has(msg.client)) {
      this.reject('unknown_client', from);
      return;
    }
    if (msg.op.length > this.cluster.config.requestBytesMax) {
      this.reject('op_too_large', from);
      return;
    }
    const core = requestCoreBytes(msg.client, msg.reqId, msg.op);
    if (!this.keys.verifyAuthenticatorEntry(clientPrincipal(msg.client), core, msg.macs, this.index)) {
      this.reject('bad_authenticator', from);
      return;
    }
    const last = this.pending.get(msg.client);
    if (last !== undefined && msg.reqId < last.reqId) {
      this.reject('stale_request', from);
      return;
    }
    const opDigest = this.keys.digest(msg.op);
    if (last !== undefined && msg.reqId === last.reqId) {
      if (!bytesEqual(opDigest, last.opDigest)) {
        // Two different bodies under one request id: only a faulty client does that.
        this.reject('conflicting_request', from);
        return;
      }
      if (now - last.forwardedAt < this.cluster.config.authResendMs) {
        this.reject('resend_rate_limited', from);
        return;
      }
      last.forwardedAt = now;
      this.out.send(this.orderPeers, last.authReq);
      return;
    }
    const row = this.keys.authenticate(this.orderPeers, core);
    const authReq: MsgOf<'authReq'> = { kind: 'authReq', client: msg.client, reqId: msg.reqId, op: msg.op, row };
    this.pending.set(msg.client, { reqId: msg.reqId, opDigest, authReq, forwardedAt: now });
    this.out.send(this.orderPeers, authReq);
  }
}
