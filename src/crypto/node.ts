/**
 * CryptoProvider on node:crypto: SHA-256 digests, keyed BLAKE2b-128 MACs (in TypeScript, the same
 * function as libsodium's crypto_generichash, so both providers interoperate), Ed25519 signatures. Keys are raw bytes: 32-byte MAC keys, 32-byte Ed25519 seeds (private) and
 * 32-byte public keys; KeyObjects are cached per key.
 */
import { blake2b } from './blake2b.ts';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, hash, sign, verify, type KeyObject } from 'node:crypto';
import type { CryptoProvider } from './provider.ts';
import { macBytes } from '../codec/limits.ts';

/** SHA-256 of the concatenation of `parts` (one-shot `hash` for a single part): every provider's digest. */
export function sha256(...parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return new Uint8Array(hash('sha256', parts[0]!, 'buffer'));
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

// DER prefixes that wrap a raw 32-byte Ed25519 key as PKCS#8 (private) or SPKI (public).
const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex');

/** Ed25519 key pair as raw bytes. */
export interface RawKeyPair {
  /** 32-byte seed. */
  readonly privateKey: Uint8Array;
  /** 32-byte public key. */
  readonly publicKey: Uint8Array;
}

/** Generates an Ed25519 key pair from the OS random source. */
export function generateEd25519(): RawKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const priv = privateKey.export({ format: 'der', type: 'pkcs8' });
  const pub = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey: new Uint8Array(priv.subarray(priv.length - 32)), publicKey: new Uint8Array(pub.subarray(pub.length - 32)) };
}

/** Public key of a raw Ed25519 seed. */
export function ed25519PublicOf(seed: Uint8Array): Uint8Array {
  const key = createPrivateKey({ key: Buffer.concat([pkcs8Prefix, seed]), format: 'der', type: 'pkcs8' });
  const pub = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return new Uint8Array(pub.subarray(pub.length - 32));
}

/** node:crypto implementation of CryptoProvider. */
export class NodeCrypto implements CryptoProvider {
  readonly name = 'node:crypto';
  private readonly privCache = new Map<string, KeyObject>();
  private readonly pubCache = new Map<string, KeyObject>();

  digest(...parts: readonly Uint8Array[]): Uint8Array {
    return sha256(...parts);
  }

  mac(key: Uint8Array, data: Uint8Array): Uint8Array {
    // Keyed BLAKE2b, the same function as libsodium's crypto_generichash (node:crypto has no
    // keyed BLAKE2b, so this one runs in TypeScript: slower, but byte-identical).
    return blake2b(data, key, macBytes);
  }

  sign(privateKey: Uint8Array, data: Uint8Array): Uint8Array {
    const id = Buffer.from(privateKey).toString('base64');
    let k = this.privCache.get(id);
    if (k === undefined) {
      k = createPrivateKey({ key: Buffer.concat([pkcs8Prefix, privateKey]), format: 'der', type: 'pkcs8' });
      this.privCache.set(id, k);
    }
    return new Uint8Array(sign(null, data, k));
  }

  verify(publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
    if (publicKey.length !== 32 || sig.length !== 64) return false;
    const id = Buffer.from(publicKey).toString('base64');
    let k = this.pubCache.get(id);
    if (k === undefined) {
      try {
        k = createPublicKey({ key: Buffer.concat([spkiPrefix, publicKey]), format: 'der', type: 'spki' });
      } catch {
        // Not a valid curve point: no signature can verify against it.
        return false;
      }
      this.pubCache.set(id, k);
    }
    try {
      return verify(null, data, k, sig);
    } catch {
      // Malformed signature bytes: treat as invalid, never as a crash.
      return false;
    }
  }
}
