/**
 * Agreement checkers, fed with the notes of correct (non-Byzantine) replicas as they happen:
 * - execution: no two correct executors run different batches (digest, history) at one seq;
 * - checkpoints: equal tokens at equal seqs, taken or loaded;
 * - order: no two correct order replicas commit different digests at one seq;
 * - safety alarms raised by correct replicas.
 * It also keeps the canonical executed log (seq -> agreed batch, delivered time, replies),
 * which the acknowledged-write and replay checks read.
 */
import type { Batch } from '../../codec/messages.ts';
import { hex } from '../../stages/common.ts';
import type { Note } from '../../stages/types.ts';

/** One agreed batch as executed by correct replicas. */
export interface CanonicalEntry {
  readonly digest: string;
  readonly history: string;
  readonly batch: Batch;
  readonly time: number;
  readonly results: ReadonlyMap<string, string>;
}

/** Collects notes and reports violations. */
export class AgreementChecker {
  readonly violations: string[] = [];
  /** seq -> agreed batch (first correct executor to run it). */
  readonly canonical = new Map<number, CanonicalEntry>();
  /** "client:reqId" -> result hex, over every correct execution. */
  readonly replies = new Map<string, string>();
  private readonly tokens = new Map<number, string>();
  private readonly commits = new Map<number, string>();

  private violate(msg: string): void {
    if (this.violations.length < 20) this.violations.push(msg);
  }

  /** Feeds one note from correct node `node`. */
  observe(node: number, note: Note): void {
    switch (note.type) {
      case 'executed': {
        const digest = hex(note.batchDigest);
        const history = hex(note.history);
        const prev = this.canonical.get(note.seq);
        if (prev === undefined) {
          const results = new Map<string, string>();
          for (const r of note.results) results.set(`${r.client}:${r.reqId}`, hex(r.result));
          this.canonical.set(note.seq, { digest, history, batch: note.batch, time: note.time, results });
        } else if (prev.digest !== digest || prev.history !== history) {
          this.violate(`agreement: node ${node} executed seq ${note.seq} as ${digest.slice(0, 12)}/${history.slice(0, 12)}, another correct executor as ${prev.digest.slice(0, 12)}/${prev.history.slice(0, 12)}`);
        }
        for (const r of note.results) {
          const key = `${r.client}:${r.reqId}`;
          const v = hex(r.result);
          const before = this.replies.get(key);
          if (before !== undefined && before !== v) this.violate(`agreement: request ${key} answered ${v.slice(0, 16)} by node ${node}, ${before.slice(0, 16)} elsewhere`);
          this.replies.set(key, v);
        }
        return;
      }
      case 'checkpointTaken':
      case 'checkpointLoaded': {
        const t = hex(note.token);
        const prev = this.tokens.get(note.seq);
        if (prev === undefined) this.tokens.set(note.seq, t);
        else if (prev !== t) this.violate(`checkpoint: node ${node} has token ${t.slice(0, 12)} at seq ${note.seq} (${note.type}), another correct replica ${prev.slice(0, 12)}`);
        return;
      }
      case 'committed': {
        const d = hex(note.digest);
        const prev = this.commits.get(note.seq);
        if (prev === undefined) this.commits.set(note.seq, d);
        else if (prev !== d) this.violate(`order agreement: node ${node} committed ${d.slice(0, 12)} at seq ${note.seq}, another correct replica ${prev.slice(0, 12)}`);
        return;
      }
      case 'safetyAlarm':
        this.violate(`alarm from node ${node}: ${note.detail}`);
        return;
      default:
        return;
    }
  }
}
