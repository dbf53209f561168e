/**
 * The crypto interface every stage uses: digests, MACs, MAC authenticators and signatures.
 * Stages never import a crypto library; they receive a KeyRing bound to their principal.
 *
 * Principals: nodes (replicas, ids 0..255) and clients (ids 0..2^32-2). Every pair of
 * principals shares a MAC key; every principal has a signing key pair.
 *
 * Authenticator (UpRight App. A): the sender digests the message once, then MACs the digest
 * for each recipient, in the recipients' index order. A recipient checks only its own entry,
 * so one authenticator may be valid for some recipients and not for others.
 */
import { timingSafeEqual } from 'node:crypto';
import { digestBytes, macBytes, signatureBytes } from '../codec/limits.ts';

/** A node or a client. */
export type Principal = { readonly kind: 'node'; readonly id: number } | { readonly kind: 'client'; readonly id: number };

/** Node principal. */
export function nodePrincipal(id: number): Principal {
  return { kind: 'node', id };
}
/** Client principal. */
export function clientPrincipal(id: number): Principal {
  return { kind: 'client', id };
}
/** Stable string key of a principal ("n3", "c17"). */
export function principalKey(p: Principal): string {
  return (p.kind === 'node' ? 'n' : 'c') + String(p.id);
}

/** Primitive operations. Implementations: node:crypto (node.ts), simulated (sim.ts). */
export interface CryptoProvider {
  readonly name: string;
  /** SHA-256 over the concatenation of `parts`. */
  digest(...parts: readonly Uint8Array[]): Uint8Array;
  /** MAC of `data` under `key`, macBytes long. */
  mac(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** Signs `data` with a private key. */
  sign(privateKey: Uint8Array, data: Uint8Array): Uint8Array;
  /** Verifies a signature; false on any malformed input. */
  verify(publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean;
}

/** Key material of one principal. */
export interface KeyMaterial {
  /** MAC key shared with `peer`. */
  macKey(peer: Principal): Uint8Array;
  /** This principal's private signing key. */
  readonly signingKey: Uint8Array;
  /** Public key of any principal, or undefined when unknown. */
  publicKey(p: Principal): Uint8Array | undefined;
}

/** Constant-time-ish equality of two byte strings (length leaks; contents do not). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  // Long inputs (request bodies) natively; it is constant-time as well.
  if (a.length >= 64) return timingSafeEqual(a, b);
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** What a stage uses: the provider bound to one principal's keys. */
export class KeyRing {
  constructor(
    readonly self: Principal,
    readonly provider: CryptoProvider,
    private readonly keys: KeyMaterial,
  ) {}

  digest(...parts: readonly Uint8Array[]): Uint8Array {
    return this.provider.digest(...parts);
  }

  /** The static MAC key shared with `peer` (session keys derive from it). */
  macKeyFor(peer: Principal): Uint8Array {
    return this.keys.macKey(peer);
  }

  /** MAC for one peer. */
  macFor(peer: Principal, data: Uint8Array): Uint8Array {
    return this.provider.mac(this.keys.macKey(peer), data);
  }

  /** Checks a MAC claimed to come from `peer`. */
  verifyMacFrom(peer: Principal, data: Uint8Array, tag: Uint8Array): boolean {
    if (tag.length !== macBytes) return false;
    return bytesEqual(this.provider.mac(this.keys.macKey(peer), data), tag);
  }

  /** Authenticator: digest `data` once, then one MAC of the digest per recipient, in order. */
  authenticate(recipients: readonly Principal[], data: Uint8Array): Uint8Array[] {
    return this.authenticateDigest(recipients, this.provider.digest(data));
  }

  /** Same as authenticate, with the digest of the data already computed. */
  authenticateDigest(recipients: readonly Principal[], dataDigest: Uint8Array): Uint8Array[] {
    return recipients.map((p) => this.provider.mac(this.keys.macKey(p), dataDigest));
  }

  /** Checks this principal's entry (at `index`) of an authenticator made by `sender` over `data`. */
  verifyAuthenticatorEntry(sender: Principal, data: Uint8Array, macs: readonly Uint8Array[], index: number): boolean {
    const tag = macs[index];
    if (tag === undefined) return false;
    return this.verifyMacFrom(sender, this.provider.digest(data), tag);
  }

  /** Same as verifyAuthenticatorEntry, with the digest of the data already computed. */
  verifyAuthenticatorDigest(sender: Principal, dataDigest: Uint8Array, macs: readonly Uint8Array[], index: number): boolean {
    const tag = macs[index];
    if (tag === undefined) return false;
    return this.verifyMacFrom(sender, dataDigest, tag);
  }

  sign(data: Uint8Array): Uint8Array {
    return this.provider.sign(this.keys.signingKey, data);
  }

  /** Verifies `signer`'s signature; false when the signer is unknown or the signature bad. */
  verifyFrom(signer: Principal, data: Uint8Array, sig: Uint8Array): boolean {
    if (sig.length !== signatureBytes) return false;
    const pk = this.keys.publicKey(signer);
    if (pk === undefined) return false;
    return this.provider.verify(pk, data, sig);
  }
}

/** Sizes every provider produces. */
export const cryptoSizes = { digestBytes, macBytes, signatureBytes } as const;
