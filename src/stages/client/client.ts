/**
 * Client stage (UpRight §5.1.1, §6.4.2; Aardvark §3.4.1 for retransmission).
 *
 * A closed-loop client: one operation outstanding at a time, later ones queued (bounded).
 *
 * Ordered path: the request, with an authenticator holding one MAC per auth replica, goes
 * first to the client's relay (auth replica client mod n_auth), which passes it on to the rest
 * of the preferred quorum of authRowsPrimary auth replicas (thesis §6.4.2) over node-to-node
 * connections; every retransmission goes to all auth replicas directly, with a timeout that
 * starts at clientRetryMs, doubles per retry up to clientRetryMaxMs, and after a reply restarts
 * from max(clientRetryMs, last latency). The reply is accepted on r+1 matching replies from
 * distinct execution replicas (small quorum); each reply carries its executor's MAC for this
 * client, so it may arrive through the client's home node.
 *
 * Read-only path (§5.5, §7.4.3): the request goes to the client's home execution replica,
 * which passes it on to every other one and sends all their answers back together (one client
 * packet each way, as on the ordered path); after a read timed out, the next reads go to every
 * execution replica directly for a span that grows like the auth relay's. Each executor
 * answers from its current state without ordering. The client accepts only when every execution
 * replica gave the same answer: then the answer comes from a state that includes every
 * completed write (a completed write was executed by a correct replica among the r+1 that
 * replied to it, and all replicas agreed). Otherwise, after readTimeoutMs or a disagreement,
 * the operation is reissued on the ordered path with a fresh request id; likewise at once when
 * an executor refuses (READ-REPLY with seq 0: restarted and not yet past its read fence).
 *
 * Durable state (CS3): request ids are reserved in blocks; the reservation is persisted
 * BEFORE any request with an id from the block is sent, so a restarted client never reuses
 * an id (a reused id would be answered with the reply of an older request).
 *
 * Invariants:
 * - reqIdNext <= reqIdReserved + 1, and every id sent is <= reqIdReserved;
 * - at most one operation outstanding; `outstanding.reqId` only grows;
 * - replies are counted per distinct execution replica, for the outstanding id only.
 */
import { assert } from '../../core/assert.ts';
import type { Cluster } from '../../core/config.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import type { Message, MsgOf } from '../../codec/messages.ts';
import { bytesEqual, nodePrincipal } from '../../crypto/provider.ts';
import type { Canaries, Effect, StageEvent } from '../types.ts';
import { homeExecOf, membersOf, Outbox, readU64Durable, relayIndexOf, replyCoreBytes, requestCoreBytes, requestCoreDigest, requestSignedBytes, u64Bytes } from '../common.ts';

/** Client options beyond the cluster config. */
export interface ClientOptions {
  /** Request ids reserved per durable write (1 = one write per request). */
  readonly reserveBlock: number;
  /** Most operations queued behind the outstanding one. */
  readonly queueMax: number;
}

/** Defaults: reserve 1000 ids per write; queue up to 1024 operations. */
export const defaultClientOptions: ClientOptions = { reserveBlock: 1000, queueMax: 1024 };

/** Client input beyond messages and ticks: the application asks for an operation. */
export type ClientEvent =
  | StageEvent
  | { readonly kind: 'invoke'; readonly callId: number; readonly op: Uint8Array; readonly readOnly: boolean; readonly now: number };

const reservedKey = 'c/reserved';
/** Operations sent to every auth replica after one needed a retransmission: the first span. */
const sendAllAfterRetry = 32;
/** The longest such span. */
const sendAllMax = 4096;

/**
 * A relay path with a fallback of sending to every replica (the auth relay for first sends, the
 * home executor for reads). After the path fails, the next `span` sends go to every replica;
 * when it fails again within two sends of such a span, the next span is twice as long (up to
 * sendAllMax), so a relay that is faulty for good costs a timeout per ever more operations; a
 * failure after a longer good stretch starts over at sendAllAfterRetry.
 */
