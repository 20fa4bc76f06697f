import { TimeoutError } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { positiveInt } from '../../src/config/validate.js';
import { NatskitError } from '../../src/errors/natskit-error.js';
import { RequestInterruptedError, withRetry } from '../../src/retry/retry.js';
import { TIMED_OUT, withDeadline } from '../../src/timing/deadline.js';

describe('withRetry', () => {
  it('retries transient errors, counts them, and gives NATS_UNAVAILABLE when they outlast the retries', async () => {
    const counter = { retries: 0 };
    let calls = 0;
    const ok = await withRetry(
      async () => {
        if (++calls < 3) throw new TimeoutError();
        return 'ok';
      },
      { what: 'x', retry: { retries: 5, minDelayMs: 1, maxDelayMs: 2 }, counter },
    );
    expect([ok, calls, counter.retries]).toEqual(['ok', 3, 2]);
    const err = await withRetry(
      async () => {
        throw new TimeoutError();
      },
      { what: 'doing x', retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2 } },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NATS_UNAVAILABLE', details: { attempts: 3 } });
    expect((err as Error).message).toContain('doing x');
  });

  it('rethrows a final error at once, unchanged', async () => {
    const final = new NatskitError('KV_REVISION_CONFLICT', 'moved');
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw final;
      },
      { what: 'x', retry: { retries: 5 } },
    ).catch((e: unknown) => e);
    expect([err, calls]).toEqual([final, 1]);
  });

  it('retries a request interrupted by a reconnect without waiting', async () => {
    let calls = 0;
    const t0 = performance.now();
    await withRetry(
      async () => {
        if (++calls === 1) throw new RequestInterruptedError();
      },
      { what: 'x', retry: { minDelayMs: 5_000 } },
    );
    expect(calls).toBe(2);
    expect(performance.now() - t0).toBeLessThan(1_000); // not the 5 s backoff
  });

  it('an aborted signal gives ABORTED', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(withRetry(async () => 1, { what: 'x', signal: ac.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });
});

describe('withDeadline and positiveInt', () => {
  it('settles with the work, or with TIMED_OUT', async () => {
    expect(await withDeadline(Promise.resolve(1), 1_000)).toBe(1);
    expect(await withDeadline(new Promise(() => undefined), 5)).toBe(TIMED_OUT);
    await expect(withDeadline(Promise.reject(new Error('x')), 1_000)).rejects.toThrow('x');
  });

  it('positiveInt returns the value or the default, and names the field', () => {
    expect(positiveInt('f', undefined, 7)).toBe(7);
    expect(positiveInt('f', 3, 7)).toBe(3);
    for (const bad of [0, -1, 1.5, Number.NaN, '3']) {
      let err: unknown;
      try {
        positiveInt('worker.concurrency', bad, 1);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({
        code: 'INVALID_OPTIONS',
        details: { field: 'worker.concurrency' },
      });
    }
  });
});
