/**
 * The RESP parser (any chunking, inline commands, limits, malformed input, fuzz), the reply
 * encoder (RESP2 and RESP3), the command translation (Redis' error texts), and the gateway's
 * multiplexing over a store run in-process (the real-cluster test is test/runtime/resp.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { RespParser, RespProtocolError, type RespLimits } from './parser.ts';
import { replyBytes, type RespValue } from './reply.ts';
import { parseInteger, translate, type ServerFacts, type Session } from './commands.ts';
import { RespGateway, defaultRespLimits } from './gateway.ts';
import { KvStore } from '../store.ts';
import { decodeKvRequest } from '../ops.ts';
import type { Invoker } from '../client.ts';

const limits: RespLimits = { bulkBytesMax: 64, argumentsMax: 8, lineBytesMax: 32, commandBytesMax: 128 };

function encodeCommand(args: readonly Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(`*${args.length}\r\n`), ...args.flatMap((a) => [Buffer.from(`$${a.length}\r\n`), a, Buffer.from('\r\n')])]);
}

/** Feeds `bytes` in pieces cut at `cuts` and collects every command (or the error). */
function parseAll(bytes: Buffer, cuts: readonly number[], l: RespLimits = limits): { commands: Buffer[][]; error?: RespProtocolError } {
  const p = new RespParser(l);
  const commands: Buffer[][] = [];
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, bytes.length]) {
    p.push(bytes.subarray(from, to));
    from = to;
    for (;;) {
      let c: Buffer[] | undefined;
      try {
        c = p.next();
      } catch (e) {
        if (e instanceof RespProtocolError) return { commands, error: e };
        throw e;
      }
      if (c === undefined) break;
      commands.push(c);
    }
  }
  return { commands };
}

const arbArg = fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b));
const arbCommand = fc.array(arbArg, { minLength: 1, maxLength: 5 });

void test('parser: pipelined RESP arrays come out whole and in order, however the bytes are cut', () => {
  fc.assert(
    fc.property(fc.array(arbCommand, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (cmds, cuts) => {
      const bytes = Buffer.concat(cmds.map(encodeCommand));
      const got = parseAll(bytes, cuts);
      assert.equal(got.error, undefined);
      assert.deepStrictEqual(got.commands.map((c) => c.map((a) => a.toString('hex'))), cmds.map((c) => c.map((a) => a.toString('hex'))));
    }),
    { seed: 3001, numRuns: 500 },
  );
});

void test('parser: inline commands split like Redis (spaces, double and single quotes, escapes); empty lines and arrays are skipped', () => {
  const got = parseAll(Buffer.from('PING\r\nset a "b c\\x41\\n" \'it\\\'s\'\n\r\n*0\r\n*-1\r\nGET  a\r\n'), []);
  assert.equal(got.error, undefined);
  assert.deepStrictEqual(got.commands.map((c) => c.map(String)), [['PING'], ['set', 'a', 'b cA\n', "it's"], ['GET', 'a']]);
  assert.match(parseAll(Buffer.from('set "a\r\n'), []).error?.message ?? '', /unbalanced quotes/);
  assert.match(parseAll(Buffer.from('set "a"b\r\n'), []).error?.message ?? '', /unbalanced quotes/);
});

void test('parser: every limit is enforced with a Redis-style protocol error', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['bulk over bulkBytesMax', Buffer.from('*1\r\n$65\r\n'), /invalid bulk length/],
    ['negative bulk length', Buffer.from('*1\r\n$-1\r\n'), /invalid bulk length/],
    ['too many arguments', Buffer.from('*9\r\n'), /invalid multibulk length/],
    ['non-numeric count', Buffer.from('*x\r\n'), /invalid multibulk length/],
    ['count with a plus sign', Buffer.from('*+1\r\n'), /invalid multibulk length/],
    ['not a bulk', Buffer.from('*2\r\n$3\r\nfoo\r\n:1\r\n'), /expected '\$', got ':'/],
    ['bulk without CRLF', Buffer.from('*1\r\n$3\r\nfooXY'), /not followed by CRLF/],
    ['header without CR', Buffer.from('*1\n'), /not terminated by CRLF/],
    ['inline line too long', Buffer.from('x'.repeat(40)), /too big inline request/],
    ['array header too long', Buffer.from(`*${'1'.repeat(40)}`), /too big mbulk count string/],
    ['command over commandBytesMax', encodeCommand([Buffer.alloc(60), Buffer.alloc(60), Buffer.alloc(60)]), /exceeds the request size limit/],
    ['inline with too many arguments', Buffer.from('a b c d e f g h i\r\n'), /too many arguments/],
  ];
  for (const [name, bytes, re] of cases) {
    const got = parseAll(bytes, [1, 3, 7]);
    assert.ok(got.error instanceof RespProtocolError, name);
    assert.match(got.error.message, re, name);
    assert.equal(got.error.code, 'resp_protocol');
  }
  // A rejected parser stays rejected.
  const p = new RespParser(limits);
  p.push(Buffer.from('*x\r\n*1\r\n$1\r\na\r\n'));
  assert.throws(() => p.next(), RespProtocolError);
  assert.throws(() => p.next(), RespProtocolError);
});

