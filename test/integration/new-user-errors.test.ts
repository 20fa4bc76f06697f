import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, NatskitError, ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

/** The error `p` rejects with; a resolve, or an error that is not a NatskitError, fails the test. */
async function failure(p: Promise<unknown>): Promise<NatskitError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!NatskitError.is(err)) {
    throw new Error(`expected a NatskitError, got ${err === undefined ? 'no error' : String(err)}`);
  }
  return err;
}

describe('errors a new user meets are NatskitErrors', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  let raw: NatsConnection;
  const streamNames = async () => {
    const out: string[] = [];
    for await (const n of (await jetstreamManager(raw)).streams.names()) out.push(n);
    return out.sort();
  };
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: server.url },
    });
    streams = app.get(StreamService);
    raw = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await raw?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('stream and consumer names with . * or a space are INVALID_OPTIONS before any call', async () => {
    for (const name of ['bad.name', 'bad name', 'bad*']) {
      const err = await failure(streams.ensureStream({ name, subjects: ['bad.>'] }));
      expect(err.code).toBe('INVALID_OPTIONS');
      expect(err.details?.field).toBe('ensureStream config.name');
    }
    expect(await streamNames()).not.toContain('bad');
    await streams.ensureStream({ name: 'NAMES', subjects: ['names.>'] });
    const worker = (consumer: string, stream = 'NAMES') =>
      failure(streams.createWorker({ stream, consumer, handler: () => undefined }));
    const consumer = await worker('a.b');
    expect(consumer.code).toBe('INVALID_OPTIONS');
    expect(consumer.details?.field).toBe('worker.consumer');
    expect((await worker('ok', 'x y')).details?.field).toBe('worker.stream');
    const consumers: string[] = [];
    for await (const c of (await jetstreamManager(raw)).consumers.list('NAMES'))
      consumers.push(c.name);
    expect(consumers).toEqual([]);
  });

  it('subjects overlapping another stream are STREAM_CONFIG_CONFLICT with the api code', async () => {
    await streams.ensureStream({ name: 'FIRST', subjects: ['overlap.>'] });
    const err = await failure(streams.ensureStream({ name: 'SECOND', subjects: ['overlap.a'] }));
    expect(err.code).toBe('STREAM_CONFIG_CONFLICT');
    expect(err.details).toMatchObject({ apiCode: 10065, field: 'subjects' });
    expect(err.message).toContain('subjects overlap');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('an enum value that is not one names the closest, before any call', async () => {
    const err = await failure(
      streams.ensureStream({
        name: 'ENUMS',
        subjects: ['enums.>'],
        retention: 'work_queue' as never,
      }),
    );
    expect(err.code).toBe('INVALID_OPTIONS');
    expect(err.details).toMatchObject({
      field: 'ensureStream ENUMS config.retention',
      suggestion: 'workqueue',
    });
    expect(err.message).toContain("did you mean 'workqueue'");
    for (const [field, value] of [
      ['storage', 'disk'],
      ['discard', 'oldest'],
    ] as const) {
      const e = await failure(
        streams.ensureStream({ name: 'ENUMS', subjects: ['enums.>'], [field]: value as never }),
      );
      expect(e.details?.field).toBe(`ensureStream ENUMS config.${field}`);
    }
    expect(await streamNames()).not.toContain('ENUMS');
  });

  it('a second unfiltered worker on a workqueue stream is CONSUMER_CONFIG_CONFLICT', async () => {
    await streams.ensureStream({ name: 'WQ', subjects: ['wq.>'], retention: 'workqueue' as never });
    await using first = await streams.createWorker({
      stream: 'WQ',
      consumer: 'one',
      handler: () => undefined,
    });
    expect(first.name).toBeDefined();
    const err = await failure(
      streams.createWorker({ stream: 'WQ', consumer: 'two', handler: () => undefined }),
    );
    expect(err.code).toBe('CONSUMER_CONFIG_CONFLICT');
    expect(err.details?.apiCode).toBe(10099);
  });

  it('replicas: 3 on a single server is INVALID_OPTIONS with field replicas (bucket) or num_replicas (stream)', async () => {
    const kv = app.get(KVStoreService);
    const bucket = await failure(kv.createBucket('r3', { replicas: 3 }));
    expect(bucket.code).toBe('INVALID_OPTIONS');
    expect(bucket.details).toMatchObject({ field: 'replicas', apiCode: 10074 });
    const stream = await failure(
      streams.ensureStream({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 }),
    );
    expect(stream.code).toBe('INVALID_OPTIONS');
    expect(stream.details).toMatchObject({ field: 'num_replicas', apiCode: 10074 });
  });

  it("a bucket whose subjects a user's stream already takes is STREAM_CONFIG_CONFLICT", async () => {
    await streams.ensureStream({ name: 'TAKES_KV', subjects: ['$KV.taken.>'] });
    const err = await failure(app.get(KVStoreService).createBucket('taken'));
    expect(err.code).toBe('STREAM_CONFIG_CONFLICT');
    expect(err.details).toMatchObject({ bucket: 'taken', apiCode: 10065 });
  });

  it('max_age and duplicate_window below one second are refused as a units mistake, naming nanos()', async () => {
    const week = 7 * 24 * 3600 * 1000;
    const err = await failure(
      streams.ensureStream({ name: 'C', subjects: ['c.>'], max_age: week }),
    );
    expect(err.code).toBe('INVALID_OPTIONS');
    expect(err.details).toMatchObject({
      field: 'ensureStream C config.max_age',
      unit: 'nanoseconds',
    });
    expect(err.message).toContain('nanos(ms)');
    // 50 ms in ns: the server's own refusal (10052, "max age needs to be >= 100ms") never comes.
    const small = await failure(
      streams.ensureStream({ name: 'C', subjects: ['c.>'], duplicate_window: 50_000_000 }),
    );
    expect(small.details?.field).toBe('ensureStream C config.duplicate_window');
    expect(await streamNames()).not.toContain('C');
    const ok = await streams.ensureStream({ name: 'C', subjects: ['c.>'], max_age: nanos(week) });
    expect(ok.info.config.max_age).toBe(nanos(week));
  });

  it('a config the server refuses as invalid (10052) is INVALID_OPTIONS with its text', async () => {
    const err = await failure(
      streams.ensureStream({
        name: 'DUPS',
        subjects: ['dups.>'],
        max_age: nanos(2_000),
        duplicate_window: nanos(5_000),
      }),
    );
    expect(err.code).toBe('INVALID_OPTIONS');
    expect(err.details?.apiCode).toBe(10052);
    expect(String(err.details?.description)).toContain('duplicates window');
  });
});
