/**
 * RESP replies as values, and their encoding in RESP2 or RESP3. The protocol is a property of the
 * connection (HELLO 2|3); a value is encoded with the protocol in force when its command was read,
 * so replies to commands pipelined before a HELLO keep the old protocol.
 *
 * RESP2 has no null, map or set type: null is the null bulk string `$-1`, a map is a flat array
 * of alternating keys and values. RESP3 uses `_` and `%`.
 */

/** A reply value. */
export type RespValue =
  | { readonly t: 'simple'; readonly s: string }
  | { readonly t: 'error'; readonly s: string }
  | { readonly t: 'int'; readonly n: number }
  | { readonly t: 'bulk'; readonly b: Buffer | string }
  | { readonly t: 'null' }
  | { readonly t: 'array'; readonly items: readonly RespValue[] }
  | { readonly t: 'map'; readonly entries: readonly (readonly [RespValue, RespValue])[] };

/** Protocol version of a connection. */
export type RespProtocol = 2 | 3;

/** `+OK`. */
export const ok: RespValue = { t: 'simple', s: 'OK' };
/** The null reply (`$-1` in RESP2, `_` in RESP3). */
export const nil: RespValue = { t: 'null' };

/** An error reply; `message` starts with its code (`ERR ...`, `NOPROTO ...`). */
export function error(message: string): RespValue {
  return { t: 'error', s: message };
}
/** An integer reply. */
export function int(n: number): RespValue {
  return { t: 'int', n };
}
/** A bulk string reply. */
export function bulk(b: Buffer | string): RespValue {
  return { t: 'bulk', b };
}
/** A bulk string, or null. */
export function bulkOrNil(b: string | null): RespValue {
  return b === null ? nil : { t: 'bulk', b };
}
/** An array reply. */
export function array(items: readonly RespValue[]): RespValue {
  return { t: 'array', items };
}

/** Simple strings and errors are one line: CR and LF become spaces. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]/g, ' ');
}

/** Encodes a value; parts are appended to `out` (strings are written as UTF-8). */
export function encodeReply(v: RespValue, proto: RespProtocol, out: (Buffer | string)[]): void {
  switch (v.t) {
    case 'simple':
      out.push(`+${oneLine(v.s)}\r\n`);
      return;
    case 'error':
      out.push(`-${oneLine(v.s)}\r\n`);
      return;
    case 'int':
      out.push(`:${v.n}\r\n`);
      return;
    case 'bulk': {
      const b = typeof v.b === 'string' ? Buffer.from(v.b, 'utf8') : v.b;
      out.push(`$${b.length}\r\n`, b, '\r\n');
      return;
    }
    case 'null':
      out.push(proto === 3 ? '_\r\n' : '$-1\r\n');
      return;
    case 'array':
      out.push(`*${v.items.length}\r\n`);
      for (const x of v.items) encodeReply(x, proto, out);
      return;
    case 'map':
      out.push(proto === 3 ? `%${v.entries.length}\r\n` : `*${v.entries.length * 2}\r\n`);
      for (const [k, x] of v.entries) {
        encodeReply(k, proto, out);
        encodeReply(x, proto, out);
      }
      return;
  }
}

/** Encodes a value into one buffer. */
export function replyBytes(v: RespValue, proto: RespProtocol): Buffer {
  const parts: (Buffer | string)[] = [];
  encodeReply(v, proto, parts);
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}