void test('parser fuzz: garbage (random bytes, corrupted valid streams) never throws anything but RespProtocolError, and holds bounded memory', () => {
  const corrupted = fc
    .tuple(fc.array(arbCommand, { minLength: 1, maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
    .map(([cmds, flips]) => {
      const b = Buffer.concat(cmds.map(encodeCommand));
      for (const [at, v] of flips) b[at % b.length] = v;
      return b;
    });
  const typical = fc.array(fc.constantFrom('*', '$', '\r', '\n', '\r\n', '-', '0', '1', '9', '64', '65', ' ', '"', "'", '\\', 'x', 'a', '\0'), { maxLength: 40 }).map((parts) => Buffer.from(parts.join('')));
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), corrupted, typical), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
      const p = new RespParser(limits);
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const to of [...points, bytes.length]) {
        p.push(bytes.subarray(from, to));
        from = to;
        for (;;) {
          let c: Buffer[] | undefined;
          try {
            c = p.next();
          } catch (e) {
            assert.ok(e instanceof RespProtocolError, `only RespProtocolError escapes, got ${String(e)}`);
            return;
          }
          if (c === undefined) break;
          assert.ok(c.length >= 1 && c.length <= limits.argumentsMax);
          for (const a of c) assert.ok(a.length <= limits.bulkBytesMax);
        }
        // Waiting for more: what is held never exceeds one element's worth plus a chunk.
        assert.ok(p.bufferedBytes <= limits.bulkBytesMax + limits.lineBytesMax + bytes.length);
      }
    }),
    { seed: 3002, numRuns: 3000 },
  );
});

void test('parser: a large bulk in many small chunks is joined once it is complete (no rescans)', () => {
  const l: RespLimits = { ...defaultRespLimits };
  const value = Buffer.alloc(1 << 20, 0x61);
  const bytes = encodeCommand([Buffer.from('SET'), Buffer.from('k'), value]);
  const p = new RespParser(l);
  let got: Buffer[] | undefined;
  for (let i = 0; i < bytes.length; i += 4096) {
    p.push(bytes.subarray(i, i + 4096));
    got = p.next() ?? got;
  }
  assert.ok(got !== undefined);
  assert.equal(got[2]!.length, value.length);
});

// ---------------------------------------------------------------------------------------------
// Replies and translation.

void test('replies: null is $-1 in RESP2 and _ in RESP3; maps are flat arrays in RESP2 and % in RESP3', () => {
  const v: RespValue = { t: 'array', items: [{ t: 'null' }, { t: 'int', n: -2 }, { t: 'bulk', b: 'ключ' }, { t: 'map', entries: [[{ t: 'bulk', b: 'a' }, { t: 'simple', s: 'x\r\ny' }]] }] };
  assert.equal(replyBytes(v, 2).toString(), '*4\r\n$-1\r\n:-2\r\n$8\r\nключ\r\n*2\r\n$1\r\na\r\n+x  y\r\n');
  assert.equal(replyBytes(v, 3).toString(), '*4\r\n_\r\n:-2\r\n$8\r\nключ\r\n%1\r\n$1\r\na\r\n+x  y\r\n');
});

const facts: ServerFacts = { version: '9.9.9', stats: () => ({ queued: 0 }) };
function run(args: string[], s: Session = { proto: 2, name: null, id: 7 }): string {
  const a = translate(args.map((x) => Buffer.from(x)), s, facts);
  if (a.kind === 'local') return replyBytes(a.reply, s.proto).toString();
  return `cluster:${JSON.stringify(a.command)}`;
}

