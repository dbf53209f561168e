import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { blake2b } from './blake2b.ts';
import fc from 'fast-check';
import {
  clientPrincipal,
  cryptoSizes,
  KeyRing,
  nodePrincipal,
  principalKey,
  type CryptoProvider,
  type KeyMaterial,
  type Principal,
} from './provider.ts';
import { ed25519PublicOf, generateEd25519, NodeCrypto, type RawKeyPair } from './node.ts';
import { SimCrypto, SimKeys } from './sim.ts';
import { SodiumCrypto, loadSodium } from './sodium.ts';
import { pairKey } from './pairing.ts';

const A = nodePrincipal(0);
const B = nodePrincipal(1);
const C = nodePrincipal(2);
const S = clientPrincipal(7);
const everyone: readonly Principal[] = [A, B, C, S];

/** A provider with key material for every principal of `everyone`. */
interface Setup {
  readonly name: string;
  readonly provider: CryptoProvider;
  material(self: Principal): KeyMaterial;
  /** Whether publicKey() of a principal outside `everyone` is undefined (real PKI) or derived (sim). */
  readonly knowsOnlyListed: boolean;
}

/** NodeCrypto with Ed25519 keys from generateEd25519 and one random 32-byte MAC key per pair. */
function nodeSetup(): Setup {
  const provider = new NodeCrypto();
  const pairKeys = new Map<string, Uint8Array>();
  const keyPairs = new Map<string, RawKeyPair>(everyone.map((p) => [principalKey(p), generateEd25519()]));
  const pairKey = (x: Principal, y: Principal): Uint8Array => {
    const id = [principalKey(x), principalKey(y)].sort().join('|');
    let k = pairKeys.get(id);
    if (k === undefined) {
      k = new Uint8Array(randomBytes(32));
      pairKeys.set(id, k);
    }
    return k;
  };
  return {
    name: 'NodeCrypto',
    provider,
    knowsOnlyListed: true,
    material: (self) => ({
      macKey: (peer) => pairKey(self, peer),
      signingKey: keyPairs.get(principalKey(self))!.privateKey,
      publicKey: (p) => keyPairs.get(principalKey(p))?.publicKey,
    }),
  };
}

function simSetup(): Setup {
  const keys = new SimKeys('crypto-test');
  return { name: 'SimCrypto', provider: new SimCrypto(), knowsOnlyListed: false, material: (self) => keys.materialFor(self) };
}

const setups: readonly Setup[] = [nodeSetup(), simSetup()];

function ringOf(s: Setup, p: Principal): KeyRing {
  return new KeyRing(p, s.provider, s.material(p));
}
function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = new Uint8Array(b);
  const i = Math.floor(bit / 8) % out.length;
  out[i] = out[i]! ^ (1 << bit % 8);
  return out;
}

const data = fc.uint8Array({ maxLength: 256 });
const nonEmptyData = fc.uint8Array({ minLength: 1, maxLength: 256 });

