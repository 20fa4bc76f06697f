import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { NatskitError, ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

describe('workers', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    streams = app.get(StreamService);
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  async function enqueue(
    stream: string,
    count: number,
    body: (i: number) => unknown = (i) => ({ id: i }),
  ) {
    await streams.ensureStream({
      name: stream,
      subjects: [`${stream.toLowerCase()}.>`],
      retention: RetentionPolicy.Workqueue,
    });
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        streams.publish(`${stream.toLowerCase()}.job`, JSON.stringify(body(i))),
      ),
    );
  }

  it('processes 200 jobs with concurrency 8, each exactly once', async () => {
    await enqueue('JOBS', 200);
    const seen = new Map<number, number>();
    let running = 0;
    let maxRunning = 0;
    let resolveAll: () => void = () => undefined;
    const all = new Promise<void>((r) => {
      resolveAll = r;
    });
    await using worker = await streams.createWorker<{ id: number }>({
      stream: 'JOBS',
      consumer: 'jobs',
      concurrency: 8,
      fetchExpiresMs: 1_000,
      handler: async (job) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(5 + (job.data.id % 7));
        seen.set(job.data.id, (seen.get(job.data.id) ?? 0) + 1);
        running--;
        if (seen.size === 200) resolveAll();
      },
    });
    worker.start();
    await all;
    await sleep(300); // anything delivered twice would show up now
    expect(seen.size).toBe(200);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(maxRunning).toBe(8);
    expect(worker.stats.processed).toBe(200);
    const info = await streams.jsm.consumers.info('JOBS', 'jobs');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
    expect((await streams.jsm.streams.info('JOBS')).state.messages).toBe(0); // work queue: acked = removed
  });

  it('retries a failing job, then terminates it after maxDeliver', async () => {
    await enqueue('FAILS', 3, (i) => ({ id: i, bad: i === 1 }));
    const deliveries = new Map<number, number[]>();
    await using worker = await streams.createWorker<{ id: number; bad: boolean }>({
      stream: 'FAILS',
      consumer: 'fails',
      maxDeliver: 3,
      retryDelayMs: () => 50,
      fetchExpiresMs: 1_000,
      handler: (job) => {
        deliveries.set(job.data.id, [...(deliveries.get(job.data.id) ?? []), job.deliveryCount]);
        if (job.data.bad) throw new Error('bad job');
      },
    });
    worker.start();
    const deadline = Date.now() + 10_000;
    while (worker.stats.terminated === 0 && Date.now() < deadline) await sleep(50);
    await sleep(500); // no fourth delivery may follow
    expect(deliveries.get(1)).toEqual([1, 2, 3]);
    expect(deliveries.get(0)).toEqual([1]);
    expect(deliveries.get(2)).toEqual([1]);
    expect(worker.stats).toMatchObject({ processed: 2, failed: 2, terminated: 1 });
  });

  it('terminates a payload that cannot be decoded, without calling the handler', async () => {
    await streams.ensureStream({ name: 'POISON', subjects: ['poison.>'] });
    await streams.publish('poison.job', '{not json');
    let called = 0;
    await using worker = await streams.createWorker({
      stream: 'POISON',
      consumer: 'poison',
      fetchExpiresMs: 1_000,
      handler: () => {
        called++;
      },
    });
    worker.start();
    const deadline = Date.now() + 5_000;
    while (worker.stats.terminated === 0 && Date.now() < deadline) await sleep(50);
    expect(worker.stats.terminated).toBe(1);
    expect(called).toBe(0);
  });

  it('keeps a job longer than the ack wait alive with working() heartbeats', async () => {
    await enqueue('SLOW', 1);
    const deliveries: number[] = [];
    await using worker = await streams.createWorker({
      stream: 'SLOW',
      consumer: 'slow',
      ackWaitMs: 1_000,
      fetchExpiresMs: 1_000,
      // A second slot keeps a pull waiting the whole time: a redelivery after the 1 s ack wait
      // would reach the handler at once, instead of racing the ack once the job is done.
      concurrency: 2,
      handler: async (job) => {
        deliveries.push(job.deliveryCount);
        await sleep(2_500);
      },
    });
    worker.start();
    await waitUntil(() => worker.stats.processed === 1, 8_000);
    // The ack is confirmed once the server holds nothing pending; then its counters are final.
    const info = await waitForValue(
      () => streams.jsm.consumers.info('SLOW', 'slow'),
      (i) => i.num_ack_pending === 0,
      5_000,
      'the ack of the slow job confirmed',
    );
    expect(deliveries).toEqual([1]);
    // The server delivered the job once and never redelivered it.
    expect(info.delivered.consumer_seq).toBe(1);
    expect(info.num_redelivered).toBe(0);
    expect(worker.stats).toMatchObject({ processed: 1, ackFailures: 0 });
  });

  it('stop naks unfinished jobs at the drain deadline so a second worker completes them at once', async () => {
    await enqueue('DRAIN', 6);
    const started: number[] = [];
    const lateFinish: number[] = [];
    const first = await streams.createWorker<{ id: number }>({
      stream: 'DRAIN',
      consumer: 'drain',
      concurrency: 4,
      drainTimeoutMs: 300,
      fetchExpiresMs: 1_000,
      handler: async (job) => {
        started.push(job.data.id);
        await sleep(job.data.id < 2 ? 50 : 3_000); // two finish in time, the rest do not
        lateFinish.push(job.data.id);
      },
    });
    first.start();
    while (started.length < 4) await sleep(10);
    const t0 = performance.now();
    const result = await first.stop();
    const stopMs = performance.now() - t0;
    expect(result.finished).toBe(2);
    expect(result.naked).toBe(2);
    expect(stopMs).toBeLessThan(300 + 1_500); // the deadline, plus at most one fetch period

    const done = new Set<number>();
    const t1 = performance.now();
    await using second = await streams.createWorker<{ id: number }>({
      stream: 'DRAIN',
      consumer: 'drain',
      concurrency: 4,
      fetchExpiresMs: 1_000,
      handler: (job) => {
        done.add(job.data.id);
      },
    });
    second.start();
    const deadline = Date.now() + 10_000;
    while (done.size + 2 < 6 && Date.now() < deadline) await sleep(20);
    // The four left over (two naked, two never started) are done well before the 30 s ack wait.
    expect(performance.now() - t1).toBeLessThan(5_000);
    // Exactly the jobs the first worker did not finish: the two naked and the two never fetched.
    const finishedFirst = started.filter((id) => id < 2);
    expect(finishedFirst.sort()).toEqual([0, 1]);
    expect([...done].sort()).toEqual([2, 3, 4, 5]);
    // A handler that ran past the deadline must not ack a job that was given back.
    await sleep(3_000);
    expect(first.stats.processed).toBe(2);
    const info = await streams.jsm.consumers.info('DRAIN', 'drain');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it('reports fetch-loop progress while idle', async () => {
    await streams.ensureStream({ name: 'IDLE', subjects: ['idle.>'] });
    await using worker = await streams.createWorker({
      stream: 'IDLE',
      consumer: 'idle',
      fetchExpiresMs: 1_000,
      stuckAfterMs: 2_500,
      handler: () => undefined,
    });
    worker.start();
    await sleep(3_500); // longer than stuckAfterMs, with no message at all
    const p = worker.progress();
    expect(p.healthy).toBe(true);
    expect(p.msSinceTick).toBeLessThan(2_500);
    expect(worker.stats.fetchErrors).toBe(0);
    expect(streams.health().status).toBe('pass');
  });

  it('counts and logs an ack the server did not confirm, instead of swallowing it', async () => {
    await enqueue('ACKLOST', 1);
    let handled = 0;
    await using worker = await streams.createWorker({
      stream: 'ACKLOST',
      consumer: 'acklost',
      fetchExpiresMs: 1_000,
      handler: async () => {
        handled++;
        // The consumer goes away while the job runs: its ack has nobody to confirm it.
        await streams.jsm.consumers.delete('ACKLOST', 'acklost');
      },
    });
    worker.start();
    const deadline = Date.now() + 10_000;
    while (worker.stats.ackFailures === 0 && Date.now() < deadline) await sleep(50);
    expect(handled).toBe(1);
    expect(worker.stats).toMatchObject({ processed: 1, ackFailures: 1, failed: 0 });
  });

  it('records failed fetches: the count, the last error, and a warning in health', async () => {
    await streams.ensureStream({ name: 'FETCHFAIL', subjects: ['fetchfail.>'] });
    await using worker = await streams.createWorker({
      stream: 'FETCHFAIL',
      consumer: 'fetchfail',
      fetchExpiresMs: 1_000,
      handler: () => undefined,
    });
    worker.start();
    await sleep(200);
    await streams.jsm.consumers.delete('FETCHFAIL', 'fetchfail');
    const deadline = Date.now() + 15_000;
    while (worker.stats.fetchErrors < 3 && Date.now() < deadline) await sleep(50);
    expect(worker.stats.fetchErrors).toBeGreaterThanOrEqual(3);
    expect(worker.progress().lastFetchError).toBeTruthy();
    const health = streams.health();
    expect(health.status).toBe('warn');
    expect(health.output).toContain('FETCHFAIL/fetchfail');
  });

  it('resumes when its consumer comes back after failed pulls, even if the wall clock stepped back meanwhile', async () => {
    // Backing off after a failure must end when its timer fires. A gate on Date.now() left the
    // worker idle for good when the timer fired early by the wall clock (Node timers do, by up
    // to a millisecond, after a busy turn) or for as long as an NTP step put the clock back.
    await streams.ensureStream({
      name: 'COMEBACK',
      subjects: ['comeback.>'],
      retention: RetentionPolicy.Workqueue, // the new consumer does not see job 1 again
    });
    const seen: number[] = [];
    await using worker = await streams.createWorker<{ n: number }>({
      stream: 'COMEBACK',
      consumer: 'comeback',
      fetchExpiresMs: 1_000,
      handler: (job) => {
        seen.push(job.data.n);
      },
    });
    worker.start();
    await streams.publish('comeback.job', JSON.stringify({ n: 1 }));
    await waitUntil(() => seen.length === 1, 5_000);
    const config = (await streams.jsm.consumers.info('COMEBACK', 'comeback')).config;
    await streams.jsm.consumers.delete('COMEBACK', 'comeback');
    await waitUntil(() => worker.stats.fetchErrors >= 1, 5_000);
    const realNow = Date.now.bind(Date);
    const stepped = vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 60_000);
    try {
      await streams.jsm.consumers.add('COMEBACK', config);
      await streams.publish('comeback.job', JSON.stringify({ n: 2 }));
      // Backoff is at most 2 s after failures in a row, then a pull and a delivery.
      await waitUntil(() => seen.length === 2, 6_000);
    } finally {
      stepped.mockRestore();
    }
    expect(seen).toEqual([1, 2]);
    expect(worker.stats.fetchErrors).toBe(0); // a delivery ends the failure streak
    expect(streams.health().status).toBe('pass');
  });

  it('a worker that fails to stop makes StreamService.stop fail with a NatskitAggregateError, after stopping the others', async () => {
    await using own = await startNatsServer();
    const other = await ServiceManager.start({ ...quiet, nats: { servers: own.url } });
    const s = other.get(StreamService);
    await s.ensureStream({ name: 'AGG', subjects: ['agg.>'] });
    const good = await s.createWorker({
      stream: 'AGG',
      consumer: 'good',
      handler: () => undefined,
    });
    const bad = await s.createWorker({ stream: 'AGG', consumer: 'bad', handler: () => undefined });
    (bad as { stop: () => Promise<unknown> }).stop = async () => {
      throw new Error('bad worker cannot stop');
    };
    const err = await other.stop().catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SHUTDOWN_FAILED')).toBe(true);
    const cause = (err as AggregateError).errors[0] as NatskitError;
    expect(cause.code).toBe('SERVICE_STOP_FAILED');
    const inner = cause.cause as AggregateError;
    expect(NatskitError.is(inner, 'SERVICE_STOP_FAILED')).toBe(true);
    expect(inner).toBeInstanceOf(AggregateError);
    expect(inner.errors.map((e: Error) => e.message)).toEqual(['bad worker cannot stop']);
    expect(good.running).toBe(false); // stopped although the other failed
  });

  it('never runs more than concurrency handlers, and processes 10,000 jobs exactly once with 1% failing once', async () => {
    const total = 10_000;
    await streams.ensureStream({
      name: 'MANY',
      subjects: ['many.>'],
      retention: RetentionPolicy.Workqueue,
    });
    for (let i = 0; i < total; i += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, j) =>
          streams.publish('many.job', JSON.stringify({ id: i + j })),
        ),
      );
    }
    const succeeded = new Map<number, number>();
    let calls = 0;
    let running = 0;
    let maxRunning = 0;
    await using worker = await streams.createWorker<{ id: number }>({
      stream: 'MANY',
      consumer: 'many',
      concurrency: 16,
      retryDelayMs: () => 20,
      handler: async (job) => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        try {
          await sleep(job.data.id % 3); // 0-2 ms: handlers overlap and finish out of order
          if (job.data.id % 100 === 7 && job.deliveryCount === 1) throw new Error('fails once');
          succeeded.set(job.data.id, (succeeded.get(job.data.id) ?? 0) + 1);
        } finally {
          running--;
        }
      },
    });
    worker.start();
    const deadline = Date.now() + 50_000;
    while (succeeded.size < total && Date.now() < deadline) await sleep(50);
    await sleep(500); // a duplicate would show now
    expect(succeeded.size).toBe(total);
    expect([...succeeded.values()].every((n) => n === 1)).toBe(true);
    expect(maxRunning).toBe(16);
    expect(calls).toBe(total + total / 100);
    expect(worker.stats).toMatchObject({ processed: total, failed: total / 100, terminated: 0 });
    const info = await streams.jsm.consumers.info('MANY', 'many');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0); // the retried ones were acked on their second delivery
    expect((await streams.jsm.streams.info('MANY')).state.messages).toBe(0);
  });
});
