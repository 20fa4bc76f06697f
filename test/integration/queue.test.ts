import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NatskitError,
  type Queue,
  type QueueJob,
  queue,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

interface Order {
  n: number;
  note?: string;
}
const orderSchema = testSchema<Order>((v) =>
  typeof (v as { n?: unknown })?.n === 'number' ? undefined : 'n must be a number',
);

const orders = queue<Order>({ name: 'orders', schema: orderSchema });
const plain = queue({ name: 'plain', dedupeWindowMs: 60_000 });
const bulk = queue<Order>({ name: 'bulk', schema: orderSchema });

/** Compile-time only: the payload type flows from the declaration to add and the handler. */
function typeChecks(q: Queue<Order>) {
  void q.add({ n: 1 });
  // @ts-expect-error n must be a number
  void q.add({ n: 'one' });
  void q.work((job: QueueJob<Order>) => job.data.n + 1);
  // @ts-expect-error the handler's job carries an Order
  void q.work((job: QueueJob<{ s: string }>) => job.data.s);
}
void typeChecks;

describe('queue: producer and round trip', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [orders, plain, bulk],
    });
    streams = app.get(StreamService);
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  const stored = async (stream: string) => (await streams.jsm.streams.info(stream)).state.messages;

  it('delivers a typed, validated payload with its id, headers and attempt to the handler', async () => {
    const q = app.get(orders.token);
    const seen: QueueJob<Order>[] = [];
    await using _w = await q.work((job) => {
      seen.push(job);
    });
    const added = await q.add(
      { n: 7, note: 'x' },
      { jobId: 'order-7', headers: { tenant: 'acme' } },
    );
    expect(added).toEqual({ id: 'order-7', duplicate: false, runAt: undefined });
    await waitUntil(() => seen.length === 1, 5_000, 'job handled');
    const job = seen[0] as QueueJob<Order>;
    expect(job).toMatchObject({
      id: 'order-7',
      queue: 'orders',
      data: { n: 7, note: 'x' },
      attempt: 1,
      attempts: 3,
      headers: { tenant: 'acme' },
      runAt: undefined,
    });
    expect(job.addedAt).toBeInstanceOf(Date);
    // Work queue: the acked job is gone (the ack follows the handler's end by a round trip).
    await waitForValue(
      () => stored('QUEUE_orders'),
      (n) => n === 0,
      5_000,
      'acked job removed',
    );
  });

  it('deduplicates a job id within the window: the second add adds nothing', async () => {
    const q = app.get(plain.token);
    const a = await q.add({ v: 1 }, { jobId: 'same' });
    const b = await q.add({ v: 2 }, { jobId: 'same' });
    expect(a.duplicate).toBe(false);
    expect(b).toEqual({ id: 'same', duplicate: true, runAt: undefined });
    expect(await stored('QUEUE_plain')).toBe(1);
    const got: unknown[] = [];
    await using w = await q.work((job) => {
      got.push(job.data);
    });
    await waitUntil(() => w.stats.completed === 1, 5_000, 'handled');
    await sleep(300); // a second copy, if one had been stored, would be delivered now
    expect(got).toEqual([{ v: 1 }]);
  });

  it('refuses bad input with a typed error and enqueues nothing', async () => {
    const q = app.get(plain.token);
    const o = app.get(orders.token);
    const before = await stored('QUEUE_plain');
    const cases: [() => Promise<unknown>, string, string | undefined][] = [
      [() => q.add({}, { delayMs: -1 }), 'INVALID_OPTIONS', 'options.delayMs'],
      [() => q.add({}, { delayMs: Number.NaN }), 'INVALID_OPTIONS', 'options.delayMs'],
      [
        () => q.add({}, { delayMs: Number.POSITIVE_INFINITY }),
        'INVALID_OPTIONS',
        'options.delayMs',
      ],
      [() => q.add({}, { delayMs: 5, runAt: new Date() }), 'INVALID_OPTIONS', 'options.delayMs'],
      [() => q.add({}, { runAt: new Date('nope') }), 'INVALID_OPTIONS', 'options.runAt'],
      [() => q.add({}, { attempts: 0 }), 'INVALID_OPTIONS', 'options.attempts'],
      [() => q.add({}, { attempts: 1.5 }), 'INVALID_OPTIONS', 'options.attempts'],
      [
        () => q.add({}, { backoff: { type: 'linear', delayMs: 1 } as never }),
        'INVALID_OPTIONS',
        'options.backoff.type',
      ],
      [
        () => q.add({}, { backoff: { type: 'fixed', delayMs: -5 } }),
        'INVALID_OPTIONS',
        'options.backoff.delayMs',
      ],
      [() => q.add({}, { jobId: 'has.dot' }), 'INVALID_OPTIONS', 'options.jobId'],
      [() => q.add({}, { jobId: '' }), 'INVALID_OPTIONS', 'options.jobId'],
      // A KV key takes no ':': such a job's outcome could never be stored.
      [() => q.add({}, { jobId: 'a:b' }), 'INVALID_OPTIONS', 'options.jobId'],
      [() => q.add({}, { headers: { 'bad name': 'x' } }), 'INVALID_OPTIONS', 'options.headers'],
      [() => q.add({}, { headers: { 'Nats-Msg-Id': 'x' } }), 'INVALID_OPTIONS', 'options.headers'],
      [
        () => q.add({}, { headers: { 'natskit-job-id': 'x' } }),
        'INVALID_OPTIONS',
        'options.headers',
      ],
      [() => q.add({}, { headers: { a: 'line\nbreak' } }), 'INVALID_OPTIONS', 'options.headers'],
      [() => q.add({ big: 10n }), 'INVALID_VALUE', undefined],
      [() => q.add({ s: 'x'.repeat(1024 * 1024 + 10) }), 'VALUE_TOO_LARGE', undefined],
      [() => o.add({ n: 'one' } as never), 'VALIDATION_FAILED', undefined],
      [() => q.add({}, { signal: AbortSignal.abort() }), 'ABORTED', undefined],
    ];
    for (const [call, code, field] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(NatskitError.is(err, code as never), `${String(err)} should be ${code}`).toBe(true);
      if (field) expect((err as NatskitError).details?.field).toBe(field);
    }
    expect(await stored('QUEUE_plain')).toBe(before);
    expect(await stored('QUEUE_orders')).toBe(0);
  });

  it('names the closest option for an unknown option name, at add and at declaration', async () => {
    const q = app.get(plain.token);
    const err = await q.add({}, { dealyMs: 5 } as never).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
    expect((err as NatskitError).details).toMatchObject({
      field: 'options.dealyMs',
      suggestion: 'delayMs',
    });
    expect(() => queue({ name: 'x', attemps: 3 } as never)).toThrow(/did you mean 'attempts'/);
    expect(() => queue({ name: 'a.b' })).toThrow(NatskitError);
    expect(() =>
      queue({ name: 'x', backoff: { type: 'fixed', delayMs: 1, maxDelayMs: 2 } as never }),
    ).toThrow(/maxDelayMs is not a known option/);
    const werr = await q.work(() => undefined, { concurency: 2 } as never).catch((e: unknown) => e);
    expect((werr as NatskitError).details).toMatchObject({ suggestion: 'concurrency' });
    expect(await stored('QUEUE_plain')).toBe(0);
  });

  it('addBulk adds jobs in one atomic batch; an id already added refuses the whole batch', async () => {
    const q = app.get(bulk.token);
    const jobs = Array.from({ length: 50 }, (_, i) => ({
      data: { n: i },
      options: { jobId: `b-${i}` },
    }));
    const added = await q.addBulk(jobs);
    expect(added.map((a) => a.id)).toEqual(jobs.map((j) => j.options.jobId));
    expect(await stored('QUEUE_bulk')).toBe(50);
    const again = await q
      .addBulk([
        { data: { n: 100 }, options: { jobId: 'b-new' } },
        { data: { n: 3 }, options: { jobId: 'b-3' } },
      ])
      .catch((e: unknown) => e);
    expect(NatskitError.is(again, 'JOB_DUPLICATE')).toBe(true);
    expect(await stored('QUEUE_bulk')).toBe(50); // b-new was not added either
    const twice = await q
      .addBulk([
        { data: { n: 1 }, options: { jobId: 'd' } },
        { data: { n: 2 }, options: { jobId: 'd' } },
      ])
      .catch((e: unknown) => e);
    expect((twice as NatskitError).details).toMatchObject({ field: 'jobs[1].options.jobId' });
    const invalid = await q
      .addBulk([{ data: { n: 1 } }, { data: { n: 'x' } as never }])
      .catch((e: unknown) => e);
    expect(NatskitError.is(invalid, 'VALIDATION_FAILED')).toBe(true);
    expect((invalid as NatskitError).details?.index).toBe(1);
    const tooMany = await q
      .addBulk(Array.from({ length: 1001 }, (_, i) => ({ data: { n: i } })))
      .catch((e: unknown) => e);
    expect(NatskitError.is(tooMany, 'TX_TOO_LARGE')).toBe(true);
    expect(await stored('QUEUE_bulk')).toBe(50);
    const seen = new Set<number>();
    await using w = await q.work(
      (job) => {
        seen.add(job.data.n);
      },
      { concurrency: 8 },
    );
    await waitUntil(() => w.stats.completed === 50, 10_000, 'bulk handled');
    expect(seen.size).toBe(50);
  });

  it('counts jobs by state', async () => {
    const q = app.get(plain.token);
    await q.add({ c: 1 });
    await q.add({ c: 2 });
    expect(await q.counts()).toEqual({ waiting: 2, active: 0, delayed: 0, dead: 0 });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    await using w = await q.work(() => gate, { concurrency: 1 });
    await waitUntil(() => w.stats.running === 1, 5_000, 'one running');
    expect(await q.counts()).toEqual({ waiting: 1, active: 1, delayed: 0, dead: 0 });
    release();
    await waitUntil(() => w.stats.completed === 2, 5_000, 'both done');
  });
});
