/** Cluster and key files: `bulwark init` output loads; every broken field is named at once. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterPaths, initCluster, loadClusterFile, loadKeyFile, parseClusterFile } from '../../src/runtime/cluster-file.ts';
import { ConfigError } from '../../src/core/errors.ts';

function fresh(): string {
  return mkdtempSync(join(tmpdir(), 'bulwark-cf-'));
}

test('init writes a cluster file that loads, and 0600 key files that match it', () => {
  const dir = fresh();
  const cf = initCluster({ dir, u: 1, r: 1, clients: 3 });
  assert.equal(cf.nodes.length, 4);
  const loaded = loadClusterFile(clusterPaths(dir).file);
  assert.deepEqual(loaded.nodes.map((n) => n.stages), [['auth', 'order', 'exec'], ['auth', 'order', 'exec'], ['auth', 'order', 'exec'], ['auth', 'order']]);
  for (const n of cf.nodes) {
    const path = clusterPaths(dir).nodeKey(n.id);
    assert.equal(statSync(path).mode & 0o777, 0o600, `${path} is private`);
    assert.deepEqual(Buffer.from(loadKeyFile(path).publicKey), Buffer.from(n.publicKey));
  }
  assert.throws(() => initCluster({ dir, u: 1, r: 1 }), ConfigError, 'refuses to overwrite');
  assert.throws(() => initCluster({ dir: fresh(), u: 2, r: 1, nodes: 5 }), (e: unknown) => e instanceof ConfigError && /needs at least 6 nodes/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('a cluster file with several broken fields reports every one, by path', () => {
  const dir = fresh();
  initCluster({ dir, u: 1, r: 1, clients: 2 });
  const text = readFileSync(clusterPaths(dir).file, 'utf8')
    .replace('port: 7101', 'port: 70000')
    .replace(/(- id: 2[\s\S]*?publicKey: )[^\n]+/, '$1not-a-key')
    .replace('u: 1', 'u: 1\nflavour: spicy')
    .replace('checkpointInterval: 64', 'checkpointInterval: 1');
  try {
    parseClusterFile(text, 'cluster.yaml');
    assert.fail('should not load');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const paths = e.problems.map((p) => p.path);
    assert.ok(paths.includes('nodes[1].port'), paths.join(', '));
    assert.ok(paths.includes('nodes[2].publicKey'), paths.join(', '));
    assert.ok(paths.includes('flavour'), paths.join(', '));
    assert.ok(paths.includes('checkpointInterval'), paths.join(', '));
  }
  rmSync(dir, { recursive: true, force: true });
});

test('duplicate endpoints, unknown stages, missing replicas, garbage YAML: each named', () => {
  const dir = fresh();
  initCluster({ dir, u: 1, r: 1, clients: 1 });
  const base = readFileSync(clusterPaths(dir).file, 'utf8');
  const dup = base.replace('port: 7101', 'port: 7100');
  assert.throws(() => parseClusterFile(dup), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => /used twice/.test(p.message)));
  const badStage = base.replace('- order\n', '- ordre\n');
  assert.throws(() => parseClusterFile(badStage), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => /unknown stage "ordre"/.test(p.message)));
  assert.equal(parseClusterFile(base).protocol.clientSignatures, false, 'signed client requests are off by default');
  assert.equal(parseClusterFile(base.replace('clientSignatures: false', 'clientSignatures: true')).protocol.clientSignatures, true);
  assert.throws(
    () => parseClusterFile(base.replace('clientSignatures: false', 'clientSignatures: sometimes')),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path === 'clientSignatures' && /true or false/.test(p.message)),
  );
  assert.throws(() => parseClusterFile('u: [1\n'), (e: unknown) => e instanceof ConfigError && /not valid YAML/.test(e.message));
  assert.throws(() => parseClusterFile('just a string'), ConfigError);
  rmSync(dir, { recursive: true, force: true });
});

test('a key file whose public key does not match its private key is refused, naming the file', () => {
  const dir = fresh();
  initCluster({ dir, u: 1, r: 0, clients: 1 });
  const a = clusterPaths(dir).nodeKey(0);
  const b = clusterPaths(dir).nodeKey(1);
  const pubB = /publicKey: (.+)/.exec(readFileSync(b, 'utf8'))![1]!;
  writeFileSync(a, readFileSync(a, 'utf8').replace(/publicKey: .+/, `publicKey: ${pubB}`));
  assert.throws(() => loadKeyFile(a), (e: unknown) => e instanceof ConfigError && e.message.includes(a) && /does not match privateKey/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('runtime.floodCutOffMs: defaults to 60 s when absent, and is validated', () => {
  const dir = fresh();
  initCluster({ dir, u: 1, r: 1, clients: 1 });
  const base = readFileSync(clusterPaths(dir).file, 'utf8');
  assert.equal(parseClusterFile(base.replace('  floodCutOffMs: 60000\n', '')).runtime.floodCutOffMs, 60_000, 'older cluster files load');
  assert.equal(parseClusterFile(base.replace('floodCutOffMs: 60000', 'floodCutOffMs: 3000')).runtime.floodCutOffMs, 3000);
  for (const bad of ['50', '1.5', 'soon', '100000000']) {
    assert.throws(
      () => parseClusterFile(base.replace('floodCutOffMs: 60000', `floodCutOffMs: ${bad}`)),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path === 'runtime.floodCutOffMs'),
      bad,
    );
  }
  rmSync(dir, { recursive: true, force: true });
});
