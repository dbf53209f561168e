/**
 * One simulated seed, end to end: draw a scenario from the seed (swarm testing: which faults,
 * how much, which replicas are faulty and how), run a KV workload through the faulty phase,
 * heal, require progress, then check everything.
 *
 * Checks on every seed:
 * - agreement of correct executors (batches, histories, checkpoint tokens) and of correct
 *   order replicas (committed digests), and no safety alarm from a correct replica;
 * - linearizability of the correct clients' KV history (per key);
 * - no acknowledged write lost: every write a correct client saw acknowledged is in the
 *   agreed executed log with the same reply;
 * - replay: each correct executor's final state equals a replay of the agreed log;
 * - liveness: after the heal, every correct client finishes its work within the window.
 * Determinism (same seed, same trace hash) is checked by running a seed twice (runSeedTwice).
 */
import { defaultConfig, deriveCluster, type Tunables } from '../core/config.ts';
import { clientPrincipal, nodePrincipal, principalKey } from '../crypto/provider.ts';
import type { Note } from '../stages/types.ts';
import { hex, requestCoreBytes, requestSignedBytes } from '../stages/common.ts';
import type { CanaryName, Canaries } from '../stages/types.ts';
import { KvStore } from '../services/kv/store.ts';
import { encodeKvOp, decodeKvOutput } from '../services/kv/ops.ts';
import type { KvOp } from '../services/kv/model.ts';
import { World, type NetworkFaults } from './world.ts';
import { Prng } from '../core/prng.ts';
import { byzantineBehaviours, type ByzantineBehaviour, type ClientBehaviour } from './byzantine.ts';
import { AgreementChecker } from './checkers/agreement.ts';
import { checkLinearizable, type HistoryOp } from './checkers/linearizability.ts';
import { isExecCheckpointKey } from '../stages/exec/exec.ts';

/** What to run. */
export interface SeedOptions {
  readonly seed: number;
  readonly u: number;
  readonly r: number;
  readonly canaries?: Canaries;
  /** Total operations of correct clients (default drawn from the seed, 80..200). */
  readonly ops?: number;
  /** Keep the history in the result (for --history). */
  readonly keepHistory?: boolean;
  /** Disable every fault (benchmarks). */
  readonly faultFree?: boolean;
  /** Receives a line per stage note (debugging a failing seed). */
  readonly debug?: (line: string) => void;
  /**
   * Storage faults: whole-cluster crashes (every replica at once, writes in flight lost) and
   * restarts from what each node had made durable. Drawn from a separate stream, so a seed's
   * other choices are the same with and without.
   */
  readonly storageFaults?: boolean;
  /** Durability mode (default: parallel or batch, drawn from the seed). */
  readonly durability?: 'batch' | 'parallel';
  /**
   * An attack (issue 5; Aardvark's faults): the seed's Byzantine replica is node 0, the first
   * primary, with that behaviour (the other faults stay as drawn, within u), or for the client
   * attacks one faulty client with it. Drawn details come from a fourth stream.
   */
  readonly attack?: AttackName;
  /** Signed client requests (default: on for a third of the seeds, drawn from the fourth stream). */
  readonly clientSignatures?: boolean;
}

/** Attacks `sim --attack` and `bench --attack` know. */
export const attackNames = ['bad-client', 'client-flood', 'slow-primary', 'unfair-primary', 'replica-flood', 'equivocating-primary', 'forging-auth'] as const;
/** One of {@link attackNames}. */
export type AttackName = (typeof attackNames)[number];

/** What a seed produced. */
export interface SeedResult {
  readonly seed: number;
  readonly u: number;
  readonly r: number;
  readonly passed: boolean;
  readonly failures: readonly string[];
  /** Operations completed by correct clients. */
  readonly ops: number;
  /** Operations checked for linearizability. */
  readonly checked: number;
  readonly ackedLost: number;
  /** Injected faults (crashes, pauses, partitions, client crashes) and lossy-network seeds. */
  readonly faults: number;
  /** Byzantine replicas plus faulty clients. */
  readonly byzantine: number;
  readonly traceHash: string;
  readonly virtualMs: number;
  readonly scenario: string;
  readonly history?: readonly HistoryOp[];
  readonly events: number;
}

