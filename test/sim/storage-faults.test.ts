// Seeds 1..12 of each of the five (u, r) models with storage faults: a slow disk and one or two
// whole-cluster crashes per seed, every write in flight lost (see seeds.suite.ts).
import { seedSuite } from './seeds.suite.ts';

seedSuite(1, 12, { determinismEvery: 6, storageFaults: true });
