/**
 * Authentication stage (UpRight §5.1.2, §6.4; request filter after Aardvark §3.4.1).
 *
 * Checks each client request, cheapest check first, and forwards authenticated requests to
 * every order replica as AUTH-REQ, carrying this replica's row of a matrix signature: one MAC
 * per order replica over the request core. The order primary batches a request once it holds
 * max(u,r)+r+1 rows; each backup then finds at least max(u,r)+1 rows valid for itself. With
 * r = 0 one row each (config.ts, deriveCluster): no auth replica lies, and bodies travel inline.
 *
 * Filter order (each step drops and counts on failure):
 *   1. channel sender is the client named in the request, or an auth replica relaying it;
 *   1b. the client is not blacklisted here (`client_blacklisted`);
 *   2. client is authorised;
 *   3. body within requestBytesMax;
 *   4. this replica's MAC entry of the client's authenticator verifies;
 *   5. request id: older than the last forwarded -> drop (stale); equal -> a retransmission:
 *      forward the same AUTH-REQ to every order replica, at most once per authResendMs (the
 *      first retransmission after a primary-only forward always goes out); newer -> becomes
 *      the client's single pending request (replacing the previous one) and is forwarded.
 *      Equal id with a different body, each MAC valid for this replica: only the client can
 *      make both, so it is faulty; it is blacklisted here for `blacklistMs` (Aardvark §3.4.1:
 *      blacklist only on proof, entries expire). Auth replicas decide on their own (§6.4).
 *   6. with `clientSignatures` on, a new request's Ed25519 signature (the one expensive check,
 *      so it comes last): missing -> dropped (`missing_signature`); bad -> dropped
 *      (`bad_signature`) and, when the request came straight from the client (its MAC verified
 *      on its own connection, so only it can have sent it), the client is blacklisted. A retransmission of the pending
 *      request is not re-verified: its body matched the one already checked.
 *
 * The client's relay (client mod n_auth) passes a first send on to the rest of the preferred
 * quorum as REQUEST-DIGEST: the core digest and the client's MACs, which cover only that digest,
 * so each of them checks its entry and vouches (AUTH-DIGEST, a row without the body) while the
 * body crosses to the primary once, in the relay's AUTH-REQ. With clientSignatures on, the relay
 * passes the whole request (the signature covers the body). When the body later arrives from the
 * client itself (a retransmission), a digest-only pending entry becomes an AUTH-REQ with it.
 *
 * First sends go to the order primary only; retransmissions to every order replica (§6.2.3).
 * The auth replica learns the view from VIEW-HINT messages of order replicas and follows the
 * (r+1)-th highest view reported, so r lying order replicas cannot misdirect it; a wrong guess
 * only costs the client one retransmission.
 *
 * Auth replicas never talk to each other and may diverge (§6.4). Bodies are ordered inline
 * (no FETCH/COMMAND round), so this stage keeps no durable state: after a restart it simply
 * forwards what clients retransmit. See docs/protocol.md "Deviations".
 *
 * Invariants:
 * - at most one pending (forwarded, maybe unordered) request per client;
 * - a pending entry's core digest is one the client MACed for this replica; its AUTH-REQ body,
 *   when it has one, hashes to that digest;
 * - the pending request id per client never decreases.
 */
import type { Cluster } from '../../core/config.ts';
import { assert } from '../../core/assert.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import { bytesEqual, clientPrincipal } from '../../crypto/provider.ts';
import type { AuthRowMsg, Message, MsgOf } from '../../codec/messages.ts';
import type { Effect, StageEvent } from '../types.ts';
import { membersOf, Outbox, relayIndexOf, requestCoreBytes, requestCoreDigest, requestSignedBytes } from '../common.ts';