for (const setup of setups) {
  const sender = ringOf(setup, S);
  const recipients = [A, B, C];
  const rings = recipients.map((p) => ringOf(setup, p));

  void test(`${setup.name}: sizes are digest 32, MAC 16, signature 64 bytes`, () => {
    const d = Uint8Array.of(1, 2, 3);
    assert.equal(sender.digest(d).length, cryptoSizes.digestBytes);
    assert.equal(sender.macFor(A, d).length, cryptoSizes.macBytes);
    assert.equal(sender.sign(d).length, cryptoSizes.signatureBytes);
    assert.deepEqual([cryptoSizes.digestBytes, cryptoSizes.macBytes, cryptoSizes.signatureBytes], [32, 16, 64]);
  });

  void test(`${setup.name}: digest is SHA-256 ("abc", "", multi-part = concatenation)`, () => {
    const enc = new TextEncoder();
    assert.equal(hex(setup.provider.digest(enc.encode('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(hex(setup.provider.digest(new Uint8Array(0))), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(hex(setup.provider.digest(enc.encode('a'), enc.encode('bc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    fc.assert(
      fc.property(data, data, (x, y) => {
        const joined = new Uint8Array(x.length + y.length);
        joined.set(x);
        joined.set(y, x.length);
        assert.equal(hex(setup.provider.digest(x, y)), hex(setup.provider.digest(joined)));
      }),
      { seed: 1234, numRuns: 100 },
    );
  });

  void test(`${setup.name}: an authenticator for [A,B,C] verifies at each recipient's own index and fails at the others (App. A)`, () => {
    fc.assert(
      fc.property(data, (d) => {
        const macs = sender.authenticate(recipients, d);
        assert.equal(macs.length, recipients.length);
        rings.forEach((ring, own) => {
          for (let index = 0; index < recipients.length; index++) {
            assert.equal(ring.verifyAuthenticatorEntry(S, d, macs, index), index === own, `recipient ${own} at index ${index}`);
            assert.equal(ring.verifyAuthenticatorDigest(S, ring.digest(d), macs, index), index === own);
          }
          // No entry at all, and an entry claimed from the wrong sender.
          assert.equal(ring.verifyAuthenticatorEntry(S, d, macs, recipients.length), false);
          assert.equal(ring.verifyAuthenticatorEntry(S, d, macs, -1), false);
          assert.equal(ring.verifyAuthenticatorEntry(recipients[(own + 1) % 3]!, d, macs, own), false);
        });
      }),
      { seed: 1234, numRuns: 100 },
    );
  });

  void test(`${setup.name}: a flipped bit in the data fails every entry; in MAC i fails only recipient i`, () => {
    fc.assert(
      fc.property(nonEmptyData, fc.nat(), fc.integer({ min: 0, max: 2 }), fc.nat({ max: 127 }), (d, bit, victim, macBit) => {
        const macs = sender.authenticate(recipients, d);
        const changed = flipBit(d, bit);
        rings.forEach((ring, own) => {
          assert.equal(ring.verifyAuthenticatorEntry(S, changed, macs, own), false, `changed data accepted by ${own}`);
        });
        const tampered = macs.map((m, i) => (i === victim ? flipBit(m, macBit) : m));
        rings.forEach((ring, own) => {
          assert.equal(ring.verifyAuthenticatorEntry(S, d, tampered, own), own !== victim, `recipient ${own}, tampered ${victim}`);
        });
      }),
      { seed: 1235, numRuns: 200 },
    );
  });

  void test(`${setup.name}: point-to-point MACs verify only at the peer, from the right sender, with the right length`, () => {
    fc.assert(
      fc.property(data, fc.nat(), (d, bit) => {
        const [ra, rb, rc] = rings as [KeyRing, KeyRing, KeyRing];
        const tag = ra.macFor(B, d);
        assert.equal(rb.verifyMacFrom(A, d, tag), true);
        assert.equal(rc.verifyMacFrom(A, d, tag), false, 'a third party has another key');
        assert.equal(rb.verifyMacFrom(C, d, tag), false, 'wrong claimed sender');
        assert.equal(rb.verifyMacFrom(A, d, flipBit(tag, bit)), false);
        assert.equal(rb.verifyMacFrom(A, d, tag.subarray(0, 15)), false);
        const long = new Uint8Array(17);
        long.set(tag);
        assert.equal(rb.verifyMacFrom(A, d, long), false);
        // The reply direction uses the same pair key.
        assert.equal(hex(rb.macFor(A, d)), hex(tag));
      }),
      { seed: 1236, numRuns: 100 },
    );
  });

  void test(`${setup.name}: MAC keys are symmetric per pair and distinct across pairs`, () => {
    const keyIds = new Set<string>();
    for (let i = 0; i < everyone.length; i++) {
      for (let j = i + 1; j < everyone.length; j++) {
        const x = everyone[i]!;
        const y = everyone[j]!;
        const kxy = setup.material(x).macKey(y);
        assert.equal(hex(kxy), hex(setup.material(y).macKey(x)), `${principalKey(x)} / ${principalKey(y)}`);
        keyIds.add(hex(kxy));
      }
    }
    assert.equal(keyIds.size, (everyone.length * (everyone.length - 1)) / 2);
  });

  void test(`${setup.name}: signatures verify for the signer, fail for another signer, changed data or a changed signature`, () => {
    fc.assert(
      fc.property(data, fc.nat({ max: 511 }), (d, bit) => {
        const [ra, rb] = rings as [KeyRing, KeyRing, KeyRing];
        const sig = ra.sign(d);
        assert.equal(rb.verifyFrom(A, d, sig), true);
        assert.equal(ra.verifyFrom(A, d, sig), true, 'the signer can check its own signature');
        assert.equal(rb.verifyFrom(C, d, sig), false, 'another signer');
        assert.equal(rb.verifyFrom(A, d, flipBit(sig, bit)), false, 'changed signature');
        if (d.length > 0) assert.equal(rb.verifyFrom(A, flipBit(d, bit), sig), false, 'changed data');
        const extended = new Uint8Array(d.length + 1);
        extended.set(d);
        assert.equal(rb.verifyFrom(A, extended, sig), false, 'extended data');
        assert.equal(rb.verifyFrom(A, d, sig.subarray(0, 63)), false, 'short signature');
        assert.equal(rb.verifyFrom(A, d, new Uint8Array(65)), false, 'long signature');
      }),
      { seed: 1237, numRuns: 50 },
    );
  });

  void test(`${setup.name}: provider.verify returns false (never throws) on signatures of wrong length`, () => {
    const pk = setup.material(A).publicKey(A)!;
    const d = Uint8Array.of(9, 9, 9);
    const good = setup.provider.sign(setup.material(A).signingKey, d);
    assert.equal(setup.provider.verify(pk, d, good), true);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 130 }).filter((s) => s.length !== 64), (sig) => {
        assert.equal(setup.provider.verify(pk, d, sig), false);
      }),
      { seed: 1238, numRuns: 200 },
    );
  });

  if (setup.knowsOnlyListed) {
    void test(`${setup.name}: verifyFrom an unknown signer is false`, () => {
      const d = Uint8Array.of(1);
      const sig = ringOf(setup, A).sign(d);
      assert.equal(ringOf(setup, B).verifyFrom(nodePrincipal(200), d, sig), false);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// NodeCrypto specifics: known-answer tests and malformed public keys.

void test('NodeCrypto: Ed25519 matches RFC 8032 §7.1 test 1 and ed25519PublicOf derives its public key', () => {
  const nc = new NodeCrypto();
  const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
  const pub = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
  const sig =
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
  assert.equal(hex(ed25519PublicOf(seed)), pub);
  assert.equal(hex(nc.sign(seed, new Uint8Array(0))), sig);
  assert.equal(nc.verify(Buffer.from(pub, 'hex'), new Uint8Array(0), Buffer.from(sig, 'hex')), true);
});

void test('BLAKE2b in TypeScript: RFC 7693 "abc" vector, equals node:crypto unkeyed and libsodium keyed', () => {
  assert.equal(hex(blake2b(new TextEncoder().encode('abc'), undefined, 64)), 'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923');
  const sodium = loadSodium();
  assert.ok(sodium !== undefined);
  const sc = new SodiumCrypto(sodium);
  for (let i = 0; i < 300; i++) {
    const data = randomBytes(i * 5);
    assert.equal(hex(blake2b(data, undefined, 64)), createHash('blake2b512').update(data).digest('hex'));
    const key = randomBytes(32);
    assert.equal(hex(blake2b(data, key, 16)), hex(sc.mac(key, data)), `keyed, ${data.length} bytes`);
  }
});

void test('SodiumCrypto and NodeCrypto agree byte for byte: digests, MACs (keyed BLAKE2b), Ed25519 signatures', () => {
  const sodium = loadSodium();
  assert.ok(sodium !== undefined, 'sodium-native loads on this platform');
  const sc = new SodiumCrypto(sodium);
  const nc = new NodeCrypto();
  const kp = generateEd25519();
  for (let i = 0; i < 20; i++) {
    const data = randomBytes(i * 37);
    const key = randomBytes(32);
    assert.equal(hex(sc.digest(data)), hex(nc.digest(data)));
    assert.equal(hex(sc.mac(key, data)), hex(nc.mac(key, data)));
    const sig = sc.sign(kp.privateKey, data);
    assert.equal(hex(sig), hex(nc.sign(kp.privateKey, data)), 'Ed25519 is deterministic');
    assert.ok(nc.verify(kp.publicKey, data, sig));
    assert.ok(sc.verify(kp.publicKey, data, nc.sign(kp.privateKey, data)));
    assert.equal(sc.verify(kp.publicKey, data, sig.map((x, j) => (j === 0 ? x ^ 1 : x))), false);
  }
  assert.equal(sc.verify(new Uint8Array(31), new Uint8Array(4), new Uint8Array(64)), false, 'malformed key: false, no throw');
});

void test('pair keys: both ends derive the same key, with libsodium or pure node:crypto; other pairs differ', () => {
  const a = generateEd25519();
  const b = generateEd25519();
  const c = generateEd25519();
  const ab1 = pairKey({ seed: a.privateKey, self: nodePrincipal(1), peer: clientPrincipal(2), peerPublic: b.publicKey });
  const ab2 = pairKey({ seed: b.privateKey, self: clientPrincipal(2), peer: nodePrincipal(1), peerPublic: a.publicKey, useSodium: false });
  assert.equal(hex(ab1), hex(ab2));
  const ac = pairKey({ seed: a.privateKey, self: nodePrincipal(1), peer: clientPrincipal(3), peerPublic: c.publicKey });
  assert.notEqual(hex(ab1), hex(ac));
  assert.throws(() => pairKey({ seed: a.privateKey, self: nodePrincipal(1), peer: nodePrincipal(9), peerPublic: new Uint8Array(32) }), /public key/);
});

void test('NodeCrypto: ed25519PublicOf(privateKey) equals the public key generateEd25519 returned', () => {
  for (let i = 0; i < 8; i++) {
    const kp = generateEd25519();
    assert.equal(kp.privateKey.length, 32);
    assert.equal(kp.publicKey.length, 32);
    assert.equal(hex(ed25519PublicOf(kp.privateKey)), hex(kp.publicKey));
  }
});

void test('NodeCrypto: verify returns false (never throws) on malformed public keys and signatures (property)', () => {
  const nc = new NodeCrypto();
  const kp = generateEd25519();
  const d = Uint8Array.of(1, 2, 3);
  const good = nc.sign(kp.privateKey, d);
  // Wrong-length keys, with a good signature.
  for (const len of [0, 1, 31, 33, 64]) assert.equal(nc.verify(new Uint8Array(len), d, good), false, `key of ${len} bytes`);
  // 32-byte keys that are not the signer's (random, all-zero, all-ones, small-order points).
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom(new Uint8Array(32), new Uint8Array(32).fill(0xff), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))),
        fc.uint8Array({ maxLength: 80 }),
      ),
      fc.oneof(fc.constant(good), fc.uint8Array({ maxLength: 130 }), fc.uint8Array({ minLength: 64, maxLength: 64 })),
      (pk, sig) => {
        let ok: boolean;
        try {
          ok = nc.verify(pk, d, sig);
        } catch (e) {
          assert.fail(`verify threw ${String(e)}`);
        }
        assert.equal(ok, false);
      },
    ),
    { seed: 1239, numRuns: 300 },
  );
  // The key pair itself still verifies after the cache saw the malformed keys.
  assert.equal(nc.verify(kp.publicKey, d, good), true);
});

