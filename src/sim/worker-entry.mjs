// Worker bootstrap: registers tsx in this thread, then loads the TypeScript worker body.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
