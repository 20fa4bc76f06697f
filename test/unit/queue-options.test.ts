import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../src/index.js';
import { backoffDelay, checkAttempts, checkBackoff } from '../../src/queue/add-options.js';
import { checkJobId, queueNames } from '../../src/queue/names.js';

describe('queue options (pure logic)', () => {
  const fallback = { type: 'fixed', delayMs: 7 } as const;

  it('computes fixed and exponential delays, capped by maxDelayMs', () => {
    expect([1, 2, 3].map((n) => backoffDelay({ type: 'fixed', delayMs: 250 }, n))).toEqual([
      250, 250, 250,
    ]);
    const exp = { type: 'exponential', delayMs: 100, maxDelayMs: 500 } as const;
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(exp, n))).toEqual([100, 200, 400, 500, 500]);
    expect(backoffDelay({ type: 'exponential', delayMs: 1 }, 31)).toBe(2 ** 30);
  });

  it('checks a backoff field by field, naming the field', () => {
    expect(checkBackoff('b', undefined, fallback)).toBe(fallback);
    expect(checkBackoff('b', { type: 'exponential', delayMs: 0 }, fallback)).toEqual({
      type: 'exponential',
      delayMs: 0,
    });
    const cases: [unknown, string][] = [
      [null, 'b'],
      [{ type: 'linear', delayMs: 1 }, 'b.type'],
      [{ type: 'fixed' }, 'b.delayMs'],
      [{ type: 'fixed', delayMs: Number.NaN }, 'b.delayMs'],
      [{ type: 'exponential', delayMs: 1, maxDelayMs: -1 }, 'b.maxDelayMs'],
      [{ type: 'fixed', delayMs: 1, maxDelayMs: 5 }, 'b.maxDelayMs'],
      [{ type: 'fixed', delay: 1 }, 'b.delay'],
    ];
    for (const [value, field] of cases) {
      let err: unknown;
      try {
        checkBackoff('b', value, fallback);
      } catch (e) {
        err = e;
      }
      expect(NatskitError.is(err, 'INVALID_OPTIONS'), JSON.stringify(value)).toBe(true);
      expect((err as NatskitError).details?.field).toBe(field);
    }
  });

  it('takes 1 to 1000 attempts', () => {
    expect(checkAttempts('a', undefined, 3)).toBe(3);
    expect(checkAttempts('a', 1000, 3)).toBe(1000);
    for (const bad of [0, 1001, 2.5, '3', Number.NaN])
      expect(() => checkAttempts('a', bad, 3)).toThrow(NatskitError);
  });

  it('accepts names and job ids a subject token can hold, and nothing else', () => {
    expect(queueNames('emails-v2').readyAll).toBe('queue.emails-v2.ready.*');
    for (const bad of ['', 'a.b', 'a b', 'a*', '>', 'x'.repeat(65), 7])
      expect(() => queueNames(bad)).toThrow(NatskitError);
    expect(checkJobId('id', 'user-42=ok_1-a')).toBe('user-42=ok_1-a');
    // ':' is refused too: a job id is also a key of the results bucket, and KV keys take none.
    for (const bad of ['', 'a.b', 'a b', 'a*', 'a>', 'a:b', 'é', 'x'.repeat(129), 42]) {
      expect(() => checkJobId('id', bad)).toThrow(/subject token/);
    }
  });
});