void test('translate: Redis error texts for unknown commands, arity, integers, syntax, sizes and UTF-8', () => {
  assert.equal(run(['foo', 'a', 'b']), "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
  assert.equal(run(['FOO']), "-ERR unknown command 'FOO', with args beginning with: \r\n");
  assert.equal(run(['get']), "-ERR wrong number of arguments for 'get' command\r\n");
  assert.equal(run(['GET', 'a', 'b']), "-ERR wrong number of arguments for 'get' command\r\n");
  assert.equal(run(['mset', 'a', 'b', 'c']), "-ERR wrong number of arguments for 'mset' command\r\n");
  assert.equal(run(['incrby', 'a', '1.5']), '-ERR value is not an integer or out of range\r\n');
  assert.equal(run(['incrby', 'a', '+1']), '-ERR value is not an integer or out of range\r\n');
  assert.equal(run(['incrby', 'a', '99999999999999999999']), '-ERR value is not an integer or out of range\r\n');
  assert.equal(run(['set', 'a', 'b', 'nx', 'xx']), '-ERR syntax error\r\n');
  assert.equal(run(['set', 'a', 'b', 'ex']), '-ERR syntax error\r\n');
  assert.equal(run(['set', 'a', 'b', 'ex', '0']), "-ERR invalid expire time in 'set' command\r\n");
  assert.equal(run(['set', 'a', 'b', 'ex', 'x']), '-ERR value is not an integer or out of range\r\n');
  assert.equal(run(['set', 'a', 'b', 'ex', '1', 'px', '1']), '-ERR syntax error\r\n');
  assert.equal(run(['select', '1']), '-ERR DB index is out of range\r\n');
  assert.equal(run(['select', '0']), '+OK\r\n');
  assert.equal(run(['scan', 'x']), '-ERR invalid cursor\r\n');
  assert.equal(run(['client', 'nope']), "-ERR unknown subcommand 'nope'. Try CLIENT HELP.\r\n");
  assert.match(run(['set', 'k'.repeat(1025), 'v']), /^-ERR key exceeds maximum allowed size \(1024 bytes\)/);
  const bad = translate([Buffer.from('set'), Buffer.from([0xff, 0xfe]), Buffer.from('v')], { proto: 2, name: null, id: 1 }, facts);
  assert.ok(bad.kind === 'local' && bad.reply.t === 'error' && /UTF-8/.test(bad.reply.s));
  assert.deepStrictEqual(parseInteger('-0'), undefined);
  assert.deepStrictEqual(parseInteger('007'), undefined);
  assert.deepStrictEqual(parseInteger('-42'), -42);
});

void test('translate: commands map to store commands with their options; local commands answer at once and change the session', () => {
  assert.equal(run(['SET', 'k', 'v', 'NX', 'GET', 'PX', '1500']), 'cluster:{"kind":"set","key":"k","value":"v","when":"nx","get":true,"expiry":{"kind":"in","ms":1500}}');
  assert.equal(run(['set', 'k', 'v', 'exat', '2']), 'cluster:{"kind":"set","key":"k","value":"v","when":"always","get":false,"expiry":{"kind":"at","ms":2000}}');
  assert.equal(run(['set', 'k', 'v', 'keepttl', 'xx']), 'cluster:{"kind":"set","key":"k","value":"v","when":"xx","get":false,"expiry":{"kind":"keep"}}');
  assert.equal(run(['decrby', 'k', '5']), 'cluster:{"kind":"incr","key":"k","delta":-5}');
  assert.equal(run(['expire', 'k', '-3']), 'cluster:{"kind":"expire","key":"k","expiry":{"kind":"in","ms":-3000}}');
  assert.equal(run(['scan', '0', 'MATCH', 'a*', 'COUNT', '100000']), 'cluster:{"kind":"scan","cursor":0,"match":"a*","count":1000}');
  assert.equal(run(['ping']), '+PONG\r\n');
  assert.equal(run(['ping', 'hi']), '$2\r\nhi\r\n');
  assert.equal(run(['echo', 'x y']), '$3\r\nx y\r\n');
  const s: Session = { proto: 2, name: null, id: 7 };
  assert.equal(run(['client', 'setname', 'me'], s), '+OK\r\n');
  assert.equal(run(['client', 'getname'], s), '$2\r\nme\r\n');
  assert.equal(run(['client', 'setname', 'a b'], s), '-ERR Client names cannot contain spaces, newlines or special characters.\r\n');
  assert.equal(run(['client', 'setname', ''], { ...s }), '+OK\r\n');
  const cleared: Session = { proto: 2, name: 'x', id: 1 };
  run(['client', 'setname', ''], cleared);
  assert.equal(cleared.name, null, 'an empty name clears it');
  assert.equal(run(['hello', '4'], s), '-NOPROTO unsupported protocol version\r\n');
  assert.equal(s.proto, 2);
  const hello = run(['hello', '3'], s);
  assert.equal(s.proto, 3);
  assert.equal(hello, '%7\r\n$6\r\nserver\r\n$7\r\nbulwark\r\n$7\r\nversion\r\n$5\r\n9.9.9\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n');
  assert.equal(run(['client', 'getname'], { proto: 3, name: null, id: 1 }), '_\r\n');
  assert.match(run(['command', 'count']), /^:\d+\r\n$/);
  assert.match(run(['command', 'info', 'get', 'nope']), /^\*2\r\n\*6\r\n\$3\r\nget\r\n:2\r\n/);
  assert.equal(run(['config', 'get', 'save']), '*0\r\n');
});

// ---------------------------------------------------------------------------------------------
// The gateway over an in-process store, with an invoker whose replies the test releases.

/** Runs requests on a KvStore, one batch per request, when the test says so. */
class HeldInvoker implements Invoker {
  readonly store = new KvStore();
  readonly requests: Uint8Array[] = [];
  private held: (() => void)[] = [];
  hold = true;
  private time = 1000;
  invoke(op: Uint8Array): Promise<Uint8Array> {
    this.requests.push(op);
    return new Promise((resolve) => {
      const go = (): void => {
        this.time += 10;
        resolve(this.store.execute({ seq: this.requests.length, time: this.time, seed: 0, requests: [{ client: 1, reqId: this.requests.length, op }] })[0]!);
      };
      if (this.hold) this.held.push(go);
      else setImmediate(go); // a reply comes back through the event loop, as from a socket
    });
  }
  release(): void {
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }
}

/** A raw socket that collects what it receives. */
async function rawClient(port: number): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString()));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => data, closed };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

