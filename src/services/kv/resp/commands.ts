/**
 * Redis commands, translated: each command line becomes either a local answer (PING, ECHO,
 * HELLO, CLIENT, SELECT, COMMAND, INFO, CONFIG GET, QUIT, and every error found without the
 * cluster: arity, syntax, integers, sizes, UTF-8) or one `KvCommand` for the cluster plus the
 * function that turns its output into the Redis reply. Error texts are Redis'.
 *
 * Keys and values are UTF-8 strings in the store, so an argument that is not valid UTF-8 is
 * refused with an error instead of being silently altered. Integers are safe integers
 * (|n| <= 2^53-1), a narrower range than Redis' 64 bits; outside it the error is Redis'
 * "value is not an integer or out of range".
 */
import type { KvCommand, KvCommandOutput, KvExpiry } from '../model.ts';
import { itemsMax, keyBytesMax, valueBytesMax } from '../ops.ts';
import { array, bulk, bulkOrNil, error, int, nil, ok, type RespProtocol, type RespValue } from './reply.ts';

/** Per-connection state that commands read and change. */
export interface Session {
  /** Reply protocol in force. */
  proto: RespProtocol;
  /** CLIENT SETNAME. */
  name: string | null;
  /** Connection id (CLIENT ID, HELLO). */
  readonly id: number;
}

/** What the gateway exposes to INFO and HELLO. */
export interface ServerFacts {
  readonly version: string;
  /** Fields of INFO's `# Gateway` section, read when INFO runs. */
  readonly stats: () => Readonly<Record<string, number | string>>;
}

/** What to do with one command line. */
export type Action =
  | { readonly kind: 'local'; readonly reply: RespValue; readonly close?: boolean }
  | { readonly kind: 'cluster'; readonly command: KvCommand; readonly answer: (out: KvCommandOutput) => RespValue };

/** Largest SCAN COUNT the gateway passes on (a larger hint is lowered to it). */
export const scanCountGatewayMax = 1000;

const notInteger = 'ERR value is not an integer or out of range';
const syntax = 'ERR syntax error';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown inside a handler to answer with an error; never escapes `translate`. */
class Refusal extends Error {}

/** Arguments of one command, with Redis' checks. */
class Args {
  constructor(private readonly raw: readonly Buffer[]) {}

  get length(): number {
    return this.raw.length;
  }

  /** Argument `i` as text (any bytes; for keywords and numbers). */
  word(i: number): string {
    return this.raw[i]!.toString('latin1');
  }

  /** Argument `i` lower-cased, for keyword comparisons. */
  keyword(i: number): string {
    return this.word(i).toLowerCase();
  }

  /** Argument `i` as a UTF-8 string no longer than `max` bytes. */
  text(i: number, max: number, what: 'key' | 'value'): string {
    const b = this.raw[i]!;
    if (b.length > max) throw new Refusal(what === 'key' ? `ERR key exceeds maximum allowed size (${max} bytes)` : `ERR string exceeds maximum allowed size (${max} bytes)`);
    try {
      return utf8.decode(b);
    } catch {
      // Invalid UTF-8: the store keeps strings, and altering the bytes would be worse.
      throw new Refusal(`ERR this server stores UTF-8 strings only, and argument ${i} is not valid UTF-8`);
    }
  }

  key(i: number): string {
    return this.text(i, keyBytesMax, 'key');
  }

  value(i: number): string {
    return this.text(i, valueBytesMax, 'value');
  }

  keys(from: number, step = 1): string[] {
    const out: string[] = [];
    for (let i = from; i < this.length; i += step) out.push(this.key(i));
    if (out.length > itemsMax) throw new Refusal(`ERR too many keys in one command (at most ${itemsMax})`);
    return out;
  }

  /** Argument `i` as a safe integer written the way Redis accepts (no '+', no leading zero). */
  integer(i: number, message = notInteger): number {
    const n = parseInteger(this.word(i));
    if (n === undefined) throw new Refusal(message);
    return n;
  }
}

