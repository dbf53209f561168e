/**
 * BLAKE2b (RFC 7693) in plain TypeScript, keyed or not, any output length up to 64 bytes.
 * bulwark's MAC is keyed BLAKE2b with a 16-byte output; libsodium computes it natively
 * (crypto_generichash) and this module is the fallback for platforms where sodium-native does
 * not load, so that every node computes identical MACs whichever library it has.
 *
 * 64-bit words are held as (low, high) pairs of 32-bit halves in Uint32Arrays.
 */

const iv = new Uint32Array([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
]);

// Message word schedule: sigma[round][i], doubled (index into 32-bit halves).
const sigma = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const sigma2 = new Uint8Array(12 * 16);
for (let r = 0; r < 12; r++) for (let i = 0; i < 16; i++) sigma2[r * 16 + i] = sigma[r % 10]![i]! * 2;

const v = new Uint32Array(32);
const m = new Uint32Array(32);

/** v[a] += v[b] (64-bit, on half indices). */
function add64(a: number, b: number): void {
  const lo = v[a]! + v[b]!;
  let hi = v[a + 1]! + v[b + 1]!;
  if (lo >= 0x1_0000_0000) hi++;
  v[a] = lo;
  v[a + 1] = hi;
}

/** v[a] += (m[lo], m[hi]). */
function addM(a: number, mi: number): void {
  const lo = v[a]! + m[mi]!;
  let hi = v[a + 1]! + m[mi + 1]!;
  if (lo >= 0x1_0000_0000) hi++;
  v[a] = lo;
  v[a + 1] = hi;
}

function mix(a: number, b: number, c: number, d: number, x: number, y: number): void {
  add64(a, b);
  addM(a, x);
  // d = rotr64(d ^ a, 32)
  let xl = v[d]! ^ v[a]!;
  let xh = v[d + 1]! ^ v[a + 1]!;
  v[d] = xh;
  v[d + 1] = xl;
  add64(c, d);
  // b = rotr64(b ^ c, 24)
  xl = v[b]! ^ v[c]!;
  xh = v[b + 1]! ^ v[c + 1]!;
  v[b] = (xl >>> 24) | (xh << 8);
  v[b + 1] = (xh >>> 24) | (xl << 8);
  add64(a, b);
  addM(a, y);
  // d = rotr64(d ^ a, 16)
  xl = v[d] ^ v[a]!;
  xh = v[d + 1]! ^ v[a + 1]!;
  v[d] = (xl >>> 16) | (xh << 16);
  v[d + 1] = (xh >>> 16) | (xl << 16);
  add64(c, d);
  // b = rotr64(b ^ c, 63) = rotl64(b ^ c, 1)
  xl = v[b] ^ v[c]!;
  xh = v[b + 1]! ^ v[c + 1]!;
  v[b] = (xh >>> 31) | (xl << 1);
  v[b + 1] = (xl >>> 31) | (xh << 1);
}

function compress(h: Uint32Array, block: Uint8Array, counter: number, last: boolean): void {
  for (let i = 0; i < 16; i++) {
    v[i] = h[i]!;
    v[i + 16] = iv[i]!;
  }
  v[24]! ^= counter >>> 0;
  v[25]! ^= Math.floor(counter / 0x1_0000_0000);
  if (last) {
    v[28] = ~v[28]!;
    v[29] = ~v[29]!;
  }
  for (let i = 0; i < 32; i++) m[i] = block[i * 4]! | (block[i * 4 + 1]! << 8) | (block[i * 4 + 2]! << 16) | (block[i * 4 + 3]! << 24);
  for (let r = 0; r < 12; r++) {
    const s = r * 16;
    mix(0, 8, 16, 24, sigma2[s]!, sigma2[s + 1]!);
    mix(2, 10, 18, 26, sigma2[s + 2]!, sigma2[s + 3]!);
    mix(4, 12, 20, 28, sigma2[s + 4]!, sigma2[s + 5]!);
    mix(6, 14, 22, 30, sigma2[s + 6]!, sigma2[s + 7]!);
    mix(0, 10, 20, 30, sigma2[s + 8]!, sigma2[s + 9]!);
    mix(2, 12, 22, 24, sigma2[s + 10]!, sigma2[s + 11]!);
    mix(4, 14, 16, 26, sigma2[s + 12]!, sigma2[s + 13]!);
    mix(6, 8, 18, 28, sigma2[s + 14]!, sigma2[s + 15]!);
  }
  for (let i = 0; i < 16; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 16]!;
}

/** BLAKE2b of `data` with an optional key (at most 64 bytes), `outLen` bytes (1..64). */
export function blake2b(data: Uint8Array, key: Uint8Array | undefined, outLen: number): Uint8Array {
  const keyLen = key?.length ?? 0;
  if (outLen < 1 || outLen > 64) throw new RangeError(`BLAKE2b output length ${outLen} not in 1..64`);
  if (keyLen > 64) throw new RangeError(`BLAKE2b key length ${keyLen} exceeds 64`);
  const h = new Uint32Array(16);
  h.set(iv);
  h[0]! ^= 0x01010000 ^ (keyLen << 8) ^ outLen;
  const block = new Uint8Array(128);
  let counter = 0;
  let fill = 0;
  const feed = (bytes: Uint8Array): void => {
    for (let i = 0; i < bytes.length; i++) {
      if (fill === 128) {
        counter += 128;
        compress(h, block, counter, false);
        fill = 0;
      }
      block[fill++] = bytes[i]!;
    }
  };
  if (key !== undefined && keyLen > 0) {
    const padded = new Uint8Array(128);
    padded.set(key);
    feed(padded);
  }
  feed(data);
  counter += fill;
  block.fill(0, fill);
  compress(h, block, counter, true);
  const out = new Uint8Array(outLen);
  for (let i = 0; i < outLen; i++) out[i] = (h[i >> 2]! >>> (8 * (i & 3))) & 0xff;
  return out;
}
