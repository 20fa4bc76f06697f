import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  endpoint,
  endpointClient,
  endpoints,
  KVStoreService,
  type KvChange,
  NatskitError,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';

const quiet = { logger: { level: 'silent' as const } };

async function scrape(app: ServiceManager): Promise<{ code: number; type: string; text: string }> {
  const res = await fetch(`${app.probeUrl}/metrics`, { signal: AbortSignal.timeout(3_000) });
  return { code: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** The value of one sample (`name{a="x",...} value`), labels in any order; undefined when absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('metrics', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      metrics: { processMetrics: false, defaultLabels: { app: 'metrics-test' } },
      services: [
        endpoints({
          name: 'calc',
          version: '1.0.0',
          endpoints: () => ({
            double: endpoint({
              schema: testSchema<number>((v) =>
                typeof v === 'number' ? undefined : 'must be a number',
              ),
              handler: ({ data }) => data * 2,
            }),
          }),
        }),
      ],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('counts KV operations by bucket, op and outcome, never by key; transactions, attempts and conflicts', async () => {
    const kv = app.get(KVStoreService);
    const b = await kv.bucket<number>('metered', { provision: { history: 5 } });
    // Keys that must never show up in the exposition.
    const keys = Array.from({ length: 50 }, (_, i) => `customer-secret-${i}`);
    for (const k of keys) await b.put(k, 1);
    await b.get(keys[0] as string);
    await b.get('customer-secret-absent');
    await expect(b.create(keys[0] as string, 2)).rejects.toMatchObject({
      code: 'KV_REVISION_CONFLICT',
    });
    // One conflict: the first attempt reads, someone else writes, the commit conflicts, the
    // second attempt commits.
    let attempt = 0;
    const tx = await b.transaction(async (t) => {
      attempt++;
      const v = (await t.get('customer-secret-1')) ?? 0;
      if (attempt === 1) await b.put('customer-secret-1', 100);
      await t.put('customer-secret-1', v + 1);
    });
    expect(tx.attempts).toBe(2);

    const { code, type, text } = await scrape(app);
    expect(code).toBe(200);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    const op = (o: string, outcome = 'ok') => ({ bucket: 'metered', op: o, outcome });
    const count = 'natskit_kv_operation_duration_seconds_count';
    expect(sample(text, count, op('put'))).toBe(51); // 50, and the conflicting writer's put
    expect(sample(text, count, op('get'))).toBe(2);
    expect(sample(text, count, op('create', 'kv_revision_conflict'))).toBe(1);
    expect(sample(text, count, op('transaction'))).toBe(1);
    expect(
      sample(text, 'natskit_kv_transactions_total', { bucket: 'metered', outcome: 'ok' }),
    ).toBe(1);
    expect(sample(text, 'natskit_kv_transaction_attempts_total', { bucket: 'metered' })).toBe(2);
    expect(sample(text, 'natskit_kv_transaction_conflicts_total', { bucket: 'metered' })).toBe(1);
    // Every sample carries the default label.
    expect(sample(text, count, { ...op('put'), app: 'metrics-test' })).toBe(51);
    expect(text).not.toContain('customer-secret');
    // Label sets stay bounded: 50 keys, a handful of series.
    const series = text
      .split('\n')
      .filter((l) => l.startsWith(`${count}{`) && l.includes('metered'));
    expect(series.length).toBeLessThanOrEqual(4);
    // Cumulative buckets, ending at +Inf with the count.
    const buckets = text
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('natskit_kv_operation_duration_seconds_bucket{') &&
          l.includes('op="put",outcome="ok"'),
      )
      .map((l) => Number(l.split(' ')[1]));
    expect(buckets.length).toBe(17);
    expect(buckets.every((v, i) => i === 0 || v >= (buckets[i - 1] as number))).toBe(true);
    expect(
      sample(text, 'natskit_kv_operation_duration_seconds_bucket', { ...op('put'), le: '+Inf' }),
    ).toBe(51);
    expect(
      sample(text, 'natskit_kv_operation_duration_seconds_bucket', { ...op('put'), le: '0.0001' }),
    ).toBeLessThan(51);
    // Latency is observed: the sum of 51 puts is positive.
    expect(sample(text, 'natskit_kv_operation_duration_seconds_sum', op('put'))).toBeGreaterThan(0);
    // Process metrics were turned off.
    expect(text).not.toContain('process_cpu');
  });

  it('counts a bucket-first call on a missing bucket, with its error code (it was not counted)', async () => {
    const kv = app.get(KVStoreService);
    await expect(kv.get('nowhere', 'k')).rejects.toMatchObject({ code: 'KV_BUCKET_NOT_FOUND' });
    await expect(kv.transaction('nowhere', async () => undefined)).rejects.toMatchObject({
      code: 'KV_BUCKET_NOT_FOUND',
    });
    const { text } = await scrape(app);
    const count = 'natskit_kv_operation_duration_seconds_count';
    const op = (o: string) => ({ bucket: 'nowhere', op: o, outcome: 'kv_bucket_not_found' });
    expect(sample(text, count, op('get'))).toBe(1);
    expect(sample(text, count, op('transaction'))).toBe(1);
    // An invalid bucket name never becomes a label.
    await expect(kv.get('no spaces', 'k')).rejects.toMatchObject({ code: 'INVALID_BUCKET' });
    expect((await scrape(app)).text).not.toContain('no spaces');
  });

  it('counts worker jobs processed, failed, terminated and redelivered, with durations', async () => {
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'METERED',
      subjects: ['metered.>'],
      retention: RetentionPolicy.Workqueue,
    });
    for (let i = 0; i < 5; i++) await streams.publish('metered.ok', JSON.stringify({ i }));
    await streams.publish('metered.flaky', JSON.stringify({ flaky: true }));
    await streams.publish('metered.doomed', JSON.stringify({ doomed: true }));
    await streams.publish('metered.garbage', 'not json');
    let flakyRuns = 0;
    let doomedRuns = 0;
    await using worker = await streams.createWorker<{ flaky?: boolean; doomed?: boolean }>({
      stream: 'METERED',
      consumer: 'metered',
      maxDeliver: 2,
      retryDelayMs: () => 20,
      fetchExpiresMs: 1_000,
      handler: async ({ data }) => {
        if (data.flaky && ++flakyRuns === 1) throw new Error('first time fails');
        if (data.doomed) {
          doomedRuns++;
          throw new Error('always fails');
        }
      },
    });
    worker.start();
    await until(
      'all jobs to settle',
      () => worker.stats.processed === 6 && worker.stats.terminated === 2,
    );
    const { text } = await scrape(app);
    const w = { stream: 'METERED', consumer: 'metered' };
    const jobs = (outcome: string) => sample(text, 'natskit_worker_jobs_total', { ...w, outcome });
    expect(jobs('processed')).toBe(6);
    expect(jobs('failed')).toBe(2); // flaky once, doomed once
    expect(jobs('terminated')).toBe(2); // doomed on its last delivery, garbage at once
    expect(doomedRuns).toBe(2);
    expect(sample(text, 'natskit_worker_redeliveries_total', w)).toBe(2);
    // Handlers that ran are timed; the undecodable payload never ran.
    expect(sample(text, 'natskit_worker_job_duration_seconds_count', w)).toBe(9);
  });

  it('times endpoint requests by status, and counts the client helper retries', async () => {
    const client = endpointClient<unknown, number>(app.get(ConnectionService), 'calc.double', {
      metrics: app.metrics,
      retry: { retries: 2, minDelayMs: 10, maxDelayMs: 20 },
    });
    expect(await client.request(21)).toBe(42);
    expect(await client.request(1)).toBe(2);
    await expect(client.request('x')).rejects.toMatchObject({
      code: 'REQUEST_FAILED',
      details: { status: 400 },
    });
    const nobody = endpointClient(app.get(ConnectionService), 'calc.nobody', {
      metrics: app.metrics,
      retry: { retries: 2, minDelayMs: 10, maxDelayMs: 20 },
    });
    await expect(nobody.request(1)).rejects.toMatchObject({ code: 'NATS_UNAVAILABLE' });
    const { text } = await scrape(app);
    const e = (status: string) => ({ service: 'calc', endpoint: 'double', status });
    expect(sample(text, 'natskit_endpoint_request_duration_seconds_count', e('200'))).toBe(2);
    expect(sample(text, 'natskit_endpoint_request_duration_seconds_count', e('400'))).toBe(1);
    expect(sample(text, 'natskit_retries_total', { component: 'endpoint-client' })).toBe(2);
  });

  it('follows the connection: connected 1, a SIGKILL restart counts a reconnect and a watch resume', async () => {
    const kv = app.get(KVStoreService);
    const b = await kv.bucket<number>('watched', { provision: { history: 5 } });
    const seen: KvChange<number>[] = [];
    await using watcher = await b.watch('>', { onChange: (c) => void seen.push(c) });
    await b.put('a', 1);
    await until('the first change', () => seen.length === 1);
    expect(sample((await scrape(app)).text, 'natskit_nats_connected')).toBe(1);
    await server.restart({ signal: 'SIGKILL' });
    await until('reconnected', async () => app.get(ConnectionService).status.state === 'connected');
    // The watch comes back on its own and delivers what is written after.
    await until(
      'a write after the restart reaches the watch',
      async () => {
        await b.put('a', 2).catch(() => undefined);
        return seen.some((c) => c.type === 'put' && c.value === 2);
      },
      30_000,
    );
    const { text } = await scrape(app);
    expect(sample(text, 'natskit_nats_connected')).toBe(1);
    expect(sample(text, 'natskit_nats_reconnects_total')).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, 'natskit_kv_watch_resumes_total', { bucket: 'watched' }),
    ).toBeGreaterThanOrEqual(1);
    void watcher;
  });
});