void test('gateway: commands from several connections read while a request is in flight share the next request; replies keep per-connection order, local ones included', async () => {
  const inv = new HeldInvoker();
  const gw = new RespGateway({ invoker: inv, requestBytesMax: 64 * 1024 });
  const { port } = await gw.listen('127.0.0.1', 0);
  try {
    const a = await rawClient(port);
    const b = await rawClient(port);
    a.socket.write('SET x 1\r\n');
    await until('the first request', () => inv.requests.length === 1);
    // While it is in flight: pipelined commands on two connections, locals between them.
    a.socket.write('INCR x\r\nPING\r\nGET x\r\nECHO e\r\n');
    b.socket.write('PING\r\nMGET x y\r\nHELLO 3\r\nGET y\r\n');
    await until('both connections read', () => gw.stats.commands === 9);
    await until('b: a local command with nothing before it answers at once', () => b.received() === '+PONG\r\n');
    assert.equal(a.received(), '', 'nothing overtakes the pending SET');
    inv.release();
    await until('the second request', () => inv.requests.length === 2);
    const multi = decodeKvRequest(inv.requests[1]!);
    assert.ok(multi?.kind === 'multi');
    assert.deepStrictEqual(multi.commands.map((c) => c.kind), ['incr', 'get', 'mget', 'get']);
    inv.hold = false;
    inv.release();
    await until('all replies', () => a.received().endsWith('$1\r\ne\r\n') && b.received().endsWith('_\r\n'));
    assert.equal(a.received(), '+OK\r\n:2\r\n+PONG\r\n$1\r\n2\r\n$1\r\ne\r\n');
    assert.match(b.received(), /^\+PONG\r\n\*2\r\n\$1\r\n2\r\n\$-1\r\n%7\r\n[^]*_\r\n$/);
    assert.equal(gw.stats.requests, 2);
    assert.equal(gw.stats.clusterCommands, 5);
    a.socket.destroy();
    b.socket.destroy();
  } finally {
    await gw.close();
  }
});

