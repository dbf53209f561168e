/**
 * Durable records of the order stage and their codecs.
 *
 * Keys (stage-local):
 *   o/meta              { view, normal }                       current view and whether it is active
 *   o/cp                { checkpoint, prev? }                  stable order checkpoint (+ the one before)
 *   o/s/<seq>           SlotRecord                              per-sequence protocol state
 *   o/b/<seq>/<digest>  Batch                                   batch bodies referenced by a slot
 *
 * Write-before-send: a slot record naming a pre-prepare is durable before the PREPARE for it
 * leaves, a prepared marker before the COMMIT, the view before the VIEW-CHANGE (Outbox puts
 * a step's writes ahead of its sends).
 */
import { array, bool, fixed, optional, struct, tryDecodeWith, uint, type Codec, type Infer } from '../../codec/schema.ts';
import { digestBytes } from '../../codec/limits.ts';
import { batchCodec, orderCheckpointCodec, type Batch } from '../../codec/messages.ts';
import { StorageCorruptError } from '../../core/errors.ts';

const digestCodec = fixed(digestBytes);
const viewDigest = struct({ view: uint, digest: digestCodec });

export const metaCodec = struct({ view: uint, normal: bool });
export type MetaRecord = Infer<typeof metaCodec>;

export const slotCodec = struct({
  seq: uint,
  /** Pre-prepare accepted in the current view. */
  pp: optional(viewDigest),
  /** P: latest (view, digest) prepared. */
  prepared: optional(viewDigest),
  /** Q: pre-prepared (view, digest), latest view per digest. */
  q: array(viewDigest, 64),
  /** Digest committed at this sequence number. */
  committed: optional(digestCodec),
});
export type SlotRecord = Infer<typeof slotCodec>;

export const cpRecordCodec = struct({
  checkpoint: orderCheckpointCodec,
  prev: optional(struct({ seq: uint, token: digestCodec })),
});
export type CheckpointRecord = Infer<typeof cpRecordCodec>;

/** Decodes a durable record; corruption is a typed error naming the key. */
export function decodeRecord<T>(c: Codec<T>, key: string, b: Uint8Array): T {
  const r = tryDecodeWith(c, b);
  if (!r.ok) throw new StorageCorruptError(key, r.error.message);
  return r.value;
}

/** Decodes a stored batch body. */
export function decodeBatchRecord(key: string, b: Uint8Array): Batch {
  return decodeRecord(batchCodec, key, b);
}
