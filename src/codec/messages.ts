/**
 * Every protocol message, as a schema (see schema.ts for the wire rules) and as a TypeScript
 * type derived from it. A message on the wire is one tag byte (MsgKind) followed by the
 * fields. Senders are not part of most messages: the channel that delivered the bytes names
 * the sender (and authenticated it); messages that are relayed (view changes inside a new
 * view) carry their sender and a signature.
 *
 * Message catalogue with thesis sections: docs/protocol.md.
 */
import {
  array,
  bool,
  bytes,
  encodeWith,
  fixed,
  optional,
  struct,
  tryDecodeWith,
  u32,
  u8,
  uint,
  type Bytes,
  type Codec,
  type DecodeResult,
  type Infer,
  Reader,
} from './schema.ts';
import {
  authenticatorMax,
  batchCountMax,
  batchesPerMessageMax,
  checkpointBytesMax,
  clientsMax,
  digestBytes,
  frameBytesMax,
  macBytes,
  opBytesMax,
  rowsMax,
  signatureBytes,
  viewChangeEntriesMax,
} from './limits.ts';
import { DecodeError } from '../core/errors.ts';

const digest = fixed(digestBytes);
const mac = fixed(macBytes);
const signature = fixed(signatureBytes);
const authenticator = array(mac, authenticatorMax);
const op = bytes(opBytesMax);

/** One request as agreed in a batch: who, which request id, what. */
export const batchRequestCodec = struct({ client: u32, reqId: uint, op });
export type BatchRequest = Infer<typeof batchRequestCodec>;

/**
 * A batch as agreed by the order stage: agreed time (ms), PRNG seed, and at most one request
 * per client. A batch with no requests is a null batch (fills a gap after a view change).
 */
export const batchCodec = struct({ time: uint, seed: uint, requests: array(batchRequestCodec, batchCountMax) });
export type Batch = Infer<typeof batchCodec>;

/** One auth replica's authenticator over a request core: one MAC per order replica. */
export const authRowCodec = struct({ auth: u8, macs: authenticator });
export type AuthRow = Infer<typeof authRowCodec>;

/** A request proposed in a pre-prepare, with the matrix signature that proves it authentic. */
export const proposedRequestCodec = struct({ client: u32, reqId: uint, op, rows: array(authRowCodec, rowsMax) });
export type ProposedRequest = Infer<typeof proposedRequestCodec>;

const seqDigest = struct({ seq: uint, digest });
const seqViewDigest = struct({ seq: uint, view: uint, digest });

/** Order-stage checkpoint contents (what a lagging order replica installs). */
export const orderCheckpointCodec = struct({
  seq: uint,
  /** History hash after batch `seq`. */
  history: digest,
  /** Agreed time of the last non-null batch up to `seq`. */
  time: uint,
  /** Execution checkpoint token agreed for `seq`. */
  execToken: digest,
  /** Highest ordered request id per client, sorted by client. */
  lastOrdered: array(struct({ client: u32, reqId: uint }), clientsMax),
});
export type OrderCheckpoint = Infer<typeof orderCheckpointCodec>;

/** The signed part of a VIEW-CHANGE. */
export const viewChangeBodyCodec = struct({
  /** The view being moved to. */
  view: uint,
  /** Node id of the sender (the message is relayed inside NEW-VIEW). */
  sender: u8,
  /** Sender's low water mark: its stable checkpoint. */
  lowWater: uint,
  /** Checkpoints the sender holds (stable and computed). */
  checkpoints: array(seqDigest, 4),
  /** P: per sequence number, the latest (view, digest) the sender prepared. */
  prepared: array(seqViewDigest, viewChangeEntriesMax),
  /** Q: (seq, view, digest) the sender pre-prepared, latest view per digest. */
  prePrepared: array(seqViewDigest, viewChangeEntriesMax),
});
export type ViewChangeBody = Infer<typeof viewChangeBodyCodec>;
export const signedViewChangeCodec = struct({ body: viewChangeBodyCodec, signature });
export type SignedViewChange = Infer<typeof signedViewChangeCodec>;

/** Batch digests per FETCH-BATCHES, and bodies per BATCH-BODIES. */
export const fetchBatchesMax = 16;

/** Tag byte of each message kind. Values are part of the wire format; never reuse one. */
export const MsgKind = {
  request: 1,
  readRequest: 2,
  authReq: 3,
  prePrepare: 4,
  prepare: 5,
  commit: 6,
  checkpoint: 7,
  viewChange: 8,
  newView: 9,
  status: 10,
  catchUp: 11,
  nextBatch: 12,
  loadCheckpoint: 13,
  retransmit: 14,
  cpToken: 15,
  lastExec: 16,
  fetchCheckpoint: 17,
  checkpointData: 18,
  reply: 19,
  readReply: 20,
  viewHint: 21,
  relayReply: 22,
  forward: 23,
  fetchBatches: 24,
  batchBodies: 25,
  suspect: 26,
  relayReadReply: 27,
  requestDigest: 28,
  authDigest: 29,
} as const;
export type MsgKindName = keyof typeof MsgKind;

