import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KVStoreService,
  type KvChange,
  NatskitError,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { freePort, type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

interface Jsz {
  streams?: number;
  account_details?: { stream_detail?: { name: string }[] }[];
}
const streamNames = async (server: NatsServerHandle) =>
  ((await server.monitor<Jsz>('/jsz?accounts=true&streams=true')).account_details ?? [])
    .flatMap((a) => a.stream_detail ?? [])
    .map((s) => s.name)
    .sort();

// A leaf node with JetStream of its own (domain "leaf") connected to a hub (domain "hub"): an app
// on the leaf that names the hub's domain keeps its buckets, streams and consumers on the hub.
// Before nats.jetstreamDomain, natskit always asked `$JS.API` and so used the leaf's own JetStream.
describe('a JetStream domain (nats.jetstreamDomain)', () => {
  let hub: NatsServerHandle;
  let leaf: NatsServerHandle;
  beforeAll(async () => {
    const leafPort = await freePort();
    hub = await startNatsServer({
      jetstreamDomain: 'hub',
      serverName: 'hub',
      extraConfig: `leafnodes { listen: "127.0.0.1:${leafPort}" }`,
    });
    leaf = await startNatsServer({
      jetstreamDomain: 'leaf',
      serverName: 'leaf',
      extraConfig: `leafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${leafPort}" } ] }`,
    });
    await waitForValue(
      () => hub.monitor<{ leafnodes?: number }>('/leafz'),
      (z) => (z.leafnodes ?? 0) === 1,
      20_000,
      'the leaf node connected to the hub',
    );
  });
  afterAll(async () => {
    await leaf?.[Symbol.asyncDispose]();
    await hub?.[Symbol.asyncDispose]();
  });

  it("KV, transactions, watches, streams and a worker on the leaf use the hub's JetStream", async () => {
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: leaf.url, jetstreamDomain: 'hub' },
    });
    const kv = app.get(KVStoreService);
    const streams = app.get(StreamService);
    await kv.createBucket('dom', { history: 2 });
    const changes: KvChange<number>[] = [];
    await using _watch = await kv.watch<number>('dom', '>', {
      onChange: (c) => {
        changes.push(c);
      },
    });
    await kv.put('dom', 'a', 1);
    await kv.transaction<number>('dom', async (tx) => {
      tx.put('b', ((await tx.get('a')) ?? 0) + 1);
    });
    expect(await kv.bulkGet('dom', ['a', 'b'])).toEqual([1, 2]);
    // A bulk put of this size goes as a fast-ingest batch on the hub's 2.15 server.
    const many = Array.from({ length: 100 }, (_, i) => ({ key: `m${i}`, value: i }));
    const results = await kv.bulkPut('dom', many);
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    expect(await kv.get('dom', 'm99')).toBe(99);
    await waitUntil(() => changes.length === 102, 10_000, 'the watch saw every write');

    await streams.ensureStream({ name: 'DOMJOBS', subjects: ['domjobs.>'] });
    const handled: string[] = [];
    await using worker = await streams.createWorker<string>({
      stream: 'DOMJOBS',
      consumer: 'w',
      fetchExpiresMs: 1_000,
      decode: (d) => new TextDecoder().decode(d),
      handler: (job) => {
        handled.push(job.data);
      },
    });
    worker.start();
    for (const n of ['1', '2', '3']) await streams.publish(`domjobs.${n}`, n);
    await waitUntil(() => handled.length === 3, 10_000, 'the worker handled the jobs');
    expect(handled.sort()).toEqual(['1', '2', '3']);

    // Everything lives on the hub; the leaf's own JetStream has none of it.
    expect(await streamNames(hub)).toEqual(['DOMJOBS', 'KV_dom']);
    expect(await streamNames(leaf)).toEqual([]);
  });

  it("without the domain the same app uses the leaf's own JetStream (the option is what moves it)", async () => {
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: leaf.url } });
    await app.get(KVStoreService).createBucket('local');
    expect(await streamNames(leaf)).toEqual(['KV_local']);
    expect(await streamNames(hub)).not.toContain('KV_local');
  });

  it('a domain that does not exist fails the start at capability detection, not later', async () => {
    const err = await ServiceManager.start({
      ...quiet,
      nats: { servers: leaf.url, jetstreamDomain: 'nowhere', requestTimeoutMs: 500 },
    }).catch((e: unknown) => e);
    // Nobody answers `$JS.nowhere.API.INFO`: the start says so instead of running without JetStream.
    expect(NatskitError.is(err, 'NATS_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain('$JS.nowhere.API.INFO');
  });

  it('refuses a domain with a dot or a wildcard, and a domain with an API prefix', async () => {
    for (const nats of [
      { servers: leaf.url, jetstreamDomain: 'a.b' },
      { servers: leaf.url, jetstreamDomain: '*' },
      { servers: leaf.url, jetstreamApiPrefix: '$JS.>' },
      { servers: leaf.url, jetstreamDomain: 'hub', jetstreamApiPrefix: '$JS.hub.API' },
    ]) {
      const err = await ServiceManager.start({ ...quiet, nats }).catch((e: unknown) => e);
      expect(NatskitError.is(err, 'INVALID_OPTIONS'), JSON.stringify(nats)).toBe(true);
    }
  });

  it("nats.jetstreamApiPrefix reaches the hub's JetStream the same way", async () => {
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: leaf.url, jetstreamApiPrefix: '$JS.hub.API' },
    });
    await app.get(KVStoreService).createBucket('prefixed');
    await app.get(KVStoreService).put('prefixed', 'k', 1);
    expect(await streamNames(hub)).toContain('KV_prefixed');
    expect(await streamNames(leaf)).not.toContain('KV_prefixed');
  });
});
