import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  checkConfig,
  defaultConfig,
  defaultTunables,
  deriveCluster,
  primaryOf,
  stageNames,
  validateConfig,
  type NodeSpec,
  type ProtocolConfig,
} from './config.ts';
import { ConfigError } from './errors.ts';
import { stageCounts } from './quorum.ts';

/** Casts untrusted data to a config, as a loader of parsed YAML or JSON would. */
function asConfig(x: unknown): ProtocolConfig {
  return x as ProtocolConfig;
}

/** Runs validateConfig and returns the ConfigError it throws (fails the test if it throws anything else). */
function configErrorOf(cfg: ProtocolConfig): ConfigError {
  try {
    validateConfig(cfg);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    assert.fail(`expected a ConfigError, got ${String(e)}`);
  }
  assert.fail('expected validateConfig to throw a ConfigError');
}

const faultModels: readonly (readonly [number, number])[] = [
  [1, 0],
  [1, 1],
  [2, 1],
  [1, 2],
  [2, 2],
  [0, 0],
];

void test('defaultConfig(u, r) validates and deriveCluster has the Table 6.1 member counts and §6.2.1 quorums', () => {
  for (const [u, r] of faultModels) {
    const cfg = defaultConfig({ u, r, clients: 3 });
    assert.deepEqual(checkConfig(cfg), [], `u=${u} r=${r}`);
    assert.equal(validateConfig(cfg), cfg);
    const c = deriveCluster(cfg);
    const need = stageCounts(u, r);
    const m = Math.max(u, r);
    for (const st of stageNames) {
      const members = c[st];
      assert.equal(members.nodes.length, need[st], `${st} members u=${u} r=${r}`);
      assert.deepEqual(members.quorum, { small: r + 1, medium: need[st] - u, large: need[st] }, `${st} quorums u=${u} r=${r}`);
      // Replica index is the position in the stage's node list.
      members.nodes.forEach((id, i) => {
        assert.equal(members.indexOf.get(id), i);
      });
      assert.equal(members.indexOf.size, members.nodes.length);
    }
    assert.equal(cfg.nodes.length, Math.max(need.auth, need.order, need.exec));
    assert.equal(c.u, u);
    assert.equal(c.r, r);
    assert.equal(c.authRowsPrimary, r === 0 ? 1 : m + r + 1);
    assert.equal(c.authRowsBackup, r === 0 ? 1 : m + 1);
    assert.equal(c.cpTokenQuorum, m + 1);
    assert.deepEqual([...c.clients].sort((a, b) => a - b), [0, 1, 2]);
  }
});

void test('defaultConfig keeps tunable overrides and the rest of the defaults', () => {
  const cfg = defaultConfig({ u: 1, r: 1, clients: 1, tunables: { checkpointInterval: 8, batchSizeMax: 16 } });
  assert.equal(cfg.checkpointInterval, 8);
  assert.equal(cfg.batchSizeMax, 16);
  assert.equal(cfg.viewChangeTimeoutMs, defaultTunables.viewChangeTimeoutMs);
  assert.deepEqual(checkConfig(cfg), []);
});

void test('primaryOf(view) cycles through the order members: order[view mod n]', () => {
  for (const [u, r] of faultModels) {
    const c = deriveCluster(defaultConfig({ u, r, clients: 1 }));
    const n = c.order.nodes.length;
    for (let view = 0; view < 4 * n; view++) {
      assert.equal(primaryOf(c, view), c.order.nodes[view % n]);
    }
    // Each order member is primary exactly once in any n consecutive views.
    for (let start = 0; start < 2 * n; start++) {
      const primaries = new Set(Array.from({ length: n }, (_, k) => primaryOf(c, start + k)));
      assert.equal(primaries.size, n);
    }
  }
});

