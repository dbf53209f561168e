/**
 * Byzantine behaviours for simulated replicas and clients. A Byzantine node runs the correct
 * stage code and an adversary rewrites what it sends: it may stay silent, talk to some peers
 * only, equivocate as primary, lie in replies, checkpoint tokens, checkpoint data, batches and
 * catch-up answers, make valid auth rows over requests no client sent, break MACs, replay old
 * messages, spam view changes and lie in its own VIEW-CHANGEs.
 *
 * The adversary never holds another principal's keys: it can only sign and MAC as itself,
 * which is what makes these behaviours survivable within the model (at most r of them).
 */
import type { AuthRowMsg, Batch, Message, MsgOf, SignedViewChange, ViewChangeBody } from '../codec/messages.ts';
import { encodeBatch, viewChangeBodyCodec } from '../codec/messages.ts';
import { encodeWith } from '../codec/schema.ts';
import { viewChangeEntriesMax } from '../codec/limits.ts';
import { clientPrincipal, nodePrincipal, type KeyRing, type Principal } from '../crypto/provider.ts';
import { replyCoreBytes } from '../stages/common.ts';
import { carriesRequestOf, equivocalPrePrepare, forgedAuthReq, junkMessage } from '../stages/adversary.ts';
import { encodeKvOutput } from '../services/kv/ops.ts';
import type { Prng } from '../core/prng.ts';

/** Names of the replica behaviours. */
export const byzantineBehaviours = [
  'silent',
  'selective',
  'equivocate',
  'wrongReplies',
  'wrongCheckpoint',
  'corruptBatches',
  'badMacs',
  'replay',
  'badAuthRows',
  'fakeCatchUp',
  'viewChangeSpam',
] as const;
/**
 * Attacks on performance rather than safety (Aardvark's, issue 5), chosen with `sim --attack`
 * rather than drawn at random: a primary that delays every PRE-PREPARE (`slowPrimary`), one that
 * never orders one client's requests (`unfairPrimary`: it ignores the client's AUTH-REQs and
 * FORWARDs), a replica that sends junk at full speed (`replicaFlood`), and an auth replica that
 * vouches only for requests no client sent (`forgingAuth`: valid rows over other bodies, under
 * the client's id or a later one).
 */
export const attackBehaviours = ['slowPrimary', 'unfairPrimary', 'replicaFlood', 'forgingAuth'] as const;
export type AttackBehaviour = (typeof attackBehaviours)[number];
export type ByzantineBehaviour = (typeof byzantineBehaviours)[number] | AttackBehaviour;

/** Settings of the attack behaviours. */
export interface AttackSettings {
  /** slowPrimary: added delay of every PRE-PREPARE, microseconds. */
  readonly slowPrimaryUs: number;
  /** unfairPrimary: the client starved. */
  readonly victimClient: number;
  /** replicaFlood: junk messages sent with each real one. */
  readonly floodFactor: number;
}

/** One outgoing message after the adversary: its recipients, and whether to break its MAC. */
export interface Outgoing {
  readonly to: Principal;
  readonly msg: Message;
  readonly badMac: boolean;
  /** Extra delay before it leaves, microseconds. */
  readonly delayUs?: number;
}

function mutateBytes(rng: Prng, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length === 0 ? 1 : b.length);
  out.set(b);
  out[rng.int(0, out.length - 1)]! ^= 1 << rng.int(0, 7);
  return out;
}

/** Adversary wrapped around one Byzantine node. */
export class ReplicaAdversary {
  private readonly sent: { to: Principal; msg: Message }[] = [];
  /** Alternative digests this primary showed to its "other half", by "view:seq". */
  private readonly altDigest = new Map<string, Uint8Array>();
  private readonly otherHalf: Set<number>;
  private readonly muted: Set<number>;
  private readonly others: readonly number[];
  /** The order replicas a forged auth row is made for (none: rows are only broken). */
  private readonly orderPeers: readonly Principal[];

