/**
 * Attack drivers for real processes (issue 5; the thesis' tables 3.3–3.6). A node started with
 * `BULWARK_ATTACKS=1` in its environment accepts `POST /attack` on its metrics port and then
 * misbehaves as told, so `bulwark bench --spawn --attack NAME` can measure a fault-free phase and
 * an attacked phase of one run. Without that variable the endpoint answers 403: no deployment
 * can be switched into an attacker by a request.
 *
 * Node attacks (what the simulator's adversary does in `src/sim/byzantine.ts`, here on the wire):
 * - `slow-primary`: every PRE-PREPARE this node sends leaves `delayMs` late;
 * - `unfair-primary`: the node ignores the AUTH-REQs and FORWARDs of one client (`victim`), so as
 *   primary it never orders that client;
 * - `equivocating-primary`: half of the other order replicas get a different PRE-PREPARE for
 *   the same (view, seq) than the other half (`equivocalPrePrepare`, as in the simulator);
 * - `replica-flood`: the node sends junk (stale PREPARE/COMMIT votes, far CHECKPOINT votes,
 *   LAST-EXEC and FETCH-EXEC-CP requests) to every peer, `ratePerS` messages per second per peer,
 *   on top of its normal traffic;
 * - `forging-auth`: every AUTH-REQ the node's auth replica sends, to its own order replica too,
 *   is replaced by a forged one (`forgedAuthReq`): a valid row over a body the client never
 *   sent, under the client's id or a later one (alternately).
 *
 * The flood rate is bounded: on one machine an unbounded loop would measure the loss of a CPU
 * core rather than the receivers' defences.
 */
import { isAuthRow, type AuthRowMsg, type Message } from '../codec/messages.ts';
import type { Principal } from '../crypto/provider.ts';
import { carriesRequestOf, equivocalPrePrepare, junkMessage } from '../stages/adversary.ts';

/** The node attacks. */
export const nodeAttackNames = ['slow-primary', 'unfair-primary', 'equivocating-primary', 'replica-flood', 'forging-auth'] as const;
/** One of {@link nodeAttackNames}. */
export type NodeAttackName = (typeof nodeAttackNames)[number];

/** What `POST /attack` sets (or `{ name: 'none' }` to stop). */
export type NodeAttackSpec =
  | { readonly name: 'none' }
  | { readonly name: 'slow-primary'; readonly delayMs: number }
  | { readonly name: 'unfair-primary'; readonly victim: number }
  | { readonly name: 'equivocating-primary' }
  | { readonly name: 'replica-flood'; readonly ratePerS: number }
  | { readonly name: 'forging-auth' };

/**
 * Parses the JSON body of `POST /attack`; returns the spec or an error naming the bad field.
 */
export function parseAttackSpec(body: unknown): NodeAttackSpec | { error: string } {
  if (typeof body !== 'object' || body === null) return { error: 'body must be a JSON object' };
  const o = body as Record<string, unknown>;
  const num = (k: string, min: number, max: number): number | string => {
    const v = o[k];
    return typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? v : `${k} must be a number in [${min}, ${max}]`;
  };
  switch (o.name) {
    case 'none':
      return { name: 'none' };
    case 'slow-primary': {
      const d = num('delayMs', 0, 60_000);
      return typeof d === 'string' ? { error: d } : { name: 'slow-primary', delayMs: d };
    }
    case 'unfair-primary': {
      const v = num('victim', 0, 0xffff_ffff);
      return typeof v === 'string' ? { error: v } : { name: 'unfair-primary', victim: v };
    }
    case 'equivocating-primary':
      return { name: 'equivocating-primary' };
    case 'forging-auth':
      return { name: 'forging-auth' };
    case 'replica-flood': {
      const r = num('ratePerS', 1, 1_000_000);
      return typeof r === 'string' ? { error: r } : { name: 'replica-flood', ratePerS: r };
    }
    default:
      return { error: `name must be one of none, ${nodeAttackNames.join(', ')}` };
  }
}

/** One outgoing message after the attack: recipients, message, and how long to hold it. */
export interface AttackedSend {
  readonly to: readonly Principal[];
  readonly msg: Message;
  readonly delayMs: number;
}

/** The attack state of one node; pure apart from its flood timer (driven by the caller). */
export class NodeAttack {
  private spec: NodeAttackSpec = { name: 'none' };
  private junkSeq = 0;
  private forged = 0;

  /**
   * @param forge makes the forged AUTH-REQ for `forging-auth` (the node's key ring signs it:
   *   `forgedAuthReq`); without it that attack changes nothing.
   */
  constructor(private readonly forge?: (msg: AuthRowMsg, later: number) => AuthRowMsg) {}

  /** The attack in force. */
  get current(): NodeAttackSpec {
    return this.spec;
  }

  set(spec: NodeAttackSpec): void {
    this.spec = spec;
  }

  /** Whether the node takes in this message (the unfair primary drops its victim's requests). */
  accepts(msg: Message): boolean {
    return this.spec.name !== 'unfair-primary' || !carriesRequestOf(msg, this.spec.victim);
  }

  /** Rewrites one send of the node into what actually leaves. */
  rewrite(to: readonly Principal[], msg: Message): AttackedSend[] {
    const s = this.spec;
    if (isAuthRow(msg)) return [{ to, msg: this.local(msg), delayMs: 0 }];
    if (msg.kind !== 'prePrepare') return [{ to, msg, delayMs: 0 }];
    if (s.name === 'slow-primary') return [{ to, msg, delayMs: s.delayMs }];
    if (s.name === 'equivocating-primary' && to.length > 1) {
      const half = Math.floor(to.length / 2);
      return [
        { to: to.slice(0, half), msg, delayMs: 0 },
        { to: to.slice(half), msg: equivocalPrePrepare(msg), delayMs: 0 },
      ];
    }
    return [{ to, msg, delayMs: 0 }];
  }

  /**
   * What the node's own stages get of a message it sends itself. Only forging-auth changes it:
   * the forger's own order replica gets forged rows too, so the attack goes on when the forger
   * leads the view (otherwise it would end at the first view change that makes it primary).
   */
  local(msg: Message): Message {
    if (this.spec.name !== 'forging-auth' || !isAuthRow(msg) || this.forge === undefined) return msg;
    // Alternately the client's own id and one up to 1000 ids ahead.
    const k = this.forged++;
    return this.forge(msg, k % 2 === 0 ? 0 : 1 + (k % 1000));
  }

  /** Junk messages for one flood tick of `ms` milliseconds (per peer). */
  floodBatch(ms: number): Message[] {
    const s = this.spec;
    if (s.name !== 'replica-flood') return [];
    const count = Math.max(1, Math.round((s.ratePerS * ms) / 1000));
    return Array.from({ length: count }, () => junkMessage(this.junkSeq++));
  }
}