void test('primaryOf returns node ids, not indices, when order members are sparse', () => {
  const nodes: NodeSpec[] = [
    { id: 7, stages: ['auth', 'exec'] },
    { id: 10, stages: ['auth', 'order', 'exec'] },
    { id: 20, stages: ['auth', 'order', 'exec'] },
    { id: 30, stages: ['auth', 'order'] },
    { id: 40, stages: ['order'] },
  ];
  const c = deriveCluster({ ...defaultConfig({ u: 1, r: 1, clients: 1 }), nodes });
  assert.deepEqual(c.order.nodes, [10, 20, 30, 40]);
  assert.deepEqual(c.exec.nodes, [7, 10, 20]);
  assert.equal(c.order.indexOf.get(7), undefined);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((v) => primaryOf(c, v)),
    [10, 20, 30, 40, 10, 20],
  );
});

void test('checkConfig reports every broken field of one config in a single ConfigError naming each path', () => {
  const base = defaultConfig({ u: 1, r: 1, clients: 3 });
  // u = 1, r = 1: auth 4, order 4, exec 3. This config breaks seven things at once.
  const cfg = asConfig({
    ...base,
    u: 11, // bad u: out of [0, 10]
    batchTimeoutMs: -5, // negative tunable
    clientRetryMs: 500,
    clientRetryMaxMs: 100, // below clientRetryMs
    nodes: [
      { id: 0, stages: ['auth', 'order', 'exec'] },
      { id: 0, stages: ['auth', 'exec'] }, // duplicate node id
      { id: 2, stages: ['auth', 'ordr', 'exec'] }, // unknown stage
      { id: 3, stages: ['auth'] },
    ],
    clients: [0, 1, 1], // duplicate client
  });
  const err = configErrorOf(cfg);
  assert.equal(err.code, 'config_invalid');
  assert.deepEqual(checkConfig(cfg), err.problems);
  const paths = err.problems.map((p) => p.path);
  const has = (path: string, pattern: RegExp): void => {
    assert.ok(
      err.problems.some((p) => p.path === path && pattern.test(p.message)),
      `missing problem at ${path} matching ${String(pattern)}; got ${JSON.stringify(err.problems)}`,
    );
  };
  has('u', /\[0, 10\].*11/);
  has('batchTimeoutMs', /-5/);
  has('clientRetryMaxMs', /clientRetryMs/);
  has('nodes[1].id', /duplicate node id 0/);
  has('nodes[2].stages', /unknown stage "ordr"/);
  has('nodes', /stage order needs at least \d+ replicas .* config has 1/);
  has('clients[2]', /duplicate client id 1/);
  // The error message lists every problem on its own line.
  for (const p of err.problems) assert.ok(err.message.includes(`  - ${p.path}: ${p.message}`));
  assert.match(err.message, new RegExp(`\\(${err.problems.length} problems\\)`));
  // No field that is fine is reported.
  for (const path of paths) {
    assert.ok(!['r', 'nodes[0].id', 'nodes[3].id', 'clients[0]', 'clients[1]', 'checkpointInterval'].includes(path), `spurious ${path}`);
  }
});

void test('checkConfig with a valid (u, r) reports too few order replicas independently of other problems', () => {
  const base = defaultConfig({ u: 1, r: 1, clients: 2 });
  const nodes = base.nodes.map((n) => (n.id === 0 ? { id: 0, stages: ['auth', 'exec'] as const } : n));
  const problems = checkConfig({ ...base, nodes, requestBytesMax: base.batchBytesMax + 1 });
  assert.deepEqual(
    problems.map((p) => p.path).sort(),
    ['nodes', 'requestBytesMax'],
  );
  assert.match(problems.find((p) => p.path === 'nodes')!.message, /stage order needs at least 4 replicas for u=1 r=1, config has 3/);
});

void test('deriveCluster and validateConfig throw ConfigError (not a partial cluster) for an invalid config', () => {
  const cfg = { ...defaultConfig({ u: 1, r: 1, clients: 1 }), pipelineMax: 0 };
  assert.throws(() => deriveCluster(cfg), (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0]!.path === 'pipelineMax');
});