// ---------------------------------------------------------------------------------------------
// SimKeys determinism.

void test('SimKeys: the same seed gives the same keys and signatures; different seeds differ', () => {
  const k1 = new SimKeys('seed-1');
  const k1again = new SimKeys('seed-1');
  const k2 = new SimKeys('seed-2');
  const sim = new SimCrypto();
  const d = Uint8Array.of(4, 5, 6);
  for (const p of everyone) {
    const m1 = k1.materialFor(p);
    const m1b = k1again.materialFor(p);
    const m2 = k2.materialFor(p);
    assert.equal(hex(m1.signingKey), hex(m1b.signingKey));
    assert.notEqual(hex(m1.signingKey), hex(m2.signingKey));
    assert.equal(hex(sim.sign(m1.signingKey, d)), hex(sim.sign(m1b.signingKey, d)));
    assert.notEqual(hex(sim.sign(m1.signingKey, d)), hex(sim.sign(m2.signingKey, d)));
    for (const q of everyone) {
      if (principalKey(q) === principalKey(p)) continue;
      assert.equal(hex(m1.macKey(q)), hex(m1b.macKey(q)));
      assert.notEqual(hex(m1.macKey(q)), hex(m2.macKey(q)));
      // Everyone agrees on each principal's public key.
      assert.equal(hex(k1.materialFor(q).publicKey(p)!), hex(m1.signingKey));
    }
  }
});

void test('SimKeys: node and client principals with the same id get different keys', () => {
  const keys = new SimKeys('ids');
  const n5 = keys.materialFor(nodePrincipal(5));
  const c5 = keys.materialFor(clientPrincipal(5));
  assert.notEqual(hex(n5.signingKey), hex(c5.signingKey));
  assert.notEqual(hex(n5.macKey(A)), hex(c5.macKey(A)));
});