  constructor(
    readonly nodeId: number,
    readonly behaviours: ReadonlySet<ByzantineBehaviour>,
    private readonly rng: Prng,
    private readonly keys: KeyRing,
    peers: readonly number[],
    private readonly attack: AttackSettings = { slowPrimaryUs: 10_000, victimClient: 0, floodFactor: 8 },
    /** Node ids of the order replicas, in stage order (the columns of an authenticator row). */
    orderNodes: readonly number[] = [],
  ) {
    this.orderPeers = orderNodes.map(nodePrincipal);
    this.others = peers.filter((p) => p !== nodeId);
    const shuffled = rng.shuffle(this.others);
    this.otherHalf = new Set(shuffled.slice(0, Math.max(1, Math.floor(shuffled.length / 2))));
    this.muted = new Set(shuffled.slice(0, rng.int(1, Math.max(1, shuffled.length - 1))));
  }

  private has(b: ByzantineBehaviour): boolean {
    return this.behaviours.has(b);
  }

  /**
   * Whether the node takes in a message (false: the adversary makes it ignore it). The unfair
   * primary ignores its victim's requests so its own state stays consistent with what it sends.
   */
  accepts(msg: Message): boolean {
    return !this.has('unfairPrimary') || !carriesRequestOf(msg, this.attack.victimClient);
  }

  /** Rewrites one send effect into the messages actually sent. */
  rewrite(to: readonly Principal[], msg: Message): Outgoing[] {
    if (this.has('silent')) return [];
    const out: Outgoing[] = [];
    const delayUs = this.has('slowPrimary') && msg.kind === 'prePrepare' ? this.attack.slowPrimaryUs : 0;
    for (const p of to) {
      if (this.has('selective') && p.kind === 'node' && this.muted.has(p.id)) continue;
      const m = this.mutate(p, msg);
      if (m === undefined) continue;
      const badMac = this.has('badMacs') && this.rng.chance(1, 3);
      out.push(delayUs > 0 ? { to: p, msg: m, badMac, delayUs } : { to: p, msg: m, badMac });
      // Junk rides on the node's own agreement traffic only, not on answers (answers to junk
      // would flood back and multiply without bound in virtual time).
      if (this.has('replicaFlood') && p.kind === 'node' && (msg.kind === 'prepare' || msg.kind === 'commit' || msg.kind === 'status')) out.push(...this.junk(p));
      if (this.has('replay') && this.sent.length < 512) this.sent.push({ to: p, msg: m });
    }
    if (this.has('replay') && this.sent.length > 0 && this.rng.chance(1, 8)) {
      const old = this.rng.pick(this.sent);
      out.push({ to: old.to, msg: old.msg, badMac: false });
    }
    if (this.has('corruptBatches') && msg.kind === 'nextBatch') {
      // Unsolicited batches to every other node: executors normally hear only from their own
      // node's order replica, so a liar pushes its version at them too.
      for (const id of this.others) {
        if (to.some((p) => p.kind === 'node' && p.id === id)) continue;
        const m = this.mutate(nodePrincipal(id), msg);
        if (m !== undefined) out.push({ to: nodePrincipal(id), msg: m, badMac: false });
      }
    }
    if (this.has('viewChangeSpam') && msg.kind === 'status' && this.rng.chance(1, 4)) {
      out.push(...to.map((p) => ({ to: p, msg: this.spamViewChange(msg.view + this.rng.int(1, 3)), badMac: false })));
      // And a suspicion of the current primary, however well it does (the count of liars a
      // throughput suspicion needs beside it is what this tests).
      out.push(...to.map((p) => ({ to: p, msg: { kind: 'suspect' as const, view: msg.view }, badMac: false })));
    }
    return out;
  }