/** Field schemas per message kind. */
export const messageSchemas = {
  /**
   * CLIENT-REQ (client -> auth, or relayed auth -> auth): authenticator has one MAC per auth
   * replica. `fanout` asks the receiving auth replica (the client's relay) to pass the request
   * on to the rest of the client's preferred quorum. `sig`: the client's signature over the
   * request core, present when the cluster has `clientSignatures` on.
   */
  request: struct({ client: u32, reqId: uint, op, macs: authenticator, fanout: bool, sig: optional(signature) }),
  /**
   * Read-only request (client -> exec, or the client's home exec -> the other execs):
   * authenticator has one MAC per exec replica. `fanout` asks the receiver (the client's home)
   * to pass it on to every other executor and gather their answers.
   */
  readRequest: struct({ client: u32, reqId: uint, op, macs: authenticator, fanout: bool }),
  /** AUTH-REQ (auth -> order): the request and this auth replica's row of the matrix signature. */
  authReq: struct({ client: u32, reqId: uint, op, row: authenticator }),
  /**
   * A client's first send as its relay passes it on to the rest of the preferred quorum (auth ->
   * auth): the digest of the request core instead of the body, with the client's authenticator
   * (MACs over that digest). The receiver can check its MAC entry and vouch without the body;
   * the relay alone hands the body to the order primary.
   */
  requestDigest: struct({ client: u32, reqId: uint, coreDigest: digest, macs: authenticator }),
  /**
   * AUTH-REQ without the body (auth -> order primary): this auth replica's row over the core
   * digest of a request it got as a REQUEST-DIGEST. The row counts like any other; the request
   * is ready only once some AUTH-REQ brings a body with that core digest.
   */
  authDigest: struct({ client: u32, reqId: uint, coreDigest: digest, row: authenticator }),
  /** PRE-PREPARE (primary -> order). */
  prePrepare: struct({ view: uint, seq: uint, time: uint, seed: uint, requests: array(proposedRequestCodec, batchCountMax) }),
  /** PREPARE (order -> order). */
  prepare: struct({ view: uint, seq: uint, digest }),
  /** COMMIT (order -> order). */
  commit: struct({ view: uint, seq: uint, digest }),
  /** CHECKPOINT (order -> order): digest of the order checkpoint at `seq`. */
  checkpoint: struct({ seq: uint, digest }),
  /**
   * VIEW-CHANGE (order -> order): the signed body only (digests, no batches: a replica fetches
   * the bodies it lacks with FETCH-BATCHES, so a view change costs the same whatever the batches).
   */
  viewChange: struct({ signed: signedViewChangeCodec }),
  /** NEW-VIEW (new primary -> order): the view changes it decided from (backups recompute the decision). */
  newView: struct({ view: uint, viewChanges: array(signedViewChangeCodec, 64) }),
  /** STATUS (order -> order): gossip for catch-up and view synchronisation. */
  status: struct({ view: uint, normal: bool, committed: uint, stable: uint }),
  /** Catch-up answer (order -> order): a checkpoint and/or committed batches. */
  catchUp: struct({
    checkpoint: optional(orderCheckpointCodec),
    batches: array(struct({ seq: uint, batch: batchCodec }), batchesPerMessageMax),
  }),
  /** NEXT-BATCH (order -> exec): a committed batch with the history hash after it. */
  nextBatch: struct({ seq: uint, history: digest, batch: batchCodec }),
  /** LOAD-CP (order -> exec): stable checkpoints the executor may load. */
  loadCheckpoint: struct({ checkpoints: array(struct({ seq: uint, token: digest }), 2) }),
  /** RETRANSMIT (order -> exec): this request was ordered before; resend its reply. */
  retransmit: struct({ client: u32, reqId: uint }),
  /** CP-TOKEN (exec -> order): hash of the execution checkpoint at `seq`. */
  cpToken: struct({ seq: uint, token: digest }),
  /** LAST-EXEC (exec -> order): the next batch this executor needs. */
  lastExec: struct({ next: uint }),
  /** FETCH-EXEC-CP (exec -> exec): part 0 is the checkpoint's manifest, part i + 1 its chunk i. */
  fetchCheckpoint: struct({ seq: uint, part: uint }),
  /**
   * EXEC-CP-STATE (exec -> exec): one part of a checkpoint; the receiver checks the manifest
   * against the agreed token and each chunk against the manifest.
   */
  checkpointData: struct({ seq: uint, part: uint, data: bytes(checkpointBytesMax) }),
  /**
   * REPLY (exec -> client, possibly through the client's home node): the executor that made it
   * and its MAC for the client over (exec, reqId, result).
   */
  reply: struct({ reqId: uint, result: op, exec: u8, mac }),
  /** Read-only reply (exec -> client), with the executor's next batch number. */
  readReply: struct({ reqId: uint, result: op, seq: uint, exec: u8, mac }),
  /** VIEW-HINT (order -> auth): the sender's current view, so auth can send to the primary first. */
  viewHint: struct({ view: uint }),
  /** A reply on its way to the client's home node, which forwards it as REPLY. */
  relayReply: struct({ client: u32, reqId: uint, result: op, exec: u8, mac }),
  /**
   * FORWARD (backup -> primary; Aardvark §3.4.1 (f)): a request this backup holds ready, with the
   * auth rows it received, after a pre-prepare with room passed it over. The rows carry MACs for
   * every order replica, so the primary checks its own column as if the rows came from the auth
   * replicas.
   */
  forward: struct({ view: uint, request: proposedRequestCodec }),
  /** FETCH-BATCHES (order -> order): batch bodies a view change needs, by digest. */
  fetchBatches: struct({ digests: array(digest, fetchBatchesMax) }),
  /** BATCH-BODIES (order -> order): bodies asked for; the receiver checks each against its digest. */
  batchBodies: struct({ batches: array(batchCodec, fetchBatchesMax) }),
  /**
   * SUSPECT (order -> order): the sender's throughput monitor finds the primary of `view` too
   * slow; it stays in the view until enough replicas agree (order.ts, "Throughput suspicions").
   */
  suspect: struct({ view: uint }),
  /** A read-only answer on its way to the client's home node, which forwards it as READ-REPLY. */
  relayReadReply: struct({ client: u32, reqId: uint, result: op, seq: uint, exec: u8, mac }),
} as const satisfies Record<MsgKindName, Codec<unknown>>;

