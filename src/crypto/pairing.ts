/**
 * Per-pair MAC keys without shared secrets in any configuration file: every principal has one
 * Ed25519 identity key pair (public halves in the cluster file), and the MAC key of a pair is
 * derived from an X25519 Diffie-Hellman between the two identities (Ed25519 keys converted to
 * their Montgomery form, as libsodium's crypto_sign_ed25519_*_to_curve25519 do):
 *
 *   pairKey(a, b) = SHA-256("bulwark-pair-v1" || X25519(a.secret, b.public) || sorted(a, b))
 *
 * Both ends compute the same key; nobody else can. A libsodium and a pure node:crypto path
 * produce identical keys (tested), so nodes need not agree on which library they load.
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import { principalKey, type KeyMaterial, type Principal } from './provider.ts';
import { loadSodium } from './sodium.ts';
import { BulwarkError } from '../core/errors.ts';

const p = 2n ** 255n - 19n;
const x25519Pkcs8Prefix = Buffer.from('302e020100300506032b656e04220420', 'hex');
const x25519SpkiPrefix = Buffer.from('302a300506032b656e032100', 'hex');

function bytesToBigLE(b: Uint8Array): bigint {
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]!);
  return x;
}
function bigToBytesLE(x: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}
function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

/** X25519 secret scalar of an Ed25519 seed: SHA-512(seed)[0..32], clamped (RFC 8032 / 7748). */
function x25519SecretOf(seed: Uint8Array): Uint8Array {
  const h = createHash('sha512').update(seed).digest();
  const s = new Uint8Array(h.subarray(0, 32));
  s[0]! &= 248;
  s[31]! &= 127;
  s[31]! |= 64;
  return s;
}

/** X25519 public key of an Ed25519 public key: u = (1 + y) / (1 - y) mod p. */
function x25519PublicOf(edPublic: Uint8Array): Uint8Array {
  if (edPublic.length !== 32) throw new BulwarkError('bad_public_key', `Ed25519 public key must be 32 bytes, got ${edPublic.length}`);
  const y = bytesToBigLE(edPublic) & ((1n << 255n) - 1n);
  const den = (1n - y + p) % p;
  if (den === 0n) throw new BulwarkError('bad_public_key', 'Ed25519 public key is a degenerate point');
  const u = ((1n + y) * modPow(den, p - 2n, p)) % p;
  return bigToBytesLE(u, 32);
}

/** X25519 with node:crypto. */
function x25519Node(secret: Uint8Array, peerPublic: Uint8Array): Uint8Array {
  const privateKey = createPrivateKey({ key: Buffer.concat([x25519Pkcs8Prefix, secret]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey({ key: Buffer.concat([x25519SpkiPrefix, peerPublic]), format: 'der', type: 'spki' });
  return new Uint8Array(diffieHellman({ privateKey, publicKey }));
}

/** Raw X25519 shared secret between an Ed25519 seed and a peer's Ed25519 public key. */
export function sharedSecret(seed: Uint8Array, peerEdPublic: Uint8Array, opts: { useSodium?: boolean } = {}): Uint8Array {
  const sodium = opts.useSodium === false ? undefined : loadSodium();
  let shared: Uint8Array;
  if (sodium !== undefined) {
    const pk = new Uint8Array(32);
    const sk = new Uint8Array(64);
    sodium.crypto_sign_seed_keypair(pk, sk, seed);
    const xs = new Uint8Array(32);
    const xp = new Uint8Array(32);
    sodium.crypto_sign_ed25519_sk_to_curve25519(xs, sk);
    try {
      sodium.crypto_sign_ed25519_pk_to_curve25519(xp, peerEdPublic);
      shared = new Uint8Array(32);
      sodium.crypto_scalarmult(shared, xs, xp);
    } catch (e) {
      throw new BulwarkError('bad_public_key', 'peer public key is not a valid Ed25519 point', { cause: e });
    }
  } else {
    try {
      shared = x25519Node(x25519SecretOf(seed), x25519PublicOf(peerEdPublic));
    } catch (e) {
      if (e instanceof BulwarkError) throw e;
      throw new BulwarkError('bad_public_key', 'peer public key is not a valid curve point', { cause: e });
    }
  }
  if (shared.every((b) => b === 0)) throw new BulwarkError('bad_public_key', 'peer public key has low order');
  return shared;
}

/** The MAC key shared by `self` and `peer`. */
export function pairKey(opts: { seed: Uint8Array; self: Principal; peer: Principal; peerPublic: Uint8Array; useSodium?: boolean }): Uint8Array {
  const shared = sharedSecret(opts.seed, opts.peerPublic, opts.useSodium === undefined ? {} : { useSodium: opts.useSodium });
  const names = [principalKey(opts.self), principalKey(opts.peer)].sort();
  return new Uint8Array(createHash('sha256').update('bulwark-pair-v1').update(shared).update(names.join('|')).digest());
}

/**
 * Key material of one principal in a real deployment: its own seed, and every other
 * principal's public key; pair keys are derived on first use and cached.
 */
export class DerivedKeys implements KeyMaterial {
  private readonly cache = new Map<number, Uint8Array>();
  constructor(
    private readonly self: Principal,
    readonly signingKey: Uint8Array,
    private readonly publicKeys: ReadonlyMap<string, Uint8Array>,
  ) {}

  macKey(peer: Principal): Uint8Array {
    // Nodes as their id, clients as -(id + 1): no string building on the hot path.
    const code = peer.kind === 'node' ? peer.id : -(peer.id + 1);
    let key = this.cache.get(code);
    if (key === undefined) {
      const k = principalKey(peer);
      const peerPublic = this.publicKeys.get(k);
      // An unknown peer gets a random-looking key nobody else holds: its MACs never verify.
      key = peerPublic === undefined ? createHash('sha256').update('unknown-peer').update(k).update(this.signingKey).digest() : pairKey({ seed: this.signingKey, self: this.self, peer, peerPublic });
      this.cache.set(code, key);
    }
    return key;
  }

  publicKey(p: Principal): Uint8Array | undefined {
    return this.publicKeys.get(principalKey(p));
  }
}