interface Scenario {
  readonly tunables: Partial<Tunables>;
  readonly clients: number;
  readonly faultyClients: number;
  readonly keys: number;
  readonly ops: number;
  readonly healUs: number;
  readonly delayMinUs: number;
  readonly delayMaxUs: number;
  readonly fsyncMinUs: number;
  readonly fsyncMaxUs: number;
  readonly net: NetworkFaults;
  readonly faultyNodes: readonly number[];
  readonly byzantine: ReadonlyMap<number, ReadonlySet<ByzantineBehaviour>>;
  readonly crashes: boolean;
  readonly pauses: boolean;
  readonly partitions: boolean;
  readonly clientCrashes: boolean;
  readonly reserveBlock: number;
  readonly readOnlyPerMille: number;
}

/** Draws the scenario of a seed. */
function drawScenario(rng: Prng, o: SeedOptions, nodeIds: readonly number[]): Scenario {
  const faultFree = o.faultFree === true;
  const swarm = (num: number, den: number): boolean => !faultFree && rng.chance(num, den);
  const lossy = swarm(2, 3);
  const net: NetworkFaults = {
    dropPerMille: lossy ? rng.int(0, 80) : 0,
    dupPerMille: lossy ? rng.int(0, 40) : 0,
    spikePerMille: lossy ? rng.int(0, 60) : 0,
    spikeMaxUs: rng.int(5_000, 150_000),
  };
  // At most u faulty nodes; at most r of them Byzantine.
  const faultyCount = faultFree ? 0 : rng.int(Math.min(1, o.u), o.u);
  const faultyNodes = rng.shuffle(nodeIds).slice(0, faultyCount);
  const byzCount = faultFree ? 0 : rng.int(0, Math.min(o.r, faultyCount));
  const byzantine = new Map<number, Set<ByzantineBehaviour>>();
  for (const id of faultyNodes.slice(0, byzCount)) {
    const set = new Set<ByzantineBehaviour>();
    const k = rng.int(1, 3);
    for (let i = 0; i < k; i++) set.add(rng.pick(byzantineBehaviours));
    byzantine.set(id, set);
  }
  const ops = o.ops ?? rng.int(80, 200);
  return {
    tunables: {
      checkpointInterval: rng.int(3, 12),
      batchSizeMax: rng.int(1, 12),
      pipelineMax: rng.int(1, 4),
      batchTimeoutMs: rng.int(0, 4),
      viewChangeTimeoutMs: rng.int(250, 700),
      clientRetryMs: rng.int(80, 300),
      clientRetryMaxMs: 1500,
      readTimeoutMs: rng.int(30, 120),
      statusIntervalMs: rng.int(40, 150),
      execRetryMs: rng.int(60, 200),
      authResendMs: rng.int(50, 300),
      clockSkewMaxMs: 60_000,
    },
    clients: rng.int(2, 6),
    faultyClients: swarm(1, 3) ? 1 : 0,
    keys: rng.int(2, 6),
    ops,
    healUs: rng.int(1_500_000, 4_000_000),
    delayMinUs: rng.int(200, 1_500),
    delayMaxUs: rng.int(2_000, 12_000),
    fsyncMinUs: 100,
    fsyncMaxUs: rng.int(200, 3_000),
    net,
    faultyNodes,
    byzantine,
    crashes: swarm(2, 3),
    pauses: swarm(1, 3),
    partitions: swarm(1, 2),
    clientCrashes: swarm(1, 3),
    reserveBlock: rng.pick([1, 2, 4, 1000]),
    readOnlyPerMille: rng.int(0, 600),
  };
}

/** Attacks that are commission faults: outside the model when r = 0 (see withAttack). */
export function attackNeedsCommission(attack: AttackName): boolean {
  return attack === 'equivocating-primary' || attack === 'forging-auth';
}

/** The Byzantine behaviour that plays each replica attack. */
const replicaAttackBehaviour: Record<Exclude<AttackName, 'bad-client' | 'client-flood'>, ByzantineBehaviour> = {
  'slow-primary': 'slowPrimary',
  'unfair-primary': 'unfairPrimary',
  'replica-flood': 'replicaFlood',
  'equivocating-primary': 'equivocate',
  'forging-auth': 'forgingAuth',
};

