/**
 * The log format's recovery verdicts: clean ends, torn tails, corruption, chaining across
 * segments, and that no damage makes the scanner accept bytes that were never written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c, crc32cBackend, crc32cJs, loadNativeCrc32c } from './crc32c.ts';
import { ConfigError } from '../core/errors.ts';
import { encodeFrame, encodeSegmentStart, FrameType, frameHeaderBytes, scanSegment } from './wal-format.ts';

/** A segment holding `bodies` as data frames, zero-padded to `size`. */
function segment(bodies: readonly Uint8Array[], size: number, segIndex = 0, firstFrameNo = 0, prevChain = 0): { bytes: Uint8Array; offsets: number[]; chain: number } {
  const start = encodeSegmentStart(segIndex, firstFrameNo, prevChain);
  const parts = [start.bytes];
  const offsets: number[] = [];
  let chain = start.chain;
  let off = start.bytes.length;
  bodies.forEach((b, i) => {
    const f = encodeFrame(FrameType.data, firstFrameNo + 1 + i, b, chain);
    offsets.push(off);
    parts.push(f.bytes);
    chain = f.chain;
    off += f.bytes.length;
  });
  const out = new Uint8Array(Math.max(size, off));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { bytes: out, offsets, chain };
}

const bodies = (n: number): Uint8Array[] => Array.from({ length: n }, (_, i) => new Uint8Array(10 + i * 7).fill(i + 1));

test('crc32c: the standard check value and chaining', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
      const both = new Uint8Array(a.length + b.length);
      both.set(a);
      both.set(b, a.length);
      return crc32c(b, crc32c(a)) === crc32c(both) && crc32c(both, 0, a.length) === crc32c(b);
    }),
  );
});

test('crc32c: the native and word paths agree with a bytewise reference at every alignment and range', () => {
  // One table, one byte per step: the definition, with nothing shared with the fast path.
  const ref = (d: Uint8Array, prev: number, start: number, end: number): number => {
    let c = ~prev >>> 0;
    for (let i = start; i < end; i++) {
      c ^= d[i]!;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return ~c >>> 0;
  };
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 700 }), fc.nat(7), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (raw, shift, x, y, prev) => {
      // Short inputs (fast-check keeps arrays small: mostly the byte path and the switch to it),
      // in a view that starts `shift` bytes into its buffer and over a random sub-range.
      const buf = new Uint8Array(raw.length + shift);
      buf.set(raw, shift);
      const d = buf.subarray(shift);
      const a = d.length === 0 ? 0 : x % (d.length + 1);
      const b = a + (d.length - a === 0 ? 0 : y % (d.length - a + 1));
      const want = ref(d, prev, a, b);
      return crc32c(d, prev, a, b) === want && crc32cJs(d, prev, a, b) === want && crc32c(d) === ref(d, 0, 0, d.length);
    }),
    { numRuns: 300 },
  );
  // fast-check keeps arrays short, so the native path (256 bytes and up) and the word path (512
  // and up) get fixed cases: every alignment, lengths around both switches and a long one, whole
  // and trimmed at both ends.
  let seed = 7;
  const big = new Uint8Array(5000).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  for (let shift = 0; shift < 8; shift++) {
    for (const len of [255, 256, 257, 511, 512, 513, 1000, 4096 + 13]) {
      const d = big.subarray(shift, shift + len);
      for (const [a, b] of [[0, len], [3, len - 5], [1, Math.min(len, 600)]] as [number, number][]) {
        const want = ref(d, 0x1234, a, b);
        assert.equal(crc32c(d, 0x1234, a, b), want, `${crc32cBackend}: shift ${shift}, length ${len}, range ${a}-${b}`);
        assert.equal(crc32cJs(d, 0x1234, a, b), want, `js: shift ${shift}, length ${len}, range ${a}-${b}`);
      }
    }
  }
});

test('crc32c: BULWARK_CRC32C picks the implementation; the native module loads; a bad value is a ConfigError', () => {
  // A missing or broken binary would fall back to TypeScript silently (same values, four to five
  // times slower): @node-rs/crc32 ships prebuilt binaries for every platform Node 20 supports.
  for (const setting of [undefined, '', 'native']) {
    const f = loadNativeCrc32c(setting);
    assert.ok(f !== undefined, `setting ${String(setting)}: the native module loads`);
    assert.equal(f(Buffer.from('123456789')), 0xe3069283);
  }
  assert.equal(loadNativeCrc32c('js'), undefined);
  for (const bad of ['JS', 'yes', 'off']) {
    assert.throws(() => loadNativeCrc32c(bad), (e: unknown) => e instanceof ConfigError && e.message.includes('BULWARK_CRC32C'), bad);
  }
  assert.equal(crc32cBackend, process.env['BULWARK_CRC32C'] === 'js' ? 'js' : 'native');
});

