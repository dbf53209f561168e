/**
 * Helpers shared by the stages: principals of stage members, the request core that client
 * and auth authenticators cover, digests as map keys, and small effect builders.
 */
import type { StageMembers } from '../core/config.ts';
import { StorageCorruptError } from '../core/errors.ts';
import { encodeWith, struct, u32, uint, bytes, withEncoded } from '../codec/schema.ts';
import { opBytesMax } from '../codec/limits.ts';
import { nodePrincipal, type KeyRing, type Principal } from '../crypto/provider.ts';
import type { Effect, Note, PersistEffect, ScopedEffect } from './types.ts';
import { encodeBatch, type Batch, type Message } from '../codec/messages.ts';

/** Principals of a stage's replicas, in replica-index order. */
export function membersOf(m: StageMembers): Principal[] {
  return m.nodes.map((id) => nodePrincipal(id));
}

const requestCoreCodec = struct({ client: u32, reqId: uint, op: bytes(opBytesMax) });

/** Canonical bytes of (client, reqId, op): what client and auth authenticators cover. */
export function requestCoreBytes(client: number, reqId: number, op: Uint8Array): Uint8Array {
  return encodeWith(requestCoreCodec, { client, reqId, op });
}

/**
 * Digest of `requestCoreBytes(client, reqId, op)`, without copying the core out: authenticators
 * are MACs over this digest (`KeyRing.authenticate`), so stages that hold it verify and make
 * them with no further hashing of the body.
 */
export function requestCoreDigest(keys: KeyRing, client: number, reqId: number, op: Uint8Array): Uint8Array {
  return withEncoded(requestCoreCodec, { client, reqId, op }, (core) => keys.digest(core));
}

/** Digests already taken, per batch object and crypto provider (batches are never changed). */
const batchDigests = new WeakMap<Batch, { readonly provider: unknown; readonly digest: Uint8Array }>();

/**
 * Digest of a batch's canonical encoding. Order and execution on one node hash the same batch
 * object; this hashes it once.
 */
export function batchDigestOf(keys: KeyRing, b: Batch): Uint8Array {
  const known = batchDigests.get(b);
  if (known !== undefined && known.provider === keys.provider) return known.digest;
  const digest = keys.digest(encodeBatch(b));
  batchDigests.set(b, { provider: keys.provider, digest });
  return digest;
}

const requestSigTag = new TextEncoder().encode('bulwark-req-v1/');

/**
 * What a client signs for a signed request (config `clientSignatures`): a domain tag, then the
 * request core, so a request signature can never pass for a handshake signature or the reverse.
 */
export function requestSignedBytes(core: Uint8Array): Uint8Array {
  const out = new Uint8Array(requestSigTag.length + core.length);
  out.set(requestSigTag, 0);
  out.set(core, requestSigTag.length);
  return out;
}

const replyCoreCodec = struct({ exec: u32, reqId: uint, result: bytes(opBytesMax) });

/** Canonical bytes of a reply: what the executor's MAC for the client covers. */
export function replyCoreBytes(exec: number, reqId: number, result: Uint8Array): Uint8Array {
  return encodeWith(replyCoreCodec, { exec, reqId, result });
}

/** The auth replica (index) that relays a client's first sends: client mod n_auth. */
export function relayIndexOf(client: number, nAuth: number): number {
  return client % nAuth;
}

/** The execution replica (node id) that gathers a client's replies and forwards them. */
export function homeExecOf(client: number, execNodes: readonly number[]): number {
  return execNodes[client % execNodes.length]!;
}

/**
 * Whether execution replica `execIndex` answers `client` in the normal case: the r+1 replicas
 * from the client's home onwards. The others answer only after a retransmission.
 */
export function isResponder(client: number, execIndex: number, nExec: number, r: number): boolean {
  return (execIndex - (client % nExec) + nExec) % nExec <= r;
}

/** Hex of bytes, for map keys and logs. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Byte-wise comparison (for deterministic tie-breaks). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** 8-byte big-endian encoding of a safe integer. */
export function u64Bytes(v: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, Math.floor(v / 0x1_0000_0000));
  dv.setUint32(4, v >>> 0);
  return b;
}

/** Reads an 8-byte big-endian integer from a durable record; a wrong length is corruption. */
export function readU64Durable(b: Uint8Array, key: string): number {
  if (b.length !== 8) throw new StorageCorruptError(key, `expected 8 bytes, found ${b.length}`);
  const dv = new DataView(b.buffer, b.byteOffset, 8);
  return dv.getUint32(0) * 0x1_0000_0000 + dv.getUint32(4);
}

/**
 * Effect list builder used by every stage. Durable writes made during a step are coalesced
 * into ONE persist effect placed before every other effect of the step, so every send of a
 * step is behind the barrier of every write of that step (write before send).
 */
