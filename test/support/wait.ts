import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `condition` every 20 ms until it holds; throws after `timeoutMs`. Timed on the monotonic
 * clock, so a test that moves `Date.now()` can still use it.
 */
export async function waitUntil(
  condition: () => boolean,
  timeoutMs: number,
  what = 'condition',
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * Polls an async `probe` every 20 ms until `done(value)` holds and returns that value; throws
 * `what` with the last value seen after `timeoutMs`, so a wait that reaches its deadline fails
 * the test instead of falling through.
 */
export async function waitForValue<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (performance.now() > end) {
      throw new Error(
        `${what}: not met within ${timeoutMs} ms (last seen: ${String(JSON.stringify(value)).slice(0, 300)})`,
      );
    }
    await sleep(20);
  }
}