interface Pending {
  readonly reqId: number;
  /** Digest of the request core; under one (client, reqId) it differs exactly when the body does. */
  readonly coreDigest: Uint8Array;
  /** What was forwarded; becomes an AUTH-REQ with the body when the body arrives later. */
  authReq: AuthRowMsg;
  forwardedAt: number;
  /** Whether it has been sent to every order replica (not only the primary). */
  toAll: boolean;
}

/** Authentication stage state machine of one auth replica. */
export class AuthCore {
  private readonly out = new Outbox();
  private readonly orderPeers: Principal[];
  private readonly authPeers: Principal[];
  /**
   * Where this replica, as a client's relay, passes a first send on: the next authRowsPrimary-1
   * auth replicas (the rest of the preferred quorum; none when r = 0).
   */
  private readonly relayPeers: Principal[];
  /** This replica's index in the auth stage. */
  private readonly index: number;
  /** Last forwarded request per client. Invariant: one entry per client at most. */
  private readonly pending = new Map<number, Pending>();
  /** Latest view reported by each order replica. */
  private readonly hints = new Map<number, number>();
  /** View whose primary gets first sends: the (r+1)-th highest hint. */
  private view = 0;
  /** Clients caught sending two bodies under one id, until when (ms). At most one per client. */
  private readonly blacklist = new Map<number, number>();

  constructor(
    private readonly cluster: Cluster,
    nodeId: number,
    private readonly keys: KeyRing,
  ) {
    const idx = cluster.auth.indexOf.get(nodeId);
    assert(idx !== undefined, `node ${nodeId} hosts no auth replica`);
    this.index = idx;
    this.orderPeers = membersOf(cluster.order);
    this.authPeers = membersOf(cluster.auth);
    this.relayPeers = [];
    for (let i = 1; i < cluster.authRowsPrimary; i++) this.relayPeers.push(this.authPeers[(idx + i) % this.authPeers.length]!);
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

  /** The order replica first sends go to. */
  private primary(): Principal {
    return this.orderPeers[this.view % this.orderPeers.length]!;
  }

  private onViewHint(from: Principal, view: number): void {
    if (from.kind !== 'node' || !this.cluster.order.indexOf.has(from.id)) return this.reject('viewhint_from_non_order', from);
    if (view <= (this.hints.get(from.id) ?? -1)) return;
    this.hints.set(from.id, view);
    const views = [...this.hints.values()].sort((a, b) => b - a);
    const v = views[this.cluster.r];
    if (v !== undefined && v > this.view) this.view = v;
  }

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (msg.kind === 'viewHint') return this.onViewHint(from, msg.view);
    if (msg.kind !== 'request' && msg.kind !== 'requestDigest') {
      this.reject('unexpected_kind', from);
      return;
    }
    // From the client itself, or relayed by another auth replica (the client's MAC entry for
    // this replica, checked below, is what authenticates the request either way). A digest
    // comes only from a relay.
    const direct = msg.kind === 'request' && from.kind === 'client' && from.id === msg.client;
    const relayed = from.kind === 'node' && this.cluster.auth.indexOf.has(from.id);
    if (!direct && !relayed) {
      this.reject('sender_mismatch', from);
      return;
    }
    const until = this.blacklist.get(msg.client);
    if (until !== undefined) {
      if (now < until) {
        this.reject('client_blacklisted', from);
        return;
      }
      this.blacklist.delete(msg.client);
    }
    if (!this.cluster.clients.has(msg.client)) {
      this.reject('unknown_client', from);
      return;
    }
    if (msg.kind === 'request' && msg.op.length > this.cluster.config.requestBytesMax) {
      this.reject('op_too_large', from);
      return;
    }
    // One digest of the core serves the client's MAC, the conflict check and this replica's row.
    const coreDigest = msg.kind === 'request' ? requestCoreDigest(this.keys, msg.client, msg.reqId, msg.op) : msg.coreDigest;
    if (!this.keys.verifyAuthenticatorDigest(clientPrincipal(msg.client), coreDigest, msg.macs, this.index)) {
      this.reject('bad_authenticator', from);
      return;
    }
    this.admit(from, direct, msg.client, msg.reqId, coreDigest, msg.kind === 'request' ? msg : undefined, now);
  }