class RelayPath {
  /** Sends still going to every replica. */
  private remaining = 0;
  /** Length of the next span of sends to every replica. */
  private span = sendAllAfterRetry;
  /** Sends through the relay since the last span ended (at start: a good stretch). */
  private relaySends = sendAllAfterRetry;

  /** Counts one first send; true when it goes to every replica, false through the relay. */
  takeSend(): boolean {
    if (this.remaining > 0) {
      this.remaining -= 1;
      return true;
    }
    this.relaySends += 1;
    return false;
  }

  /** The relay path failed (a retransmission or a timeout was needed). */
  failed(): void {
    if (this.relaySends > 0) this.span = this.relaySends <= 2 ? Math.min(2 * this.span, sendAllMax) : sendAllAfterRetry;
    this.remaining = this.span;
    this.relaySends = 0;
  }
}

interface Outstanding {
  readonly callId: number;
  readonly op: Uint8Array;
  /** True while on the read-only path; false once ordered (or if ordered from the start). */
  readOnlyPhase: boolean;
  readonly requestedReadOnly: boolean;
  reqId: number;
  /** The signature of the ordered request under `reqId` (config clientSignatures), made once. */
  sig?: { readonly reqId: number; readonly bytes: Uint8Array };
  /** When the current attempt (read or ordered) started; for latency and timeouts. */
  startedAt: number;
  deadline: number;
  timeoutMs: number;
  /** Answers per execution replica index, for the current reqId. */
  replies: Map<number, Uint8Array>;
}

/** Client stage state machine. */
export class ClientCore {
  private readonly out = new Outbox();
  private readonly authPeers: Principal[];
  private readonly execPeers: Principal[];
  /** The client's home executor: its reads go there first (with fanout). */
  private readonly homeExec: Principal;
  /** Next request id to use. */
  private reqIdNext: number;
  /** Highest id covered by a durable reservation. Invariant: reqIdNext <= reqIdReserved + 1. */
  private reqIdReserved: number;
  private outstanding: Outstanding | undefined;
  private readonly queue: { callId: number; op: Uint8Array; readOnly: boolean }[] = [];
  /** Timeout base after the last reply (thesis: max(500 ms, last latency)). */
  private retryBaseMs: number;
  /** First sends of ordered requests: through the auth relay, or to every auth replica. */
  private readonly authPath = new RelayPath();
  /** Reads: through the home executor, or to every executor. */
  private readonly readPath = new RelayPath();

  constructor(
    private readonly cluster: Cluster,
    readonly id: number,
    private readonly keys: KeyRing,
    durable: ReadonlyMap<string, Uint8Array>,
    private readonly canaries: Canaries = new Set(),
    private readonly options: ClientOptions = defaultClientOptions,
  ) {
    assert(options.reserveBlock >= 1, 'reserveBlock >= 1');
    this.authPeers = membersOf(cluster.auth);
    this.execPeers = membersOf(cluster.exec);
    this.homeExec = nodePrincipal(homeExecOf(id, cluster.exec.nodes));
    const saved = durable.get(reservedKey);
    this.reqIdReserved = saved === undefined ? 0 : readU64Durable(saved, reservedKey);
    // Ids up to the saved reservation may have been used before a crash: start after it.
    this.reqIdNext = this.reqIdReserved + 1;
    this.retryBaseMs = cluster.config.clientRetryMs;
  }

  /** True when no operation is outstanding or queued. */
  get idle(): boolean {
    return this.outstanding === undefined && this.queue.length === 0;
  }

  /** Number of operations queued behind the outstanding one. */
  get queued(): number {
    return this.queue.length;
  }

  step(ev: ClientEvent): Effect[] {
    switch (ev.kind) {
      case 'invoke':
        this.onInvoke(ev.callId, ev.op, ev.readOnly, ev.now);
        break;
      case 'message':
        this.onMessage(ev.from, ev.msg, ev.now);
        break;
      case 'tick':
        this.onTick(ev.now);
        break;
    }
    this.checkInvariants();
    return this.out.drain();
  }

