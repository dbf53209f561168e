/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of iSCSI, ext4 metadata
 * and etcd's write-ahead log.
 *
 * Two implementations, same values:
 * - **native**: `@node-rs/crc32` (a prebuilt N-API module; the CPU's CRC32 instruction where it
 *   has one), used from `nativeMinBytes` on. On this project's VM: 8.7 against 40 us for a 48 KiB
 *   frame (5.6 against 1.2 GB/s), 0.78 against 3.4 us at 4 KiB; below about 128 bytes the call
 *   costs more than it saves (161 against 56 ns at 32 bytes), so short inputs stay in
 *   TypeScript (`npx tsx bench/crc32c.ts`).
 * - **TypeScript**: slice-by-8 tables (8 KiB). The fallback where the native module is missing
 *   (a platform without a prebuilt binary) or turned off (`BULWARK_CRC32C=js`, for A/B runs;
 *   any value but `js` and `native` is a ConfigError).
 *   On a little-endian host the 4-byte-aligned middle of an input of 512 bytes or more is read
 *   as 32-bit words: 1.85 against 1.05 GB/s byte by byte here (1.73x to 1.81x in six runs);
 *   below 512 bytes making the typed-array view costs more than it saves, so short inputs and
 *   big-endian hosts take the byte path (same value).
 *
 * Every log frame, store snapshot and checkpoint pack is checksummed: about 30 KB per 4 KiB write
 * across a four-node cluster, and the whole state at each checkpoint.
 *
 * Chaining: `crc32c(b, crc32c(a))` equals `crc32c(concat(a, b))`, so a log can carry one
 * running checksum across all of its records.
 */
import { createRequire } from 'node:module';
import { ConfigError } from '../core/errors.ts';

/** Inputs at least this long go to the native module when it is loaded. */
const nativeMinBytes = 256;

/** The native module's CRC-32C: (bytes, CRC of the bytes before) -> CRC. */
export type NativeCrc32c = (input: Uint8Array, initialState?: number) => number;

/**
 * The native CRC-32C for a `BULWARK_CRC32C` setting: unset or `native` loads it (undefined when
 * the module is missing or fails a known-answer check), `js` turns it off; anything else is a
 * ConfigError naming the variable.
 */
export function loadNativeCrc32c(setting: string | undefined): NativeCrc32c | undefined {
  if (setting === 'js') return undefined;
  if (setting !== undefined && setting !== '' && setting !== 'native') {
    throw new ConfigError([{ path: 'env.BULWARK_CRC32C', message: `expected "native" or "js", got "${setting}"` }]);
  }
  try {
    const m = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c?: unknown };
    if (typeof m.crc32c !== 'function') return undefined;
    const f = m.crc32c as NativeCrc32c;
    // Known answer (RFC 3720 B.4: 32 bytes of zeros) before trusting it.
    return f(new Uint8Array(32)) === 0x8a9136aa ? f : undefined;
  } catch {
    return undefined;
  }
}

const native = loadNativeCrc32c(process.env['BULWARK_CRC32C']);

/** Which implementation checksums inputs of `nativeMinBytes` and more: `native` or `js`. */
export const crc32cBackend: 'native' | 'js' = native === undefined ? 'js' : 'native';

const poly = 0x82f63b78;

/** tables[k][b]: CRC of byte b followed by k zero bytes. */
const tables: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[0]![b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[0]![b]!;
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[0]![c & 0xff]!;
      t[k]![b] = c >>> 0;
    }
  }
  return t;
})();
const [t0, t1, t2, t3, t4, t5, t6, t7] = tables as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

/** True when a Uint32Array reads bytes 0..3 as the least significant first. */
const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * CRC-32C of `data[start, end)`, continuing from `prev` (the CRC of the bytes before; 0 for
 * none). Returns an unsigned 32-bit integer.
 */
export function crc32c(data: Uint8Array, prev = 0, start = 0, end = data.length): number {
  if (native !== undefined && end - start >= nativeMinBytes) return native(start === 0 && end === data.length ? data : data.subarray(start, end), prev);
  return crc32cJs(data, prev, start, end);
}

/** The TypeScript implementation (words from 512 bytes on little-endian hosts): the fallback, and the baseline of `bench/crc32c.ts`. */
export function crc32cJs(data: Uint8Array, prev = 0, start = 0, end = data.length): number {
  if (!littleEndian || end - start < 512) return crc32cBytes(data, prev, start, end);
  // Single bytes up to a 4-byte boundary of the underlying buffer, then 8 bytes per step as two
  // words, then the last 0-7 bytes singly. Calling crc32cBytes for the two ends instead (commit
  // 417736e) made this path slower: 0.67-1.14 against 1.15-1.35 GB/s, both in one process.
  let c = ~prev >>> 0;
  let i = start;
  while (((data.byteOffset + i) & 3) !== 0) c = (c >>> 8) ^ t0[(c ^ data[i++]!) & 0xff]!;
  const steps = (end - i) >>> 3;
  const words = new Uint32Array(data.buffer, data.byteOffset + i, steps * 2);
  for (let j = 0; j < words.length; j += 2) {
    const lo = (c ^ words[j]!) >>> 0;
    const hi = words[j + 1]!;
    c =
      t7[lo & 0xff]! ^
      t6[(lo >>> 8) & 0xff]! ^
      t5[(lo >>> 16) & 0xff]! ^
      t4[lo >>> 24]! ^
      t3[hi & 0xff]! ^
      t2[(hi >>> 8) & 0xff]! ^
      t1[(hi >>> 16) & 0xff]! ^
      t0[hi >>> 24]!;
  }
  for (i += steps * 8; i < end; i++) c = (c >>> 8) ^ t0[(c ^ data[i]!) & 0xff]!;
  return ~c >>> 0;
}

/**
 * The same checksum with byte loads only (slice-by-8): the TypeScript path for big-endian hosts
 * and short inputs.
 */
export function crc32cBytes(data: Uint8Array, prev = 0, start = 0, end = data.length): number {
  let c = ~prev >>> 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      t7[lo & 0xff]! ^
      t6[(lo >>> 8) & 0xff]! ^
      t5[(lo >>> 16) & 0xff]! ^
      t4[lo >>> 24]! ^
      t3[data[i + 4]!]! ^
      t2[data[i + 5]!]! ^
      t1[data[i + 6]!]! ^
      t0[data[i + 7]!]!;
  }
  for (; i < end; i++) c = (c >>> 8) ^ t0[(c ^ data[i]!) & 0xff]!;
  return ~c >>> 0;
}
