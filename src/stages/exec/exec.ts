/**
 * Execution stage (UpRight §5.1.4, §5.3.2, §6.3).
 *
 * Runs committed batches in sequence order through the application and replies to clients.
 * Execution replicas never talk to each other in the normal case.
 *
 * - NEXT-BATCH(n, H_n, batch) from order replicas: accepted once r+1 distinct order replicas
 *   sent the same (H_n, digest) for n, or the order replica on this same node sent it (a node
 *   is one fault domain: if that replica lies, this executor is faulty too), and
 *   H_n = hash(H_{n-1}, n, digest(batch)) extends this replica's own history. In the normal
 *   case an executor co-located with an order replica hears only from it; the others resend
 *   batches when it asks with LAST-EXEC. Requests already answered for their client (id <= cached id) are
 *   skipped, so a request ordered twice runs once. Only non-empty batches reach the app; the
 *   delivered time is max(batch time, last delivered time + 1), so it strictly increases.
 * - Replies carry this executor's MAC for the client. In the normal case only the client's r+1
 *   responders (exec replicas from index client mod n_exec onwards) answer, through the first of
 *   them, the client's home, which sends the r+1 matching replies together; after a
 *   retransmission every executor answers the client directly for a while (`directReplyMs`).
 * - Reply cache: the last reply per client, resent directly when the order stage reports a
 *   retransmission (RETRANSMIT).
 * - Checkpoints every checkpointInterval batches: the app checkpoint plus reply cache, history
 *   and time, hashed into a token; the checkpoint is durable BEFORE CP-TOKEN leaves. The last
 *   three are kept, so any checkpoint the order stage may still name is available.
 * - Catch-up: on a gap (later batches buffered, or a retransmission for a request not yet
 *   executed), and as a heartbeat after 4 x execRetryMs without progress, send LAST-EXEC(next)
 *   to the order stage, which resends batches or answers
 *   LOAD-CP with its stable checkpoints. A checkpoint named by r+1 matching LOAD-CPs is fetched
 *   from execution peers one at a time and loaded only if its bytes hash to the token.
 * - Read-only requests are answered from the current state (client needs all executors to agree).
 *
 * Invariants:
 * - nextSeq only grows; `history` is the chain hash through nextSeq - 1;
 * - a batch runs only when its chain hash extends `history` and r+1 order replicas, or the
 *   co-located one, sent it;
 * - the reply cache holds, per client, the reply of its highest executed request id.
 */
import { assert } from '../../core/assert.ts';
import type { Cluster } from '../../core/config.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import { bytesEqual, clientPrincipal, nodePrincipal } from '../../crypto/provider.ts';
import { encodeBatch, type Batch, type Message, type MsgOf } from '../../codec/messages.ts';
import { array, bytes, encodeWith, fixed, struct, tryDecodeWith, u32, uint } from '../../codec/schema.ts';
import { checkpointBytesMax, clientsMax, digestBytes, opBytesMax } from '../../codec/limits.ts';
import type { AppRequest, ReplicatedApp } from '../../app/contract.ts';
import type { Canaries, Effect, StageEvent } from '../types.ts';
import { hex, homeExecOf, isResponder, membersOf, Outbox, replyCoreBytes, requestCoreBytes, u64Bytes } from '../common.ts';
import { StorageCorruptError } from '../../core/errors.ts';
import { VoteTable } from '../votes.ts';

/** Execution checkpoint layout: what the token hashes. */
export const execCheckpointCodec = struct({
  seq: uint,
  history: fixed(digestBytes),
  lastTime: uint,
  replies: array(struct({ client: u32, reqId: uint, result: bytes(opBytesMax) }), clientsMax),
  app: bytes(checkpointBytesMax),
});

/** Durable key prefix of execution checkpoints (`x/cp/<seq>`). */
export const execCheckpointPrefix = 'x/cp/';

/** Whether a durable key holds an execution checkpoint (what a replica can refetch from peers). */
export function isExecCheckpointKey(key: string): boolean {
  return key.startsWith(execCheckpointPrefix);
}