test('a complete segment followed by zeros scans clean with every frame', () => {
  const s = segment(bodies(20), 8192);
  const r = scanSegment(s.bytes, true);
  assert.equal(r.verdict, 'clean');
  assert.equal(r.frames.length, 20);
  r.frames.forEach((f, i) => {
    assert.equal(f.frameNo, i + 1);
    assert.deepEqual(Buffer.from(f.body), Buffer.from(bodies(20)[i]!));
  });
  assert.equal(r.chain, s.chain);
  assert.equal(r.nextFrameNo, 21);
});

test('a frame cut short at any byte in the last segment is a torn tail ending at that frame', () => {
  const s = segment(bodies(6), 4096);
  const lastOff = s.offsets[5]!;
  const lastEnd = lastOff + frameHeaderBytes + bodies(6)[5]!.length;
  for (let keep = 1; keep < lastEnd - lastOff; keep++) {
    const b = s.bytes.slice();
    b.fill(0, lastOff + keep, lastEnd);
    const r = scanSegment(b, true);
    // A piece that happens to be all zeros is indistinguishable from no write at all.
    const wroteNonZero = b.subarray(lastOff, lastOff + keep).some((x) => x !== 0);
    assert.equal(r.verdict, wroteNonZero ? 'torn' : 'clean', `keep=${keep}`);
    assert.equal(r.end, lastOff);
    assert.equal(r.frames.length, 5);
    assert.equal(r.dirtyEnd > r.end, wroteNonZero);
  }
});

test('damage before the last good frame is corruption, in the last segment or not', () => {
  const s = segment(bodies(6), 4096);
  for (const i of [0, 2, 4]) {
    const b = s.bytes.slice();
    b[s.offsets[i]! + frameHeaderBytes + 3]! ^= 0x10; // body byte
    const r = scanSegment(b, true);
    assert.equal(r.verdict, 'corrupt', `frame ${i}`);
    assert.equal(r.frames.length, i, 'frames before the damage are still returned');
    assert.match(r.reason ?? '', /valid frame follows/);
    const h = s.bytes.slice();
    h.fill(0, s.offsets[i], s.offsets[i]! + frameHeaderBytes); // a lost header
    assert.equal(scanSegment(h, true).verdict, 'corrupt');
  }
});

test('the last frame damaged: torn in the last segment, corruption in an earlier one', () => {
  const s = segment(bodies(4), 4096);
  const b = s.bytes.slice();
  b[s.offsets[3]! + frameHeaderBytes + 1]! ^= 1;
  assert.equal(scanSegment(b, true).verdict, 'torn');
  assert.equal(scanSegment(b, false).verdict, 'corrupt');
});

test('segment headers: an empty last segment is clean, an unreadable one with frames after it is corrupt', () => {
  assert.equal(scanSegment(new Uint8Array(1024), true).verdict, 'clean');
  assert.equal(scanSegment(new Uint8Array(1024), false).verdict, 'corrupt');
  const s = segment(bodies(3), 2048);
  const b = s.bytes.slice();
  b[2]! ^= 0xff;
  assert.equal(scanSegment(b, true).verdict, 'corrupt');
  const torn = new Uint8Array(2048);
  torn.set(s.bytes.subarray(0, 10));
  assert.equal(scanSegment(torn, true).verdict, 'torn');
});

test('segments chain: the second starts from the first one\'s final CRC and frame number', () => {
  const a = segment(bodies(3), 1024, 0, 0, 0);
  const ra = scanSegment(a.bytes, false);
  const b = segment(bodies(2), 1024, 1, ra.nextFrameNo, ra.chain);
  const rb = scanSegment(b.bytes, true);
  assert.equal(rb.verdict, 'clean');
  assert.equal(rb.prevChain, ra.chain);
  assert.equal(rb.firstFrameNo, ra.nextFrameNo);
  assert.equal(rb.segIndex, 1);
  assert.equal(rb.frames[0]!.frameNo, ra.nextFrameNo + 1);
});

test('fuzz: arbitrary damage never throws and never yields a frame that was not written', () => {
  const s = segment(bodies(12), 2048);
  const originals = new Map(scanSegment(s.bytes, true).frames.map((f) => [f.frameNo, Buffer.from(f.body).toString('hex')]));
  fc.assert(
    fc.property(
      fc.array(fc.record({ at: fc.nat({ max: 2047 }), v: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      (edits, last) => {
        const b = s.bytes.slice();
        for (const e of edits) b[e.at] = e.v;
        const r = scanSegment(b, last);
        for (const f of r.frames) if (originals.get(f.frameNo) !== Buffer.from(f.body).toString('hex')) return false;
        // Clean means nothing but zeros after the end.
        if (r.verdict === 'clean' && b.subarray(r.end).some((x) => x !== 0)) return false;
        return true;
      },
    ),
    { numRuns: 400 },
  );
  // Pure garbage.
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (g, last) => scanSegment(g, last).frames.length === 0));
});