/**
 * A drawn scenario with an attack put in: a replica attack makes node 0 (the first primary; for
 * forging-auth node 1, an auth replica beside it) the Byzantine node with that behaviour alone;
 * a client attack adds a faulty client. Other faults drawn stay, trimmed so at most u nodes are
 * faulty. Delays, omissions and junk with bad MACs are within a crash-fault model (u);
 * equivocation and forged rows are commission faults and need r >= 1, so with r = 0 they leave
 * the scenario as drawn (`sim --attack` runs them on models with r >= 1).
 */
function withAttack(sc: Scenario, attack: AttackName, nodeIds: readonly number[], u: number, r: number): Scenario {
  if (attack === 'bad-client' || attack === 'client-flood') return { ...sc, faultyClients: 1 };
  if (attackNeedsCommission(attack) && r === 0) return sc;
  const behaviour = replicaAttackBehaviour[attack];
  // The forger is an auth replica whose rows go to another node's primary.
  const node = attack === 'forging-auth' ? nodeIds[1]! : nodeIds[0]!;
  return { ...sc, byzantine: new Map([[node, new Set([behaviour])]]), faultyNodes: [node, ...sc.faultyNodes.filter((id) => id !== node)].slice(0, Math.max(1, u)) };
}

function describe(s: Scenario): string {
  const byz = [...s.byzantine.entries()].map(([id, b]) => `n${id}:${[...b].join('+')}`).join(',');
  return (
    `clients=${s.clients}+${s.faultyClients} keys=${s.keys} ops=${s.ops} heal=${s.healUs / 1000}ms ` +
    `delay=${s.delayMinUs}-${s.delayMaxUs}us drop=${s.net.dropPerMille}‰ dup=${s.net.dupPerMille}‰ spike=${s.net.spikePerMille}‰ ` +
    `faulty=[${s.faultyNodes.join(',')}] byz=[${byz}] crash=${s.crashes} pause=${s.pauses} partition=${s.partitions} clientCrash=${s.clientCrashes} ` +
    `cp=${s.tunables.checkpointInterval} batch=${s.tunables.batchSizeMax} pipe=${s.tunables.pipelineMax}`
  );
}

