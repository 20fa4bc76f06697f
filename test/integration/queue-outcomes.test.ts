import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NatskitError,
  queue,
  ServiceManager,
  StreamService,
  unrecoverable,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const fast = { fetchExpiresMs: 1_000 };

const retries = queue<{ k: string }>({
  name: 'retries',
  attempts: 4,
  backoff: { type: 'fixed', delayMs: 300 },
});
const expo = queue<{ k: string }>({ name: 'expo' });
const custom = queue<{ k: string }>({ name: 'custom', attempts: 3 });
const stally = queue<{ k: string }>({ name: 'stally', attempts: 1 });
const deadq = queue<{ k: string }>({
  name: 'deadq',
  attempts: 2,
  backoff: { type: 'fixed', delayMs: 50 },
});
const strict = queue<{ n: number }>({
  name: 'strict',
  schema: testSchema<{ n: number }>((v) =>
    typeof (v as { n?: unknown })?.n === 'number' ? undefined : 'n must be a number',
  ),
});

describe('queue: retries, dead letters and redrive', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [retries, expo, custom, deadq, strict, stally],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('retries a failing job after its fixed backoff, then completes it', async () => {
    const q = app.get(retries.token);
    const at: number[] = [];
    await using w = await q.work((job) => {
      at.push(performance.now());
      if (job.attempt < 3) throw new Error(`attempt ${job.attempt} fails`);
    }, fast);
    await q.add({ k: 'a' }, { jobId: 'r1' });
    await waitUntil(() => w.stats.completed === 1, 10_000, 'completed');
    expect(at).toHaveLength(3);
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(290);
    expect(w.stats).toMatchObject({ completed: 1, retried: 2, dead: 0 });
    expect(await q.deadJobs()).toEqual([]);
    // Its attempt history was dropped when it completed.
    const dead = await app.get(StreamService).jsm.streams.info('QUEUE_retries_DEAD');
    expect(dead.state.messages).toBe(0);
  });

  it('doubles an exponential backoff per failure, and a per-add backoff overrides the queue', async () => {
    const q = app.get(expo.token);
    const at: number[] = [];
    await using w = await q.work((job) => {
      at.push(performance.now());
      if (job.attempt < 3) throw new Error('again');
    }, fast);
    await q.add({ k: 'e' }, { attempts: 3, backoff: { type: 'exponential', delayMs: 200 } });
    await waitUntil(() => w.stats.completed === 1, 10_000, 'completed');
    const [a, b, c] = at as [number, number, number];
    expect(b - a).toBeGreaterThanOrEqual(190);
    expect(b - a).toBeLessThan(900); // not the worker's default (1000 ms)
    expect(c - b).toBeGreaterThanOrEqual(390); // doubled: 400 ms
  });

  it("uses the worker's backoff function, and the job's backoff when it throws or returns junk", async () => {
    const q = app.get(custom.token);
    const asked: [number, string, string][] = [];
    const at: number[] = [];
    await using w = await q.work(
      (job) => {
        at.push(performance.now());
        if (job.attempt < 4) throw new Error(`fail ${job.attempt}`);
      },
      {
        ...fast,
        backoff: (failures, job, err) => {
          asked.push([failures, job.data.k, (err as Error).message]);
          if (failures === 2) throw null; // user code may throw anything
          if (failures === 3) return Number.NaN;
          return 1_200;
        },
      },
    );
    await q.add({ k: 'c' }, { attempts: 4, backoff: { type: 'fixed', delayMs: 100 } });
    await waitUntil(() => w.stats.completed === 1, 10_000, 'completed');
    expect(asked).toEqual([
      [1, 'c', 'fail 1'],
      [2, 'c', 'fail 2'],
      [3, 'c', 'fail 3'],
    ]);
    const [a, b, c, d] = at as [number, number, number, number];
    expect(b - a).toBeGreaterThanOrEqual(1_190); // the function's 1200
    expect(c - b).toBeLessThan(900); // it threw: the job's fixed 100
    expect(d - c).toBeLessThan(900); // NaN: the job's fixed 100
  });

  it('dead-letters a job that exhausts its attempts, with payload, headers, last error and history', async () => {
    const q = app.get(deadq.token);
    const thrown: unknown[] = ['a string', { no: 'message' }];
    let calls = 0;
    await using w = await q.work(() => {
      throw thrown[calls++];
    }, fast);
    await q.add({ k: 'doomed' }, { jobId: 'doomed-1', headers: { tenant: 't1' } });
    const [dead] = await waitForValue(
      () => q.deadJobs(),
      (d) => d.length === 1,
      10_000,
      'dead letter',
    );
    expect(dead).toMatchObject({
      id: 'doomed-1',
      reason: 'failed',
      error: '{"no":"message"}',
      code: undefined,
      data: { k: 'doomed' },
      headers: { tenant: 't1' },
    });
    expect(dead?.history).toEqual([{ attempt: 1, at: expect.any(String), error: 'a string' }]);
    expect(new TextDecoder().decode(dead?.payload)).toBe('{"k":"doomed"}');
    expect(w.stats).toMatchObject({ dead: 1, retried: 1, completed: 0 });
    expect(calls).toBe(2);
    // The ack of the dead-lettered job follows its dead letter by a round trip.
    await waitForValue(
      () => q.counts(),
      (c) => c.waiting === 0 && c.active === 0 && c.dead === 1,
      5_000,
      'counts settle',
    );
  });

  it('dead-letters at once on unrecoverable(), and redrive puts the job back with fresh attempts', async () => {
    const q = app.get(deadq.token);
    let fixed = false;
    const ran: number[] = [];
    await using w = await q.work((job) => {
      ran.push(job.attempt);
      if (!fixed) throw unrecoverable('the account is gone', new Error('404'));
    }, fast);
    await q.add({ k: 'u' }, { jobId: 'unrec-1', attempts: 5 });
    await waitForValue(
      () => q.deadJobs(),
      (d) => d.some((j) => j.id === 'unrec-1'),
      10_000,
      'dead letter',
    );
    const dead = (await q.deadJobs()).find((j) => j.id === 'unrec-1');
    expect(dead).toMatchObject({ reason: 'unrecoverable', code: 'JOB_UNRECOVERABLE', history: [] });
    expect(ran).toEqual([1]);
    fixed = true;
    expect(await q.redrive('unrec-1')).toBe(true);
    await waitUntil(() => w.stats.completed === 1, 10_000, 'redriven job completed');
    expect(ran).toEqual([1, 1]); // fresh attempts: the redriven job starts at attempt 1
    expect((await q.deadJobs()).map((j) => j.id)).toEqual(['doomed-1']);
    expect(await q.redrive('unrec-1')).toBe(false);
    expect(await q.redriveAll()).toBe(1);
    await waitUntil(() => w.stats.completed === 2, 10_000, 'doomed-1 completed after redriveAll');
    expect(await q.deadJobs()).toEqual([]);
  });

  it('dead-letters a payload that fails the schema or cannot be decoded, keeping its bytes', async () => {
    const q = app.get(strict.token);
    const streams = app.get(StreamService);
    // Written by another producer, not through the queue: the worker still must not lose it.
    await streams.publish('queue.strict.ready.bad-1', '{"n":"x"}', {
      headers: { 'Natskit-Job-Id': 'bad-1' },
    });
    await streams.publish('queue.strict.ready.bad-2', '{not json', {
      headers: { 'Natskit-Job-Id': 'bad-2' },
    });
    let called = 0;
    await using _w = await q.work(() => {
      called++;
    }, fast);
    const dead = await waitForValue(
      () => q.deadJobs(),
      (d) => d.length === 2,
      10_000,
      'dead letters',
    );
    expect(dead.map((d) => [d.id, d.reason, d.code, d.data])).toEqual([
      ['bad-1', 'undecodable', 'VALIDATION_FAILED', { n: 'x' }],
      ['bad-2', 'undecodable', undefined, undefined],
    ]);
    expect(new TextDecoder().decode(dead[1]?.payload)).toBe('{not json');
    expect(called).toBe(0);
  });

  it('dead-letters as stalled a job whose deliveries keep ending without a result', async () => {
    const q = app.get(stally.token);
    await q.add({ k: 'hangs' }, { jobId: 'hang-1' });
    const attempts: number[] = [];
    // Two workers in turn take the job and never finish it: each stop gives it back.
    for (let i = 0; i < 2; i++) {
      const w = await q.work(
        async (job, signal) => {
          attempts.push(job.attempt);
          await new Promise((resolve) => signal.addEventListener('abort', resolve));
        },
        { ...fast, maxStalls: 1, drainTimeoutMs: 50 },
      );
      await waitUntil(() => w.stats.running === 1, 5_000, 'running');
      await w.stop();
      // The handler returned once aborted at the drain deadline: that is not a completion.
      expect(w.stats).toMatchObject({ completed: 0, running: 0, dead: 0 });
    }
    let ran = false;
    await using w3 = await q.work(
      () => {
        ran = true;
      },
      { ...fast, maxStalls: 1 },
    );
    const [dead] = await waitForValue(
      () => q.deadJobs(),
      (d) => d.length === 1,
      10_000,
      'stalled',
    );
    expect(dead).toMatchObject({ id: 'hang-1', reason: 'stalled', code: 'JOB_UNRECOVERABLE' });
    expect(dead?.error).toMatch(/delivered 3 times without finishing/);
    expect(attempts).toEqual([1, 2]);
    expect(ran).toBe(false);
    expect(w3.stats.dead).toBe(1);
  });

  it('stops its workers when the app stops (the queue stops before StreamService)', async () => {
    const own = queue({ name: 'own' });
    const app2 = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [own],
    });
    const q = app2.get(own.token);
    const w = await q.work(() => undefined, fast);
    expect(w.running).toBe(true);
    expect(
      NatskitError.is(await q.work(null as never).catch((e: unknown) => e), 'INVALID_OPTIONS'),
    ).toBe(true);
    await app2.stop();
    expect(w.running).toBe(false);
  });
});