void test('validateConfig rejects hand-picked garbage with a ConfigError: {}, null, scalars, toString-less objects', () => {
  const base = defaultConfig({ u: 1, r: 1, clients: 2 });
  const noString = JSON.parse('{"toString": 1}') as unknown;
  const nullProto = Object.create(null) as unknown;
  const inputs: unknown[] = [
    {},
    null,
    undefined,
    'u: 1',
    42,
    [],
    { ...base, u: null, r: '1' },
    { ...base, checkpointInterval: '64', batchSizeMax: null, readTimeoutMs: Number.NaN, statusIntervalMs: Infinity },
    { ...base, nodes: null },
    { ...base, nodes: [null, 3, 'x', [], { id: '1', stages: 'auth' }] },
    { ...base, clients: 'all' },
    { ...base, clients: [null, -1, 1.5, 2 ** 40] },
    { ...base, u: noString },
    { ...base, r: nullProto },
    { ...base, batchTimeoutMs: [noString] },
    { ...base, nodes: [{ id: 0, stages: [noString, nullProto, Symbol('s'), 1n] }] },
  ];
  for (const input of inputs) {
    const err = configErrorOf(asConfig(input));
    assert.ok(err.problems.length > 0);
    for (const p of err.problems) {
      assert.equal(typeof p.path, 'string');
      assert.ok(p.message.length > 0);
    }
  }
});

// Field values an untrusted (parsed) config might carry.
const garbage = fc.oneof(
  fc.anything(),
  fc.anything({ withNullPrototype: true, withBigInt: true, withBoxedValues: true, withSparseArray: true }),
  fc.constantFrom<unknown>(null, undefined, '', '1', -1, 1.5, Number.NaN, Infinity, [], {}, JSON.parse('{"toString": 1}')),
);
const garbageNode = fc.oneof(
  garbage,
  fc.record({ id: fc.oneof(garbage, fc.integer({ min: -2, max: 300 })), stages: fc.oneof(garbage, fc.array(fc.oneof(garbage, fc.constantFrom('auth', 'order', 'exec')), { maxLength: 4 })) }),
);
const configKeys = ['u', 'r', 'nodes', 'clients', ...Object.keys(defaultTunables)];

void test('validateConfig never throws anything but ConfigError when fc.anything() is mixed into fields (property)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<readonly [number, number]>(...faultModels),
      fc.dictionary(fc.constantFrom(...configKeys), garbage, { maxKeys: 5 }),
      fc.option(fc.array(garbageNode, { maxLength: 6 }), { nil: undefined }),
      fc.option(fc.array(garbage, { maxLength: 4 }), { nil: undefined }),
      ([u, r], overrides, nodes, clients) => {
        const cfg: Record<string, unknown> = { ...defaultConfig({ u, r, clients: 2 }), ...overrides };
        if (nodes !== undefined) cfg.nodes = nodes;
        if (clients !== undefined) cfg.clients = clients;
        let problems: readonly unknown[];
        try {
          problems = checkConfig(asConfig(cfg));
        } catch (e) {
          assert.fail(`checkConfig threw ${e instanceof Error ? e.name : typeof e}`);
        }
        try {
          validateConfig(asConfig(cfg));
          assert.equal(problems.length, 0);
        } catch (e) {
          assert.ok(e instanceof ConfigError, `validateConfig threw ${e instanceof Error ? e.name : typeof e}`);
          assert.ok(e.problems.length > 0);
          assert.equal(e.problems.length, problems.length);
        }
      },
    ),
    { seed: 1234, numRuns: 300 },
  );
});

void test('validateConfig on whole-object garbage (fc.anything() as the config) throws only ConfigError (property)', () => {
  fc.assert(
    fc.property(garbage, (x) => {
      try {
        validateConfig(asConfig(x));
      } catch (e) {
        assert.ok(e instanceof ConfigError, `validateConfig threw ${e instanceof Error ? e.name : typeof e}`);
        return;
      }
      assert.fail('garbage validated');
    }),
    { seed: 4321, numRuns: 300 },
  );
});
