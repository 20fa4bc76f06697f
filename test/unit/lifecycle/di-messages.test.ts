import { describe, expect, it } from 'vitest';
import {
  createToken,
  inject,
  NatskitError,
  ServiceManager,
  type ServiceManagerOptions,
} from '../../../src/index.js';

const quiet = { logger: { level: 'silent' as const } };
const DB_URL = createToken<string>('DbUrl');
const CACHE = createToken<object>('Cache');

/** The natskit error a start rejects with. */
async function failure(options: ServiceManagerOptions): Promise<NatskitError> {
  const err = await ServiceManager.start({ ...quiet, ...options }).catch((e: unknown) => e);
  if (!NatskitError.is(err)) throw new Error(`expected a NatskitError, got ${String(err)}`);
  return err;
}

// Each message names the form of registration the user wrote, and the fix in that form.
describe('DI messages name the registration form used', () => {
  it('a class with no inject list and no decorators is pointed to inject: [...] first', async () => {
    class Repo {
      constructor(
        readonly url: string,
        readonly cache: object,
      ) {}
    }
    const err = await failure({ services: [{ token: Repo, useClass: Repo }] });
    expect(err.code).toBe('INJECTION_MISSING');
    expect(err.message).toBe(
      'Repo: the constructor of Repo takes 2 parameters and the registration does not say what to pass: list one token per parameter, in order, with inject: [TOKEN, ...] in the registration (no decorators needed), or put @inject(TOKEN) on each parameter (experimentalDecorators; natskit does not use emitDecoratorMetadata)',
    );
    expect(err.details).toMatchObject({ parameters: [0, 1], form: 'none' });
  });

  it('a class decorated on some parameters is told about the undecorated ones', async () => {
    class Repo {
      constructor(
        @inject(DB_URL) readonly url: string,
        readonly cache: object,
      ) {}
    }
    const err = await failure({
      services: [
        { token: DB_URL, useValue: 'x' },
        { token: Repo, useClass: Repo },
      ],
    });
    expect(err.code).toBe('INJECTION_MISSING');
    expect(err.message).toContain(
      'constructor parameter at index 1 of Repo has no @inject(TOKEN), while its other parameters have one',
    );
    expect(err.details).toMatchObject({ form: '@inject' });
  });

  it('a missing token listed in inject: [...] is named by its place in the list, not as @inject', async () => {
    class Repo {
      constructor(
        readonly url: string,
        readonly cache: object,
      ) {}
    }
    const err = await failure({
      services: [
        { token: DB_URL, useValue: 'x' },
        { token: Repo, useClass: Repo, inject: [DB_URL, CACHE] },
      ],
    });
    expect(err.code).toBe('DEPENDENCY_MISSING');
    expect(err.message).toBe('Repo depends on Cache (inject[1]), which is not registered');
  });

  it('a missing token asked for by @inject on a property says so', async () => {
    class Repo {
      @inject(CACHE) readonly cache!: object;
    }
    const err = await failure({ services: [{ token: Repo, useClass: Repo }] });
    expect(err.message).toBe(
      'Repo depends on Cache (@inject on property cache), which is not registered',
    );
  });

  it('a factory asking for a token nobody registered is DEPENDENCY_MISSING naming useFactory', async () => {
    const REPO = createToken<object>('Repo');
    const err = await failure({
      services: [{ token: REPO, useFactory: (ctx) => ({ cache: ctx.get(CACHE) }) }],
    });
    expect(err.code).toBe('DEPENDENCY_MISSING');
    expect(err.service).toBe('Repo');
    expect(err.message).toBe(
      'Repo could not be created: Repo depends on Cache (ctx.get in its useFactory), which is not registered',
    );
  });

  it('a factory may still ask for an optional token that is absent', async () => {
    const REPO = createToken<{ cache: unknown }>('Repo');
    await using app = await ServiceManager.start({
      ...quiet,
      services: [
        { token: REPO, useFactory: (ctx) => ({ cache: ctx.get(CACHE, { optional: true }) }) },
      ],
    });
    expect(app.get(REPO).cache).toBeUndefined();
  });
});