export class Outbox {
  private effects: Effect[] = [];
  private readonly writes = new Map<string, Uint8Array | undefined>();
  private readonly lazyWrites = new Map<string, Uint8Array | undefined>();
  /**
   * Scoped writes of this step, emitted last. A key written again later in the step (by any
   * kind of write) takes the newer value here too: the scoped persist reaches the store after
   * the step's other writes, so it must never carry an older value than they do.
   */
  private scoped: { writes: Map<string, Uint8Array | undefined>; then: readonly ScopedEffect[] }[] = [];
  /** Buffers a durable put; emitted at drain(), ahead of the step's other effects. */
  write(key: string, value: Uint8Array): void {
    this.carryLazy();
    this.carryScoped(this.writes);
    this.writes.set(key, value);
    this.refreshScoped(key, value);
  }
  /**
   * A write of any kind carries every scoped write buffered before it in this step into its own
   * persist: scoped persists are emitted last, and a record written after a body must never
   * reach the disk before it. The scoped persist keeps its copy (and its `then`).
   */
  private carryScoped(into: Map<string, Uint8Array | undefined>): void {
    for (const s of this.scoped) for (const [k, v] of s.writes) into.set(k, v);
  }
  private refreshScoped(key: string, value: Uint8Array | undefined): void {
    for (const s of this.scoped) if (s.writes.has(key)) s.writes.set(key, value);
  }
  /**
   * A barrier write carries every lazy write buffered before it in this step: a record written
   * with a barrier may name a body written lazily a moment earlier, and the log must never hold
   * the record without the body.
   */
  private carryLazy(): void {
    if (this.lazyWrites.size === 0) return;
    for (const [k, v] of this.lazyWrites) this.writes.set(k, v);
    this.lazyWrites.clear();
  }
  /**
   * Buffers a put that no send of this step depends on: emitted after the step's effects as a
   * non-barrier persist (unless the key also has a barrier write this step, which then carries it).
   */
  writeLazy(key: string, value: Uint8Array): void {
    const into = this.writes.has(key) ? this.writes : this.lazyWrites;
    this.carryScoped(into);
    into.set(key, value);
    this.refreshScoped(key, value);
  }
  /** A delete that goes with lazy writes (same persist, so they land together or not at all). */
  removeLazy(key: string): void {
    const into = this.writes.has(key) ? this.writes : this.lazyWrites;
    this.carryScoped(into);
    into.set(key, undefined);
    this.refreshScoped(key, undefined);
  }
  /** Buffers a durable delete (carrying earlier lazy and scoped writes, as write does). */
  remove(key: string): void {
    this.carryLazy();
    this.carryScoped(this.writes);
    this.writes.set(key, undefined);
    this.refreshScoped(key, undefined);
  }
  /**
   * A write with a scoped barrier: `then` runs once it is durable, nothing else waits for it.
   * Emitted after the step's lazy writes, so it reaches the store after them.
   */
  persistThen(puts: PersistEffect['puts'], deletes: readonly string[], then: readonly ScopedEffect[]): void {
    const writes = new Map<string, Uint8Array | undefined>();
    for (const k of deletes) writes.set(k, undefined);
    for (const [k, v] of puts) writes.set(k, v);
    for (const [k, v] of writes) this.refreshScoped(k, v);
    this.scoped.push({ writes, then });
  }
  send(to: readonly Principal[], msg: Message): void {
    if (to.length > 0) this.effects.push({ kind: 'send', to, msg });
  }
  persist(puts: PersistEffect['puts'], deletes: readonly string[] = []): void {
    if (puts.length > 0 || deletes.length > 0) this.effects.push({ kind: 'persist', puts, deletes });
  }
  note(note: Note): void {
    this.effects.push({ kind: 'note', note });
  }
  push(e: Effect): void {
    this.effects.push(e);
  }
  drain(): Effect[] {
    let out = this.effects;
    this.effects = [];
    if (this.writes.size > 0) {
      const puts: [string, Uint8Array][] = [];
      const deletes: string[] = [];
      for (const [k, v] of this.writes) {
        if (v === undefined) deletes.push(k);
        else puts.push([k, v]);
      }
      this.writes.clear();
      out = [{ kind: 'persist', puts, deletes }, ...out];
    }
    if (this.lazyWrites.size > 0) {
      const puts: [string, Uint8Array][] = [];
      const deletes: string[] = [];
      for (const [k, v] of this.lazyWrites) {
        if (v === undefined) deletes.push(k);
        else puts.push([k, v]);
      }
      out.push({ kind: 'persist', puts, deletes, barrier: false });
      this.lazyWrites.clear();
    }
    for (const s of this.scoped) {
      const puts: [string, Uint8Array][] = [];
      const deletes: string[] = [];
      for (const [k, v] of s.writes) {
        if (v === undefined) deletes.push(k);
        else puts.push([k, v]);
      }
      out.push({ kind: 'persist', puts, deletes, barrier: false, then: s.then });
    }
    this.scoped = [];
    return out;
  }
}