const zeroDigest = new Uint8Array(32);
/** How long replies to a retransmitting client bypass its home node. */
const directReplyMs = 10_000;

interface Claim {
  readonly history: Uint8Array;
  readonly digest: Uint8Array;
  readonly batch: Batch;
}

interface Loading {
  readonly seq: number;
  readonly token: Uint8Array;
  /** Exec peers asked so far, in order. */
  readonly asked: number[];
  deadline: number;
}

/** Execution replica state machine. */
export class ExecCore {
  private readonly out = new Outbox();
  private readonly index: number;
  private readonly small: number;
  /** An order replica shares this node: its NEXT-BATCH alone is enough (one fault domain). */
  private readonly localOrder: boolean;
  private readonly cpInt: number;
  private readonly orderPeers: Principal[];
  private readonly execPeerIds: number[];

  /** Next batch to execute. Invariant: only grows. */
  private nextSeq = 1;
  /** Chain hash through nextSeq - 1. */
  private history: Uint8Array = zeroDigest;
  /** Time delivered with the last non-empty batch. */
  private lastTime = 0;
  private readonly replyCache = new Map<number, { reqId: number; result: Uint8Array }>();
  /** Own checkpoints (seq -> token, bytes), the latest three. */
  private readonly checkpoints = new Map<number, { token: Uint8Array; data: Uint8Array }>();
  /** NEXT-BATCH claims per seq, keyed by history hex + digest hex; one per order replica. */
  private readonly claims = new VoteTable<Claim>();
  /** LOAD-CP claims: "seq:token" -> order senders. */
  private readonly loadClaims = new Map<string, Set<number>>();
  private loading: Loading | undefined;
  private lastProgressAt = 0;
  private lastExecSentAt = -Infinity;
  private lastTokenSentAt = 0;
  private readonly replyResentAt = new Map<number, number>();
  /** Clients whose replies go out directly (not through their home node) until a time. */
  private readonly directUntil = new Map<number, number>();
  /** Replies being gathered for clients homed here (one request per client). */
  private readonly gathering = new Map<number, { reqId: number; replies: Map<number, { reqId: number; result: Uint8Array; exec: number; mac: Uint8Array }>; sent: boolean }>();
  private started = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly nodeId: number,
    private readonly keys: KeyRing,
    private readonly app: ReplicatedApp,
    durable: ReadonlyMap<string, Uint8Array>,
    private readonly canaries: Canaries = new Set(),
  ) {
    const idx = cluster.exec.indexOf.get(nodeId);
    assert(idx !== undefined, `node ${nodeId} hosts no execution replica`);
    this.index = idx;
    this.small = cluster.r + 1;
    this.localOrder = cluster.order.indexOf.has(nodeId);
    this.cpInt = cluster.config.checkpointInterval;
    this.orderPeers = membersOf(cluster.order);
    this.execPeerIds = cluster.exec.nodes.filter((id) => id !== nodeId);
    this.recover(durable);
  }

  /** Next batch this replica will execute. */
  get next(): number {
    return this.nextSeq;
  }

  /** The application's checkpoint of its current state (status pages, checkers). */
  appCheckpoint(): Uint8Array {
    return this.app.checkpoint();
  }

  /** History hash through next - 1. */
  get historyHash(): Uint8Array {
    return this.history;
  }

  step(ev: StageEvent): Effect[] {
    if (!this.started) {
      this.started = true;
      this.lastProgressAt = ev.now;
      // After a (re)start, ask the order stage for whatever we missed.
      this.sendLastExec(ev.now);
    }
    if (ev.kind === 'tick') this.onTick(ev.now);
    else this.onMessage(ev.from, ev.msg, ev.now);
    return this.out.drain();
  }

  private reject(reason: string, from: Principal): void {
    this.out.note({ type: 'rejected', reason, from });
  }

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (msg.kind === 'readRequest') return this.onReadRequest(from, msg);
    if (from.kind !== 'node') return this.reject('client_to_exec', from);
    switch (msg.kind) {
      case 'nextBatch':
      case 'loadCheckpoint':
      case 'retransmit':
        if (!this.cluster.order.indexOf.has(from.id)) return this.reject('order_msg_from_non_order', from);
        if (msg.kind === 'nextBatch') return this.onNextBatch(from.id, msg, now);
        if (msg.kind === 'loadCheckpoint') return this.onLoadCheckpoint(from.id, msg, now);
        return this.onRetransmit(msg.client, msg.reqId, now);
      case 'fetchCheckpoint':
      case 'checkpointData':
      case 'relayReply':
        if (!this.cluster.exec.indexOf.has(from.id) || from.id === this.nodeId) return this.reject('exec_msg_from_non_exec', from);
        if (msg.kind === 'fetchCheckpoint') return this.onFetchCheckpoint(from, msg.seq);
        if (msg.kind === 'relayReply') return this.onRelayReply(from.id, msg);
        return this.onCheckpointData(from.id, msg.seq, msg.data, now);
      default:
        return this.reject('unexpected_kind', from);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Ordered execution
  // ---------------------------------------------------------------------------------------

  private onNextBatch(sender: number, msg: MsgOf<'nextBatch'>, now: number): void {
    if (msg.seq < this.nextSeq || msg.seq >= this.nextSeq + 4 * this.cpInt) return;
    const digest = this.keys.digest(encodeBatch(msg.batch));
    const key = this.canaries.has('skipHistoryCheck') ? hex(msg.history) : hex(msg.history) + hex(digest);
    this.claims.add(msg.seq, key, { history: msg.history, digest, batch: msg.batch }, sender);
    this.executeReady(now);
  }

  private executeReady(now: number): void {
    for (;;) {
      if (this.loading !== undefined) return;
      let chosen: Claim | undefined;
      for (const { value: claim, voters } of this.claims.tallies(this.nextSeq)) {
        if (voters.size < this.small && !(this.localOrder && voters.has(this.nodeId))) continue;
        if (!this.canaries.has('skipHistoryCheck')) {
          const expected = this.keys.digest(this.history, u64Bytes(this.nextSeq), claim.digest);
          if (!bytesEqual(expected, claim.history)) {
            this.out.note({ type: 'safetyAlarm', detail: `exec ${this.nodeId}: agreed batch ${this.nextSeq} does not extend local history` });
            continue;
          }
        }
        chosen = claim;
        break;
      }
      if (chosen === undefined) return;
      this.execute(chosen, now);
    }
  }

  private execute(claim: Claim, now: number): void {
    const seq = this.nextSeq;
    const dedup = !this.canaries.has('duplicateExecution');
    const run: AppRequest[] = [];
    for (const r of claim.batch.requests) {
      const cached = this.replyCache.get(r.client);
      if (dedup && cached !== undefined && r.reqId <= cached.reqId) continue;
      run.push(r);
    }
    const executed: { client: number; reqId: number; result: Uint8Array }[] = [];
    const time = Math.max(claim.batch.time, this.lastTime + 1);
    if (run.length > 0) {
      const results = this.app.execute({ seq, time, seed: claim.batch.seed, requests: run });
      assert(results.length === run.length, 'the application returns one reply per request');
      this.lastTime = time;
      run.forEach((r, i) => {
        const result = results[i]!;
        this.replyCache.set(r.client, { reqId: r.reqId, result });
        executed.push({ client: r.client, reqId: r.reqId, result });
        this.sendReply(r.client, r.reqId, result, now, false);
      });
    }
    this.history = claim.history;
    this.nextSeq = seq + 1;
    this.claims.delete(seq);
    this.lastProgressAt = now;
    this.out.note({ type: 'executed', seq, history: claim.history, batchDigest: claim.digest, batch: claim.batch, time, results: executed });
    if (seq % this.cpInt === 0) this.takeCheckpoint(seq, now);
  }

  // ---------------------------------------------------------------------------------------
  // Checkpoints
  // ---------------------------------------------------------------------------------------

  private takeCheckpoint(seq: number, now: number): void {
    const replies = [...this.replyCache.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([client, r]) => ({ client, reqId: r.reqId, result: r.result }));
    const data = encodeWith(execCheckpointCodec, { seq, history: this.history, lastTime: this.lastTime, replies, app: this.app.checkpoint() });
    const token = this.keys.digest(data);
    this.storeCheckpoint(seq, token, data);
    this.out.note({ type: 'checkpointTaken', seq, token });
    // The Outbox puts the checkpoint write ahead of this send: durable before CP-TOKEN.
    this.out.send(this.orderPeers, { kind: 'cpToken', seq, token });
    this.lastTokenSentAt = now;
  }

  private storeCheckpoint(seq: number, token: Uint8Array, data: Uint8Array): void {
    this.checkpoints.set(seq, { token, data });
    this.out.write(`${execCheckpointPrefix}${seq}`, data);
    const seqs = [...this.checkpoints.keys()].sort((a, b) => b - a);
    for (const old of seqs.slice(3)) {
      this.checkpoints.delete(old);
      this.out.remove(`${execCheckpointPrefix}${old}`);
    }
  }

  private latestCheckpoint(): { seq: number; token: Uint8Array } | undefined {
    let best: { seq: number; token: Uint8Array } | undefined;
    for (const [seq, c] of this.checkpoints) if (best === undefined || seq > best.seq) best = { seq, token: c.token };
    return best;
  }

  private onLoadCheckpoint(sender: number, msg: MsgOf<'loadCheckpoint'>, now: number): void {
    for (const { seq, token } of msg.checkpoints) {
      if (seq < this.nextSeq || seq % this.cpInt !== 0) continue;
      const key = `${seq}:${hex(token)}`;
      let senders = this.loadClaims.get(key);
      if (senders === undefined) {
        if (this.loadClaims.size >= 8 * this.orderPeers.length) this.loadClaims.clear();
        senders = new Set();
        this.loadClaims.set(key, senders);
      }
      senders.add(sender);
      if (senders.size < this.small) continue;
      if (this.loading !== undefined && this.loading.seq >= seq) continue;
      this.beginLoad(seq, token, now);
    }
  }

  private beginLoad(seq: number, token: Uint8Array, now: number): void {
    const own = this.checkpoints.get(seq);
    if (own !== undefined && bytesEqual(own.token, token)) {
      this.loadCheckpointData(seq, own.data, now);
      return;
    }
    this.loading = { seq, token, asked: [], deadline: 0 };
    this.askNextPeer(now);
  }

  private askNextPeer(now: number): void {
    const l = this.loading;
    assert(l !== undefined, 'asking a peer needs a load in progress');
    const peers = this.execPeerIds;
    if (peers.length === 0) return;
    // Rotate through peers, starting from our own index so replicas spread their requests.
    const peer = peers[(this.index + l.asked.length) % peers.length]!;
    l.asked.push(peer);
    l.deadline = now + this.cluster.config.execRetryMs;
    this.out.send([nodePrincipal(peer)], { kind: 'fetchCheckpoint', seq: l.seq });
  }

  private onFetchCheckpoint(from: Principal, seq: number): void {
    const c = this.checkpoints.get(seq);
    if (c !== undefined) this.out.send([from], { kind: 'checkpointData', seq, data: c.data });
  }

  private onCheckpointData(sender: number, seq: number, data: Uint8Array, now: number): void {
    const l = this.loading;
    if (l?.seq !== seq) return;
    if (!bytesEqual(this.keys.digest(data), l.token)) {
      this.reject('checkpoint_data_mismatch', nodePrincipal(sender));
      this.askNextPeer(now);
      return;
    }
    this.loadCheckpointData(seq, data, now);
  }

  private loadCheckpointData(seq: number, data: Uint8Array, now: number): void {
    const res = tryDecodeWith(execCheckpointCodec, data);
    if (!res.ok || res.value.seq !== seq) {
      // Hash matched an agreed token, so this cannot come from correct replicas' checkpoints.
      this.out.note({ type: 'safetyAlarm', detail: `exec ${this.nodeId}: agreed checkpoint ${seq} does not decode` });
      this.loading = undefined;
      return;
    }
    const cp = res.value;
    this.app.restore(cp.app);
    this.replyCache.clear();
    for (const r of cp.replies) this.replyCache.set(r.client, { reqId: r.reqId, result: r.result });
    this.history = cp.history;
    this.lastTime = cp.lastTime;
    this.nextSeq = seq + 1;
    const token = this.keys.digest(data);
    this.storeCheckpoint(seq, token, data);
    this.claims.deleteBelow(this.nextSeq);
    this.loading = undefined;
    this.lastProgressAt = now;
    this.out.note({ type: 'checkpointLoaded', seq, token });
    this.sendLastExec(now);
    this.executeReady(now);
  }

  // ---------------------------------------------------------------------------------------
  // Catch-up, retransmission, read-only
  // ---------------------------------------------------------------------------------------

  private sendLastExec(now: number): void {
    this.lastExecSentAt = now;
    this.out.send(this.orderPeers, { kind: 'lastExec', next: this.nextSeq });
  }

  private onRetransmit(client: number, reqId: number, now: number): void {
    const cached = this.replyCache.get(client);
    if (cached !== undefined && cached.reqId === reqId) {
      const last = this.replyResentAt.get(client) ?? -Infinity;
      if (now - last < this.cluster.config.execRetryMs / 2) return;
      this.replyResentAt.set(client, now);
      // The client is retransmitting: its home node may be down or lying. Reply directly,
      // now and for a while.
      this.directUntil.set(client, now + directReplyMs);
      this.sendReply(client, reqId, cached.result, now, true);
      return;
    }
    if ((cached === undefined || cached.reqId < reqId) && now - this.lastExecSentAt >= this.cluster.config.execRetryMs) {
      // Ordered but not executed here: we are behind.
      this.sendLastExec(now);
    }
  }

  /**
   * Sends a reply with this executor's MAC for the client: directly when this node is the
   * client's home (or the client is in direct mode), else through the home node, which gathers
   * the executors' replies so the client receives them over one connection.
   */
  private sendReply(client: number, reqId: number, result: Uint8Array, now: number, direct: boolean): void {
    const n = this.cluster.exec.nodes.length;
    if (direct || (this.directUntil.get(client) ?? -Infinity) > now) {
      const mac = this.keys.macFor(clientPrincipal(client), replyCoreBytes(this.nodeId, reqId, result));
      this.out.send([clientPrincipal(client)], { kind: 'reply', reqId, result, exec: this.nodeId, mac });
      return;
    }
    if (!isResponder(client, this.index, n, this.cluster.r)) return;
    const mac = this.keys.macFor(clientPrincipal(client), replyCoreBytes(this.nodeId, reqId, result));
    const home = homeExecOf(client, this.cluster.exec.nodes);
    if (home === this.nodeId) this.gather(client, { reqId, result, exec: this.nodeId, mac });
    else this.out.send([nodePrincipal(home)], { kind: 'relayReply', client, reqId, result, exec: this.nodeId, mac });
  }

  /**
   * Home-node gathering: replies for a client homed here are held until r+1 of them match, then
   * sent together (one packet to the client). A home that never sees r+1 matching replies sends
   * nothing; the client's retransmission then switches every executor to direct replies.
   */
  private gather(client: number, reply: { reqId: number; result: Uint8Array; exec: number; mac: Uint8Array }): void {
    let g = this.gathering.get(client);
    if (g === undefined || g.reqId < reply.reqId) {
      g = { reqId: reply.reqId, replies: new Map(), sent: false };
      this.gathering.set(client, g);
    }
    if (g.reqId !== reply.reqId || g.sent || g.replies.has(reply.exec)) return;
    g.replies.set(reply.exec, reply);
    const matching = [...g.replies.values()].filter((x) => bytesEqual(x.result, reply.result));
    if (matching.length < this.small) return;
    g.sent = true;
    g.replies.clear();
    for (const x of matching) this.out.send([clientPrincipal(client)], { kind: 'reply', reqId: x.reqId, result: x.result, exec: x.exec, mac: x.mac });
  }

  private onRelayReply(sender: number, m: MsgOf<'relayReply'>): void {
    if (m.exec !== sender) return this.reject('relay_reply_exec_mismatch', nodePrincipal(sender));
    if (homeExecOf(m.client, this.cluster.exec.nodes) !== this.nodeId) return this.reject('relay_reply_not_home', nodePrincipal(sender));
    if (!this.cluster.clients.has(m.client)) return this.reject('unknown_client', nodePrincipal(sender));
    this.gather(m.client, { reqId: m.reqId, result: m.result, exec: m.exec, mac: m.mac });
  }

  private onReadRequest(from: Principal, msg: MsgOf<'readRequest'>): void {
    if (from.kind !== 'client' || from.id !== msg.client) return this.reject('sender_mismatch', from);
    if (!this.cluster.clients.has(msg.client)) return this.reject('unknown_client', from);
    if (msg.op.length > this.cluster.config.requestBytesMax) return this.reject('op_too_large', from);
    const core = requestCoreBytes(msg.client, msg.reqId, msg.op);
    if (!this.keys.verifyAuthenticatorEntry(from, core, msg.macs, this.index)) return this.reject('bad_authenticator', from);
    const result = this.app.executeReadOnly(msg.op);
    const mac = this.keys.macFor(from, replyCoreBytes(this.nodeId, msg.reqId, result));
    this.out.send([from], { kind: 'readReply', reqId: msg.reqId, result, seq: this.nextSeq, exec: this.nodeId, mac });
  }

  private onTick(now: number): void {
    const retry = this.cluster.config.execRetryMs;
    if (this.loading !== undefined && now >= this.loading.deadline) this.askNextPeer(now);
    const waiting = this.claims.size > 0;
    if ((waiting || this.loading !== undefined) && now - this.lastProgressAt >= retry && now - this.lastExecSentAt >= retry) {
      this.sendLastExec(now);
    } else if (now - this.lastProgressAt >= 4 * retry && now - this.lastExecSentAt >= 4 * retry) {
      // Heartbeat: an executor that missed every NEXT-BATCH of a stretch sees no gap and no
      // retransmission (the requests waiting may not be ordered yet, because ordering waits for
      // this executor's checkpoint token); asking now and then is what gets it going again.
      this.sendLastExec(now);
    }
    if (now - this.lastTokenSentAt >= 3 * retry) {
      this.lastTokenSentAt = now;
      const latest = this.latestCheckpoint();
      if (latest !== undefined) this.out.send(this.orderPeers, { kind: 'cpToken', seq: latest.seq, token: latest.token });
    }
  }

  private recover(durable: ReadonlyMap<string, Uint8Array>): void {
    let best: { seq: number; key: string; data: Uint8Array } | undefined;
    for (const [key, data] of durable) {
      if (!isExecCheckpointKey(key)) continue;
      const seq = Number(key.slice(execCheckpointPrefix.length));
      if (!Number.isSafeInteger(seq)) throw new StorageCorruptError(key, 'bad checkpoint key');
      if (best === undefined || seq > best.seq) best = { seq, key, data };
      this.checkpoints.set(seq, { token: this.keys.digest(data), data });
    }
    if (best === undefined) return;
    const res = tryDecodeWith(execCheckpointCodec, best.data);
    if (!res.ok || res.value.seq !== best.seq) throw new StorageCorruptError(best.key, res.ok ? 'sequence number mismatch' : res.error.message);
    const cp = res.value;
    this.app.restore(cp.app);
    for (const r of cp.replies) this.replyCache.set(r.client, { reqId: r.reqId, result: r.result });
    this.history = cp.history;
    this.lastTime = cp.lastTime;
    this.nextSeq = best.seq + 1;
  }
}
