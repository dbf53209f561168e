/**
 * Byte format of bulwark's write-ahead log, and the recovery verdicts, as pure functions over
 * byte arrays: the Node runtime applies them to segment files, the simulator to in-memory disks.
 *
 * A log is a sequence of segment files. Every segment starts with a segment-header frame and
 * continues with data frames; after the last frame the file is zero (segments are preallocated
 * with zeros, and a new segment begins only after the previous one's last frame is durable).
 *
 * Frame (24-byte header, then the body):
 *   0  u32 body length
 *   4  u32 type            1 segment header, 2 data
 *   8  u64 frame number    consecutive over the whole log (the header frame takes a number too)
 *  16  u32 chain CRC       CRC-32C of this body, continuing from the previous frame's chain CRC
 *  20  u32 header CRC      CRC-32C of bytes 0..20 (lets recovery recognise a frame on its own)
 * Segment-header body: "BWAL", u32 format version, u64 segment index, u32 chain CRC of the last
 * frame of the previous segment (0 for the first). A segment's chain starts from that value, so
 * each segment verifies alone and consecutive segments verify as one chain, as in etcd.
 *
 * Recovery decision table (scanSegment): reading stops at the first position that is not a
 * valid next frame (header CRC, type, length, frame number, chain CRC). Then:
 *   - only zeros follow: the clean end of the segment;
 *   - a valid frame header with a later frame number follows anywhere in the segment: something
 *     between two durable frames was lost or damaged: `corrupt`;
 *   - otherwise, in the last segment: a torn write of the group in flight at the crash: `torn`,
 *     the caller zeroes the tail from `end`;
 *   - otherwise, in an earlier segment: `corrupt` (an earlier segment was complete and durable
 *     before the next one began, so no crash can tear it).
 * Corruption is never truncated: the replica repairs from its peers or stops.
 *
 * Invariants: frame numbers increase by one from frame to frame, across segments; every frame
 * accepted by scanSegment passed both CRCs; a segment accepted as a successor carries its
 * predecessor's final chain CRC.
 */
import { crc32c } from './crc32c.ts';

/** Bytes in a frame header. */
export const frameHeaderBytes = 24;
/** Largest frame body accepted (a larger length field is damage, not data). */
export const frameBodyMax = 1 << 30;
const segMagic = 0x4257414c; // "BWAL"
const formatVersion = 1;
const segHeaderBody = 20;

/** Frame types. */
export const FrameType = { segment: 1, data: 2 } as const;

/** A frame read back from a segment. */
export interface Frame {
  readonly frameNo: number;
  readonly type: number;
  readonly body: Uint8Array;
  /** Offset of the frame's first byte in its segment. */
  readonly offset: number;
  /** Chain CRC after this frame. */
  readonly chain: number;
}

/** Encodes one frame; returns its bytes and the chain CRC after it. */
export function encodeFrame(type: number, frameNo: number, body: Uint8Array, prevChain: number): { bytes: Uint8Array; chain: number } {
  const { header, chain } = encodeFrameHeader(type, frameNo, [body], prevChain);
  const out = new Uint8Array(frameHeaderBytes + body.length);
  out.set(header, 0);
  out.set(body, frameHeaderBytes);
  return { bytes: out, chain };
}

/**
 * Encodes the header of a frame whose body is the concatenation of `chunks` (written with one
 * writev: header, then the chunks, no copy). Returns the header and the chain CRC after it.
 */
export function encodeFrameHeader(type: number, frameNo: number, chunks: readonly Uint8Array[], prevChain: number): { header: Uint8Array; chain: number } {
  const header = new Uint8Array(frameHeaderBytes);
  const v = new DataView(header.buffer);
  let chain = prevChain;
  let len = 0;
  for (const c of chunks) {
    chain = crc32c(c, chain);
    len += c.length;
  }
  v.setUint32(0, len);
  v.setUint32(4, type);
  v.setUint32(8, Math.floor(frameNo / 2 ** 32));
  v.setUint32(12, frameNo >>> 0);
  v.setUint32(16, chain);
  v.setUint32(20, crc32c(header, 0, 0, 20));
  return { header, chain };
}

/** Body of a segment-header frame. */
export function encodeSegmentHeader(segIndex: number, prevChain: number): Uint8Array {
  const b = new Uint8Array(segHeaderBody);
  const v = new DataView(b.buffer);
  v.setUint32(0, segMagic);
  v.setUint32(4, formatVersion);
  v.setUint32(8, Math.floor(segIndex / 2 ** 32));
  v.setUint32(12, segIndex >>> 0);
  v.setUint32(16, prevChain);
  return b;
}

/** The first bytes of a new segment: its header frame. */
export function encodeSegmentStart(segIndex: number, firstFrameNo: number, prevChain: number): { bytes: Uint8Array; chain: number } {
  return encodeFrame(FrameType.segment, firstFrameNo, encodeSegmentHeader(segIndex, prevChain), prevChain);
}

interface Header {
  readonly len: number;
  readonly type: number;
  readonly frameNo: number;
  readonly chain: number;
}

/** Reads a frame header at `off` if its header CRC holds and its fields are sane. */
function readHeader(seg: Uint8Array, off: number): Header | undefined {
  if (off + frameHeaderBytes > seg.length) return undefined;
  const v = new DataView(seg.buffer, seg.byteOffset + off, frameHeaderBytes);
  if (crc32c(seg, 0, off, off + 20) !== v.getUint32(20)) return undefined;
  const len = v.getUint32(0);
  const type = v.getUint32(4);
  const hi = v.getUint32(8);
  if (len > frameBodyMax || (type !== FrameType.segment && type !== FrameType.data) || hi >= 2 ** 21) return undefined;
  return { len, type, frameNo: hi * 2 ** 32 + v.getUint32(12), chain: v.getUint32(16) };
}

