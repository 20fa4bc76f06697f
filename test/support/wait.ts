import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `condition` every 20 ms until it holds; throws after `timeoutMs`. Timed on the monotonic
 * clock, so a test that moves `Date.now()` can still use it.
 */
export async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}