  private onInvoke(callId: number, op: Uint8Array, readOnly: boolean, now: number): void {
    if (op.length > this.cluster.config.requestBytesMax) {
      // Refuse locally: no replica would accept it.
      this.out.push({ kind: 'result', callId, reqId: 0, result: new Uint8Array(0), readOnly, refused: 'op_too_large' });
      this.out.note({ type: 'rejected', reason: 'op_too_large', from: this.keys.self });
      return;
    }
    if (this.outstanding !== undefined) {
      if (this.queue.length >= this.options.queueMax) {
        // Answered at once, so the caller is never left waiting on a call that will not run.
        this.out.push({ kind: 'result', callId, reqId: 0, result: new Uint8Array(0), readOnly, refused: 'client_queue_full' });
        this.out.note({ type: 'rejected', reason: 'client_queue_full', from: this.keys.self });
        return;
      }
      this.queue.push({ callId, op, readOnly });
      return;
    }
    this.begin(callId, op, readOnly, now);
  }

  private begin(callId: number, op: Uint8Array, readOnly: boolean, now: number): void {
    const reqId = this.takeReqId();
    this.outstanding = {
      callId,
      op,
      readOnlyPhase: readOnly,
      requestedReadOnly: readOnly,
      reqId,
      startedAt: now,
      deadline: 0,
      timeoutMs: 0,
      replies: new Map(),
    };
    this.sendAttempt(now, true);
  }

  /** Allocates the next request id, persisting a new reservation first when needed. */
  private takeReqId(): number {
    const id = this.reqIdNext;
    this.reqIdNext += 1;
    if (id > this.reqIdReserved) {
      this.reqIdReserved = id + this.options.reserveBlock - 1;
      // Barrier: the sends queued after this effect wait until the reservation is durable.
      this.out.persist([[reservedKey, u64Bytes(this.reqIdReserved)]]);
    }
    return id;
  }