  private mutate(to: Principal, msg: Message): Message | undefined {
    const rng = this.rng;
    const half = to.kind === 'node' && this.otherHalf.has(to.id);
    switch (msg.kind) {
      case 'prePrepare': {
        if (!this.has('equivocate') || !half) return msg;
        const alt = equivocalPrePrepare(msg);
        this.altDigest.set(`${msg.view}:${msg.seq}`, this.keys.digest(encodeBatch(toBatch(alt))));
        return alt;
      }
      case 'prepare':
      case 'commit': {
        if (!this.has('equivocate') || !half) return msg;
        const d = this.altDigest.get(`${msg.view}:${msg.seq}`);
        return d === undefined ? msg : { ...msg, digest: d };
      }
      case 'reply':
      case 'readReply':
      case 'relayReply':
      case 'relayReadReply': {
        if (!this.has('wrongReplies') || !rng.chance(2, 3)) return msg;
        const result = this.fakeResult(msg.result);
        // Its own replies it can MAC properly; others' (forwarded as home) it can only break.
        if (msg.exec !== this.nodeId) return { ...msg, result };
        const client = msg.kind === 'relayReply' || msg.kind === 'relayReadReply' ? msg.client : to.id;
        const mac = this.keys.macFor(clientPrincipal(client), replyCoreBytes(this.nodeId, msg.reqId, result));
        return { ...msg, result, mac };
      }
      case 'cpToken':
        if (!this.has('wrongCheckpoint')) return msg;
        return { ...msg, token: mutateBytes(rng, msg.token) };
      case 'checkpoint':
        // The order checkpoint vote: a digest nobody computed.
        if (!this.has('wrongCheckpoint') || !rng.chance(1, 2)) return msg;
        return { ...msg, digest: mutateBytes(rng, msg.digest) };
      case 'loadCheckpoint':
        // Points an executor at checkpoints that do not exist.
        if (!this.has('wrongCheckpoint') || !rng.chance(1, 2)) return msg;
        return { ...msg, checkpoints: msg.checkpoints.map((c) => ({ seq: c.seq + rng.int(0, 3), token: mutateBytes(rng, c.token) })) };
      case 'newView': {
        // A primary showing its other half another set of view changes: one left out.
        if (!this.has('equivocate') || !half || msg.viewChanges.length < 2) return msg;
        const drop = rng.int(0, msg.viewChanges.length - 1);
        return { ...msg, viewChanges: msg.viewChanges.filter((_, i) => i !== drop) };
      }
      case 'checkpointData':
        if (!this.has('wrongCheckpoint')) return msg;
        return { ...msg, data: mutateBytes(rng, msg.data) };
      case 'nextBatch': {
        if (!this.has('corruptBatches') || !rng.chance(1, 2)) return msg;
        if (msg.batch.requests.length > 0 && rng.chance(2, 3)) {
          // Same history hash, different contents: only the chain check catches this.
          const requests = msg.batch.requests.map((r, i) => (i === 0 ? { ...r, op: this.fakeOp(r.op) } : r));
          return { ...msg, batch: { ...msg.batch, requests } };
        }
        return { ...msg, history: mutateBytes(rng, msg.history) };
      }
      case 'authReq':
      case 'authDigest': {
        const canForge = this.orderPeers.length > 0;
        if (this.has('forgingAuth') && canForge) return this.forgedAuthReq(msg);
        if (!this.has('badAuthRows') || !rng.chance(1, 2)) return msg;
        if (!canForge || rng.chance(1, 2)) return { ...msg, row: msg.row.map((m) => (rng.chance(1, 2) ? mutateBytes(rng, m) : m)) };
        return this.forgedAuthReq(msg);
      }
      case 'requestDigest':
        // A relay passing on a digest the client never sent, or breaking the client's MACs: the
        // others must drop it, and the client's retransmission goes around the relay.
        if (!this.has('badAuthRows') || !rng.chance(1, 2)) return msg;
        if (rng.chance(1, 2)) return { ...msg, coreDigest: mutateBytes(rng, msg.coreDigest) };
        return { ...msg, macs: msg.macs.map((m) => (rng.chance(1, 2) ? mutateBytes(rng, m) : m)) };
      case 'forward':
        // Rows it forwards are other auth replicas' MACs: it can only break them.
        if (!this.has('badAuthRows') || !rng.chance(1, 2)) return msg;
        return { ...msg, request: { ...msg.request, rows: msg.request.rows.map((r) => ({ ...r, macs: r.macs.map((m) => (rng.chance(1, 2) ? mutateBytes(rng, m) : m)) })) } };
      case 'viewHint':
        // Points auth replicas at a primary of a view nobody is in.
        if (!this.has('viewChangeSpam') || !rng.chance(1, 2)) return msg;
        return { ...msg, view: msg.view + rng.int(1, 50) };
      case 'viewChange': {
        // Its own VIEW-CHANGE it can sign again: lie about what it prepared and holds.
        if (!this.has('viewChangeSpam') || msg.signed.body.sender !== this.nodeId || !rng.chance(1, 2)) return msg;
        return { ...msg, signed: this.lyingViewChange(msg.signed.body) };
      }
      case 'catchUp':
        if (!this.has('fakeCatchUp')) return msg;
        return {
          ...msg,
          batches: msg.batches.map((b) => ({ seq: b.seq, batch: { ...b.batch, seed: b.batch.seed === 0 ? 1 : b.batch.seed - 1 } })),
          checkpoint: msg.checkpoint === undefined ? undefined : { ...msg.checkpoint, execToken: mutateBytes(rng, msg.checkpoint.execToken) },
        };
      case 'status':
        if (!this.has('fakeCatchUp')) return msg;
        return { ...msg, view: msg.view + rng.int(0, 2), committed: msg.committed + rng.int(0, 20) };
      default:
        return msg;
    }
  }

