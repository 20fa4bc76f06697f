// What the queue benchmark asks of each side (natskit, the raw client, BullMQ).
import { setTimeout as sleep } from 'node:timers/promises';

export interface QueueSide {
  readonly name: string;
  /** Queues `jobs` jobs, then runs them at `concurrency`; resolves with jobs/s. */
  throughput(concurrency: number, jobs: number, work: () => Promise<void>): Promise<number>;
  /**
   * Starts a worker at `concurrency` on an empty queue, adds `jobs` jobs `gapMs` apart, and
   * reports for each the ms from its publish to its handler's start.
   */
  latency(
    concurrency: number,
    jobs: number,
    gapMs: number,
    record: (ms: number) => void,
  ): Promise<void>;
}

/** Polls until `done()` (or throws after `timeoutMs`). */
export async function waitFor(done: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('benchmark run did not finish');
    await sleep(1);
  }
}
