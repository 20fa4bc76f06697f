import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatskitError, queue, ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const fast = { fetchExpiresMs: 1_000 };

const timed = queue<{ i: number }>({ name: 'timed' });
const later = queue<{ i: number }>({ name: 'later' });
const crash = queue<{ i: number }>({ name: 'crash' });

function percentile(sorted: readonly number[], p: number): number {
  return (
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
  );
}

describe('queue: delayed jobs on the server scheduler (2.15)', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [timed, later, crash],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('starts each delayed job at or after its time; reports the scheduled-to-start lag', async () => {
    const q = app.get(timed.token);
    const lag = new Map<number, number>();
    await using _w = await q.work(
      (job) => {
        lag.set(job.data.i, Date.now() - (job.runAt?.getTime() ?? Number.NaN));
      },
      { ...fast, concurrency: 30 },
    );
    const count = 30;
    const added = await Promise.all(
      Array.from({ length: count }, (_, i) => q.add({ i }, { delayMs: 400 + i * 70 })),
    );
    for (const a of added) expect(a.runAt).toBeInstanceOf(Date);
    expect((await q.counts()).delayed).toBeGreaterThan(0);
    await waitUntil(() => lag.size === count, 15_000, 'every delayed job ran');
    const sorted = [...lag.values()].sort((a, b) => a - b);
    console.log(
      `delayed-job lag (scheduled time to handler start, ${count} jobs): min ${sorted[0]} ms, p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1)} ms`,
    );
    // Never early (the same machine's clock on both sides), and within a few scheduler ticks.
    expect(sorted[0]).toBeGreaterThanOrEqual(0);
    expect(sorted.at(-1)).toBeLessThan(1_500);
    await waitForValue(
      () => q.counts(),
      (c) => c.delayed === 0 && c.waiting === 0 && c.active === 0,
      5_000,
      'counts settle',
    );
  });

  it('runs a job whose run-at is not in the future at once; delayMs 0 is now', async () => {
    const q = app.get(later.token);
    const ran: number[] = [];
    await using w = await q.work((job) => {
      ran.push(job.data.i);
    }, fast);
    const past = await q.add({ i: 1 }, { runAt: new Date(Date.now() - 60_000) });
    const zero = await q.add({ i: 2 }, { delayMs: 0 });
    expect(past.runAt).toBeUndefined();
    expect(zero.runAt).toBeUndefined();
    await waitUntil(() => w.stats.completed === 2, 5_000, 'both ran');
    expect(ran.sort()).toEqual([1, 2]);
  });

  it('deduplicates a delayed job by id: it fires once', async () => {
    const q = app.get(later.token);
    const ran: string[] = [];
    await using w = await q.work((job) => {
      ran.push(job.id);
    }, fast);
    const a = await q.add({ i: 3 }, { jobId: 'once', delayMs: 500 });
    const b = await q.add({ i: 4 }, { jobId: 'once', delayMs: 800 });
    const c = await q.add({ i: 5 }, { jobId: 'once' }); // immediate, same id: still the same job
    expect([a.duplicate, b.duplicate, c.duplicate]).toEqual([false, true, true]);
    await waitUntil(() => w.stats.completed === 1, 5_000, 'fired');
    await sleep(1_000); // a second copy would have fired by now
    expect(ran).toEqual(['once']);
  });

  it('addBulk mixes delayed and immediate jobs in one atomic batch', async () => {
    const q = app.get(later.token);
    const ran = new Map<string, number>();
    await using w = await q.work(
      (job) => {
        ran.set(job.id, Date.now() - (job.runAt?.getTime() ?? Date.now()));
      },
      { ...fast, concurrency: 4 },
    );
    const added = await q.addBulk([
      { data: { i: 10 }, options: { jobId: 'bulk-now' } },
      { data: { i: 11 }, options: { jobId: 'bulk-later', delayMs: 700 } },
    ]);
    expect(added[1]?.runAt).toBeInstanceOf(Date);
    await waitUntil(() => ran.has('bulk-now'), 5_000, 'immediate job ran');
    expect(ran.has('bulk-later')).toBe(false);
    await waitUntil(() => ran.size === 2, 5_000, 'delayed job ran');
    expect(ran.get('bulk-later')).toBeGreaterThanOrEqual(0);
    expect(w.stats.completed).toBeGreaterThanOrEqual(2);
  });

  it('loses no delayed job and runs none twice across a SIGKILL of the server', async () => {
    const q = app.get(crash.token);
    const streams = app.get(StreamService);
    // Due while the server is down, and after it is back.
    const delayed = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        q.add({ i }, { jobId: `d${i}`, delayMs: 1_500 + i * 300 }),
      ),
    );
    const ready = await Promise.all(
      Array.from({ length: 5 }, (_, i) => q.add({ i: 100 + i }, { jobId: `r${i}` })),
    );
    expect((await q.counts()).delayed).toBe(10);
    await server.stop({ signal: 'SIGKILL' });
    await sleep(1_500);
    await server.restart();
    const runs = new Map<string, number>();
    // The connection reconnects by itself; the worker is started on the restarted server.
    let worker: Awaited<ReturnType<typeof q.work>> | undefined;
    for (let i = 0; i < 50 && !worker; i++) {
      worker = await q
        .work(
          (job) => {
            runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
          },
          { ...fast, concurrency: 4 },
        )
        .catch(async () => {
          await sleep(200); // reconnecting
          return undefined;
        });
    }
    await using w = worker as NonNullable<typeof worker>;
    await waitUntil(() => runs.size === 15, 20_000, 'every job ran after the restart');
    await sleep(1_000); // a job delivered twice would show now
    expect([...runs.keys()].sort()).toEqual([...delayed, ...ready].map((a) => a.id).sort());
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(w.stats.completed).toBe(15);
    expect((await streams.jsm.streams.info('QUEUE_crash')).state.messages).toBe(0);
  });
});