/** Runs one seed and checks it. */
export function runSeed(o: SeedOptions): SeedResult {
  const rng = new Prng(o.seed);
  const probe = defaultConfig({ u: o.u, r: o.r, clients: 1 });
  const nodeIds = probe.nodes.map((n) => n.id);
  const drawn = drawScenario(rng, o, nodeIds);
  // The attack goes in before anything is derived from the scenario (client ids, the cluster).
  const sc = o.attack !== undefined && o.faultFree !== true ? withAttack(drawn, o.attack, nodeIds, o.u, o.r) : drawn;
  const correctClientIds = Array.from({ length: sc.clients }, (_, i) => i);
  const faultyClientIds = Array.from({ length: sc.faultyClients }, (_, i) => 100 + i);
  // Durability and storage faults come from their own stream, so the draws above do not
  // depend on them. Storage faults include a slow disk (fsync up to 40 ms, slower than the
  // network), so writes are in flight when a whole-cluster crash hits.
  const srng = new Prng(o.seed ^ 0x5f0ac7ed);
  const durability = o.durability ?? (srng.chance(1, 2) ? 'parallel' : 'batch');
  const storageFaults = o.storageFaults === true && o.faultFree !== true;
  // Checkpoint and state transfer settings: a third stream, for the same reason. Small chunks,
  // so a transfer takes many parts (and a Byzantine seeder has many chances to lie).
  const crng = new Prng(o.seed ^ 0x3c7f0a11);
  const checkpoints = crng.chance(1, 2) ? 'sequential' : 'coordinated';
  const stateTransfer = crng.chance(1, 2) ? 'collaborative' : 'single';
  const cpTunables = { checkpointChunkBytes: crng.pick([64, 128, 512, 1 << 20]), checkpointSliceMs: crng.int(0, 6) };
  // Aardvark's triggers and the attacks: a fourth stream.
  const arng = new Prng(o.seed ^ 0x1d2b4e97);
  const robustTunables = {
    heartbeatMs: arng.chance(1, 5) ? 0 : arng.int(20, 120),
    throughputGraceMs: arng.chance(1, 5) ? 0 : arng.int(300, 2_000),
    fairnessOvertakes: arng.chance(1, 5) ? 0 : arng.int(1, 3),
  };
  const attack = o.attack;
  const attackSettings = { slowPrimaryUs: arng.pick([1_000, 10_000, 100_000]), victimClient: arng.int(0, sc.clients - 1), floodFactor: arng.int(2, 16) };
  // Signed client requests on a third of the seeds (drawn last, so the draws above are unchanged).
  const clientSignatures = o.clientSignatures ?? arng.chance(1, 3);
  const cfg = defaultConfig({ u: o.u, r: o.r, clients: 0, tunables: { ...sc.tunables, ...cpTunables, ...robustTunables } });
  const cluster = deriveCluster({ ...cfg, durability, checkpoints, stateTransfer, clientSignatures, clients: [...correctClientIds, ...faultyClientIds] });
  const canaries = o.canaries ?? new Set<CanaryName>();
  const fsyncMinUs = storageFaults ? srng.int(100, 2_000) : sc.fsyncMinUs;
  const fsyncMaxUs = storageFaults ? srng.int(5_000, 40_000) : sc.fsyncMaxUs;
  const world = new World({
    cluster,
    seed: o.seed,
    // Pages as small as the drawn chunks, so small simulated states still checkpoint incrementally.
    appFactory: () => new KvStore({ pageBytes: cluster.config.checkpointChunkBytes }),
    canaries,
    delayMinUs: sc.delayMinUs,
    delayMaxUs: sc.delayMaxUs,
    fsyncMinUs,
    fsyncMaxUs,
    tickUs: 5_000,
    faults: sc.net,
    byzantine: sc.byzantine,
    attack: attackSettings,
    clientReserveBlock: sc.reserveBlock,
  });
  const agreement = new AgreementChecker();
  const correctNodes = new Set(nodeIds.filter((id) => !sc.byzantine.has(id)));
  world.onNote((p, note) => {
    if (p.kind === 'node' && correctNodes.has(p.id)) agreement.observe(p.id, note);
  });
  if (o.debug !== undefined) world.onNote((p, note, now) => o.debug?.(`${(now / 1000).toFixed(1)}ms ${principalKey(p)} ${describeNote(note)}`));

  // ---- workload ----
  const history: HistoryOp[] = [];
  const keys = Array.from({ length: sc.keys }, (_, i) => `k${i}`);
  const quota = new Map<number, number>();
  correctClientIds.forEach((c, i) => quota.set(c, Math.floor(sc.ops / sc.clients) + (i < sc.ops % sc.clients ? 1 : 0)));
  const done = new Map<number, number>(correctClientIds.map((c) => [c, 0]));
  const afterHeal = new Map<number, number>(correctClientIds.map((c) => [c, 0]));
  const outstanding = new Map<number, { index: number; readOnly: boolean }>();
  const ackedWrites: { client: number; reqId: number; result: Uint8Array; index: number }[] = [];
  const wrng = rng.fork();
  let callCounter = 0;
  let healed = false;
  const postHealOps = 3;
  const thinkMaxUs = Math.max(2_000, Math.floor((sc.healUs * 1.2 * sc.clients) / Math.max(1, sc.ops)));

  const nextOp = (): KvOp => {
    const key = wrng.pick(keys);
    const r = wrng.int(0, 99);
    if (r < 35) return { kind: 'get', key };
    if (r < 60) return { kind: 'put', key, value: `v${wrng.int(0, 999)}` };
    if (r < 70) return { kind: 'del', key };
    if (r < 85) return { kind: 'cas', key, expected: wrng.chance(1, 3) ? null : `v${wrng.int(0, 999)}`, next: `v${wrng.int(0, 999)}` };
    return { kind: 'incr', key, delta: wrng.int(-3, 10) };
  };
  // A client works through its quota, and does at least postHealOps operations after the heal.
  const needsMore = (c: number): boolean => (done.get(c) ?? 0) < (quota.get(c) ?? 0) || (healed && (afterHeal.get(c) ?? 0) < postHealOps);
  const issue = (c: number): void => {
    if (outstanding.has(c) || !needsMore(c)) return;
    if (!world.clientIdle(c)) {
      world.at(world.now + 10_000, () => issue(c)); // client down or busy: try again later
      return;
    }
    const op = nextOp();
    const readOnly = op.kind === 'get' && wrng.int(0, 999) < sc.readOnlyPerMille;
    const index = history.length;
    history.push({ client: c, op, output: undefined, invoke: world.now * 1000, complete: undefined });
    outstanding.set(c, { index, readOnly });
    world.invoke(c, ++callCounter, encodeKvOp(op), readOnly);
  };
  const onResult = (c: number) => (_callId: number, reqId: number, result: Uint8Array, nowUs: number): void => {
    const o = outstanding.get(c);
    if (o === undefined) return;
    outstanding.delete(c);
    const h = history[o.index]!;
    const decoded = decodeKvOutput(result);
    // An undecodable reply, or one of another kind than the op, is recorded as bad_request,
    // which no linearization can explain: accepting a forged reply fails the check.
    const output = decoded !== undefined && (decoded.kind === h.op.kind || decoded.kind === 'error') ? decoded : ({ kind: 'error', code: 'bad_request' } as const);
    history[o.index] = { ...h, output, complete: nowUs * 1000 };
    if (h.op.kind !== 'get') ackedWrites.push({ client: c, reqId, result, index: o.index });
    done.set(c, (done.get(c) ?? 0) + 1);
    if (healed) afterHeal.set(c, (afterHeal.get(c) ?? 0) + 1);
    world.at(nowUs + wrng.int(0, thinkMaxUs), () => issue(c));
  };
  for (const c of correctClientIds) world.addClient(c, onResult(c));

  // ---- faulty clients: bad authenticators and reused request ids, on their own keys ----
  for (const c of faultyClientIds) {
    const drawnBehaviours: ClientBehaviour[] = rng.chance(1, 2) ? ['badAuthenticators'] : ['badAuthenticators', 'reusedIds'];
    // With signed requests, a faulty client also breaks signatures (and gets itself blacklisted).
    const behaviours = new Set<ClientBehaviour>(clientSignatures ? [...drawnBehaviours, 'badSignatures'] : drawnBehaviours);
    const flood = attack === 'client-flood';
    const loop = (): void => {
      if (world.now > sc.healUs * 2) return;
      const op = encodeKvOp({ kind: 'put', key: `z${c}`, value: `x${wrng.int(0, 99)}` });
      if (world.clientIdle(c)) world.invoke(c, ++callCounter, op, false);
      if (behaviours.has('reusedIds')) {
        // Same request id (1), a different body each time, properly authenticated.
        const ring = world.keyRing(clientPrincipal(c));
        const body = encodeKvOp({ kind: 'put', key: `z${c}`, value: `reuse${wrng.int(0, 99)}` });
        const core = requestCoreBytes(c, 1, body);
        const auths = cluster.auth.nodes.map((id) => nodePrincipal(id));
        world.clientSendRaw(c, auths, { kind: 'request', client: c, reqId: 1, op: body, macs: ring.authenticate(auths, core), fanout: false, sig: cluster.clientSignatures ? ring.sign(requestSignedBytes(core)) : undefined });
      }
      if (flood) {
        // Junk at a high rate: requests with every MAC broken, on the faulty client's own keys.
        const auths = cluster.auth.nodes.map((id) => nodePrincipal(id));
        for (let i = 0; i < 8; i++) {
          const body = encodeKvOp({ kind: 'put', key: `z${c}`, value: `flood${i}` });
          const macs = world.keyRing(clientPrincipal(c)).authenticate(auths, requestCoreBytes(c, 1_000_000 + i, body)).map((m) => m.map((x) => x ^ 0xff));
          world.clientSendRaw(c, auths, { kind: 'request', client: c, reqId: 1_000_000 + i, op: body, macs, fanout: false, sig: undefined });
        }
      }
      world.at(world.now + (flood ? wrng.int(200, 2_000) : wrng.int(5_000, 60_000)), loop);
    };
    world.addClient(c, undefined, behaviours);
    world.at(wrng.int(0, 50_000), loop);
  }

  // ---- fault schedule ----
  let faults = sc.net.dropPerMille + sc.net.dupPerMille + sc.net.spikePerMille > 0 ? 1 : 0;
  const frng = rng.fork();
  const faultyPrincipals = sc.faultyNodes.map((id) => nodePrincipal(id));
  const schedule = (startUs: number, fn: () => void): void => {
    if (startUs < sc.healUs) world.at(startUs, fn);
  };
  // Storage damage on faulty nodes (at most u), what the runtime's recovery leaves behind:
  // a damaged checkpoint file is dropped (the replica refetches it); a damaged log stops the
  // node, and the operator restarts it on an empty disk. An empty disk forgets promises, so it
  // counts as a commission fault: only while fewer than r replicas are Byzantine.
  const wipeAllowed = sc.byzantine.size < o.r;
  let storageDamage = 0;
  const damageOnRestart = (p: ReturnType<typeof nodePrincipal>): void => {
    if (!storageFaults || !srng.chance(1, 2)) return;
    const wipe = wipeAllowed && srng.chance(1, 3);
    const n = world.damageStorage(p, (durable) => {
      if (wipe) {
        const size = durable.size;
        durable.clear();
        return size;
      }
      const cps = [...durable.keys()].filter(isExecCheckpointKey).sort();
      const drop = cps.filter(() => srng.chance(1, 2));
      for (const k of drop) durable.delete(k);
      return drop.length;
    });
    if (n > 0) storageDamage++;
  };
  if (sc.crashes && faultyPrincipals.length > 0) {
    for (let t = frng.int(50_000, 600_000); t < sc.healUs; t += frng.int(300_000, 1_500_000)) {
      const p = frng.pick(faultyPrincipals);
      const down = frng.int(20_000, 900_000);
      faults++;
      schedule(t, () => world.crash(p));
      schedule(t + down, () => {
        damageOnRestart(p);
        world.restart(p);
      });
    }
  }
  if (sc.pauses && faultyPrincipals.length > 0) {
    for (let t = frng.int(50_000, 800_000); t < sc.healUs; t += frng.int(400_000, 1_500_000)) {
      const p = frng.pick(faultyPrincipals);
      faults++;
      schedule(t, () => world.pause(p));
      schedule(t + frng.int(50_000, 1_200_000), () => world.resume(p));
    }
  }
  if (sc.partitions) {
    const all = nodeIds.map((id) => nodePrincipal(id));
    for (let t = frng.int(50_000, 800_000); t < sc.healUs; t += frng.int(300_000, 1_200_000)) {
      const shuffled = frng.shuffle(all);
      const cut = frng.int(1, all.length - 1);
      const a = shuffled.slice(0, cut);
      const b = shuffled.slice(cut);
      const oneWay = frng.chance(1, 3);
      const len = frng.int(50_000, 1_200_000);
      faults++;
      schedule(t, () => {
        for (const x of a) for (const y of b) {
          world.block(x, y);
          if (!oneWay) world.block(y, x);
        }
      });
      schedule(t + len, () => {
        for (const x of a) for (const y of b) {
          world.unblock(x, y);
          world.unblock(y, x);
        }
      });
    }
  }
  if (sc.clientCrashes) {
    for (let t = frng.int(100_000, 900_000); t < sc.healUs; t += frng.int(400_000, 2_000_000)) {
      const c = frng.pick(correctClientIds);
      faults++;
      schedule(t, () => {
        world.crash(clientPrincipal(c));
        outstanding.delete(c); // the op stays pending (no completion) in the history
      });
      schedule(t + frng.int(10_000, 500_000), () => {
        world.restart(clientPrincipal(c));
        world.at(world.now + 1_000, () => issue(c));
      });
    }
  }
  let totalCrashes = 0;
  if (storageFaults) {
    const all = nodeIds.map((id) => nodePrincipal(id));
    const count = srng.int(1, 2);
    for (let i = 0; i < count; i++) {
      const t = srng.int(100_000, Math.max(150_000, sc.healUs - 200_000));
      faults++;
      totalCrashes++;
      schedule(t, () => {
        for (const p of all) world.crash(p);
      });
      for (const p of all) {
        schedule(t + srng.int(5_000, 400_000), () => {
          if (sc.faultyNodes.includes(p.id)) damageOnRestart(p);
          world.restart(p);
        });
      }
    }
  }
  world.at(sc.healUs, () => {
    healed = true;
    world.heal();
    for (const c of correctClientIds) world.at(world.now + 1_000, () => issue(c));
  });

  // ---- run ----
  world.startNodes();
  for (const c of correctClientIds) world.at(wrng.int(0, 20_000), () => issue(c));
  const livenessWindowUs = 60_000_000;
  const allDone = (): boolean => healed && correctClientIds.every((c) => !needsMore(c) && !outstanding.has(c));
  world.run(sc.healUs + livenessWindowUs, allDone);
  const finishedAt = world.now;
  // Quiesce: let lagging replicas catch up before comparing their states.
  world.run(world.now + 3_000_000);

  // ---- checks ----
  const failures: string[] = [...agreement.violations];
  if (!allDone()) {
    const stuck = correctClientIds.filter((c) => needsMore(c) || outstanding.has(c));
    failures.push(`liveness: ${stuck.length} client(s) made no progress within ${livenessWindowUs / 1e6}s after heal (clients ${stuck.join(',')})`);
  }
  const lin = checkLinearizable(history);
  if (lin.ok === false) failures.push(`linearizability: key ${lin.key}: ${lin.reason}`);
  else if (lin.ok === 'unknown') failures.push(`linearizability: undecided for key ${lin.key}: ${lin.reason}`);
  let ackedLost = 0;
  for (const w of ackedWrites) {
    const got = agreement.replies.get(`${w.client}:${w.reqId}`);
    if (got !== hex(w.result)) ackedLost++;
  }
  if (ackedLost > 0) failures.push(`durability: ${ackedLost} acknowledged write(s) missing from the agreed log`);
  failures.push(...replayCheck(world, agreement, correctNodes, cluster.exec.nodes));
  failures.push(...newViewCheck(world, correctNodes, cluster.order.nodes));
  const completed = history.filter((h) => h.complete !== undefined).length;
  return {
    seed: o.seed,
    u: o.u,
    r: o.r,
    passed: failures.length === 0,
    failures,
    ops: completed,
    checked: lin.checked,
    ackedLost,
    faults,
    byzantine: sc.byzantine.size + sc.faultyClients,
    traceHash: world.trace.digest(),
    virtualMs: Math.round(finishedAt / 1000),
    scenario: `${describe(sc)} durability=${durability} checkpoints=${checkpoints} transfer=${stateTransfer} chunk=${cpTunables.checkpointChunkBytes} slice=${cpTunables.checkpointSliceMs}ms hb=${robustTunables.heartbeatMs} grace=${robustTunables.throughputGraceMs} fair=${robustTunables.fairnessOvertakes} sigs=${clientSignatures ? 'on' : 'off'}` + (attack !== undefined ? ` attack=${attack}${attack === 'slow-primary' ? `(${attackSettings.slowPrimaryUs / 1000}ms)` : attack === 'unfair-primary' ? `(victim c${attackSettings.victimClient})` : ''}` : '') + (storageFaults ? ` totalCrash=${totalCrashes} storageDamage=${storageDamage} fsync=${fsyncMinUs}-${fsyncMaxUs}us` : ''),
    events: world.stats.eventsProcessed,
    ...(o.keepHistory === true ? { history } : {}),
  };
}

