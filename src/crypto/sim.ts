/**
 * Deterministic simulated crypto for the simulator. Digests are real SHA-256 (so the
 * protocol's hashes behave like the real ones); MACs are HMAC-SHA-256 truncated; signatures
 * are an HMAC under the signer's secret, verified by recomputation. Unforgeability holds by
 * construction: simulated adversaries are never given another principal's secret.
 *
 * All key material derives from a seed, so the same seed gives the same keys and traces.
 */
import { createHash, createHmac } from 'node:crypto';
import { bytesEqual, principalKey, type CryptoProvider, type KeyMaterial, type Principal } from './provider.ts';
import { macBytes, signatureBytes } from '../codec/limits.ts';

/** Simulated provider: public key = secret (only this provider can verify). */
export class SimCrypto implements CryptoProvider {
  readonly name = 'sim';
  digest(...parts: readonly Uint8Array[]): Uint8Array {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  }
  mac(key: Uint8Array, data: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac('sha256', key).update(data).digest().subarray(0, macBytes));
  }
  sign(privateKey: Uint8Array, data: Uint8Array): Uint8Array {
    const out = new Uint8Array(signatureBytes);
    const h = createHmac('sha256', privateKey).update(data).digest();
    out.set(h, 0);
    out.set(h, 32);
    return out;
  }
  verify(publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
    return sig.length === signatureBytes && bytesEqual(this.sign(publicKey, data), sig);
  }
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
