import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KVStoreService,
  NatskitError,
  type QueueEvent,
  queue,
  ServiceManager,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const fast = { fetchExpiresMs: 1_000 };

const sums = queue<{ a: number; b: number }, { sum: number }>({ name: 'sums', results: true });
const small = queue<{ size: number }, string>({
  name: 'small',
  attempts: 1,
  results: { maxBytes: 256 },
});
// A one-second TTL only where the expiry is the point: elsewhere a loaded machine can take
// longer than that between a job's end and the test's read.
const brief = queue<{ size: number }, string>({ name: 'brief', results: { ttlMs: 1_000 } });
const none = queue({ name: 'none' });
const watched = queue<{ fail: boolean }, string>({
  name: 'watched',
  results: true,
  attempts: 2,
  backoff: { type: 'fixed', delayMs: 50 },
});
const looked = queue<{ k: string }, number>({
  name: 'looked',
  results: true,
  attempts: 2,
  backoff: { type: 'fixed', delayMs: 100 },
});

describe('queue: results', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [sums, small, brief, none, looked, watched],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it("stores the handler's return value; a producer waiting before the job ran gets it", async () => {
    const q = app.get(sums.token);
    const { id } = await q.add({ a: 2, b: 3 });
    const waiting = q.result(id, { timeoutMs: 10_000 }); // before any worker runs
    await using _w = await q.work((job) => ({ sum: job.data.a + job.data.b }), fast);
    const outcome = await waiting;
    expect(outcome).toMatchObject({ state: 'completed', id, value: { sum: 5 }, attempt: 1 });
    if (outcome.state === 'completed') {
      const sum: number = outcome.value.sum; // typed from the declaration
      expect(sum).toBe(5);
    }
    // Read again once done (no wait), and it is a plain KV bucket other tools can read.
    expect(await q.result(id, { timeoutMs: 0 })).toMatchObject({
      state: 'completed',
      value: { sum: 5 },
    });
    const raw = await app.get(KVStoreService).get('queue_sums_results', id);
    expect(raw).toMatchObject({ state: 'completed', value: { sum: 5 } });
  });

  it('reports pending for a job not done within the wait, and refuses bad wait options', async () => {
    const q = app.get(sums.token);
    const started = Date.now();
    expect(await q.result('never-added', { timeoutMs: 300 })).toEqual({
      state: 'pending',
      id: 'never-added',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    const bad = await q.result('x', { timeoutMs: -1 }).catch((e: unknown) => e);
    expect(NatskitError.is(bad, 'INVALID_OPTIONS')).toBe(true);
    const typo = await q.result('x', { timeout: 5 } as never).catch((e: unknown) => e);
    expect((typo as NatskitError).details).toMatchObject({ suggestion: 'timeoutMs' });
    const ac = new AbortController();
    const aborted = q
      .result('y', { timeoutMs: 10_000, signal: ac.signal })
      .catch((e: unknown) => e);
    ac.abort();
    expect(NatskitError.is(await aborted, 'ABORTED')).toBe(true);
    await expect(app.get(none.token).result('x')).rejects.toThrow(/stores no results/);
  });

  it('stores a dead outcome, forgets it on redrive, and bounds the size of a stored result', async () => {
    const q = app.get(small.token);
    let fail = true;
    await using w = await q.work((job) => {
      if (fail) throw new Error('boom');
      return 'x'.repeat(job.data.size);
    }, fast);
    const { id } = await q.add({ size: 10 }, { jobId: 'dies' });
    expect(await q.result(id, { timeoutMs: 10_000 })).toMatchObject({
      state: 'dead',
      reason: 'failed',
      error: 'boom',
    });
    fail = false;
    expect(await q.redrive(id)).toBe(true);
    expect(await q.result(id, { timeoutMs: 10_000 })).toMatchObject({
      state: 'completed',
      value: 'x'.repeat(10),
    });
    const big = await q.add({ size: 1_000 });
    const outcome = await q.result(big.id, { timeoutMs: 10_000 });
    expect(outcome).toMatchObject({ state: 'completed', value: null });
    expect(outcome.state === 'completed' && outcome.error).toMatch(/not stored/);
    expect(w.stats.completed).toBe(2);
  });

  it('expires outcomes after the ttl', async () => {
    const q = app.get(brief.token);
    await using w = await q.work(() => 'ok', fast);
    const { id } = await q.add({ size: 1 });
    await waitUntil(() => w.stats.completed === 1, 5_000, 'done');
    expect((await q.result(id, { timeoutMs: 0 })).state).toBe('completed');
    await waitForValue(
      () => q.result(id, { timeoutMs: 0 }),
      (o) => o.state === 'pending',
      10_000,
      'expired',
    );
  });

  it('looks a job up by id in every state, with its attempts and history', async () => {
    const q = app.get(looked.token);
    expect((await q.getJob('nobody')).state).toBe('unknown');
    await q.add({ k: 'w' }, { jobId: 'w1', headers: { tenant: 't' } });
    await q.add({ k: 'later' }, { jobId: 'l1', delayMs: 60_000 });
    expect(await q.getJob('w1')).toMatchObject({
      state: 'waiting',
      data: { k: 'w' },
      headers: { tenant: 't' },
      attempts: 2,
      history: [],
      runAt: undefined,
    });
    const delayed = await q.getJob('l1');
    expect(delayed).toMatchObject({ state: 'delayed', data: { k: 'later' } });
    expect(delayed.runAt?.getTime()).toBeGreaterThan(Date.now() + 50_000);
    expect(await q.counts()).toEqual({ waiting: 1, active: 0, delayed: 1, dead: 0 });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    await using w = await q.work(async (job) => {
      if (job.data.k === 'w' && job.attempt === 1) throw new Error('first try fails');
      if (job.data.k === 'w') await gate;
      if (job.data.k === 'dies') throw new Error('always');
      return job.attempt;
    }, fast);
    const active = await waitForValue(
      () => q.getJob('w1'),
      (j) => j.history.length === 1 && w.stats.running === 1,
      10_000,
      'second attempt running',
    );
    expect(active).toMatchObject({
      state: 'active',
      history: [{ attempt: 1, error: 'first try fails' }],
    });
    expect(await q.counts()).toEqual({ waiting: 0, active: 1, delayed: 1, dead: 0 });
    release();
    const done = await waitForValue(
      () => q.getJob('w1'),
      (j) => j.state === 'completed',
      10_000,
      'completed',
    );
    expect(done.outcome).toMatchObject({ state: 'completed', value: 2, attempt: 2 });
    expect(done.history).toEqual([]); // dropped once it completed
    await q.add({ k: 'dies' }, { jobId: 'd1' });
    const dead = await waitForValue(
      () => q.getJob('d1'),
      (j) => j.state === 'dead',
      10_000,
      'dead',
    );
    expect(dead).toMatchObject({
      data: { k: 'dies' },
      error: 'always',
      history: [{ attempt: 1, error: 'always' }],
    });
    const settled = { waiting: 0, active: 0, delayed: 1, dead: 1 };
    await waitForValue(
      () => q.counts(),
      (c) => JSON.stringify(c) === JSON.stringify(settled),
      5_000,
      'counts settle',
    );
  });

  it('publishes completed, failed, dead and progress events to another process, and keeps the last progress', async () => {
    // Another ServiceManager (its own connection) declaring the same queue: a second process.
    const watcher = queue<{ fail: boolean }, string>({ name: 'watched', results: true });
    const other = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [watcher],
    });
    try {
      const seen: QueueEvent[] = [];
      const onlyP1: QueueEvent[] = [];
      const sub = other.get(watcher.token).events((e) => {
        seen.push(e);
        if (e.type === 'dead') throw new Error('a listener that throws is logged, not fatal');
      });
      const byId = other
        .get(watcher.token)
        .events((e) => onlyP1.push(e), { id: 'p1', types: ['progress'] });
      await sub.ready;
      await byId.ready;
      const q = app.get(watched.token);
      let badProgress: unknown;
      await using w = await q.work(async (job) => {
        if (job.data.fail) throw new Error('no luck');
        await job.progress({ pct: 50 });
        await job.progress({ pct: 100 });
        badProgress = await job.progress(10n).catch((e: unknown) => e);
        return 'ok';
      }, fast);
      await q.add({ fail: false }, { jobId: 'p1' });
      await q.add({ fail: true }, { jobId: 'p2' });
      await waitUntil(() => w.stats.completed === 1 && w.stats.dead === 1, 10_000, 'both finished');
      await waitUntil(() => seen.length === 5, 5_000, 'five events');
      const brief = seen.map((e) => `${e.type}:${e.id}`).sort();
      expect(brief).toEqual(
        ['completed:p1', 'dead:p2', 'failed:p2', 'progress:p1', 'progress:p1'].sort(),
      );
      expect(seen.find((e) => e.type === 'failed')).toMatchObject({
        attempt: 1,
        error: 'no luck',
        retryInMs: 50,
      });
      expect(seen.find((e) => e.type === 'dead')).toMatchObject({
        reason: 'failed',
        error: 'no luck',
      });
      expect(seen.find((e) => e.type === 'completed')?.at).toBeInstanceOf(Date);
      expect(onlyP1.map((e) => (e.type === 'progress' ? e.value : e.type))).toEqual([
        { pct: 50 },
        { pct: 100 },
      ]);
      expect(NatskitError.is(badProgress, 'INVALID_VALUE')).toBe(true);
      expect(await q.getJob('p1')).toMatchObject({ state: 'completed', progress: { pct: 100 } });
      sub.close();
      byId[Symbol.dispose]();
      await q.add({ fail: false }, { jobId: 'p3' });
      await waitUntil(() => w.stats.completed === 2, 5_000, 'third done');
      await sleep(200); // an event after close would arrive by now
      expect(seen).toHaveLength(5);
      expect(() => q.events(null as never)).toThrow(NatskitError);
      expect(() => q.events(() => undefined, { types: ['done' as never] })).toThrow(/types/);
    } finally {
      await other.stop();
    }
  });
});
