import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { HealthRegistry } from '../../src/health/health-registry.js';

describe('HealthRegistry', () => {
  it('combines statuses: any fail is fail, else any warn is warn', async () => {
    const r = new HealthRegistry();
    r.register('a', () => ({ status: 'pass' }));
    expect((await r.report()).status).toBe('pass');
    r.register('b', () => ({ status: 'warn', output: 'slow' }));
    expect((await r.report()).status).toBe('warn');
    r.register('c', () => {
      throw new Error('broken');
    });
    const report = await r.report();
    expect(report.status).toBe('fail');
    expect(report.checks.c?.[0]).toMatchObject({ status: 'fail', output: 'check threw: broken' });
    expect(typeof report.checks.a?.[0]?.time).toBe('string');
  });

  it('a check that overruns its timeout reports fail with the reason', async () => {
    const r = new HealthRegistry();
    r.register('hang', () => new Promise(() => undefined), { timeoutMs: 50 });
    const t0 = performance.now();
    const report = await r.report();
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(report.checks.hang?.[0]).toMatchObject({
      status: 'fail',
      output: 'check timed out after 50 ms',
    });
  });

  it('caches results and shares one run between concurrent probes', async () => {
    const r = new HealthRegistry();
    let runs = 0;
    r.register(
      'counted',
      async () => {
        runs++;
        await sleep(20);
        return { status: 'pass' };
      },
      { cacheMs: 200 },
    );
    await Promise.all(Array.from({ length: 20 }, () => r.report()));
    expect(runs).toBe(1);
    await r.report();
    expect(runs).toBe(1);
    await sleep(250);
    await r.report();
    expect(runs).toBe(2);
  });

  it('selects checks by kind', async () => {
    const r = new HealthRegistry();
    r.register('live', () => ({ status: 'pass' }), { kind: 'liveness' });
    r.register('deep', () => ({ status: 'fail' }));
    expect((await r.report(['liveness'])).status).toBe('pass');
    expect(r.names('liveness')).toEqual(['live']);
    expect((await r.report()).status).toBe('fail');
  });
});
