import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createToken, NatskitError, type Service, ServiceManager } from '../../../src/index.js';

const quiet = { logger: { level: 'silent' as const } };

// A failed start reports the service that failed, once: not the siblings its failure aborted.
describe('the error of a failed start', () => {
  it('a sibling that rejects with the abort reason is not listed as a concurrent failure under its own name', async () => {
    const FAILS = createToken<Service>('Fails');
    const ABORTED = createToken<Service>('Aborted');
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        {
          token: FAILS,
          useValue: {
            async start() {
              await new Promise((r) => setTimeout(r, 20));
              throw new NatskitError('STORAGE_FAILED', 'the file is in use by another process');
            },
          },
        },
        {
          token: ABORTED,
          useValue: {
            // As ConnectionService does while it reads the capabilities: the signal's reason.
            start: (signal: AbortSignal) =>
              new Promise<void>((_, reject) =>
                signal.addEventListener('abort', () => reject(signal.reason)),
              ),
          },
        },
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'STORAGE_FAILED')).toBe(true);
    const e = err as NatskitError;
    expect(e.service).toBe('Fails');
    expect(e.message).toBe('Fails failed to start: the file is in use by another process');
    expect(e.details?.concurrentErrors).toEqual([]);
    // The natskit error the service threw is not kept as a cause repeating the same text.
    expect(e.cause).toBeUndefined();
    expect(inspect(e).split('\n').length).toBeLessThan(25);
  });

  it('a sibling that fails for a reason of its own is still listed', async () => {
    const A = createToken<Service>('A');
    const B = createToken<Service>('B');
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useValue: { start: () => Promise.reject(new Error('a broke')) } },
        {
          token: B,
          useValue: {
            start: (signal: AbortSignal) =>
              new Promise<void>((_, reject) =>
                signal.addEventListener('abort', () => reject(new Error('b gave up'))),
              ),
          },
        },
      ],
    }).catch((e: unknown) => e);
    const others = (err as NatskitError).details?.concurrentErrors as NatskitError[];
    expect(others.map((o) => [o.service, o.message])).toEqual([
      ['B', 'B failed to start: b gave up'],
    ]);
  });
});
