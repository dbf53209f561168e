// Seeds 1..20 of each of the five (u, r) models (100 seeds); see seeds.suite.ts.
import { seedSuite } from './seeds.suite.ts';

seedSuite(1, 20, { determinismEvery: 5 });
