// One contract, every backend: the same tests run against the NATS KV state store (one server
// and a 3-node cluster) and the embedded SQLite store.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createToken,
  NatskitError,
  type Service,
  ServiceManager,
  type ServiceRegistration,
  STATE_STORE,
  type StateChange,
  type StateStore,
} from '../../src/index.js';
import { startNatsCluster, startNatsServer } from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';

const quiet = { logger: { level: 'silent' as const } };

interface Target {
  readonly name: string;
  /** Starts an app with a state store (and what it needs); `stop` releases all of it. */
  setup(
    services?: ServiceRegistration[],
  ): Promise<{ app: ServiceManager; stop: () => Promise<void> }>;
}

const targets: Target[] = [
  {
    name: 'nats',
    async setup(services = []) {
      const server = await startNatsServer();
      const app = await ServiceManager.start({ ...quiet, services, nats: { servers: server.url } });
      return {
        app,
        stop: async () => {
          await app.stop();
          await server[Symbol.asyncDispose]();
        },
      };
    },
  },
  {
    name: 'nats, 3-node cluster',
    async setup(services = []) {
      const cluster = await startNatsCluster();
      const app = await ServiceManager.start({
        ...quiet,
        services,
        nats: { servers: [...cluster.urls] },
        state: {
          backend: 'nats',
          bucket: 'state_r3',
          bucketConfig: { history: 5, replicas: 3, markerTtlMs: 1_000 },
        },
      });
      return {
        app,
        stop: async () => {
          await app.stop();
          await cluster[Symbol.asyncDispose]();
        },
      };
    },
  },
  {
    name: 'sqlite',
    async setup(services = []) {
      const dir = await mkdtemp(join(tmpdir(), 'natskit-state-'));
      const app = await ServiceManager.start({
        ...quiet,
        services,
        state: { backend: 'sqlite', path: join(dir, 'state.db') },
      });
      return {
        app,
        stop: async () => {
          await app.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

async function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const code = (err: unknown) => (NatskitError.is(err) ? err.code : String(err));

interface Job {
  status: string;
}
const jobSchema = testSchema<Job>((v) =>
  typeof (v as { status?: unknown })?.status === 'string' ? undefined : 'status must be a string',
);

describe.each(targets)('state store contract: $name', (target) => {
  let app: ServiceManager;
  let stop: () => Promise<void>;
  let store: StateStore;
  beforeAll(async () => {
    ({ app, stop } = await target.setup());
    store = app.get(STATE_STORE);
  }, 60_000);
  afterAll(async () => {
    await stop?.();
  });

  it('sets and gets values with revisions that increase with every write, across keys', async () => {
    expect(await store.getState('rev.absent')).toBeNull();
    expect(await store.getStateEntry('rev.absent')).toBeNull();
    const before = Date.now();
    const r1 = await store.setState('rev.a', { n: 1 });
    const r2 = await store.setState('rev.b', 'text');
    const r3 = await store.setState('rev.a', { n: 2 });
    expect(r2).toBeGreaterThan(r1);
    expect(r3).toBeGreaterThan(r2);
    expect(await store.getState('rev.a')).toEqual({ n: 2 });
    expect(await store.getState('rev.b')).toBe('text');
    const entry = await store.getStateEntry('rev.a');
    expect(entry).toMatchObject({ key: 'rev.a', value: { n: 2 }, revision: r3 });
    expect(entry?.created.getTime()).toBeGreaterThanOrEqual(before - 1_000);
    // JSON values of every shape come back as written.
    for (const v of [0, false, null, [1, 'a', { b: null }], { nested: { deep: [true] } }, 'ü ✓']) {
      await store.setState('rev.shape', v);
      expect(await store.getState('rev.shape')).toEqual(v);
    }
  });

  it('create (revision 0) only writes an absent key: never set, or deleted', async () => {
    const r1 = await store.setState('create.k', 'first', { revision: 0 });
    const err = await store.setState('create.k', 'second', { revision: 0 }).catch((e) => e);
    expect(code(err)).toBe('KV_REVISION_CONFLICT');
    expect(await store.getStateEntry('create.k')).toMatchObject({ value: 'first', revision: r1 });
    expect(await store.deleteState('create.k')).toBe(true);
    const r2 = await store.setState('create.k', 'again', { revision: 0 });
    expect(r2).toBeGreaterThan(r1);
    expect(await store.getState('create.k')).toBe('again');
  });

  it('update with an expected revision: a stale one is refused and writes nothing; of two racing, one wins', async () => {
    const r1 = await store.setState('cas.k', 1);
    const r2 = await store.setState('cas.k', 2, { revision: r1 });
    const stale = await store.setState('cas.k', 99, { revision: r1 }).catch((e) => e);
    expect(code(stale)).toBe('KV_REVISION_CONFLICT');
    expect(await store.getStateEntry('cas.k')).toMatchObject({ value: 2, revision: r2 });
    const never = await store.setState('cas.never', 1, { revision: r2 }).catch((e) => e);
    expect(code(never)).toBe('KV_REVISION_CONFLICT');
    expect(await store.getState('cas.never')).toBeNull();
    const race = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => store.setState('cas.k', 10 + i, { revision: r2 })),
    );
    const won = race.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of race) {
      if (r.status === 'rejected') expect(code(r.reason)).toBe('KV_REVISION_CONFLICT');
    }
    const winner = (won[0] as PromiseFulfilledResult<number>).value;
    expect((await store.getStateEntry('cas.k'))?.revision).toBe(winner);
  });

  it('delete says whether the key was set; with a revision it only deletes that revision', async () => {
    expect(await store.deleteState('del.absent')).toBe(false);
    const r1 = await store.setState('del.k', 'v');
    const stale = await store.deleteState('del.k', { revision: r1 + 1_000 }).catch((e) => e);
    expect(code(stale)).toBe('KV_REVISION_CONFLICT');
    expect(await store.getState('del.k')).toBe('v');
    expect(await store.deleteState('del.k', { revision: r1 })).toBe(true);
    expect(await store.getState('del.k')).toBeNull();
    expect(await store.deleteState('del.k')).toBe(false);
  });

  it('watch: the initial state of live matching keys, then every change in order; stop ends it', async () => {
    await store.setState('w.job.1', { status: 'queued' });
    await store.setState('w.job.2', { status: 'queued' });
    await store.setState('w.job.3', { status: 'queued' });
    await store.deleteState('w.job.3'); // deleted: not part of the state
    await store.setState('w.other.1', { status: 'elsewhere' }); // does not match
    const seen: StateChange<Job>[] = [];
    let initializedAfter = -1;
    const watcher = await store.watchState<Job>('w.job.*', (c) => void seen.push(c), {
      onInitialized: () => {
        initializedAfter = seen.length;
      },
    });
    await until('the initial state', () => initializedAfter >= 0);
    expect(seen.map((c) => [c.type, c.key, c.initial])).toEqual([
      ['put', 'w.job.1', true],
      ['put', 'w.job.2', true],
    ]);
    expect(initializedAfter).toBe(2);
    const r1 = await store.setState('w.job.1', { status: 'done' });
    await store.setState('w.other.1', { status: 'ignored' });
    await store.deleteState('w.job.2');
    const r3 = await store.setState('w.job.4', { status: 'new' });
    await until('the updates', () => seen.length === 5);
    expect(seen.slice(2).map((c) => [c.type, c.key, c.initial])).toEqual([
      ['put', 'w.job.1', false],
      ['delete', 'w.job.2', false],
      ['put', 'w.job.4', false],
    ]);
    expect(seen[2]).toMatchObject({ value: { status: 'done' }, revision: r1 });
    const revisions = seen.map((c) => c.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(watcher.lastRevision).toBe(r3);
    await watcher.stop();
    await watcher.done;
    await store.setState('w.job.1', { status: 'after stop' });
    await sleep(200);
    expect(seen).toHaveLength(5);
  });

  it('a write to a deleted key with the revision of its delete succeeds (the last change is the delete)', async () => {
    await store.setState('lastdel.k', 1);
    const changes: StateChange<number>[] = [];
    await using _w = await store.watchState<number>('lastdel.k', (c) => void changes.push(c));
    await store.deleteState('lastdel.k');
    await until('the delete', () => changes.some((c) => c.type === 'delete'));
    const del = changes.find((c) => c.type === 'delete') as StateChange<number>;
    const r = await store.setState('lastdel.k', 2, { revision: del.revision });
    expect(r).toBeGreaterThan(del.revision);
    expect(await store.getState('lastdel.k')).toBe(2);
  });

  it('watch keeps up with a burst: 300 keys written at once arrive in revision order, each once', async () => {
    const seen: StateChange<number>[] = [];
    await using _w = await store.watchState<number>('burst.>', (c) => void seen.push(c));
    await Promise.all(Array.from({ length: 300 }, (_, i) => store.setState(`burst.k${i}`, i)));
    await until('300 changes', () => seen.length >= 300);
    await sleep(100);
    expect(seen).toHaveLength(300);
    expect(new Set(seen.map((c) => c.key)).size).toBe(300);
    const revisions = seen.map((c) => c.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
  });

  it('a callback that throws does not end the watch', async () => {
    const seen: string[] = [];
    await using _w = await store.watchState('throw.*', (c) => {
      seen.push(c.key);
      if (c.key === 'throw.a') throw new Error('callback bug');
    });
    await store.setState('throw.a', 1);
    await store.setState('throw.b', 2);
    await until('both changes', () => seen.length === 2);
    expect(seen).toEqual(['throw.a', 'throw.b']);
  });

  it('TTL: the value is there, then gone, and a watcher sees the expiry as a purge', async () => {
    const seen: StateChange<string>[] = [];
    await using _w = await store.watchState<string>('ttl.*', (c) => void seen.push(c));
    const r = await store.setState('ttl.k', 'short-lived', { ttlMs: 1_000 });
    await store.setState('ttl.keep', 'stays');
    expect(await store.getState('ttl.k')).toBe('short-lived');
    await until('expiry', async () => (await store.getState('ttl.k')) === null, 10_000);
    await until('the purge reaches the watcher', () =>
      seen.some((c) => c.key === 'ttl.k' && c.type === 'purge'),
    );
    const purge = seen.find((c) => c.key === 'ttl.k' && c.type === 'purge') as StateChange<string>;
    expect(purge.revision).toBeGreaterThan(r);
    expect(await store.getState('ttl.keep')).toBe('stays');
    // Absent again: create works.
    await store.setState('ttl.k', 'back', { revision: 0 });
    expect(await store.getState('ttl.k')).toBe('back');
    for (const ttlMs of [999, 1_000.5, -1, Number.NaN]) {
      const err = await store.setState('ttl.bad', 1, { ttlMs }).catch((e) => e);
      expect(code(err), String(ttlMs)).toBe('INVALID_OPTIONS');
    }
    expect(await store.getState('ttl.bad')).toBeNull();
  });

  it('Standard Schema: a bad value is refused before anything is written; a bad stored value fails the read and is `invalid` in a watch', async () => {
    await store.setState('schema.job', { status: 'ok' }, { schema: jobSchema });
    const bad = await store
      .setState('schema.job', { status: 7 } as unknown as Job, { schema: jobSchema })
      .catch((e) => e);
    expect(code(bad)).toBe('VALIDATION_FAILED');
    expect(await store.getState('schema.job', { schema: jobSchema })).toEqual({ status: 'ok' });
    await store.setState('schema.raw', { status: 1 }); // written without a schema
    const read = await store.getState('schema.raw', { schema: jobSchema }).catch((e) => e);
    expect(code(read)).toBe('VALIDATION_FAILED');
    const seen: StateChange<Job>[] = [];
    await using _w = await store.watchState<Job>('schema.*', (c) => void seen.push(c), {
      schema: jobSchema,
    });
    await until('initial state', () => seen.length === 2);
    expect(seen.map((c) => [c.key, c.type])).toEqual([
      ['schema.job', 'put'],
      ['schema.raw', 'invalid'],
    ]);
    const invalid = seen[1] as Extract<StateChange<Job>, { type: 'invalid' }>;
    expect(invalid.error.code).toBe('VALIDATION_FAILED');
    await store.setState('schema.job', { status: 'later' });
    await until('the update after an invalid value', () => seen.length === 3);
  });

  it('bad input gets a typed error and writes nothing', async () => {
    const cases: [() => Promise<unknown>, string][] = [
      [() => store.setState('', 1), 'INVALID_KEY'],
      [() => store.setState('a b', 1), 'INVALID_KEY'],
      [() => store.setState('bad.*', 1), 'INVALID_KEY'],
      [() => store.setState('_natskit.x', 1), 'INVALID_KEY'],
      [() => store.setState('x'.repeat(5_000), 1), 'INVALID_KEY'],
      [() => store.getState('a>'), 'INVALID_KEY'],
      [() => store.watchState('a..b', () => undefined), 'INVALID_KEY'],
      [() => store.setState('bad.value', 10n), 'INVALID_VALUE'],
      [() => store.setState('bad.value', undefined), 'INVALID_VALUE'],
      [() => store.setState('bad.value', { n: Number.NaN }), 'INVALID_VALUE'],
      [() => store.setState('bad.value', new Map()), 'INVALID_VALUE'],
      [() => store.setState('bad.value', 1, { revision: -1 }), 'INVALID_OPTIONS'],
      [() => store.deleteState('bad.value', { revision: 1.5 }), 'INVALID_OPTIONS'],
      [() => store.watchState('ok', undefined as never), 'INVALID_OPTIONS'],
    ];
    for (const [call, expected] of cases) {
      expect(code(await call().catch((e) => e)), call.toString()).toBe(expected);
    }
    expect(await store.getState('bad.value')).toBeNull();
  });

  it('is injected by token into a service that starts after it and stops before it; then calls are refused and watches end', async () => {
    class Jobs implements Service {
      readonly state: StateStore;
      readonly events: string[] = [];
      constructor(state: StateStore) {
        this.state = state;
      }
      async start() {
        await this.state.setState('inject.k', 'from start');
        this.events.push('started');
      }
      async stop() {
        // The store is still running while the services that use it stop.
        await this.state.setState('inject.k', 'from stop').then(
          () => this.events.push('stopped'),
          (err) => this.events.push(`stop failed: ${code(err)}`),
        );
      }
    }
    const JOBS = createToken<Jobs>('Jobs');
    const own = await target.setup([{ token: JOBS, useClass: Jobs, inject: [STATE_STORE] }]);
    const s = own.app.get(STATE_STORE);
    const jobs = own.app.get(JOBS);
    expect(await s.getState('inject.k')).toBe('from start');
    const watcher = await s.watchState('inject.*', () => undefined);
    await own.stop();
    expect(jobs.events).toEqual(['started', 'stopped']);
    await watcher.done; // ended with the store
    expect(code(await s.getState('inject.k').catch((e) => e))).toBe('INVALID_STATE');
    expect(code(await s.setState('inject.k', 1).catch((e) => e))).toBe('INVALID_STATE');
    expect(code(await s.watchState('inject.*', () => undefined).catch((e) => e))).toBe(
      'INVALID_STATE',
    );
  });
});