  /** Junk for a flood: `floodFactor` messages from the shared catalogue, a quarter with bad MACs. */
  private junk(to: Principal): Outgoing[] {
    const out: Outgoing[] = [];
    for (let i = 0; i < this.attack.floodFactor; i++) out.push({ to, msg: junkMessage(this.rng.int(0, 1 << 20)), badMac: this.rng.chance(1, 4) });
    return out;
  }

  private fakeResult(real: Uint8Array): Uint8Array {
    const r = this.rng.int(0, 2);
    if (r === 0) return encodeKvOutput({ kind: 'get', value: `forged${this.rng.int(0, 9)}` });
    if (r === 1) return encodeKvOutput({ kind: 'incr', value: this.rng.int(0, 1000) });
    return mutateBytes(this.rng, real);
  }

  private fakeOp(op: Uint8Array): Uint8Array {
    return mutateBytes(this.rng, op);
  }

  /** A row it can make honestly over a request the client never sent: another body under the same id, or a later id. */
  private forgedAuthReq<M extends AuthRowMsg>(msg: M): M {
    return forgedAuthReq(msg, this.keys, this.orderPeers, this.rng.chance(1, 2) ? 0 : this.rng.int(1, 1000));
  }

  /**
   * A VIEW-CHANGE that lies within what one signer can: prepared entries moved to the latest
   * view it could claim or given another digest, pre-prepared entries dropped, invented entries
   * above the real ones, and a checkpoint it never computed. The decision must hold against r
   * such senders (decide.ts: A1 counts n-u view changes, A2 needs r+1 vouchers).
   */
  private lyingViewChange(body: ViewChangeBody): SignedViewChange {
    const rng = this.rng;
    const lastView = Math.max(0, body.view - 1);
    const fake = (): Uint8Array => mutateBytes(rng, new Uint8Array(32));
    const prepared = body.prepared.map((e) => {
      const k = rng.int(0, 2);
      return k === 0 ? { ...e, view: lastView } : k === 1 ? { ...e, digest: fake() } : e;
    });
    const prePrepared = body.prePrepared.filter(() => rng.chance(1, 2));
    const top = Math.max(body.lowWater, ...body.prepared.map((e) => e.seq));
    for (let i = 1; i <= rng.int(0, 2); i++) {
      const e = { seq: top + i, view: lastView, digest: fake() };
      prepared.push(e);
      prePrepared.push(e);
    }
    const checkpoints = body.checkpoints.length < 4 && rng.chance(1, 2) ? [...body.checkpoints, { seq: top + rng.int(1, 8), digest: fake() }] : body.checkpoints;
    const lie: ViewChangeBody = { ...body, checkpoints, prepared: prepared.slice(0, viewChangeEntriesMax), prePrepared: prePrepared.slice(0, viewChangeEntriesMax) };
    return { body: lie, signature: this.keys.sign(encodeWith(viewChangeBodyCodec, lie)) };
  }

  private spamViewChange(view: number): MsgOf<'viewChange'> {
    const body = { view, sender: this.nodeId, lowWater: 0, checkpoints: [], prepared: [], prePrepared: [] };
    const signature = this.keys.sign(encodeWith(viewChangeBodyCodec, body));
    return { kind: 'viewChange', signed: { body, signature } };
  }

  /** Principal of a node (for tests). */
  static node(id: number): Principal {
    return nodePrincipal(id);
  }
}

function toBatch(pp: MsgOf<'prePrepare'>): Batch {
  return { time: pp.time, seed: pp.seed, requests: pp.requests.map((r) => ({ client: r.client, reqId: r.reqId, op: r.op })) };
}

/** Faulty-client behaviours. */
export const clientBehaviours = ['badAuthenticators', 'reusedIds', 'badSignatures'] as const;
export type ClientBehaviour = (typeof clientBehaviours)[number];
