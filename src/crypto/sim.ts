/**
 * Deterministic simulated crypto for the simulator. Digests are real SHA-256 (so the
 * protocol's hashes behave like the real ones); MACs and signatures are a fast keyed hash
 * under the pair's key or the signer's secret, verified by recomputation. Unforgeability holds
 * by construction: simulated adversaries are never given another principal's secret.
 *
 * All key material derives from a seed, so the same seed gives the same keys and traces.
 */
import { createHash, hash } from 'node:crypto';
import { sha256 } from './node.ts';
import { bytesEqual, principalKey, type CryptoProvider, type KeyMaterial, type Principal } from './provider.ts';
import { macBytes, signatureBytes } from '../codec/limits.ts';

/**
 * Simulated provider. The MAC is a fast keyed 128-bit mixing hash rather than HMAC: the
 * simulator's adversaries never try to forge MACs by search (they only ever hold their own
 * keys), so what matters is that a different key, sender or message gives a different tag, and
 * that it is cheap (a simulated seed computes hundreds of thousands of MACs).
 */
export class SimCrypto implements CryptoProvider {
  readonly name = 'sim';
  digest(...parts: readonly Uint8Array[]): Uint8Array {
    return sha256(...parts);
  }
  mac(key: Uint8Array, data: Uint8Array): Uint8Array {
    return keyedMix(key, data, macBytes);
  }
  sign(privateKey: Uint8Array, data: Uint8Array): Uint8Array {
    return keyedMix(privateKey, data, signatureBytes);
  }
  verify(publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
    return sig.length === signatureBytes && bytesEqual(this.sign(publicKey, data), sig);
  }
}

/** Four 32-bit lanes seeded from the key, mixed over the data (murmur3-style rounds). */
function keyedMix(rawKey: Uint8Array, data: Uint8Array, outLen: number): Uint8Array {
  // Keys from SimKeys are 32 bytes; any other length is stretched so nothing reads past it.
  const key = rawKey.length === 32 ? rawKey : new Uint8Array(hash('sha256', rawKey, 'buffer'));
  const kv = new DataView(key.buffer, key.byteOffset, key.byteLength);
  let h1 = kv.getUint32(0) ^ 0x9e3779b9;
  let h2 = kv.getUint32(4) ^ 0x85ebca6b;
  let h3 = kv.getUint32(8) ^ 0xc2b2ae35;
  let h4 = kv.getUint32(12) ^ 0x27d4eb2f;
  const n = data.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let k = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h1 ^= k;
    h1 = Math.imul((h1 << 13) | (h1 >>> 19), 5) + 0xe6546b64;
    h2 = Math.imul(h2 ^ k, 0x85ebca6b) ^ h1;
    h3 = Math.imul(h3 + k, 0xc2b2ae35) ^ (h2 >>> 7);
    h4 = Math.imul(h4 ^ (k >>> 3), 0x27d4eb2f) + h3;
  }
  for (; i < n; i++) {
    h1 = Math.imul(h1 ^ data[i]!, 0x01000193);
    h2 = Math.imul(h2 ^ h1, 0x85ebca6b);
  }
  h1 ^= n;
  const out = new Uint8Array(outLen);
  const ov = new DataView(out.buffer);
  for (let off = 0; off < outLen; off += 16) {
    h1 = fmix(h1 + h2 + off + kv.getUint32(16));
    h2 = fmix(h2 + h3 + h1 + kv.getUint32(20));
    h3 = fmix(h3 + h4 + h2 + kv.getUint32(24));
    h4 = fmix(h4 + h1 + h3 + kv.getUint32(28));
    ov.setUint32(off, h1 >>> 0);
    ov.setUint32(off + 4, h2 >>> 0);
    ov.setUint32(off + 8, h3 >>> 0);
    ov.setUint32(off + 12, h4 >>> 0);
  }
  return out;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Key material of every principal, derived from a seed. */
export class SimKeys {
  constructor(private readonly seed: string) {}
  private derive(label: string): Uint8Array {
    return new Uint8Array(createHash('sha256').update(`bulwark-sim|${this.seed}|${label}`).digest());
  }
  /** Key material bound to principal `self`. */
  materialFor(self: Principal): KeyMaterial {
    const selfKey = principalKey(self);
    const macCache = new Map<string, Uint8Array>();
    const signingKey = this.derive(`sign|${selfKey}`);
    return {
      macKey: (peer) => {
        const pk = principalKey(peer);
        let k = macCache.get(pk);
        if (k === undefined) {
          const pair = [selfKey, pk].sort().join('|');
          k = this.derive(`mac|${pair}`);
          macCache.set(pk, k);
        }
        return k;
      },
      signingKey,
      publicKey: (p) => this.derive(`sign|${principalKey(p)}`),
    };
  }
}
