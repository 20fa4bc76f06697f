import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type KVStoreService,
  KVStoreService as KvService,
  NatskitError,
  ServiceManager,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

/** Polls an async condition every 20 ms until it holds; throws after `timeoutMs`. */
async function eventually(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}

async function failure(p: Promise<unknown>): Promise<NatskitError | string> {
  return await p.then(
    () => 'no error',
    (e: unknown) => (NatskitError.is(e) ? e : `not a NatskitError: ${String(e)}`),
  );
}

describe('mirrored and sourced buckets (one server)', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let raw: NatsConnection;
  const streams = async () => {
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
    kv = app.get(KvService);
    raw = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await raw?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('a mirror receives the keys of its origin and reads through get, getEntry, bulkGet, keys, getAll, history and watch', async () => {
    await kv.createBucket('origin', { history: 5 });
    await kv.put('origin', 'a', { n: 1 });
    await kv.put('origin', 'b', { n: 2 });
    await kv.createBucket('replica', { history: 5, mirror: { bucket: 'origin' } });
    const replica = await kv.bucket('replica');
    await eventually(async () => (await replica.keys()).length === 2);
    expect((await replica.keys()).sort()).toEqual(['a', 'b']);
    expect(await replica.get('a')).toEqual({ n: 1 });
    expect(await replica.bulkGet(['a', 'b', 'none'])).toEqual([{ n: 1 }, { n: 2 }, null]);
    expect([...(await replica.getAll()).entries()].sort()).toEqual([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
    ]);
    const changes: string[] = [];
    await using watcher = await replica.watch('>', {
      include: 'updates',
      onChange: (c) => {
        changes.push(`${c.type} ${c.key}`);
      },
    });
    void watcher;
    // Later writes and deletes on the origin arrive too.
    const rev = await kv.put('origin', 'a', { n: 3 });
    await kv.delete('origin', 'b');
    await eventually(async () => (await replica.get('b')) === null);
    expect(await replica.getEntry('a')).toMatchObject({ value: { n: 3 }, revision: rev });
    expect((await replica.history('a')).map((h) => h.type)).toEqual(['put', 'put']);
    expect(await replica.keys()).toEqual(['a']);
    await eventually(async () => changes.length === 2);
    expect(changes).toEqual(['put a', 'delete b']);
    // The stored stream: a mirror of KV_origin, no subjects of its own.
    const info = await (await jetstreamManager(raw)).streams.info('KV_replica');
    expect(info.config.mirror?.name).toBe('KV_origin');
    expect(info.config.subjects ?? []).toEqual([]);
    expect(info.config.mirror_direct).toBe(true); // it answers the origin's direct gets too
  });

  it('a write to a mirror fails at once with KV_READ_ONLY naming the origin, and nothing is written', async () => {
    await kv.createBucket('ro_origin');
    await kv.put('ro_origin', 'k', 1);
    await kv.createBucket('ro', { mirror: { bucket: 'ro_origin' } });
    const ro = await kv.bucket<number>('ro');
    await eventually(async () => (await ro.get('k')) === 1);
    const t0 = performance.now();
    const calls: [string, () => Promise<unknown>][] = [
      ['put', () => ro.put('k', 2)],
      ['create', () => ro.create('new', 2)],
      ['update', () => ro.update('k', 2, 1)],
      ['delete', () => ro.delete('k')],
      ['purge', () => ro.purge('k')],
      ['ttl put', () => ro.put('k', 2, { ttlMs: 5_000 })],
      ['transaction', () => ro.transaction((tx) => tx.put('k', 2))],
      [
        'multi-key transaction',
        () =>
          ro.transaction(async (tx) => {
            await tx.put('k', 2);
            await tx.put('j', 2);
          }),
      ],
      ['updateWith', () => ro.updateWith('k', (v) => (v ?? 0) + 1)],
    ];
    for (const [what, p] of calls) {
      const err = await failure(p());
      expect(NatskitError.is(err, 'KV_READ_ONLY'), `${what}: ${String(err)}`).toBe(true);
      expect((err as NatskitError).details).toMatchObject({ bucket: 'ro', origin: 'ro_origin' });
    }
    const bulk = await ro.bulkPut([{ key: 'x', value: 1 }]);
    expect(bulk[0]?.ok === false && bulk[0].error.code).toBe('KV_READ_ONLY');
    const del = await ro.bulkDelete(['k']);
    expect(del[0]?.ok === false && del[0].error.code).toBe('KV_READ_ONLY');
    expect(performance.now() - t0).toBeLessThan(2_000); // refused, not retried until a timeout
    const state = (await (await jetstreamManager(raw)).streams.info('KV_ro')).state;
    expect(state.messages).toBe(1);
    expect(await ro.get('k')).toBe(1);
  });

  it('a sourced bucket aggregates the keys of two buckets, and takes its own writes', async () => {
    await kv.createBucket('east');
    await kv.createBucket('west');
    await kv.put('east', 'e1', 'from east');
    await kv.put('west', 'w1', 'from west');
    await kv.createBucket('all', { sources: [{ bucket: 'east' }, { bucket: 'west' }] });
    const all = await kv.bucket('all');
    await kv.put('west', 'w2', 'later');
    await eventually(async () => (await all.keys()).length === 3);
    expect((await all.keys()).sort()).toEqual(['e1', 'w1', 'w2']);
    expect(await all.bulkGet(['e1', 'w1', 'w2'])).toEqual(['from east', 'from west', 'later']);
    await all.put('own', 'local');
    expect(await all.get('own')).toBe('local');
    const info = await (await jetstreamManager(raw)).streams.info('KV_all');
    expect(info.config.sources?.map((s) => s.subject_transforms)).toEqual([
      [{ src: '$KV.east.>', dest: '$KV.all.>' }],
      [{ src: '$KV.west.>', dest: '$KV.all.>' }],
    ]);
  });

  it('binds a mirror the nats.js KV client made, and reads its keys', async () => {
    await kv.createBucket('js_origin');
    await kv.put('js_origin', 'k', 'v');
    await new Kvm(jetstream(raw)).create('js_mirror', { mirror: { name: 'js_origin' } });
    const m = await kv.bucket<string>('js_mirror', { codec: 'string' });
    await eventually(async () => (await m.get('k')) !== null);
    expect(await m.get('k')).toBe('"v"');
    expect(await m.keys()).toEqual(['k']);
    expect(NatskitError.is(await failure(m.put('k', 'x')), 'KV_READ_ONLY')).toBe(true);
  });

  it('refuses bad mirror and sources configs, naming the field, before creating anything', async () => {
    await kv.createBucket('some');
    const before = await streams();
    const cases: [unknown, string, string][] = [
      [{ mirror: { bucket: 'some' }, sources: [{ bucket: 'some' }] }, 'INVALID_OPTIONS', 'mirror'],
      [{ mirror: {} }, 'INVALID_OPTIONS', 'mirror.bucket'],
      [{ mirror: 'some' }, 'INVALID_OPTIONS', 'mirror'],
      [{ mirror: { bucket: 'some', name: 'x' } }, 'INVALID_OPTIONS', 'mirror.name'],
      [{ mirror: { bucket: 'bad.name' } }, 'INVALID_OPTIONS', 'mirror.bucket'],
      [{ mirror: { bucket: 'bad_cfg' } }, 'INVALID_OPTIONS', 'mirror.bucket'], // itself
      [{ sources: [] }, 'INVALID_OPTIONS', 'sources'],
      [{ sources: { bucket: 'some' } }, 'INVALID_OPTIONS', 'sources'],
      [
        { sources: [{ bucket: 'some' }, { bucket: 'some' }] },
        'INVALID_OPTIONS',
        'sources[1].bucket',
      ],
      [{ sources: [{ bucket: 'bad_cfg' }] }, 'INVALID_OPTIONS', 'sources[0].bucket'], // itself
      [{ mirror: { bucket: 'missing' } }, 'KV_BUCKET_NOT_FOUND', 'mirror.bucket'],
      [
        { sources: [{ bucket: 'some' }, { bucket: 'missing' }] },
        'KV_BUCKET_NOT_FOUND',
        'sources[1].bucket',
      ],
    ];
    for (const [config, code, field] of cases) {
      const err = await failure(kv.createBucket('bad_cfg', config as never));
      expect(NatskitError.is(err, code as never), `${JSON.stringify(config)}: ${String(err)}`).toBe(
        true,
      );
      expect((err as NatskitError).details?.field, JSON.stringify(config)).toBe(field);
    }
    expect(await streams()).toEqual(before);
  });

  it('provisioning an existing bucket with another mirror or other sources is KV_BUCKET_DRIFT; sources can be updated, a mirror cannot', async () => {
    await kv.createBucket('d_one');
    await kv.createBucket('d_two');
    await kv.createBucket('d_mirror', { mirror: { bucket: 'd_one' } });
    await kv.createBucket('d_mirror', { mirror: { bucket: 'd_one' } }); // the same: no drift
    for (const drift of ['error', 'update'] as const) {
      const err = await failure(
        kv.createBucket('d_mirror', { mirror: { bucket: 'd_two' } }, drift),
      );
      expect(NatskitError.is(err, 'KV_BUCKET_DRIFT'), String(err)).toBe(true);
      expect((err as NatskitError).details?.differences).toEqual([
        {
          field: 'mirror',
          existing: { bucket: 'd_one' },
          requested: { bucket: 'd_two' },
          updatable: false,
        },
      ]);
    }
    const plain = await failure(kv.createBucket('d_one', { mirror: { bucket: 'd_two' } }));
    expect(NatskitError.is(plain, 'KV_BUCKET_DRIFT')).toBe(true);

    await kv.createBucket('d_agg', { sources: [{ bucket: 'd_one' }, { bucket: 'd_two' }] });
    const err = await failure(kv.createBucket('d_agg', { sources: [{ bucket: 'd_one' }] }));
    expect(NatskitError.is(err, 'KV_BUCKET_DRIFT')).toBe(true);
    expect((err as NatskitError).details?.differences).toEqual([
      { field: 'sources', existing: ['d_one', 'd_two'], requested: ['d_one'], updatable: true },
    ]);
    await kv.createBucket('d_agg', { sources: [{ bucket: 'd_one' }] }, 'update');
    const info = await (await jetstreamManager(raw)).streams.info('KV_d_agg');
    expect(info.config.sources?.map((s) => s.name)).toEqual(['KV_d_one']);
    await kv.createBucket('d_agg', { sources: [{ bucket: 'd_one' }] }); // no drift left
  });

  it('nats-server 2.9 drops the subject transform of a source: CAPABILITY_MISSING, and no bucket is left; its mirrors work', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using legacy = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: old.url },
    });
    const lkv = legacy.get(KvService);
    await lkv.createBucket('one');
    await lkv.put('one', 'k', 1);
    const err = await failure(lkv.createBucket('agg', { sources: [{ bucket: 'one' }] }));
    expect(NatskitError.is(err, 'CAPABILITY_MISSING'), String(err)).toBe(true);
    const oc = await connect({ servers: old.url });
    try {
      const names: string[] = [];
      for await (const n of (await jetstreamManager(oc)).streams.names()) names.push(n);
      expect(names).toEqual(['KV_one']);
    } finally {
      await oc.close();
    }
    // A mirror needs no transform: it works on 2.9.
    await lkv.createBucket('one_copy', { mirror: { bucket: 'one' } });
    const copy = await lkv.bucket('one_copy');
    await eventually(async () => (await copy.get('k')) === 1);
    expect(await copy.keys()).toEqual(['k']);
  });
});