/**
 * After the heal and the quiet period, no correct order replica still waits for the batches of
 * a NEW-VIEW: they are fetched, or below a checkpoint it has caught up to. (A replica may still
 * be in a view change of its own, left alone by a timer: PBFT lets the next view change bring
 * it back; and a Byzantine primary may keep one replica out of its view.)
 */
function newViewCheck(world: World, correct: ReadonlySet<number>, orderNodes: readonly number[]): string[] {
  const out: string[] = [];
  for (const id of orderNodes) {
    const s = correct.has(id) ? world.replica(id)?.order?.status : undefined;
    if (s !== undefined && s.bodiesMissing > 0) out.push(`new view: node ${id} still waits for ${s.bodiesMissing} batch(es) of the NEW-VIEW of view ${s.view} after the quiet period`);
  }
  return out;
}

/** Replays the agreed log and compares with each correct executor's state. */
function replayCheck(world: World, agreement: AgreementChecker, correct: ReadonlySet<number>, execNodes: readonly number[]): string[] {
  const out: string[] = [];
  const execs = execNodes.filter((id) => correct.has(id)).flatMap((id) => {
    const exec = world.replica(id)?.exec;
    return exec === undefined ? [] : [{ id, exec }];
  });
  if (execs.length === 0) return out;
  const wanted = new Set(execs.map((e) => e.exec.next - 1));
  const maxSeq = Math.max(...wanted);
  const store = new KvStore({ pageBytes: world.cluster.config.checkpointChunkBytes });
  const lastReq = new Map<number, number>();
  const states = new Map<number, string>([[0, hex(store.checkpoint())]]);
  for (let seq = 1; seq <= maxSeq; seq++) {
    const e = agreement.canonical.get(seq);
    if (e === undefined) {
      out.push(`replay: no correct executor ran seq ${seq}`);
      return out;
    }
    const run = e.batch.requests.filter((r) => r.reqId > (lastReq.get(r.client) ?? 0));
    if (run.length > 0) {
      const results = store.execute({ seq, time: e.time, seed: e.batch.seed, requests: run });
      run.forEach((r, i) => {
        lastReq.set(r.client, r.reqId);
        const expected = e.results.get(`${r.client}:${r.reqId}`);
        if (expected !== undefined && expected !== hex(results[i]!)) out.push(`replay: seq ${seq} request ${r.client}:${r.reqId} replied differently on replay`);
      });
    }
    if (wanted.has(seq)) states.set(seq, hex(store.checkpoint()));
  }
  for (const { id, exec } of execs) {
    const want = states.get(exec.next - 1);
    if (want !== undefined && hex(exec.appCheckpoint()) !== want) out.push(`replay: node ${id} state at seq ${exec.next - 1} differs from a replay of the agreed log`);
  }
  return out.slice(0, 5);
}

