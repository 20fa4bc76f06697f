import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { KVStoreService, NatskitError, ServiceManager } from '../../src/index.js';
import { startNatsCluster } from '../../src/testing/index.js';

/** Polls an async condition every 20 ms until it holds; throws after `timeoutMs`. */
async function eventually(condition: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}

describe('mirrors, sources and placement on a 3-node cluster', () => {
  it('places buckets by server tag, fills a mirror in another zone and an aggregate of two buckets, and refuses a placement no server matches', async () => {
    await using cluster = await startNatsCluster({
      size: 3,
      serverTags: [['az:a'], ['az:b', 'ssd'], ['az:c']],
    });
    const nats = { servers: [...cluster.urls] };
    await using app = await ServiceManager.start({ logger: { level: 'silent' }, nats });
    const kv = app.get(KVStoreService);
    const raw = await connect(nats);
    try {
      const jsm = await jetstreamManager(raw);
      /** The index of the node that leads the bucket's stream, once it has a leader. */
      const leaderOf = async (bucket: string) => {
        let leader: string | undefined;
        await eventually(async () => {
          leader = (await jsm.streams.info(`KV_${bucket}`)).cluster?.leader;
          return leader !== undefined && leader !== '';
        });
        return cluster.indexOf(leader as string);
      };

      // Placement by tag puts each stream on the node that has the tag.
      await kv.createBucket('orders', { history: 3, placement: { tags: ['az:a'] } });
      await kv.createBucket('orders_b', {
        history: 3,
        mirror: { bucket: 'orders' },
        placement: { tags: ['az:b'] },
      });
      expect(await leaderOf('orders')).toBe(0);
      expect(await leaderOf('orders_b')).toBe(1);

      // The mirror (a read replica in zone b) receives the origin's keys, old and new.
      await kv.put('orders', 'o-1', { total: 10 });
      await kv.put('orders', 'o-2', { total: 20 });
      const replica = await kv.bucket('orders_b');
      await eventually(async () => (await replica.keys()).length === 2);
      expect((await replica.keys()).sort()).toEqual(['o-1', 'o-2']);
      expect(await replica.get('o-2')).toEqual({ total: 20 });
      await kv.put('orders', 'o-1', { total: 11 });
      await eventually(async () => ((await replica.get('o-1')) as { total: number }).total === 11);
      expect(
        NatskitError.is(await replica.put('o-3', {}).catch((e: unknown) => e), 'KV_READ_ONLY'),
      ).toBe(true);

      // An R3 aggregate of two buckets in two zones holds the keys of both.
      await kv.createBucket('east', { placement: { tags: ['az:a'] } });
      await kv.createBucket('west', { placement: { tags: ['az:c'] } });
      await kv.put('east', 'e', 'east value');
      await kv.put('west', 'w', 'west value');
      await kv.createBucket('everywhere', {
        replicas: 3,
        sources: [{ bucket: 'east' }, { bucket: 'west' }],
      });
      expect(await leaderOf('west')).toBe(2);
      await leaderOf('everywhere');
      const all = await kv.bucket('everywhere');
      await eventually(async () => (await all.keys()).length === 2);
      expect(await all.bulkGet(['e', 'w'])).toEqual(['east value', 'west value']);

      // A placement no server matches fails typed, naming the field, and creates nothing.
      for (const placement of [
        { tags: ['az:z'] },
        { cluster: 'elsewhere' },
        { tags: ['az:a', 'ssd'] },
      ]) {
        const err = await kv.createBucket('nowhere', { placement }).catch((e: unknown) => e);
        expect(NatskitError.is(err, 'INVALID_OPTIONS'), String(err)).toBe(true);
        expect((err as NatskitError).details).toMatchObject({
          field: 'placement',
          bucket: 'nowhere',
          apiCode: 10005,
        });
      }
      // Three replicas on the one node tagged ssd cannot be placed either.
      const r3 = await kv
        .createBucket('too_few', { replicas: 3, placement: { tags: ['ssd'] } })
        .catch((e: unknown) => e);
      expect((r3 as NatskitError).details).toMatchObject({ field: 'placement', apiCode: 10005 });
      // More replicas than servers, without placement: the field is replicas.
      const r5 = await kv.createBucket('too_many', { replicas: 5 }).catch((e: unknown) => e);
      expect(NatskitError.is(r5, 'INVALID_OPTIONS')).toBe(true);
      expect((r5 as NatskitError).details).toMatchObject({ field: 'replicas', apiCode: 10005 });
      const names: string[] = [];
      for await (const n of jsm.streams.names()) names.push(n);
      expect(names).not.toContain('KV_nowhere');
      expect(names).not.toContain('KV_too_few');
      expect(names).not.toContain('KV_too_many');
    } finally {
      await raw.close();
    }
  });

  it('the harness refuses server tags it cannot write into a config, before starting anything', async () => {
    for (const serverTags of [[['a b']], [['a"b']], [[], [], [], []], ['az:a']]) {
      const err = await startNatsCluster({ size: 3, serverTags: serverTags as never }).then(
        async (c) => {
          await c[Symbol.asyncDispose]();
          return 'started';
        },
        (e: unknown) => e,
      );
      expect((err as NatskitError).details, JSON.stringify(serverTags)).toEqual({
        field: 'serverTags',
      });
    }
  });
});
