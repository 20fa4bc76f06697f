import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  createToken,
  inject,
  NatskitError,
  type Service,
  ServiceManager,
} from '../../../src/index.js';

const quiet = { logger: { level: 'silent' as const } };
const DEP = createToken<string>('Dep');

describe('every lifecycle error is a NatskitError', () => {
  it('a constructor parameter without @inject fails before anything starts, naming the service, the index and the fix', async () => {
    const started: string[] = [];
    class Other implements Service {
      start() {
        started.push('other');
      }
    }
    class Forgot {
      constructor(
        @inject(DEP) readonly dep: string,
        readonly logger: unknown,
      ) {}
    }
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: DEP, useValue: 'x' },
        { token: Other, useClass: Other },
        { token: Forgot, useClass: Forgot },
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'INJECTION_MISSING')).toBe(true);
    const e = err as NatskitError;
    expect(e.service).toBe('Forgot');
    expect(e.details?.parameters).toEqual([1]);
    expect(e.message).toContain('index 1');
    expect(e.message).toContain('@inject(TOKEN)');
    expect(e.message).not.toContain('emitDecoratorMetadata" compiler option to true');
    expect(started).toEqual([]);
  });

  it('the same for a scoped registration, at start', async () => {
    class ScopedForgot {
      constructor(readonly a: unknown) {}
    }
    const err = await ServiceManager.start({
      ...quiet,
      scoped: [{ token: ScopedForgot, useClass: ScopedForgot }],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'INJECTION_MISSING')).toBe(true);
    expect((err as NatskitError).details?.parameters).toEqual([0]);
  });

  it('a scoped constructor that throws gives RESOLUTION_FAILED with the cause', async () => {
    const boom = new Error('no database');
    class Explodes {
      constructor() {
        throw boom;
      }
    }
    await using app = await ServiceManager.start({
      ...quiet,
      scoped: [{ token: Explodes, useClass: Explodes }],
    });
    await using scope = app.createScope();
    let err: unknown;
    try {
      scope.get(Explodes);
    } catch (e) {
      err = e;
    }
    expect(NatskitError.is(err, 'RESOLUTION_FAILED')).toBe(true);
    expect((err as NatskitError).cause).toBe(boom);
  });
});

describe('budgets and listeners', () => {
  it('disposing open scopes counts against the shutdown budget: a hung one cannot hold the stop', async () => {
    const stopped: string[] = [];
    class Hangs {
      [Symbol.asyncDispose]() {
        return new Promise<void>(() => undefined);
      }
    }
    class Db implements Service {
      stop() {
        stopped.push('db');
      }
    }
    const app = await ServiceManager.start({
      ...quiet,
      shutdownTimeoutMs: 300,
      services: [{ token: Db, useClass: Db }],
      scoped: [{ token: Hangs, useClass: Hangs }],
    });
    const scope = app.createScope();
    scope.get(Hangs);
    const t0 = performance.now();
    const err = await app.stop().catch((e: unknown) => e);
    const ms = performance.now() - t0;
    expect(NatskitError.is(err, 'SHUTDOWN_FAILED')).toBe(true);
    expect(((err as AggregateError).errors[0] as NatskitError).code).toBe('SERVICE_STOP_TIMEOUT');
    expect(stopped).toEqual(['db']); // the services still stopped
    expect(ms).toBeLessThan(2_000); // not hung
  });

  it('a probe server that cannot listen leaves no signal listener behind', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    const before = [process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')];
    try {
      const err = await ServiceManager.start({
        ...quiet,
        handleSignals: true,
        health: { port },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual(before);
    } finally {
      busy.close();
    }
  });
});
