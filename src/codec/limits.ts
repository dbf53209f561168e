/**
 * Wire limits. Every variable-length field of every message has one of these maxima; the
 * decoder rejects anything larger before allocating. Relations between limits are asserted
 * at module load, so an inconsistent edit fails at import.
 */
import { assert } from '../core/assert.ts';
import { nodesMax } from '../core/config.ts';

/** Largest encoded frame (message) accepted from the network. */
export const frameBytesMax = 64 << 20;
/** Largest request or reply body on the wire (config.requestBytesMax may be smaller). */
export const opBytesMax = 4 << 20;
/** Most requests in one batch on the wire (config.batchSizeMax may be smaller). */
export const batchCountMax = 4096;
/** Most MACs in one authenticator: one per member of the largest stage. */
export const authenticatorMax = nodesMax;
/** Most AUTH-REQ rows carried with one proposed request (a matrix signature). */
export const rowsMax = nodesMax;
/** Most entries in a view change's prepared / pre-prepared lists. */
export const viewChangeEntriesMax = 20_000;
/** Most batches a catch-up or new-view message carries. */
export const batchesPerMessageMax = 512;
/** Most (client, reqId) pairs in an order checkpoint. */
export const clientsMax = 65_535;
/** Largest piece of an execution checkpoint (its manifest, or one chunk) in one message. */
export const checkpointBytesMax = 48 << 20;
/** Most chunks one execution checkpoint has (with 1 MiB chunks: 64 GiB of state). */
export const checkpointChunksMax = 65_535;
/** Digest length (SHA-256). */
export const digestBytes = 32;
/** MAC length (HMAC-SHA-256 truncated to 128 bits). */
export const macBytes = 16;
/** Signature length (Ed25519). */
export const signatureBytes = 64;

assert(opBytesMax < frameBytesMax, 'an op must fit a frame');
assert(checkpointBytesMax < frameBytesMax, 'a checkpoint chunk must fit a frame');
