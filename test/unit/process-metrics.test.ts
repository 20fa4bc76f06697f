import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerProcessMetrics } from '../../src/metrics/process-metrics.js';

/** `name value` of each unlabelled sample of the exposition. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z0-9_]+) (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

const LAG = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map(
  (s) => `nodejs_eventloop_lag_${s}_seconds`,
);

describe("Node's process metrics", () => {
  it('hold no gauge named like a counter (prom-client has nodejs_active_*_total)', async () => {
    const registry = new Registry();
    registerProcessMetrics(registry);
    const text = await registry.metrics();
    expect(text).not.toMatch(/^# TYPE \S+_total gauge$/m);
    expect(text).toContain('# TYPE nodejs_active_handles gauge');
  });

  it('report event-loop delay statistics only from a window with samples, never NaN or int64 max', async () => {
    const registry = new Registry();
    registerProcessMetrics(registry);
    // Scraped in the turn it was created: no sample yet, so no value (prom-client: NaN, 9.2e9).
    const first = samples(await registry.metrics());
    for (const name of LAG) expect(first.has(name), name).toBe(false);

    // Until the monitor's first sample (about 10 ms).
    const deadline = performance.now() + 5_000;
    while (!samples(await registry.metrics()).has(LAG[0] as string)) {
      if (performance.now() > deadline) throw new Error('no event-loop sample within 5 s');
      await sleep(10);
    }
    // Back to back: most of these scrapes follow the last with no sample in between; each still
    // has the last window's figures.
    for (let i = 0; i < 20; i++) {
      const got = samples(await registry.metrics());
      for (const name of LAG) {
        expect(Number.isFinite(got.get(name)), `${name} scrape ${i}`).toBe(true);
        expect(got.get(name) as number, `${name} scrape ${i}`).toBeLessThan(10);
      }
      const [min, max, mean] = [LAG[0], LAG[1], LAG[2]].map((n) => got.get(n as string) as number);
      expect(min).toBeLessThanOrEqual(mean as number);
      expect(mean).toBeLessThanOrEqual(max as number);
    }
  });
});
