import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LeanHistogram } from '../../src/metrics/histogram.js';

/** The exposition as a set of samples, label order and series order aside. */
function normalized(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^([^{ ]+)(?:\{(.*)\})? (.*)$/.exec(l);
      if (!m || l.startsWith('#')) return l;
      const labels = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
      return `${m[1]}{${labels}} ${m[3]}`;
    })
    .sort();
}

describe('LeanHistogram', () => {
  it('exposes exactly what a prom-client histogram exposes for the same observations', async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const theirs = new Registry();
    const ours = new Registry();
    for (const r of [theirs, ours]) r.setDefaultLabels({ app: 'x' });
    const reference = new Histogram({
      name: 'h_seconds',
      help: 'help',
      labelNames: ['bucket', 'op'],
      buckets,
      registers: [theirs],
    });
    const lean = new LeanHistogram({
      name: 'h_seconds',
      help: 'help',
      labelNames: ['bucket', 'op'],
      buckets,
      registry: ours,
    });
    const values = [0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.5, 1, 2, 30];
    const a = lean.child('b1', 'get');
    const b = lean.child('b1', 'put');
    values.forEach((v, i) => {
      const [observe, op] = i % 3 === 0 ? [b, 'put'] : [a, 'get'];
      observe(v);
      reference.labels('b1', op).observe(v);
    });
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
    // The same label set twice is one series.
    lean.child('b1', 'get')(0.2);
    reference.labels('b1', 'get').observe(0.2);
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
    // reset zeroes (prom-client drops the series instead); the bound functions still count.
    ours.resetMetrics();
    a(0.002);
    const after = normalized(await ours.metrics());
    expect(after).toContain('h_seconds_count{app="x",bucket="b1",op="get"} 1');
    expect(after).toContain('h_seconds_bucket{app="x",bucket="b1",le="0.001",op="get"} 0');
    expect(after).toContain('h_seconds_bucket{app="x",bucket="b1",le="0.01",op="get"} 1');
    expect(after).toContain('h_seconds_count{app="x",bucket="b1",op="put"} 0');
  });
});