type Schemas = typeof messageSchemas;
/** A message of kind K. */
export type MsgOf<K extends MsgKindName> = { kind: K } & Infer<Schemas[K]>;
/** Any protocol message. */
export type Message = { [K in MsgKindName]: MsgOf<K> }[MsgKindName];

const kindByTag = new Map<number, MsgKindName>(Object.entries(MsgKind).map(([k, v]) => [v, k as MsgKindName]));

/** Encodes a message: tag byte, then its fields. Throws RangeError if a field breaks a limit (a bug). */
export function encodeMessage(m: Message): Bytes {
  return encodeWith(messageCodec, m);
}

/** Tag byte then the fields of the message's kind. */
const messageCodec: Codec<Message> = {
  desc: { t: 'u8' },
  encode: (w, m) => {
    w.u8(MsgKind[m.kind]);
    (messageSchemas[m.kind] as Codec<unknown>).encode(w, m);
  },
  decode: (r) => r.fail('decode messages with tryDecodeMessage'),
};

/** Decodes untrusted bytes into a message; never throws. */
export function tryDecodeMessage(b: Bytes): DecodeResult<Message> {
  if (b.length > frameBytesMax) return { ok: false, error: new DecodeError(`frame of ${b.length} bytes exceeds ${frameBytesMax}`, 0) };
  if (b.length === 0) return { ok: false, error: new DecodeError('empty frame', 0) };
  const kind = kindByTag.get(b[0]!);
  if (kind === undefined) return { ok: false, error: new DecodeError(`unknown message tag ${b[0]!}`, 0) };
  const res = tryDecodeWith(messageSchemas[kind] as Codec<Record<string, unknown>>, b.subarray(1));
  if (!res.ok) return { ok: false, error: new DecodeError(res.error.message.replace(/^cannot decode: /, ''), res.error.offset + 1) };
  return { ok: true, value: { ...res.value, kind } as Message };
}

/**
 * Encodings already made, per batch object. A batch is never changed once built (the order
 * stage proposes, logs and hands the same object to its executor), so its encoding is made
 * once per process instead of once per use.
 */
const batchEncodings = new WeakMap<Batch, Bytes>();

/**
 * Encodes a batch canonically (the bytes its digest is taken over). The same object returns the
 * same bytes, shared: callers must not change them.
 */
export function encodeBatch(b: Batch): Bytes {
  let e = batchEncodings.get(b);
  if (e === undefined) {
    e = encodeWith(batchCodec, b);
    batchEncodings.set(b, e);
  }
  return e;
}

/** What an auth replica sends the order stage: AUTH-REQ, or AUTH-DIGEST (its row without the body). */
export type AuthRowMsg = MsgOf<'authReq'> | MsgOf<'authDigest'>;

/** Whether `m` is an auth replica's row for the order stage (AUTH-REQ or AUTH-DIGEST). */
export function isAuthRow(m: Message): m is AuthRowMsg {
  return m.kind === 'authReq' || m.kind === 'authDigest';
}

/** Reads only the tag of a frame; undefined for an unknown tag. */
export function peekKind(b: Bytes): MsgKindName | undefined {
  return b.length === 0 ? undefined : kindByTag.get(b[0]!);
}

export { Reader };
