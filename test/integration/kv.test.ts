import { setTimeout as sleep } from 'node:timers/promises';
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, type KvChange, NatskitError, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { freeze, thaw } from '../support/freeze.js';
import { testSchema } from '../support/schema.js';

const quiet = { logger: { level: 'silent' as const } };

async function code(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return NatskitError.is(err) ? err.code : err === undefined ? 'no error' : String(err);
}

async function consumerCount(jsm: JetStreamManager, stream: string): Promise<number> {
  let n = 0;
  for await (const _ of jsm.consumers.list(stream)) n++;
  return n;
}

describe('KVStoreService', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let raw: NatsConnection;
  const messages = async (bucket: string) =>
    (await (await jetstreamManager(raw)).streams.info(`KV_${bucket}`)).state.messages;

  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, reconnectTimeWaitMs: 100, reconnectJitterMs: 50 },
    });
    kv = app.get(KVStoreService);
    // Reconnects as fast as the app: the client drops what is sent while it is reconnecting, and
    // a test right after a restart must not find it still away.
    raw = await connect({ servers: server.url, reconnectTimeWait: 100, reconnectJitter: 50 });
  });
  afterAll(async () => {
    await raw?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  describe('bind and provision', () => {
    it('binding a missing bucket fails fast with KV_BUCKET_NOT_FOUND', async () => {
      const t0 = performance.now();
      expect(await code(kv.bucket('missing'))).toBe('KV_BUCKET_NOT_FOUND');
      expect(await code(kv.get('missing', 'k'))).toBe('KV_BUCKET_NOT_FOUND');
      expect(performance.now() - t0).toBeLessThan(1_000);
    });

    it('provisions with direct get, then binds and reports drift per policy', async () => {
      const b = await kv.bucket('prov', { provision: { history: 3, maxValueSize: 1_024 } });
      await b.put('a', 1);
      const info = await (await jetstreamManager(raw)).streams.info('KV_prov');
      expect(info.config.allow_direct).toBe(true);
      expect(info.config.max_msgs_per_subject).toBe(3);
      expect(await (await kv.bucket('prov')).get('a')).toBe(1); // bind

      const err = await kv
        .bucket('prov', { provision: { history: 5, maxValueSize: 1_024 } })
        .catch((e: unknown) => e);
      expect(NatskitError.is(err, 'KV_BUCKET_DRIFT')).toBe(true);
      expect((err as Error).message).toContain('history is 3, asked 5');

      await kv.bucket('prov', { provision: { history: 5 }, drift: 'warn' });
      expect(
        (await (await jetstreamManager(raw)).streams.info('KV_prov')).config.max_msgs_per_subject,
      ).toBe(3);

      await kv.bucket('prov', { provision: { history: 5 }, drift: 'update' });
      expect(
        (await (await jetstreamManager(raw)).streams.info('KV_prov')).config.max_msgs_per_subject,
      ).toBe(5);
      expect(await kv.get('prov', 'a')).toBe(1); // data kept

      expect(
        await code(kv.bucket('prov', { provision: { storage: 'memory' }, drift: 'update' })),
      ).toBe('KV_BUCKET_DRIFT');
    });

    it('shares one open between concurrent first calls, and reopens after delete and recreate', async () => {
      await kv.createBucket('cache', { history: 1 });
      const handles = await Promise.all([
        kv.bucket('cache'),
        kv.bucket('cache'),
        kv.bucket('cache'),
      ]);
      expect(new Set(handles).size).toBe(1);
      await kv.put('cache', 'k', 'v1');

      // Deleted behind the service's back: the cached handle is found stale and dropped.
      const jsm = await jetstreamManager(raw);
      await jsm.streams.delete('KV_cache');
      expect(await code(kv.get('cache', 'k'))).toBe('KV_BUCKET_NOT_FOUND');
      await kv.createBucket('cache', { history: 4 });
      const fresh = (await kv.bucket('cache')) as unknown as {
        config: { max_msgs_per_subject: number };
      };
      expect(fresh).not.toBe(handles[0]);
      expect(fresh.config.max_msgs_per_subject).toBe(4);
      expect(await kv.get('cache', 'k')).toBeNull();
      await kv.put('cache', 'k', 'v2');
      expect(await kv.get('cache', 'k')).toBe('v2');
    });

    it('validates bucket names and keys before sending', async () => {
      expect(await code(kv.bucket('bad name'))).toBe('INVALID_BUCKET');
      await kv.createBucket('names');
      for (const key of ['', '.a', 'a.', 'a..b', 'a b', 'a*', '>']) {
        expect(await code(kv.put('names', key, 1))).toBe('INVALID_KEY');
      }
      expect(await messages('names')).toBe(0);
    });
  });

  describe('values', () => {
    it('put, create, update, delete and purge keep their revision rules', async () => {
      await kv.createBucket('ops', { history: 5 });
      const r1 = await kv.put('ops', 'k', { n: 1 });
      expect(await kv.getEntry('ops', 'k')).toMatchObject({
        key: 'k',
        value: { n: 1 },
        revision: r1,
      });
      expect(await code(kv.create('ops', 'k', { n: 2 }))).toBe('KV_REVISION_CONFLICT');
      const r2 = await kv.update('ops', 'k', { n: 2 }, r1);
      const stale = await kv
        .update('ops', 'k', { n: 3 }, r1)
        .catch((e: unknown) => e as NatskitError);
      expect(NatskitError.is(stale, 'KV_REVISION_CONFLICT')).toBe(true);
      expect((stale as NatskitError).details).toMatchObject({
        key: 'k',
        expectedRevision: r1,
        currentRevision: r2,
      });
      expect(await code(kv.update('ops', 'k', { n: 3 }, 0))).toBe('INVALID_OPTIONS');
      expect(await kv.put('ops', 'k', { n: 4 }, { revision: r2 })).toBeGreaterThan(r2);

      await kv.delete('ops', 'k');
      expect(await kv.get('ops', 'k')).toBeNull();
      expect(await kv.keys('ops')).toEqual([]);
      const created = await kv.create('ops', 'k', { n: 5 }); // absent again, so create works
      await kv.put('ops', 'other', { n: 6 });
      await kv.purge('ops', 'other');
      expect(await kv.get('ops', 'other')).toBeNull();
      expect(await kv.keys('ops')).toEqual(['k']);
      expect([...(await kv.getAll('ops')).entries()]).toEqual([['k', { n: 5 }]]);
      const history = await kv.history('ops', 'k');
      expect(history.map((h) => h.type)).toEqual(['put', 'put', 'put', 'delete', 'put']);
      expect(history.at(-1)?.revision).toBe(created);
    });

    it('a plain put stores the value as it was when put was called (as the NATS client does)', async () => {
      const b = await kv.bucket<{ n: number; tags: string[] }>('snapshot', { provision: {} });
      const value = { n: 1, tags: ['a'] };
      const put = b.put('k', value);
      // The caller reuses its object at once: the put must not read it later.
      value.n = 2;
      value.tags.push('b');
      const revision = await put;
      expect(await b.getEntry('k')).toMatchObject({ value: { n: 1, tags: ['a'] }, revision });
    });

    it('uses the codec and schema of the bucket', async () => {
      const s = await kv.bucket<string>('strings', { provision: {}, codec: 'string' });
      await s.put('greeting', 'hello');
      expect(await s.get('greeting')).toBe('hello');
      const b = await kv.bucket<Uint8Array>('bytes', { provision: {}, codec: 'bytes' });
      await b.put('blob', new Uint8Array([0, 255, 7]));
      expect([...((await b.get('blob')) ?? [])]).toEqual([0, 255, 7]);

      const positive = testSchema<{ n: number }>((v) =>
        typeof (v as { n?: unknown })?.n === 'number' && (v as { n: number }).n > 0
          ? undefined
          : 'n must be positive',
      );
      const typed = await kv.bucket('typed', { provision: {}, schema: positive });
      await typed.put('ok', { n: 1 });
      const bad = await typed.put('bad', { n: -1 }).catch((e: unknown) => e as NatskitError);
      expect(NatskitError.is(bad, 'VALIDATION_FAILED')).toBe(true);
      expect((bad as NatskitError).details?.issues).toEqual([
        { message: 'n must be positive', path: 'n' },
      ]);
      expect(await messages('typed')).toBe(1); // nothing written

      // Someone else writes a value that fails the schema, and corrupt JSON.
      const js = jetstream(raw);
      const ackBad = await js.publish('$KV.typed.other', JSON.stringify({ n: -5 }));
      const ackCorrupt = await js.publish('$KV.typed.corrupt', '{"n": 1');
      const readBad = await typed.get('other').catch((e: unknown) => e as NatskitError);
      expect(NatskitError.is(readBad, 'VALIDATION_FAILED')).toBe(true);
      expect((readBad as NatskitError).details).toMatchObject({
        key: 'other',
        revision: ackBad.seq,
        direction: 'read',
      });
      const readCorrupt = await typed.get('corrupt').catch((e: unknown) => e as NatskitError);
      expect(NatskitError.is(readCorrupt, 'DECODE_FAILED')).toBe(true);
      expect((readCorrupt as NatskitError).details).toMatchObject({
        key: 'corrupt',
        revision: ackCorrupt.seq,
      });
    });

    it('rejects values JSON would lose, and values over the size limit, before sending', async () => {
      await kv.createBucket('strict', { maxValueSize: 64 });
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const value of [10n, cyclic, { f: () => 1 }, new Map([[1, 2]]), Number.NaN, undefined]) {
        expect(await code(kv.put('strict', 'k', value))).toBe('INVALID_VALUE');
      }
      expect(await code(kv.put('strict', 'k', 'x'.repeat(100)))).toBe('VALUE_TOO_LARGE');
      expect(await messages('strict')).toBe(0);
    });
  });

  describe('TTL', () => {
    it('a key whose TTL passed reads as absent everywhere, and no older revision resurfaces', async () => {
      await kv.createBucket('ttl', { history: 5, perKeyTtl: true });
      await kv.put('ttl', 'k', 'v1');
      await kv.put('ttl', 'k', 'v2');
      await kv.put('ttl', 'k', 'v3-ttl', { ttlMs: 1_000 });
      await kv.put('ttl', 'stays', 'forever');
      expect(await kv.get('ttl', 'k')).toBe('v3-ttl');
      await sleep(2_200);
      expect(await kv.get('ttl', 'k')).toBeNull(); // not v2
      expect(await kv.keys('ttl')).toEqual(['stays']);
      expect([...(await kv.getAll('ttl')).keys()]).toEqual(['stays']);
      expect(await kv.bulkGet('ttl', ['k', 'stays'])).toEqual([null, 'forever']);
    });

    it('create with a TTL, and a TTL below one second is refused', async () => {
      await kv.createBucket('ttl2');
      await kv.create('ttl2', 'lock', 'me', { ttlMs: 1_000 }); // enables per-key TTL on first use
      expect(await code(kv.create('ttl2', 'lock', 'you'))).toBe('KV_REVISION_CONFLICT');
      expect(await code(kv.put('ttl2', 'x', 1, { ttlMs: 500 }))).toBe('INVALID_OPTIONS');
      await sleep(2_200);
      await kv.create('ttl2', 'lock', 'you'); // the lock expired
      expect(await kv.get('ttl2', 'lock')).toBe('you');
    });
  });

  describe('watch', () => {
    it('delivers the initial values, then updates and deletes', async () => {
      await kv.createBucket('w1');
      await kv.put('w1', 'a', 1);
      await kv.put('w1', 'b', 2);
      const changes: KvChange<number>[] = [];
      let initialized = false;
      const watcher = await kv.watch<number>('w1', '>', {
        onChange: (c) => {
          changes.push(c);
        },
        onInitialized: () => {
          initialized = true;
        },
      });
      const t0 = Date.now();
      while (!initialized && Date.now() - t0 < 5_000) await sleep(10);
      await kv.put('w1', 'a', 3);
      await kv.delete('w1', 'b');
      const deadline = Date.now() + 5_000;
      while (changes.length < 4 && Date.now() < deadline) await sleep(20);
      await watcher.stop();
      expect(initialized).toBe(true);
      expect(
        changes.map((c) => [c.type, c.key, c.type === 'put' ? c.value : null, c.initial]),
      ).toEqual([
        ['put', 'a', 1, true],
        ['put', 'b', 2, true],
        ['put', 'a', 3, false],
        ['delete', 'b', null, false],
      ]);
    });

    it('a write right after watch() resolves is an update, never folded into the initial state', async () => {
      await kv.createBucket('wrace');
      for (let i = 0; i < 30; i++) {
        const key = `k${i}`;
        await kv.put('wrace', key, 0);
        const changes: [number, boolean][] = [];
        const watcher = await kv.watch<number>('wrace', key, {
          onChange: (c) => {
            if (c.type === 'put') changes.push([c.value, c.initial]);
          },
        });
        await kv.put('wrace', key, 1);
        for (const t0 = Date.now(); changes.length < 2 && Date.now() - t0 < 5_000; ) await sleep(5);
        await watcher.stop();
        expect(changes).toEqual([
          [0, true],
          [1, false],
        ]);
      }
    });

    it('reads a large initial state to the end across a server restart, then updates', async () => {
      await kv.createBucket('wbig', { history: 5 });
      const keys = Array.from({ length: 120 }, (_, i) => `k${String(i).padStart(3, '0')}`);
      await kv.bulkPut(
        'wbig',
        keys.map((key, i) => ({ key, value: i })),
      );
      const watcher = await kv.watch<number>('wbig', '>', { bufferSize: 10 });
      const it = watcher[Symbol.asyncIterator]();
      const initial: string[] = [];
      for (let i = 0; i < 15; i++) {
        const r = await it.next();
        if (!r.done) initial.push(r.value.key);
      }
      // The snapshot consumer (memory, one replica) dies with the server: natskit makes another
      // and goes on after the last key it delivered.
      await server.restart({ signal: 'SIGKILL' });
      await kv.put('wbig', 'k000', 1_000, {
        retry: { retries: 20, minDelayMs: 100, maxDelayMs: 500 },
      });
      const updates: [string, number][] = [];
      while (updates.length < 1) {
        const r = await Promise.race([it.next(), sleep(20_000).then(() => undefined)]);
        if (!r || r.done) break;
        if (r.value.initial) initial.push(r.value.key);
        else if (r.value.type === 'put') updates.push([r.value.key, r.value.value]);
      }
      await watcher.stop();
      expect(initial).toEqual(keys);
      expect(updates).toEqual([['k000', 1_000]]);
    });

    it('delivers every revision exactly once across a server restart', async () => {
      await kv.createBucket('w2', { history: 10 });
      const seen: number[] = [];
      const watcher = await kv.watch<number>('w2', 'counter', { include: 'updates' });
      const reading = (async () => {
        for await (const c of watcher) {
          if (c.type === 'put') seen.push(c.value);
          if (seen.length === 40) break;
        }
      })();
      for (let i = 0; i < 20; i++) await kv.put('w2', 'counter', i);
      await server.restart({ signal: 'SIGKILL' });
      for (let i = 20; i < 40; i++) await kv.put('w2', 'counter', i); // retried while reconnecting
      await Promise.race([reading, sleep(20_000)]);
      await watcher.stop();
      expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => i));
    });

    it('bounds what a slow reader holds: the server keeps the rest', async () => {
      await kv.createBucket('w3');
      const watcher = await kv.watch<number>('w3', '>', { include: 'updates', bufferSize: 32 });
      const iterator = watcher[Symbol.asyncIterator]();
      await kv.bulkPut(
        'w3',
        Array.from({ length: 1_000 }, (_, i) => ({ key: `k${i}`, value: i })),
      );
      expect((await iterator.next()).value).toMatchObject({ type: 'put', key: 'k0', value: 0 });
      await sleep(500); // the reader holds still: nothing more is pulled than the buffer holds
      const jsm = await jetstreamManager(raw);
      const delivered: number[] = [];
      for await (const c of jsm.consumers.list('KV_w3')) delivered.push(c.delivered.stream_seq);
      expect(delivered).toHaveLength(1);
      expect(delivered[0]).toBeGreaterThanOrEqual(1);
      expect(delivered[0]).toBeLessThanOrEqual(32 + 1);
      const values = [0];
      while (values.length < 1_000) {
        const next = await iterator.next();
        if (next.done) break;
        if (next.value.type === 'put') values.push(next.value.value);
      }
      expect(values).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
      await watcher.stop();
      expect(await consumerCount(jsm, 'KV_w3')).toBe(0);
    });

    it('goes on without a gap when its consumer is deleted from under it', async () => {
      await kv.createBucket('w4', { history: 10 });
      const jsm = await jetstreamManager(raw);
      const seen: number[] = [];
      const watcher = await kv.watch<number>('w4', 'n', {
        include: 'updates',
        onChange: (c) => {
          if (c.type === 'put') seen.push(c.value);
        },
      });
      for (let i = 0; i < 5; i++) await kv.put('w4', 'n', i);
      for (const t0 = Date.now(); seen.length < 5 && Date.now() - t0 < 5_000; ) await sleep(10);
      for await (const c of jsm.consumers.list('KV_w4'))
        await jsm.consumers.delete('KV_w4', c.name);
      for (let i = 5; i < 10; i++) await kv.put('w4', 'n', i);
      for (const t0 = Date.now(); seen.length < 10 && Date.now() - t0 < 10_000; ) await sleep(10);
      await watcher.stop();
      expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i));
      expect(await consumerCount(jsm, 'KV_w4')).toBe(0);
    });

    it('ends with KV_BUCKET_NOT_FOUND when its bucket is deleted', async () => {
      await kv.createBucket('w6');
      const watcher = await kv.watch('w6', '>', { include: 'updates', onChange: () => undefined });
      await kv.put('w6', 'a', 1);
      await kv.deleteBucket('w6');
      const failed = await Promise.race([
        watcher.done.then(
          () => 'ended without error',
          (err: unknown) => err,
        ),
        sleep(15_000).then(() => 'still running after 15 s'),
      ]);
      expect(failed).toBeInstanceOf(NatskitError);
      expect((failed as NatskitError).code).toBe('KV_BUCKET_NOT_FOUND');
      await watcher.stop();
      await expect(kv.watch('w6')).rejects.toMatchObject({ code: 'KV_BUCKET_NOT_FOUND' });
    });

    it('stop() before the first read removes every consumer the watch made', async () => {
      await kv.createBucket('w5');
      await kv.put('w5', 'a', 1);
      const jsm = await jetstreamManager(raw);
      const watcher = await kv.watch('w5'); // 'last': a snapshot consumer and the live one
      expect(await consumerCount(jsm, 'KV_w5')).toBe(2);
      await watcher.stop();
      await watcher.done;
      expect(await consumerCount(jsm, 'KV_w5')).toBe(0);
    });
  });

  describe('bulk', () => {
    it('bulkGet answers in request order across chunks, with null for missing and deleted', async () => {
      await kv.createBucket('bulk');
      const entries = Array.from({ length: 1_500 }, (_, i) => ({ key: `k${i}`, value: i }));
      const put = await kv.bulkPut('bulk', entries);
      expect(put.every((r) => r.ok)).toBe(true);
      await kv.delete('bulk', 'k7');
      const keys = [
        'k1499',
        'nope',
        'k7',
        'k0',
        ...entries.slice(100, 1_300).map((e) => e.key),
        'k0',
      ];
      const values = await kv.bulkGet('bulk', keys);
      expect(values.slice(0, 4)).toEqual([1_499, null, null, 0]);
      expect(values.slice(4, -1)).toEqual(entries.slice(100, 1_300).map((e) => e.value));
      expect(values.at(-1)).toBe(0);
    });

    it('bulkPut of 1000 with one invalid key: 999 ok and one typed error, nothing dropped', async () => {
      await kv.createBucket('bulk2');
      const entries = Array.from({ length: 1_000 }, (_, i) => ({
        key: i === 500 ? 'bad key' : `k${i}`,
        value: i,
      }));
      const results = await kv.bulkPut('bulk2', entries);
      expect(results).toHaveLength(1_000);
      expect(results.filter((r) => r.ok)).toHaveLength(999);
      const failed = results[500];
      expect(failed?.ok).toBe(false);
      expect(failed && !failed.ok && failed.error.code).toBe('INVALID_KEY');
      const revisions = results.flatMap((r) => (r.ok ? [r.revision] : []));
      expect(new Set(revisions).size).toBe(999);
      expect(await kv.get('bulk2', 'k999')).toBe(999);
      expect(await messages('bulk2')).toBe(999);
      const deleted = await kv.bulkDelete('bulk2', ['k1', 'k2', 'no good']);
      expect(deleted.map((r) => r.ok)).toEqual([true, true, false]);
      expect(await kv.bulkGet('bulk2', ['k1', 'k3'])).toEqual([null, 3]);
    });
  });

  it('retries transient errors, never conflicts', async () => {
    await kv.createBucket('retry');
    const r = await kv.put('retry', 'k', 1);
    const before = kv.metrics.retries;
    expect(await code(kv.update('retry', 'k', 2, r + 100))).toBe('KV_REVISION_CONFLICT');
    expect(kv.metrics.retries).toBe(before);
    // A request waits for the connection for up to requestTimeoutMs; an outage longer than that
    // fails the attempt with a transient error, which is retried.
    await using quick = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, requestTimeoutMs: 500, reconnectTimeWaitMs: 100 },
    });
    const qkv = quick.get(KVStoreService);
    await server.stop({ signal: 'SIGKILL' });
    setTimeout(() => void server.restart(), 1_200);
    expect(
      await qkv.get('retry', 'k', { retry: { retries: 20, minDelayMs: 100, maxDelayMs: 500 } }),
    ).toBe(1);
    expect(qkv.metrics.retries).toBeGreaterThan(0);
  });

  it('KV requests and atomic commits give up after nats.requestTimeoutMs', async () => {
    await kv.createBucket('deadline');
    await using quick = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: server.url, requestTimeoutMs: 1_000 },
    });
    const qkv = quick.get(KVStoreService);
    await qkv.put('deadline', 'k', 1);
    const pid = server.pid as number;
    await freeze(pid); // a real server that stops answering
    try {
      for (const [what, call] of [
        ['get', () => qkv.get('deadline', 'k', { retry: false })],
        ['put', () => qkv.put('deadline', 'k', 2, { retry: false })],
        [
          'bulkPut',
          async () => {
            // An atomic batch commit: the per-key result carries the timeout.
            const r = await qkv.bulkPut('deadline', [{ key: 'k', value: 3 }], { retry: false });
            if (r[0] && !r[0].ok) throw r[0].error;
            return r;
          },
        ],
      ] as const) {
        const t0 = Date.now();
        const err = await call().then(
          (result: unknown) => ({ resolved: result }),
          (e: unknown) => e,
        );
        const ms = Date.now() - t0;
        expect(err, `${what} on a stopped server`).toMatchObject({ code: 'NATS_UNAVAILABLE' });
        // The default is 5000 ms; the configured 1000 ms applies (generous upper bound).
        expect(ms).toBeGreaterThanOrEqual(900);
        expect(ms).toBeLessThan(4_000);
      }
    } finally {
      thaw(pid);
    }
  });

  it('reports bucket health', async () => {
    await kv.createBucket('health', { history: 2, ttlMs: 60_000 });
    await kv.put('health', 'a', 1);
    const h = await kv.healthCheck('health');
    expect(h).toMatchObject({
      bucket: 'health',
      healthy: true,
      values: 1,
      keys: 1,
      history: 2,
      ttlMs: 60_000,
      replicas: 1,
      directGet: true,
    });
    expect(h.readLatencyMs).toBeGreaterThan(0);
  });

  it('offers state calls on a default bucket', async () => {
    const changes: string[] = [];
    await kv.setState('job.1', { status: 'queued' });
    const watcher = await kv.watchState<{ status: string }>('job.*', (c) => {
      changes.push(c.type === 'put' ? c.value.status : c.type);
    });
    await kv.setState('job.1', { status: 'done' });
    expect(await kv.getState('job.1')).toEqual({ status: 'done' });
    await kv.deleteState('job.1');
    expect(await kv.getState('job.1')).toBeNull();
    const deadline = Date.now() + 10_000;
    while (changes.length < 3 && Date.now() < deadline) await sleep(20);
    await watcher.stop();
    expect(changes, `changes seen: ${JSON.stringify(changes)}`).toEqual([
      'queued',
      'done',
      'delete',
    ]);
  });
});