/** A decimal integer as Redis' string2ll accepts it, within the safe range; else undefined. */
export function parseInteger(s: string): number | undefined {
  if (!/^(0|-?[1-9][0-9]{0,18})$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Maps the store's errors to Redis texts; other outputs go through `ok`. */
function answer(command: string, map: (o: KvCommandOutput) => RespValue | undefined): (o: KvCommandOutput) => RespValue {
  return (o) => {
    if (o.kind === 'error') {
      if (o.code === 'not_integer') return error(notInteger);
      if (o.code === 'overflow') return error('ERR increment or decrement would overflow');
      return error('ERR the cluster refused the request as malformed');
    }
    if (o.kind === 'fail') {
      if (o.code === 'too_large') return error(`ERR string exceeds maximum allowed size (${valueBytesMax} bytes)`);
      if (o.code === 'invalid_expire') return error(`ERR invalid expire time in '${command}' command`);
      return error('ERR the reply would exceed the largest reply the cluster sends');
    }
    return map(o) ?? error(`ERR unexpected reply of kind '${o.kind}' from the cluster`);
  };
}

function cluster(command: KvCommand, name: string, map: (o: KvCommandOutput) => RespValue | undefined): Action {
  return { kind: 'cluster', command, answer: answer(name, map) };
}

const asInt = (o: KvCommandOutput): RespValue | undefined => (o.kind === 'int' ? int(o.value) : undefined);

/** Seconds or milliseconds from now, or an absolute time, as an expiry; undefined when out of range. */
function expiryOf(amount: number, unit: 'ex' | 'px' | 'exat' | 'pxat'): Extract<KvExpiry, { kind: 'in' | 'at' }> | undefined {
  const ms = unit === 'ex' || unit === 'exat' ? amount * 1000 : amount;
  if (!Number.isSafeInteger(ms)) return undefined;
  return { kind: unit === 'ex' || unit === 'px' ? 'in' : 'at', ms };
}

type Handler = (a: Args, s: Session, facts: ServerFacts) => Action;

interface Spec {
  /** Redis arity: n exactly n words (the name included), -n at least n. */
  readonly arity: number;
  readonly flags: readonly string[];
  /** First key, last key (-1: the last argument), step; 0 0 0 without keys. */
  readonly keys: readonly [number, number, number];
  readonly run: Handler;
}

function setCommand(a: Args): Action {
  const key = a.key(1);
  const value = a.value(2);
  let when: 'always' | 'nx' | 'xx' = 'always';
  let get = false;
  let expiry: KvExpiry = { kind: 'clear' };
  for (let i = 3; i < a.length; i++) {
    const w = a.keyword(i);
    if ((w === 'nx' || w === 'xx') && when === 'always') when = w;
    else if (w === 'get' && !get) get = true;
    else if (w === 'keepttl' && expiry.kind === 'clear') expiry = { kind: 'keep' };
    else if ((w === 'ex' || w === 'px' || w === 'exat' || w === 'pxat') && expiry.kind === 'clear' && i + 1 < a.length) {
      const amount = a.integer(++i);
      const e = expiryOf(amount, w);
      if (amount <= 0 || e === undefined) throw new Refusal("ERR invalid expire time in 'set' command");
      expiry = e;
    } else throw new Refusal(syntax);
  }
  return cluster({ kind: 'set', key, value, when, get, expiry }, 'set', (o) => {
    if (o.kind !== 'set') return undefined;
    if (get) return bulkOrNil(o.old);
    return o.written ? ok : nil;
  });
}

function expireCommand(a: Args, unit: 'ex' | 'px' | 'exat' | 'pxat'): Action {
  const key = a.key(1);
  const amount = a.integer(2);
  if (a.length > 3) throw new Refusal(`ERR Unsupported option ${a.word(3)}`);
  const name = { ex: 'expire', px: 'pexpire', exat: 'expireat', pxat: 'pexpireat' }[unit];
  const expiry = expiryOf(amount, unit);
  if (expiry === undefined) throw new Refusal(`ERR invalid expire time in '${name}' command`);
  return cluster({ kind: 'expire', key, expiry }, name, asInt);
}

function incrCommand(a: Args, sign: 1 | -1, byArgument: boolean): Action {
  const key = a.key(1);
  const delta = byArgument ? a.integer(2) * sign : sign;
  return cluster({ kind: 'incr', key, delta: delta === 0 ? 0 : delta }, 'incr', (o) => (o.kind === 'incr' ? int(o.value) : undefined));
}

function scanCommand(a: Args): Action {
  const cursor = parseInteger(a.word(1));
  if (cursor === undefined || cursor < 0) throw new Refusal('ERR invalid cursor');
  let match: string | null = null;
  let count = 10;
  let onlyStrings = true;
  for (let i = 2; i < a.length; i += 2) {
    const w = a.keyword(i);
    if (i + 1 >= a.length) throw new Refusal(syntax);
    if (w === 'match') match = a.key(i + 1);
    else if (w === 'count') {
      count = a.integer(i + 1);
      if (count < 1) throw new Refusal(syntax);
    } else if (w === 'type') onlyStrings = a.keyword(i + 1) === 'string';
    else throw new Refusal(syntax);
  }
  return cluster({ kind: 'scan', cursor, match, count: Math.min(count, scanCountGatewayMax) }, 'scan', (o) =>
    o.kind === 'scan' ? array([bulk(String(o.cursor)), array(onlyStrings ? o.keys.map((k) => bulk(k)) : [])]) : undefined,
  );
}

function helloCommand(a: Args, s: Session, facts: ServerFacts): Action {
  let proto = s.proto;
  let name = s.name;
  if (a.length > 1) {
    const v = parseInteger(a.word(1));
    if (v === undefined) throw new Refusal('ERR Protocol version is not an integer or out of range');
    if (v !== 2 && v !== 3) throw new Refusal('NOPROTO unsupported protocol version');
    proto = v;
    for (let i = 2; i < a.length; i++) {
      const w = a.keyword(i);
      if (w === 'auth' && i + 2 < a.length) {
        // No passwords here: like a Redis without requirepass, only the default user exists.
        throw new Refusal('WRONGPASS invalid username-password pair or user is disabled.');
      } else if (w === 'setname' && i + 1 < a.length) {
        name = clientName(a.word(++i));
      } else throw new Refusal(`ERR Syntax error in HELLO option '${a.word(i)}'`);
    }
  }
  s.proto = proto;
  s.name = name;
  const entries: [string, RespValue][] = [
    ['server', bulk('bulwark')],
    ['version', bulk(facts.version)],
    ['proto', int(proto)],
    ['id', int(s.id)],
    ['mode', bulk('standalone')],
    ['role', bulk('master')],
    ['modules', array([])],
  ];
  return { kind: 'local', reply: { t: 'map', entries: entries.map(([k, v]) => [bulk(k), v] as const) } };
}

/** A valid client name; the empty name clears it (null), as in Redis. */
function clientName(name: string): string | null {
  if (!/^[\x21-\x7e]*$/.test(name)) throw new Refusal('ERR Client names cannot contain spaces, newlines or special characters.');
  return name === '' ? null : name;
}

function clientCommand(a: Args, s: Session): Action {
  const sub = a.keyword(1);
  const arity = (n: number): void => {
    if (a.length !== n) throw new Refusal(`ERR wrong number of arguments for 'client|${sub}' command`);
  };
  switch (sub) {
    case 'setname':
      arity(3);
      s.name = clientName(a.word(2));
      return { kind: 'local', reply: ok };
    case 'getname':
      arity(2);
      return { kind: 'local', reply: bulkOrNil(s.name) };
    case 'id':
      arity(2);
      return { kind: 'local', reply: int(s.id) };
    case 'setinfo':
      arity(4);
      return { kind: 'local', reply: ok };
    default:
      throw new Refusal(`ERR unknown subcommand '${a.word(1)}'. Try CLIENT HELP.`);
  }
}

function commandInfo(name: string, spec: Spec): RespValue {
  return array([bulk(name), int(spec.arity), array(spec.flags.map((f) => ({ t: 'simple', s: f }))), int(spec.keys[0]), int(spec.keys[1]), int(spec.keys[2])]);
}

function commandCommand(a: Args): Action {
  const names = Object.keys(specs).sort();
  if (a.length === 1) return { kind: 'local', reply: array(names.map((n) => commandInfo(n, specs[n]!))) };
  const sub = a.keyword(1);
  switch (sub) {
    case 'count':
      return { kind: 'local', reply: int(names.length) };
    case 'list':
      return { kind: 'local', reply: array(names.map((n) => bulk(n))) };
    case 'docs':
      return { kind: 'local', reply: { t: 'map', entries: [] } };
    case 'info': {
      const items: RespValue[] = [];
      for (let i = 2; i < a.length; i++) {
        const n = a.keyword(i);
        const spec = specs[n];
        items.push(spec === undefined ? nil : commandInfo(n, spec));
      }
      return { kind: 'local', reply: array(items) };
    }
    default:
      throw new Refusal(`ERR unknown subcommand '${a.word(1)}'. Try COMMAND HELP.`);
  }
}

function infoCommand(facts: ServerFacts, s: Session): Action {
  const lines = ['# Server', 'redis_mode:standalone', `bulwark_version:${facts.version}`, 'loading:0', '', '# Gateway', `protocol:${s.proto}`];
  for (const [k, v] of Object.entries(facts.stats())) lines.push(`${k}:${v}`);
  return { kind: 'local', reply: bulk(`${lines.join('\r\n')}\r\n`) };
}

const w: readonly string[] = ['write'];
const r: readonly string[] = ['readonly'];
const fast: readonly string[] = ['fast'];
const one: [number, number, number] = [1, 1, 1];
const none: [number, number, number] = [0, 0, 0];

/** The commands the gateway knows, by lower-case name. */
const specs: Readonly<Record<string, Spec>> = {
  get: { arity: 2, flags: r, keys: one, run: (a) => cluster({ kind: 'get', key: a.key(1) }, 'get', (o) => (o.kind === 'get' ? bulkOrNil(o.value) : undefined)) },
  set: { arity: -3, flags: w, keys: one, run: setCommand },
  getset: {
    arity: 3,
    flags: w,
    keys: one,
    run: (a) => cluster({ kind: 'set', key: a.key(1), value: a.value(2), when: 'always', get: true, expiry: { kind: 'clear' } }, 'getset', (o) => (o.kind === 'set' ? bulkOrNil(o.old) : undefined)),
  },
  setnx: {
    arity: 3,
    flags: w,
    keys: one,
    run: (a) => cluster({ kind: 'set', key: a.key(1), value: a.value(2), when: 'nx', get: false, expiry: { kind: 'clear' } }, 'setnx', (o) => (o.kind === 'set' ? int(o.written ? 1 : 0) : undefined)),
  },
  del: { arity: -2, flags: w, keys: [1, -1, 1], run: (a) => cluster({ kind: 'delKeys', keys: a.keys(1) }, 'del', asInt) },
  exists: { arity: -2, flags: r, keys: [1, -1, 1], run: (a) => cluster({ kind: 'exists', keys: a.keys(1) }, 'exists', asInt) },
  incr: { arity: 2, flags: w, keys: one, run: (a) => incrCommand(a, 1, false) },
  decr: { arity: 2, flags: w, keys: one, run: (a) => incrCommand(a, -1, false) },
  incrby: { arity: 3, flags: w, keys: one, run: (a) => incrCommand(a, 1, true) },
  decrby: { arity: 3, flags: w, keys: one, run: (a) => incrCommand(a, -1, true) },
  append: { arity: 3, flags: w, keys: one, run: (a) => cluster({ kind: 'append', key: a.key(1), value: a.value(2) }, 'append', asInt) },
  strlen: { arity: 2, flags: r, keys: one, run: (a) => cluster({ kind: 'strlen', key: a.key(1) }, 'strlen', asInt) },
  mget: {
    arity: -2,
    flags: r,
    keys: [1, -1, 1],
    run: (a) => cluster({ kind: 'mget', keys: a.keys(1) }, 'mget', (o) => (o.kind === 'values' ? array(o.values.map(bulkOrNil)) : undefined)),
  },
  mset: {
    arity: -3,
    flags: w,
    keys: [1, -1, 2],
    run: (a) => {
      if (a.length % 2 === 0) throw new Refusal("ERR wrong number of arguments for 'mset' command");
      const entries: { key: string; value: string }[] = [];
      for (let i = 1; i < a.length; i += 2) entries.push({ key: a.key(i), value: a.value(i + 1) });
      if (entries.length > itemsMax) throw new Refusal(`ERR too many keys in one command (at most ${itemsMax})`);
      return cluster({ kind: 'mset', entries }, 'mset', (o) => (o.kind === 'put' ? ok : undefined));
    },
  },
  dbsize: { arity: 1, flags: r, keys: none, run: () => cluster({ kind: 'dbsize' }, 'dbsize', asInt) },
  type: {
    arity: 2,
    flags: r,
    keys: one,
    run: (a) => cluster({ kind: 'type', key: a.key(1) }, 'type', (o) => (o.kind === 'int' ? { t: 'simple', s: o.value === 1 ? 'string' : 'none' } : undefined)),
  },
  expire: { arity: -3, flags: w, keys: one, run: (a) => expireCommand(a, 'ex') },
  pexpire: { arity: -3, flags: w, keys: one, run: (a) => expireCommand(a, 'px') },
  expireat: { arity: -3, flags: w, keys: one, run: (a) => expireCommand(a, 'exat') },
  pexpireat: { arity: -3, flags: w, keys: one, run: (a) => expireCommand(a, 'pxat') },
  ttl: {
    arity: 2,
    flags: r,
    keys: one,
    // Redis rounds the seconds left to the nearest second.
    run: (a) => cluster({ kind: 'pttl', key: a.key(1) }, 'ttl', (o) => (o.kind === 'int' ? int(o.value < 0 ? o.value : Math.floor((o.value + 500) / 1000)) : undefined)),
  },
  pttl: { arity: 2, flags: r, keys: one, run: (a) => cluster({ kind: 'pttl', key: a.key(1) }, 'pttl', asInt) },
  scan: { arity: -2, flags: r, keys: none, run: scanCommand },
  ping: {
    arity: -1,
    flags: fast,
    keys: none,
    run: (a) => {
      if (a.length > 2) throw new Refusal("ERR wrong number of arguments for 'ping' command");
      return { kind: 'local', reply: a.length === 2 ? bulk(Buffer.from(a.word(1), 'latin1')) : { t: 'simple', s: 'PONG' } };
    },
  },
  echo: { arity: 2, flags: fast, keys: none, run: (a) => ({ kind: 'local', reply: bulk(Buffer.from(a.word(1), 'latin1')) }) },
  hello: { arity: -1, flags: fast, keys: none, run: helloCommand },
  client: { arity: -2, flags: fast, keys: none, run: (a, s) => clientCommand(a, s) },
  select: {
    arity: 2,
    flags: fast,
    keys: none,
    run: (a) => {
      const db = a.integer(1);
      if (db !== 0) throw new Refusal('ERR DB index is out of range');
      return { kind: 'local', reply: ok };
    },
  },
  command: { arity: -1, flags: fast, keys: none, run: commandCommand },
  info: { arity: -1, flags: fast, keys: none, run: (_a, s, facts) => infoCommand(facts, s) },
  config: {
    arity: -2,
    flags: fast,
    keys: none,
    run: (a) => {
      // No configuration parameter is exposed: CONFIG GET matches none, as Redis does for an unknown one.
      if (a.keyword(1) !== 'get') throw new Refusal(`ERR unknown subcommand '${a.word(1)}'. Try CONFIG HELP.`);
      if (a.length < 3) throw new Refusal("ERR wrong number of arguments for 'config|get' command");
      return { kind: 'local', reply: { t: 'map', entries: [] } };
    },
  },
  quit: { arity: -1, flags: fast, keys: none, run: () => ({ kind: 'local', reply: ok, close: true }) },
};

/** Redis' unknown-command error: the name and the start of the arguments, quoted. */
function unknownCommand(raw: readonly Buffer[]): string {
  let args = '';
  for (let i = 1; i < raw.length && args.length < 128; i++) args += `'${raw[i]!.toString('latin1').slice(0, 128 - args.length)}' `;
  return `ERR unknown command '${raw[0]!.toString('latin1').slice(0, 128)}', with args beginning with: ${args}`;
}

/**
 * Translates one command line. Never throws: every refusal is a local error reply. Local
 * commands change `session` here, in command order.
 */
export function translate(raw: readonly Buffer[], session: Session, facts: ServerFacts): Action {
  if (raw.length === 0) return { kind: 'local', reply: error('ERR empty command') };
  const name = raw[0]!.toString('latin1').toLowerCase();
  const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
  if (spec === undefined) return { kind: 'local', reply: error(unknownCommand(raw)) };
  if (spec.arity > 0 ? raw.length !== spec.arity : raw.length < -spec.arity) {
    return { kind: 'local', reply: error(`ERR wrong number of arguments for '${name}' command`) };
  }
  try {
    return spec.run(new Args(raw), session, facts);
  } catch (e) {
    if (e instanceof Refusal) return { kind: 'local', reply: error(e.message) };
    throw e;
  }
}

