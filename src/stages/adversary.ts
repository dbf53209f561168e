/**
 * Message-level pieces of the attacks (issue 5), shared by the simulator's adversary
 * (`src/sim/byzantine.ts`) and the real runtime's attack driver (`src/runtime/attack.ts`), so
 * both play the same attack. Pure; no stage imports this module.
 */
import { isAuthRow, type AuthRowMsg, type Message, type MsgOf } from '../codec/messages.ts';
import type { KeyRing, Principal } from '../crypto/provider.ts';
import { requestCoreDigest } from './common.ts';

/** Whether `msg` carries a request of `victim` to the order stage (what an unfair primary ignores). */
export function carriesRequestOf(msg: Message, victim: number): boolean {
  if (isAuthRow(msg) || msg.kind === 'requestDigest') return msg.client === victim;
  if (msg.kind === 'forward') return msg.request.client === victim;
  return false;
}

/**
 * Junk message number `k` of a flood: well-formed messages that cost the receiver work and must
 * change nothing (stale PREPARE/COMMIT votes and CHECKPOINT votes for far seqs, LAST-EXEC and
 * FETCH-EXEC-CP requests), cycling through the kinds.
 */
export function junkMessage(k: number): Message {
  const digest = new Uint8Array(32);
  digest[0] = k & 0xff;
  digest[1] = (k >> 8) & 0xff;
  const far = 1_000_000 + (k % 100_000);
  switch (k % 5) {
    case 0:
      return { kind: 'prepare', view: 0, seq: far, digest };
    case 1:
      return { kind: 'commit', view: 0, seq: far, digest };
    case 2:
      return { kind: 'checkpoint', seq: far, digest };
    case 3:
      return { kind: 'lastExec', next: 1 };
    default:
      return { kind: 'fetchCheckpoint', seq: far, part: 0 };
  }
}

/** A different but well-formed pre-prepare for the same (view, seq): what an equivocating primary shows half the backups. */
export function equivocalPrePrepare(pp: MsgOf<'prePrepare'>): MsgOf<'prePrepare'> {
  if (pp.requests.length >= 2) return { ...pp, requests: pp.requests.slice(0, pp.requests.length - 1) };
  return { ...pp, seed: pp.seed === 0 ? 1 : pp.seed - 1 };
}

/**
 * What a forging auth replica sends instead of `msg`: a row that is valid (made with its own
 * key, for every order replica in `orderPeers`) over a body the client never sent, under the
 * client's id (`later` 0) or `later` ids ahead. Only the count of auth replicas vouching for
 * the same request tells it from a real one (OrderCore.addRow).
 */
export function forgedAuthReq<M extends AuthRowMsg>(msg: M, keys: KeyRing, orderPeers: readonly Principal[], later: number): M {
  const reqId = msg.reqId + later;
  if (msg.kind === 'authDigest') {
    // Without a body: a digest no client's request has.
    const coreDigest = Uint8Array.from(msg.coreDigest);
    coreDigest[0]! ^= 0x5a;
    coreDigest[1] = (coreDigest[1]! + later) & 0xff;
    return { ...msg, reqId, coreDigest, row: keys.authenticateDigest(orderPeers, coreDigest) };
  }
  const op = msg.op.length === 0 ? Uint8Array.of(0x5a) : Uint8Array.from(msg.op);
  if (msg.op.length > 0) op[0]! ^= 0x5a;
  return { ...msg, reqId, op, row: keys.authenticateDigest(orderPeers, requestCoreDigest(keys, msg.client, reqId, op)) };
}