describe('KVStoreService on nats-server 2.9.10', () => {
  it('per-key TTL fails with CAPABILITY_MISSING; plain operations and bulkGet work', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: old.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('compat', { history: 5 });
    expect(await code(kv.put('compat', 'k', 'v', { ttlMs: 1_000 }))).toBe('CAPABILITY_MISSING');
    expect(await code(kv.createBucket('compat2', { perKeyTtl: true }))).toBe('CAPABILITY_MISSING');
    const r = await kv.put('compat', 'k', 'v1');
    await kv.update('compat', 'k', 'v2', r);
    expect(await kv.bulkGet('compat', ['k', 'nope'])).toEqual(['v2', null]); // pipelined gets, no multi_last
    const results = await kv.bulkPut('compat', [
      { key: 'a', value: 1 },
      { key: 'b', value: 2 },
    ]);
    expect(results.every((x) => x.ok)).toBe(true);
    expect(await kv.keys('compat')).toEqual(['k', 'a', 'b']);
    // Watch: natskit's own consumers on the older server (9-token ack subjects).
    const changes: string[] = [];
    const watcher = await kv.watch<unknown>('compat', '>', {
      onChange: (c) => {
        changes.push(`${c.type} ${c.key} ${c.initial ? 'initial' : 'update'}`);
      },
    });
    await kv.put('compat', 'a', 3);
    await kv.delete('compat', 'b');
    for (const t0 = Date.now(); changes.length < 5 && Date.now() - t0 < 5_000; ) await sleep(10);
    await watcher.stop();
    expect(changes).toEqual([
      'put k initial',
      'put a initial',
      'put b initial',
      'put a update',
      'delete b update',
    ]);
  });
});