describe('metrics options', () => {
  it('off by default: /metrics is 404 and the services measure nothing', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      health: true,
    });
    expect(app.metrics.enabled).toBe(false);
    const res = await fetch(`${app.probeUrl}/metrics`);
    expect(res.status).toBe(404);
    await res.text();
  });

  it('metrics alone start the probe server, with Node process metrics by default', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      metrics: true,
    });
    const { code, text } = await scrape(app);
    expect(code).toBe(200);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(sample(text, 'natskit_nats_connected')).toBe(1);
    // Users add their own metrics to the same registry.
    const { Counter } = await import('prom-client');
    const mine = new Counter({
      name: 'orders_total',
      help: 'orders',
      registers: app.metrics.registry ? [app.metrics.registry] : [],
    });
    mine.inc(3);
    expect(sample((await scrape(app)).text, 'orders_total')).toBe(3);
  });

  it('bad metrics options are refused before anything starts', async () => {
    for (const metrics of [
      'yes',
      { processMetrics: 'no' },
      { defaultLabels: { 'bad-name': 'x' } },
      { defaultLabels: { bucket: 'x' } },
      { defaultLabels: { app: 1 } },
    ]) {
      const err = await ServiceManager.start({
        ...quiet,
        nats: { servers: 'nats://127.0.0.1:1' },
        metrics: metrics as never,
      }).catch((e: unknown) => e);
      expect(NatskitError.is(err, 'INVALID_OPTIONS'), JSON.stringify(metrics)).toBe(true);
    }
  });
});