  /**
   * A request whose client MAC checked out: `body` is the request itself, or undefined when a
   * relay passed on only its core digest (REQUEST-DIGEST).
   */
  private admit(from: Principal, direct: boolean, client: number, reqId: number, coreDigest: Uint8Array, body: MsgOf<'request'> | undefined, now: number): void {
    const last = this.pending.get(client);
    if (last !== undefined && reqId < last.reqId) {
      this.reject('stale_request', from);
      return;
    }
    if (last !== undefined && reqId === last.reqId) {
      if (!bytesEqual(coreDigest, last.coreDigest)) {
        // Two different bodies under one request id, both with the client's MAC for this
        // replica: only a faulty client does that. Proof enough to blacklist it here.
        this.reject('conflicting_request', from);
        if (this.cluster.config.blacklistMs > 0) this.blacklist.set(client, now + this.cluster.config.blacklistMs);
        return;
      }
      // The body of a request this replica vouched for by digest only (the client retransmits
      // to every auth replica when its relay did not get it ordered): from now on its AUTH-REQ
      // carries the body, and the first one goes out whatever the rate limit.
      const upgraded = body !== undefined && last.authReq.kind === 'authDigest';
      if (upgraded) last.authReq = { kind: 'authReq', client, reqId, op: body.op, row: last.authReq.row };
      if (!upgraded && last.toAll && now - last.forwardedAt < this.cluster.config.authResendMs) {
        this.reject('resend_rate_limited', from);
        return;
      }
      last.forwardedAt = now;
      last.toAll = true;
      this.out.send(this.orderPeers, last.authReq);
      return;
    }
    // The expensive check last (Aardvark §3.4.1): only a new request that passed every cheap
    // check costs a signature verification. A bad or missing signature under a MAC that verified,
    // on the client's own connection, proves the client faulty: only it holds that MAC key, and
    // no relay stood between. Relayed, the signature is not covered by the MAC (a faulty relay
    // could have broken it), so the request is only dropped.
    // A missing signature costs nothing to detect and more likely means a client with an old
    // cluster file than an attack: dropped, not blacklisted. A REQUEST-DIGEST has none (with
    // signatures on a relay passes the whole request: they cover the body, not its digest).
    if (this.cluster.clientSignatures) {
      if (body?.sig === undefined) {
        this.reject('missing_signature', from);
        return;
      }
      if (!this.keys.verifyFrom(clientPrincipal(client), requestSignedBytes(requestCoreBytes(client, reqId, body.op)), body.sig)) {
        this.reject('bad_signature', from);
        if (direct && this.cluster.config.blacklistMs > 0) this.blacklist.set(client, now + this.cluster.config.blacklistMs);
        return;
      }
    }
    const row = this.keys.authenticateDigest(this.orderPeers, coreDigest);
    const authReq: AuthRowMsg = body !== undefined ? { kind: 'authReq', client, reqId, op: body.op, row } : { kind: 'authDigest', client, reqId, coreDigest, row };
    this.pending.set(client, { reqId, coreDigest, authReq, forwardedAt: now, toAll: false });
    this.out.send([this.primary()], authReq);
    // The client's relay passes a first send on to the rest of the preferred quorum: only the
    // core digest and the client's MACs (each of them vouches without the body, and the primary
    // gets the body from the relay alone), or the whole request when signatures are on.
    if (body !== undefined && direct && body.fanout && this.relayPeers.length > 0 && this.index === relayIndexOf(client, this.authPeers.length)) {
      const pass: Message = this.cluster.clientSignatures ? { ...body, fanout: false } : { kind: 'requestDigest', client, reqId, coreDigest, macs: body.macs };
      this.out.send(this.relayPeers, pass);
    }
  }
}