/** What recovery found in one segment. */
export interface SegmentScan {
  readonly verdict: 'clean' | 'torn' | 'corrupt';
  /** Data frames in order (the segment header is checked, not returned). */
  readonly frames: Frame[];
  /** Offset just past the last good frame: where the next frame goes. */
  readonly end: number;
  /** Segment index from the header (undefined when the header itself is unreadable). */
  readonly segIndex: number | undefined;
  /** Frame number of the header frame. */
  readonly firstFrameNo: number | undefined;
  /** Chain CRC the segment starts from (its predecessor's last). */
  readonly prevChain: number | undefined;
  /** Chain CRC after the last good frame. */
  readonly chain: number;
  /** Frame number the next frame must carry. */
  readonly nextFrameNo: number;
  /** Why the segment is not clean. */
  readonly reason?: string;
  /** Highest offset holding a non-zero byte, plus one (what a torn-tail repair must zero). */
  readonly dirtyEnd: number;
}

function lastNonZero(seg: Uint8Array): number {
  for (let i = seg.length - 1; i >= 0; i--) if (seg[i] !== 0) return i + 1;
  return 0;
}

/**
 * Scans one segment. `last` says whether it is the log's last segment (only there can a crash
 * tear a write).
 */
export function scanSegment(seg: Uint8Array, last: boolean): SegmentScan {
  const frames: Frame[] = [];
  const dirtyEnd = lastNonZero(seg);
  const head = readHeader(seg, 0);
  const meta: { segIndex: number | undefined; prevChain: number | undefined; firstFrameNo: number | undefined } = { segIndex: undefined, prevChain: undefined, firstFrameNo: undefined };
  const result = (verdict: SegmentScan['verdict'], end: number, chain: number, nextFrameNo: number, reason?: string): SegmentScan => ({
    verdict,
    frames,
    end,
    ...meta,
    chain,
    nextFrameNo,
    dirtyEnd,
    ...(reason !== undefined ? { reason } : {}),
  });
  if (head === undefined || head.type !== FrameType.segment || head.len !== segHeaderBody || frameHeaderBytes + segHeaderBody > seg.length) {
    if (dirtyEnd === 0) return result(last ? 'clean' : 'corrupt', 0, 0, 0, last ? undefined : 'empty segment before the last');
    const later = findLaterHeader(seg, 1, -1);
    if (later !== undefined || !last) return result('corrupt', 0, 0, 0, `unreadable segment header${later !== undefined ? ` (a valid frame follows at byte ${later})` : ''}`);
    return result('torn', 0, 0, 0, 'torn segment header');
  }
  const hb = seg.subarray(frameHeaderBytes, frameHeaderBytes + segHeaderBody);
  const hv = new DataView(hb.buffer, hb.byteOffset, hb.byteLength);
  const prevChain = hv.getUint32(16);
  meta.prevChain = prevChain;
  if (hv.getUint32(0) !== segMagic || hv.getUint32(4) !== formatVersion || crc32c(hb, prevChain) !== head.chain) {
    return result('corrupt', 0, 0, 0, 'segment header body fails its checks');
  }
  meta.segIndex = hv.getUint32(8) * 2 ** 32 + hv.getUint32(12);
  meta.firstFrameNo = head.frameNo;
  let chain = head.chain;
  let next = head.frameNo + 1;
  let off = frameHeaderBytes + segHeaderBody;
  for (;;) {
    const h = readHeader(seg, off);
    const fits = h !== undefined && off + frameHeaderBytes + h.len <= seg.length;
    if (h !== undefined && fits && h.type === FrameType.data && h.frameNo === next && crc32c(seg, chain, off + frameHeaderBytes, off + frameHeaderBytes + h.len) === h.chain) {
      frames.push({ frameNo: h.frameNo, type: h.type, body: seg.subarray(off + frameHeaderBytes, off + frameHeaderBytes + h.len), offset: off, chain: h.chain });
      chain = h.chain;
      next += 1;
      off += frameHeaderBytes + h.len;
      continue;
    }
    if (dirtyEnd <= off) return result('clean', off, chain, next);
    const later = findLaterHeader(seg, off + 1, next - 1);
    if (later !== undefined) return result('corrupt', off, chain, next, `bad frame at byte ${off}, but a valid frame follows at byte ${later}`);
    if (!last) return result('corrupt', off, chain, next, `bad frame at byte ${off} in a segment that is not the last`);
    return result('torn', off, chain, next, `torn write at byte ${off}`);
  }
}

/** Offset of a valid frame header with frame number above `after`, searching from `from`. */
function findLaterHeader(seg: Uint8Array, from: number, after: number): number | undefined {
  let nonZero = from;
  for (let off = from; off + frameHeaderBytes <= seg.length; off++) {
    // An all-zero window is never a valid header: jump over runs of zeros.
    if (nonZero < off) nonZero = off;
    while (nonZero < seg.length && seg[nonZero] === 0) nonZero++;
    if (nonZero >= off + frameHeaderBytes) {
      off = nonZero - frameHeaderBytes;
      continue;
    }
    const h = readHeader(seg, off);
    if (h !== undefined && h.frameNo > after) return off;
  }
  return undefined;
}
