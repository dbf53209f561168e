/** Worker thread body for pool.ts: runs each job it is sent and posts the result back. */
import { parentPort } from 'node:worker_threads';
import { runJob, type SimJob } from './jobs.ts';

parentPort?.on('message', (job: SimJob) => {
  parentPort?.postMessage(runJob(job));
});
