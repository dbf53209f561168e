/**
 * Runs simulator jobs on worker threads (one per core by default). Each worker loads the
 * TypeScript sources through tsx, like the `bulwark` command itself. Results arrive in
 * completion order; callers that print sort them.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { runJob, type SimJob, type SimJobResult } from './jobs.ts';

/** Runs `jobs`, calling `onResult` as each finishes. `workers` <= 1 runs in this thread. */
export async function runJobs(jobs: readonly SimJob[], onResult: (r: SimJobResult, job: SimJob) => void, workers = availableParallelism()): Promise<void> {
  if (workers <= 1 || jobs.length <= 1) {
    for (const job of jobs) onResult(runJob(job), job);
    return;
  }
  const script = new URL('./worker-entry.mjs', import.meta.url);
  let next = 0;
  const spawn = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = new Worker(script);
      const feed = (): void => {
        if (next >= jobs.length) {
          void w.terminate().then(() => {
            resolve();
          });
          return;
        }
        const job = jobs[next++]!;
        w.once('message', (r: SimJobResult) => {
          onResult(r, job);
          feed();
        });
        w.postMessage(job);
      };
      w.once('error', reject);
      w.once('online', feed);
    });
  await Promise.all(Array.from({ length: Math.min(workers, jobs.length) }, spawn));
}
