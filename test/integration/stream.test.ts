import { DeliverPolicy, StorageType } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionService, NatskitError, ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

describe('StreamService', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, reconnectTimeWaitMs: 100 },
    });
    streams = app.get(StreamService);
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('ensureStream creates, then is a no-op, then applies a compatible change', async () => {
    const config = { name: 'ORDERS', subjects: ['orders.>'], max_msgs: 1_000 };
    const first = await streams.ensureStream(config);
    expect(first.action).toBe('created');
    const second = await streams.ensureStream({ ...config, subjects: ['orders.>'] });
    expect(second.action).toBe('unchanged');
    expect(second.info.created).toBe(first.info.created);
    const third = await streams.ensureStream({
      ...config,
      max_msgs: 2_000,
      subjects: ['orders.>', 'returns.>'],
    });
    expect(third.action).toBe('updated');
    expect(third.applied.map((d) => d.field).sort()).toEqual(['max_msgs', 'subjects']);
    expect(third.info.config.max_msgs).toBe(2_000);
  });

  it('ensureStream reports incompatible differences, each listed, and changes nothing', async () => {
    await streams.ensureStream({
      name: 'FIXED',
      subjects: ['fixed.a', 'fixed.b'],
      storage: StorageType.File,
    });
    const err = await streams
      .ensureStream({
        name: 'FIXED',
        subjects: ['fixed.a'],
        storage: StorageType.Memory,
        max_msgs: 5,
      })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'STREAM_CONFIG_CONFLICT')).toBe(true);
    const differences = (err as NatskitError).details?.differences as {
      field: string;
      compatible: boolean;
    }[];
    expect(
      differences
        .filter((d) => !d.compatible)
        .map((d) => d.field)
        .sort(),
    ).toEqual(['storage', 'subjects']);
    expect((err as Error).message).toContain('storage is "file", asked "memory"');
    expect((err as Error).message).toContain('subjects would be removed: fixed.b');
    const info = await streams.jsm.streams.info('FIXED');
    expect(info.config.storage).toBe(StorageType.File);
    expect(info.config.max_msgs).toBe(-1); // the compatible part was not applied either
  });

  it('ensureStream is safe under concurrent calls', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => streams.ensureStream({ name: 'RACE', subjects: ['race.>'] })),
    );
    expect(results.filter((r) => r.action === 'created').length).toBeGreaterThanOrEqual(1);
    expect(new Set(results.map((r) => r.info.created)).size).toBe(1);
  });

  it('publish deduplicates by message id and checks expectations', async () => {
    await streams.ensureStream({ name: 'PUB', subjects: ['pub.>'] });
    const a = await streams.publish('pub.x', 'one', { msgId: 'm-1' });
    const b = await streams.publish('pub.x', 'one again', { msgId: 'm-1' });
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    const ok = await streams.publish('pub.y', 'first', { expect: { lastSubjectSequence: 0 } });
    const stale = await streams
      .publish('pub.y', 'second', { expect: { lastSubjectSequence: 0 } })
      .catch((e: unknown) => e);
    expect(NatskitError.is(stale, 'EXPECTATION_FAILED')).toBe(true);
    await streams.publish('pub.y', 'second', { expect: { lastSubjectSequence: ok.seq } });
    const wrongStream = await streams
      .publish('pub.z', 'x', { expect: { streamName: 'OTHER' } })
      .catch((e: unknown) => e);
    expect(NatskitError.is(wrongStream, 'PUBLISH_FAILED')).toBe(true);
    expect((await streams.jsm.streams.info('PUB')).state.messages).toBe(3);
  });

  it('publish to a subject no stream listens on fails with STREAM_NOT_FOUND at once, not retried', async () => {
    const before = streams.metrics.retries;
    const err = await streams
      .publish('nobody.listens', 'x', { retry: { retries: 2, minDelayMs: 10, maxDelayMs: 20 } })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'STREAM_NOT_FOUND')).toBe(true);
    expect(streams.metrics.retries - before).toBe(0);
  });

  it('publish to a subject that never answers (timeouts) fails with NATS_UNAVAILABLE after its retries', async () => {
    // A core subscriber that never replies: each attempt times out (transient).
    const sub = app.get(ConnectionService).nc.subscribe('nobody.answers');
    try {
      const before = streams.metrics.retries;
      const err = await streams
        .publish('nobody.answers', 'x', {
          timeoutMs: 50,
          retry: { retries: 2, minDelayMs: 10, maxDelayMs: 20 },
        })
        .catch((e: unknown) => e);
      expect(NatskitError.is(err, 'NATS_UNAVAILABLE')).toBe(true);
      expect((err as NatskitError).details?.attempts).toBe(3);
      expect(streams.metrics.retries - before).toBe(2);
    } finally {
      sub.unsubscribe();
    }
  });

  it('an aborted publish fails with ABORTED', async () => {
    const sub = app.get(ConnectionService).nc.subscribe('nobody.answers');
    try {
      const ac = new AbortController();
      const pending = streams
        .publish('nobody.answers', 'x', {
          timeoutMs: 50,
          retry: { retries: 50, minDelayMs: 50 },
          signal: ac.signal,
        })
        .catch((e: unknown) => e);
      setTimeout(() => ac.abort(), 100);
      expect(NatskitError.is(await pending, 'ABORTED')).toBe(true);
    } finally {
      sub.unsubscribe();
    }
  });

  it('publish rides out a server restart through its retries', async () => {
    await streams.ensureStream({ name: 'SURVIVE', subjects: ['survive.>'] });
    const before = streams.metrics.retries;
    await server.stop({ signal: 'SIGKILL' });
    const pending = streams.publish('survive.a', 'x', {
      msgId: 'survive-1',
      timeoutMs: 1_000,
      retry: { retries: 20, minDelayMs: 100, maxDelayMs: 500 },
    });
    // Down longer than one attempt's wait for the connection (timeoutMs): the attempt fails
    // with a transient NotConnectedError and is retried.
    setTimeout(() => void server.restart(), 1_500);
    const ack = await pending;
    expect(ack.stream).toBe('SURVIVE');
    expect(streams.metrics.retries).toBeGreaterThan(before);
    expect((await streams.jsm.streams.info('SURVIVE')).state.messages).toBe(1);
  });

  it('streamHealth reports consumers, and a missing stream', async () => {
    await streams.ensureStream({ name: 'HEALTH', subjects: ['health.>'] });
    await streams.publish('health.a', '1');
    await streams.jsm.consumers.add('HEALTH', { durable_name: 'c1' });
    const h = await streams.streamHealth('HEALTH');
    expect(h.messages).toBe(1);
    expect(h.consumers).toEqual([{ name: 'c1', pending: 1, ackPending: 0, redelivered: 0 }]);
    const err = await streams.streamHealth('NOPE').catch((e: unknown) => e);
    expect(NatskitError.is(err, 'STREAM_NOT_FOUND')).toBe(true);
  });

  it('a worker refuses a durable consumer that exists with another deliver policy', async () => {
    await streams.ensureStream({ name: 'CONFLICT', subjects: ['conflict.>'] });
    await streams.jsm.consumers.add('CONFLICT', {
      durable_name: 'w',
      deliver_policy: DeliverPolicy.New,
    });
    const err = await streams
      .createWorker({ stream: 'CONFLICT', consumer: 'w', handler: () => undefined })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'CONSUMER_CONFIG_CONFLICT')).toBe(true);
  });
});

describe('StreamService on nats-server 2.9.10', () => {
  it('a stream option the old server silently ignores fails with CAPABILITY_MISSING', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: old.url } });
    const err = await app
      .get(StreamService)
      .ensureStream({ name: 'TTL', subjects: ['ttl.>'], allow_msg_ttl: true })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'CAPABILITY_MISSING')).toBe(true);
    expect((err as Error).message).toContain('allow_msg_ttl');
  });
});