describe('queue on nats-server 2.9.10 (no message schedules, no atomic batch)', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  const old = queue<{ i: number }>({ name: 'old' });
  beforeAll(async () => {
    server = await startNatsServer({ version: '2.9' });
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url }, services: [old] });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('refuses a delayed job with CAPABILITY_MISSING naming 2.12, and enqueues nothing', async () => {
    const q = app.get(old.token);
    const streams = app.get(StreamService);
    for (const options of [{ delayMs: 1_000 }, { runAt: new Date(Date.now() + 60_000) }]) {
      const err = await q.add({ i: 1 }, options).catch((e: unknown) => e);
      expect(NatskitError.is(err, 'CAPABILITY_MISSING')).toBe(true);
      expect((err as NatskitError).message).toContain('2.12');
      expect((err as NatskitError).details).toMatchObject({
        feature: 'msgSchedules',
        minServer: '2.12',
      });
    }
    const bulkErr = await q
      .addBulk([{ data: { i: 1 } }, { data: { i: 2 }, options: { delayMs: 5_000 } }])
      .catch((e: unknown) => e);
    expect(NatskitError.is(bulkErr, 'CAPABILITY_MISSING')).toBe(true);
    expect((await streams.jsm.streams.info('QUEUE_old')).state.messages).toBe(0);
    const pause = await q.pause().catch((e: unknown) => e);
    expect(NatskitError.is(pause, 'CAPABILITY_MISSING')).toBe(true);
    expect((pause as NatskitError).details).toMatchObject({
      feature: 'consumerPause',
      minServer: '2.11',
    });
  });

  it('still runs immediate jobs, addBulk one by one, retries and dead letters', async () => {
    const q = app.get(old.token);
    const ran: number[] = [];
    await using w = await q.work((job) => {
      if (job.data.i === 0) throw new Error('always');
      ran.push(job.data.i);
    }, fast);
    const added = await q.addBulk([
      { data: { i: 1 } },
      { data: { i: 2 }, options: { jobId: 'two' } },
      {
        data: { i: 0 },
        options: { jobId: 'zero', attempts: 2, backoff: { type: 'fixed', delayMs: 50 } },
      },
    ]);
    expect(added.map((a) => a.duplicate)).toEqual([false, false, false]);
    expect((await q.add({ i: 2 }, { jobId: 'two' })).duplicate).toBe(true);
    await waitUntil(() => w.stats.completed === 2 && w.stats.dead === 1, 10_000, 'ran and dead');
    expect(ran.sort()).toEqual([1, 2]);
    const [dead] = await q.deadJobs();
    expect(dead).toMatchObject({ id: 'zero', reason: 'failed', error: 'always' });
    expect(dead?.history).toHaveLength(1);
  });
});