void test('gateway: a protocol error closes only its connection, after the replies it is owed; a full queue stalls reading instead of dropping', async () => {
  const inv = new HeldInvoker();
  inv.hold = false;
  const gw = new RespGateway({ invoker: inv, requestBytesMax: 64 * 1024, pendingCommandsMax: 4 });
  const { port } = await gw.listen('127.0.0.1', 0);
  try {
    const bad = await rawClient(port);
    const good = await rawClient(port);
    bad.socket.write('SET k v\r\n*1\r\n$99999999999\r\n');
    await bad.closed;
    assert.equal(bad.received(), '+OK\r\n-ERR Protocol error: invalid bulk length\r\n');
    assert.equal(gw.stats.protocolErrors, 1);
    good.socket.write('GET k\r\n');
    await until('the good connection answered', () => good.received() === '$1\r\nv\r\n');

    // 40 pipelined INCRs with room for 4 queued commands: the gateway stalls and resumes, losing none.
    inv.hold = true;
    good.socket.write('INCR n\r\n'.repeat(40));
    await until('a stall', () => gw.stats.stalls > 0);
    inv.hold = false;
    inv.release();
    await until('40 replies', () => (good.received().match(/:\d+\r\n/g) ?? []).length === 40);
    assert.equal(good.received(), '$1\r\nv\r\n' + Array.from({ length: 40 }, (_, i) => `:${i + 1}\r\n`).join(''));
    good.socket.destroy();
  } finally {
    await gw.close();
  }
});

void test('gateway: a command whose encoding exceeds the cluster requestBytesMax is refused alone; the next one still runs', async () => {
  const inv = new HeldInvoker();
  inv.hold = false;
  const gw = new RespGateway({ invoker: inv, requestBytesMax: 64 });
  const { port } = await gw.listen('127.0.0.1', 0);
  try {
    const c = await rawClient(port);
    c.socket.write(`SET k ${'v'.repeat(100)}\r\nSET k small\r\nGET k\r\n`);
    await until('three replies', () => c.received().endsWith('$5\r\nsmall\r\n'));
    assert.match(c.received(), /^-ERR command too large for the cluster: \d+ bytes encoded, requestBytesMax is 64\r\n\+OK\r\n\$5\r\nsmall\r\n$/);
    assert.ok(inv.requests.every((r) => r.length <= 64), 'no request exceeds requestBytesMax');
    c.socket.destroy();
  } finally {
    await gw.close();
  }
});

void test('gateway: stalled connections take turns, so one long pipeline cannot starve a short one', async () => {
  const inv = new HeldInvoker();
  inv.hold = false;
  const gw = new RespGateway({ invoker: inv, requestBytesMax: 64 * 1024, pendingCommandsMax: 4 });
  const { port } = await gw.listen('127.0.0.1', 0);
  try {
    const long = await rawClient(port);
    const short = await rawClient(port);
    inv.hold = true;
    long.socket.write('INCR a\r\n'.repeat(400));
    await until('the long pipeline stalls', () => gw.stats.stalls > 0);
    short.socket.write('INCR b\r\n');
    // Stalls: the long pipeline when the queue fills, again after the held request took its
    // commands, then the short one.
    await until('both stalled', () => gw.stats.stalls >= 3);
    inv.hold = false;
    inv.release();
    await until('the short reply', () => short.received() === ':1\r\n');
    // How many of the long pipeline's commands the cluster saw before the short one.
    const keys = inv.requests.flatMap((r) => {
      const m = decodeKvRequest(r);
      return m?.kind === 'multi' ? m.commands.map((c) => (c.kind === 'incr' ? c.key : '?')) : [];
    });
    const longBefore = keys.indexOf('b');
    assert.ok(longBefore >= 0 && longBefore < 20, `the short command went out after ${longBefore} of the 400 long ones`);
    await until('the long pipeline ends', () => (long.received().match(/:\d+\r\n/g) ?? []).length === 400);
    long.socket.destroy();
    short.socket.destroy();
  } finally {
    await gw.close();
  }
});

void test('gateway: a pipeline of local commands longer than the per-connection bound is answered in full without the cluster', async () => {
  const inv = new HeldInvoker();
  const gw = new RespGateway({ invoker: inv, requestBytesMax: 64 * 1024, connectionSlotsMax: 16 });
  const { port } = await gw.listen('127.0.0.1', 0);
  try {
    const c = await rawClient(port);
    c.socket.write('PING\r\n'.repeat(1000));
    await until('1000 PONGs', () => c.received().length === '+PONG\r\n'.length * 1000);
    assert.equal(c.received(), '+PONG\r\n'.repeat(1000));
    assert.equal(inv.requests.length, 0);
    c.socket.destroy();
  } finally {
    await gw.close();
  }
});
