/**
 * The RESP gateway against a real 4-process cluster on loopback: `bulwark kv serve --resp` runs as
 * its own process (one bulwark client), ioredis drives it with pipelines over several
 * connections, and the recorded history, mapped onto the checker's five operations, must be
 * linearizable. Also: Redis' answers to each supported command, RESP2/RESP3 nulls, an unknown
 * command, and a protocol error that closes one connection while another keeps working.
 * Nothing here asserts on speed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { ProcessCluster } from './harness.ts';
import { binPath } from '../../src/cli/cluster.ts';
import { checkLinearizable, type HistoryOp } from '../../src/sim/checkers/linearizability.ts';
import type { KvOp, KvOutput } from '../../src/services/kv/model.ts';

/** Starts `bulwark kv serve --resp 127.0.0.1:0` and resolves with the port it printed. */
async function startGateway(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [binPath, 'kv', 'serve', '--resp', '127.0.0.1:0', '--dir', dir], {
    env: { ...process.env, BULWARK_EXIT_WITH_PID: String(process.pid) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`the gateway did not start: ${out}`));
    }, 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited with ${String(code)}: ${out}`));
    });
  });
  return { child, port };
}

/** One Redis command of the workload, with the checker operation it stands for. */
interface Step {
  readonly args: [string, ...string[]];
  readonly op: KvOp;
  readonly output: (reply: unknown) => KvOutput;
}

function workloadStep(rand: (n: number) => number, conn: number, i: number): Step {
  const key = `k${rand(3)}`;
  const counter = `n${rand(2)}`;
  const value = `${conn}.${i}`;
  switch (rand(6)) {
    case 0:
    case 1:
      return { args: ['GET', key], op: { kind: 'get', key }, output: (r) => ({ kind: 'get', value: r as string | null }) };
    case 2:
      return { args: ['SET', key, value], op: { kind: 'put', key, value }, output: () => ({ kind: 'put' }) };
    case 3:
      return { args: ['INCR', counter], op: { kind: 'incr', key: counter, delta: 1 }, output: (r) => ({ kind: 'incr', value: r as number }) };
    case 4:
      return { args: ['DEL', key], op: { kind: 'del', key }, output: (r) => ({ kind: 'del', existed: r === 1 }) };
    default:
      return { args: ['SETNX', key, value], op: { kind: 'cas', key, expected: null, next: value }, output: (r) => ({ kind: 'cas', swapped: r === 1 }) };
  }
}

/** Pipelines of 1-8 commands on one connection, each recorded from before exec() to its answer. */
async function runConnection(r: Redis, conn: number, pipelines: number, history: HistoryOp[], now: () => number): Promise<void> {
  let seed = 11 + conn * 7919;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  let i = 0;
  for (let p = 0; p < pipelines; p++) {
    const steps = Array.from({ length: 1 + rand(8) }, () => workloadStep(rand, conn, i++));
    const pipe = r.pipeline();
    for (const s of steps) pipe.call(...s.args);
    const invoke = now();
    const first = history.length;
    for (const s of steps) history.push({ client: conn, op: s.op, output: undefined, invoke, complete: undefined });
    const results = await pipe.exec();
    const complete = now();
    assert.ok(results !== null);
    steps.forEach((s, j) => {
      const [err, reply] = results[j]!;
      assert.equal(err, null, `${s.args.join(' ')} failed: ${String(err)}`);
      history[first + j] = { ...history[first + j]!, output: s.output(reply), complete };
    });
  }
}

/** Sends raw bytes on a new connection; resolves with everything received until the server closes it. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(bytes));
    let data = '';
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.on('error', reject);
    s.on('close', () => {
      resolve(data);
    });
  });
}

test('RESP gateway on a 4-process cluster: ioredis pipelines over 4 connections are linearizable; Redis answers; a protocol error closes only its connection', { timeout: 120_000 }, async () => {
  const cluster = await ProcessCluster.start({ u: 1, r: 1 });
  let gateway: ChildProcess | undefined;
  const clients: Redis[] = [];
  try {
    const g = await startGateway(cluster.dir);
    gateway = g.child;
    const redis = (): Redis => {
      // ioredis defaults: RESP3 through HELLO 3, CLIENT SETINFO, and an INFO ready check.
      const r = new Redis({ port: g.port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
      clients.push(r);
      return r;
    };

    // --- Linearizability under pipelines and concurrent connections.
    const origin = performance.now();
    const now = (): number => Math.round((performance.now() - origin) * 1e6);
    const history: HistoryOp[] = [];
    const conns = [redis(), redis(), redis(), redis()];
    await Promise.all(conns.map((c) => c.connect()));
    await Promise.all(conns.map((c, i) => runConnection(c, i, 40, history, now)));
    const lin = checkLinearizable(history);
    assert.equal(lin.ok, true, lin.ok === false ? `not linearizable: ${lin.reason}` : 'checker undecided');
    assert.ok(lin.checked >= 4 * 40, `checked ${lin.checked} operations`);
    const info = await conns[0]!.info();
    const stat = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1]);
    assert.match(info, /^protocol:3\r?$/m, 'ioredis negotiated RESP3 with HELLO 3');
    assert.ok(stat('clusterCommands') >= history.length, info);
    assert.ok(stat('requests') < stat('clusterCommands'), `${stat('requests')} requests carried ${stat('clusterCommands')} commands: requests are shared`);

    // --- Answers, one command at a time, on a fresh keyspace prefix.
    const r = conns[0]!;
    assert.equal(await r.set('a', '1'), 'OK');
    assert.equal(await r.get('a'), '1');
    assert.equal(await r.get('missing'), null);
    assert.equal(await r.incr('c'), 1);
    assert.equal(await r.incrby('c', 5), 6);
    assert.equal(await r.decr('c'), 5);
    assert.equal(await r.decrby('c', 2), 3);
    assert.equal(await r.set('a', 'x'), 'OK');
    await assert.rejects(r.incr('a'), /ERR value is not an integer or out of range/);
    assert.deepStrictEqual(await r.mget('a', 'c', 'missing'), ['x', '3', null]);
    assert.equal(await r.exists('a', 'missing', 'a'), 2);
    assert.equal(await r.del('a', 'missing'), 1);
    assert.equal(await r.exists('a'), 0);
    assert.equal(await r.append('s', 'ab'), 2);
    assert.equal(await r.append('s', 'ключ'), 10);
    assert.equal(await r.strlen('s'), 10);
    assert.equal(await r.get('s'), 'abключ');
    assert.equal(await r.setnx('s', 'no'), 0);
    assert.equal(await r.setnx('t', '1'), 1);
    assert.equal(await r.getset('t', '2'), '1');
    assert.equal(await r.set('t', '3', 'GET'), '2');
    assert.equal(await r.set('t', '4', 'NX'), null);
    assert.equal(await r.set('nx-new', '4', 'XX'), null);
    assert.equal(await r.mset('m1', 'v1', 'm2', 'v2'), 'OK');
    assert.deepStrictEqual(await r.mget('m1', 'm2'), ['v1', 'v2']);
    assert.equal(await r.type('s'), 'string');
    assert.equal(await r.type('missing'), 'none');

    // Expiry by agreed batch time: batch times strictly increase, so a 1 ms deadline set by one
    // batch has passed by the next one, whatever the clocks do.
    assert.equal(await r.set('e', 'v'), 'OK');
    assert.equal(await r.ttl('e'), -1);
    assert.equal(await r.ttl('missing'), -2);
    assert.equal(await r.expire('e', 1000), 1);
    const ttl = await r.ttl('e');
    assert.ok(ttl > 0 && ttl <= 1000, `ttl ${ttl}`);
    const pttl = await r.pttl('e');
    assert.ok(pttl > 0 && pttl <= 1_000_000, `pttl ${pttl}`);
    assert.equal(await r.expire('missing', 10), 0);
    assert.equal(await r.pexpire('e', 1), 1);
    assert.equal(await r.get('e'), null);
    assert.equal(await r.set('p', 'v', 'PX', 1), 'OK');
    assert.equal(await r.exists('p'), 0);

    // DBSIZE: the workload's keys (k0-2, n0-1 that exist) plus the keys above.
    const expected = (await r.exists('k0', 'k1', 'k2', 'n0', 'n1')) + ['c', 's', 't', 'm1', 'm2'].length;
    assert.equal(await r.dbsize(), expected);

    // SCAN with MATCH and a small COUNT visits every matching key once.
    await r.mset(...Array.from({ length: 25 }, (_, i) => [`user:${i}`, String(i)]).flat());
    const seen: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', 'user:*', 'COUNT', 4);
      seen.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    assert.deepStrictEqual([...seen].sort(), Array.from({ length: 25 }, (_, i) => `user:${i}`).sort());

    // Unknown command and wrong arity: Redis' texts.
    await assert.rejects(r.call('foo', 'bar'), (e: Error) => e.message === "ERR unknown command 'foo', with args beginning with: 'bar' ");
    await assert.rejects(r.call('get'), (e: Error) => e.message === "ERR wrong number of arguments for 'get' command");

    // RESP2 until HELLO 3, RESP3 after it, on a raw connection; QUIT closes it after its +OK.
    const raw = await rawExchange(g.port, 'GET missing\r\nHELLO 3\r\nGET missing\r\nQUIT\r\n');
    assert.match(raw, /^\$-1\r\n%7\r\n\$6\r\nserver\r\n\$7\r\nbulwark\r\n[^]*\$5\r\nproto\r\n:3\r\n[^]*_\r\n\+OK\r\n$/);

    // --- A protocol error closes its own connection, after the replies owed; others keep working.
    const other = conns[1]!;
    const busy = runConnection(other, 9, 15, [], now);
    const bad = await rawExchange(g.port, 'SET pe 1\r\n*1\r\n$-5\r\nGET pe\r\n');
    assert.equal(bad, '+OK\r\n-ERR Protocol error: invalid bulk length\r\n');
    await busy;
    assert.equal(await other.get('pe'), '1');
    assert.match(await other.info(), /^protocolErrors:1\r?$/m);
  } finally {
    for (const c of clients) c.disconnect();
    if (gateway !== undefined && gateway.exitCode === null) {
      const exited = new Promise((resolve) => gateway!.once('exit', resolve));
      gateway.kill('SIGTERM');
      await exited;
    }
    await cluster.stop();
  }
});
