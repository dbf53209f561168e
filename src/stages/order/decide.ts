/**
 * The new-view decision: from a set of VIEW-CHANGE messages, which checkpoint the new view
 * starts from and which batch each later sequence number carries. A pure function of its
 * inputs, so the new primary and every backup compute the same answer and a backup can check
 * the primary's NEW-VIEW by recomputing it.
 *
 * This is the decision procedure of PBFT with MAC authenticators (Castro & Liskov, TOCS 2002,
 * §4.5 "view changes" with P and Q sets), with quorums taken from UpRight's u/r model
 * (thesis §6.2): "2f+1" becomes the medium quorum n-u and "f+1" the small quorum r+1.
 * Instead of view-change acknowledgements we sign VIEW-CHANGE messages (they are rare), so
 * the NEW-VIEW carries them and backups verify them directly.
 *
 * For sequence number n (above the chosen checkpoint h), batch digest d prepared at view v is
 * chosen when
 *   A1: at least n-u view changes report, for n, nothing prepared, or prepared at a view < v,
 *       or prepared exactly (v, d);
 *   A2: at least r+1 view changes report d pre-prepared for n at a view >= v;
 *   A3: the batch with digest d is available.
 * The null batch is chosen when at least n-u view changes report nothing prepared for n.
 * Among several candidates passing A1-A3 the highest view wins (then the smallest digest).
 *
 * Why it is safe: if d committed at (v, n) at a correct replica, at least u+1 correct replicas
 * prepared it at v and report (v', d) with v' >= v in P. Any n-u view changes include one of
 * them, so A1 fails for every other digest at a view <= v and for null; a digest d' at a
 * higher view would need a correct replica to have pre-prepared d' after v (A2), which the
 * induction over views rules out.
 *
 * The checkpoint h: the highest (seq, digest) reported by at least r+1 view changes, with at
 * least n-u view changes whose low water mark is <= seq.
 */
import type { ViewChangeBody } from '../../codec/messages.ts';
import { bytesEqual } from '../../crypto/provider.ts';
import { compareBytes } from '../common.ts';

/** Parameters of the decision. */
export interface DecideParams {
  /** n - u of the order stage. */
  readonly medium: number;
  /** r + 1. */
  readonly small: number;
  /** Largest distance of a chosen sequence number above the checkpoint (2 * checkpointInterval). */
  readonly windowMax: number;
  /** Digest of the null batch. */
  readonly nullDigest: Uint8Array;
  /** Whether the batch content for a digest is available (A3). */
  readonly hasBatch: (digest: Uint8Array) => boolean;
  /** Canary: ignore prepared batches and choose null everywhere. */
  readonly ignorePrepared?: boolean;
}

/** The outcome of a successful decision. */
export interface NewViewDecision {
  readonly checkpoint: { readonly seq: number; readonly digest: Uint8Array };
  /** One digest per sequence number checkpoint.seq+1 .. checkpoint.seq+choices.length. */
  readonly choices: readonly Uint8Array[];
}

/** Decides the new view from view changes with distinct senders; undefined if not decidable yet. */
export function decideNewView(vcs: readonly ViewChangeBody[], p: DecideParams): NewViewDecision | undefined {
  if (vcs.length < p.medium) return undefined;
  const checkpoint = chooseCheckpoint(vcs, p);
  if (checkpoint === undefined) return undefined;
  const h = checkpoint.seq;
  let maxSeq = h;
  for (const vc of vcs) {
    for (const e of vc.prepared) if (e.seq > maxSeq && e.seq <= h + p.windowMax) maxSeq = e.seq;
  }
  const choices: Uint8Array[] = [];
  for (let n = h + 1; n <= maxSeq; n++) {
    const d = chooseFor(n, vcs, p);
    if (d === undefined) return undefined;
    choices.push(d);
  }
  return { checkpoint, choices };
}

function chooseCheckpoint(vcs: readonly ViewChangeBody[], p: DecideParams): { seq: number; digest: Uint8Array } | undefined {
  let best: { seq: number; digest: Uint8Array } | undefined;
  const seen: { seq: number; digest: Uint8Array }[] = [];
  for (const vc of vcs) {
    for (const c of vc.checkpoints) {
      if (!seen.some((s) => s.seq === c.seq && bytesEqual(s.digest, c.digest))) seen.push({ seq: c.seq, digest: c.digest });
    }
  }
  for (const cand of seen) {
    const holders = vcs.filter((vc) => vc.checkpoints.some((c) => c.seq === cand.seq && bytesEqual(c.digest, cand.digest))).length;
    if (holders < p.small) continue;
    const below = vcs.filter((vc) => vc.lowWater <= cand.seq).length;
    if (below < p.medium) continue;
    if (best === undefined || cand.seq > best.seq || (cand.seq === best.seq && compareBytes(cand.digest, best.digest) < 0)) best = cand;
  }
  return best;
}

function chooseFor(n: number, vcs: readonly ViewChangeBody[], p: DecideParams): Uint8Array | undefined {
  const preparedAt = vcs.map((vc) => vc.prepared.find((e) => e.seq === n));
  const withoutPrepared = preparedAt.filter((e) => e === undefined).length;
  if (p.ignorePrepared === true) return p.nullDigest;
  let best: { view: number; digest: Uint8Array } | undefined;
  for (const cand of preparedAt) {
    if (cand === undefined) continue;
    if (best !== undefined && (cand.view < best.view || (cand.view === best.view && compareBytes(cand.digest, best.digest) >= 0))) continue;
    // A1: enough view changes do not contradict (cand.view, cand.digest).
    let consistent = 0;
    for (const e of preparedAt) {
      if (e === undefined || e.view < cand.view || (e.view === cand.view && bytesEqual(e.digest, cand.digest))) consistent++;
    }
    if (consistent < p.medium) continue;
    // A2: enough view changes pre-prepared the digest at cand.view or later.
    let vouching = 0;
    for (const vc of vcs) {
      if (vc.prePrepared.some((q) => q.seq === n && q.view >= cand.view && bytesEqual(q.digest, cand.digest))) vouching++;
    }
    if (vouching < p.small) continue;
    // A3: the batch itself is at hand.
    if (!p.hasBatch(cand.digest)) continue;
    best = { view: cand.view, digest: cand.digest };
  }
  if (best !== undefined) return best.digest;
  if (withoutPrepared >= p.medium) return p.nullDigest;
  return undefined;
}