  private sendAttempt(now: number, first: boolean): void {
    const o = this.outstanding;
    assert(o !== undefined, 'sendAttempt needs an outstanding op');
    const cfg = this.cluster.config;
    if (o.readOnlyPhase) {
      const macs = this.keys.authenticateDigest(this.execPeers, requestCoreDigest(this.keys, this.id, o.reqId, o.op));
      const all = this.readPath.takeSend();
      this.out.send(all ? this.execPeers : [this.homeExec], { kind: 'readRequest', client: this.id, reqId: o.reqId, op: o.op, macs, fanout: !all });
      o.timeoutMs = cfg.readTimeoutMs;
    } else {
      const macs = this.keys.authenticateDigest(this.authPeers, requestCoreDigest(this.keys, this.id, o.reqId, o.op));
      // After an operation needed retransmissions, send to every auth replica for a while
      // (RelayPath): a slow or silent relay, or a member of the preferred quorum vouching for
      // requests nobody sent, would otherwise cost a timeout per operation.
      let all = true;
      if (first) all = this.authPath.takeSend();
      else this.authPath.failed();
      // The signature is made once per operation; retransmissions carry the same one.
      if (this.cluster.clientSignatures && o.sig?.reqId !== o.reqId) o.sig = { reqId: o.reqId, bytes: this.keys.sign(requestSignedBytes(requestCoreBytes(this.id, o.reqId, o.op))) };
      const msg: MsgOf<'request'> = { kind: 'request', client: this.id, reqId: o.reqId, op: o.op, macs, fanout: !all, sig: o.sig?.bytes };
      // First sends go to the client's relay, which passes them to the rest of the preferred
      // quorum over its (batched) node-to-node connections.
      this.out.send(all ? this.authPeers : [this.authPeers[relayIndexOf(this.id, this.authPeers.length)]!], msg);
      o.timeoutMs = first ? this.retryBaseMs : Math.min(o.timeoutMs * 2, cfg.clientRetryMaxMs);
    }
    o.deadline = now + o.timeoutMs;
  }

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (msg.kind !== 'reply' && msg.kind !== 'readReply') {
      this.out.note({ type: 'rejected', reason: 'unexpected_kind', from });
      return;
    }
    // Replies may be forwarded by the client's home node: the executor is named in the reply
    // and proven by its MAC for this client, not by the channel.
    const execIndex = this.cluster.exec.indexOf.get(msg.exec);
    if (execIndex === undefined || from.kind !== 'node') {
      this.out.note({ type: 'rejected', reason: 'reply_from_non_executor', from });
      return;
    }
    const o = this.outstanding;
    if (o?.reqId !== msg.reqId) return; // late reply of an earlier request: ignore
    if ((msg.kind === 'readReply') !== o.readOnlyPhase) return; // reply of the other path
    if (!this.keys.verifyMacFrom(nodePrincipal(msg.exec), replyCoreBytes(msg.exec, msg.reqId, msg.result), msg.mac)) {
      this.out.note({ type: 'rejected', reason: 'reply_bad_mac', from });
      return;
    }
    if (msg.kind === 'readReply' && msg.seq === 0) {
      // The executor refuses: it restarted and is not back to where it may have answered
      // before (its read fence). No unanimous answer can come; order it.
      this.fallBackToOrdered(now);
      return;
    }
    o.replies.set(execIndex, msg.result);
    if (o.readOnlyPhase) this.maybeFinishRead(now);
    else this.maybeFinishOrdered(now);
  }

  private maybeFinishOrdered(now: number): void {
    const o = this.outstanding;
    assert(o !== undefined && !o.readOnlyPhase, 'ordered op outstanding');
    const need = this.canaries.has('clientAcceptsOneReply') ? 1 : this.cluster.r + 1;
    const match = largestAgreement(o.replies);
    if (match.count >= need) this.finish(match.value, now);
  }

  private maybeFinishRead(now: number): void {
    const o = this.outstanding;
    assert(o?.readOnlyPhase === true, 'read outstanding');
    const n = this.execPeers.length;
    const need = this.canaries.has('readWithoutQuorum') ? this.cluster.r + 1 : n;
    const match = largestAgreement(o.replies);
    if (match.count >= need) {
      this.finish(match.value, now);
      return;
    }
    // Every executor answered and they disagree: no unanimous answer can come; order it.
    if (o.replies.size === n) this.fallBackToOrdered(now);
  }

  private fallBackToOrdered(now: number): void {
    const o = this.outstanding;
    assert(o?.readOnlyPhase === true, 'fallback from a read');
    o.readOnlyPhase = false;
    o.reqId = this.takeReqId();
    o.replies = new Map();
    o.startedAt = now;
    this.sendAttempt(now, true);
  }

  private finish(result: Uint8Array, now: number): void {
    const o = this.outstanding;
    assert(o !== undefined, 'finish needs an outstanding op');
    if (!o.readOnlyPhase) {
      const latency = now - o.startedAt;
      this.retryBaseMs = Math.min(Math.max(this.cluster.config.clientRetryMs, latency), this.cluster.config.clientRetryMaxMs);
    }
    this.out.push({ kind: 'result', callId: o.callId, reqId: o.reqId, result, readOnly: o.requestedReadOnly });
    this.outstanding = undefined;
    const next = this.queue.shift();
    if (next !== undefined) this.begin(next.callId, next.op, next.readOnly, now);
  }

  private onTick(now: number): void {
    const o = this.outstanding;
    if (o === undefined || now < o.deadline) return;
    if (o.readOnlyPhase) {
      this.readPath.failed();
      this.fallBackToOrdered(now);
    } else this.sendAttempt(now, false);
  }

  private checkInvariants(): void {
    assert(this.reqIdNext <= this.reqIdReserved + 1, 'request ids stay within the durable reservation');
    if (this.outstanding !== undefined) assert(this.outstanding.reqId < this.reqIdNext, 'outstanding id was allocated');
  }
}

/** The reply value given by the most replicas, and how many gave it. */
function largestAgreement(replies: ReadonlyMap<number, Uint8Array>): { value: Uint8Array; count: number } {
  let best: { value: Uint8Array; count: number } = { value: new Uint8Array(0), count: 0 };
  const values = [...replies.values()];
  for (const v of values) {
    let c = 0;
    for (const w of values) if (bytesEqual(v, w)) c++;
    if (c > best.count) best = { value: v, count: c };
  }
  return best;
}