/**
 * Runs a seed (twice when `twice`, see runSeedTwice) and turns an exception thrown by the code
 * under test into a failed result naming it, so one seed's crash never hides the others' results
 * or its own seed number.
 */
export function runSeedGuarded(o: SeedOptions, twice = false): SeedResult {
  try {
    return twice ? runSeedTwice(o) : runSeed(o);
  } catch (e) {
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { seed: o.seed, u: o.u, r: o.r, passed: false, failures: [`exception: ${what}`], ops: 0, checked: 0, ackedLost: 0, faults: 0, byzantine: 0, traceHash: '', virtualMs: 0, scenario: 'threw', events: 0 };
  }
}

/** Runs a seed twice and adds a failure when the trace hashes differ. */
export function runSeedTwice(o: SeedOptions): SeedResult {
  const a = runSeed(o);
  const b = runSeed(o);
  if (a.traceHash === b.traceHash) return a;
  return { ...a, passed: false, failures: [...a.failures, `determinism: trace ${a.traceHash} then ${b.traceHash}`] };
}

/** The (u, r) configurations the simulator cycles through. */
export const defaultFaultModels: readonly (readonly [number, number])[] = [
  [1, 0],
  [1, 1],
  [2, 1],
  [1, 2],
  [2, 2],
];

/** One line describing a note (debug output). */
export function describeNote(n: Note): string {
  switch (n.type) {
    case 'executed':
      return `executed seq=${n.seq} reqs=${n.batch.requests.length} ran=${n.results.length} h=${hex(n.history).slice(0, 8)}`;
    case 'checkpointTaken':
    case 'checkpointLoaded':
      return `${n.type} seq=${n.seq} token=${hex(n.token).slice(0, 8)}`;
    case 'committed':
      return `committed seq=${n.seq} view=${n.view} d=${hex(n.digest).slice(0, 8)}`;
    case 'stable':
      return `stable seq=${n.seq}`;
    case 'viewChangeStarted':
      return `viewChange -> ${n.view} (${n.reason})`;
    case 'primarySuspected':
      return `suspected primary of view ${n.view}: ${n.reason} (${n.suspects} of ${n.needed} needed)`;
    case 'viewEntered':
      return `viewEntered ${n.view} primary=${n.primary}`;
    case 'rejected':
      return `rejected ${n.reason} from ${principalKey(n.from)}`;
    case 'safetyAlarm':
      return `ALARM ${n.detail}`;
  }
}
