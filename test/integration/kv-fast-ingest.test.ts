import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { type BulkResult, KVStoreService, ServiceManager } from '../../src/index.js';
import { startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

/** A result as its shape: `ok`, or the error code. */
const shape = (r: BulkResult) => (r.ok ? 'ok' : r.error.code);

/**
 * 300 keys with three that must fail alone (a value over the bucket's max value size, an
 * invalid key) and one key written twice; the results' shapes and what is stored.
 */
async function mixedBulkPut(version: 'modern' | '2.9') {
  await using server = await startNatsServer({ version });
  await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
  const kv = app.get(KVStoreService);
  await kv.createBucket('mixed', { history: 1, maxValueSize: 256 });
  const entries = Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
  entries[17] = { key: 'k17', value: 'x'.repeat(1_000) };
  entries[120] = { key: 'not ok', value: 'v120' };
  entries[250] = { key: 'k3', value: 'again' };
  const results = await kv.bulkPut('mixed', entries);
  const nc = await connect({ servers: server.url });
  const config = (await (await jetstreamManager(nc)).streams.info('KV_mixed')).config;
  await nc.close();
  const revisions = await Promise.all(
    results.map(async (r) => (r.ok ? (await kv.getEntry('mixed', r.key))?.revision : undefined)),
  );
  return {
    shapes: results.map(shape),
    keys: results.map((r) => r.key),
    results,
    revisions,
    k3: await kv.get('mixed', 'k3'),
    k17: await kv.get('mixed', 'k17'),
    batched: config.allow_batched === true,
  };
}

describe('bulkPut through fast ingest (nats-server 2.14+) and without it (2.9)', () => {
  it('the same per-key results on 2.15 (fast ingest) and 2.9 (one put per key), failures kept', async () => {
    const fast = await mixedBulkPut('modern');
    const old = await mixedBulkPut('2.9');
    expect(fast.batched).toBe(true); // turned on by a stream update on the first bulkPut
    expect(old.batched).toBe(false);
    expect(fast.shapes).toEqual(old.shapes);
    expect(fast.keys).toEqual(old.keys);
    const expected = fast.shapes.map((_, i) =>
      i === 17 ? 'VALUE_TOO_LARGE' : i === 120 ? 'INVALID_KEY' : 'ok',
    );
    expect(fast.shapes).toEqual(expected);
    for (const run of [fast, old]) {
      expect(run.k3).toBe('again'); // the later entry of a key wins, as with puts in order
      expect(run.k17).toBeNull();
      // Every ok result names the revision the key holds (k3's first entry was overwritten).
      run.results.forEach((r, i) => {
        if (r.ok && i !== 3) expect(r.revision, `entry ${i}`).toBe(run.revisions[i]);
      });
    }
    // Fast ingest on a fresh bucket: one message per stored entry, in entry order.
    const okRevisions = fast.results.flatMap((r) => (r.ok ? [r.revision] : []));
    expect(okRevisions).toEqual(okRevisions.map((_, i) => i + 1));
  }, 60_000);

  it('a write by another client in the middle of the batch: every key still gets its own revision', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('busy', { history: 1 });
    const nc = await connect({ servers: server.url });
    const js = jetstream(nc);
    let other = 0;
    let stop = false;
    const writer = (async () => {
      while (!stop) await js.publish(`$KV.busy.other${other++ % 50}`, 'x');
    })();
    const entries = Array.from({ length: 5_000 }, (_, i) => ({ key: `k${i}`, value: i }));
    const results = await kv.bulkPut('busy', entries);
    stop = true;
    await writer;
    await nc.close();
    expect(other).toBeGreaterThan(0);
    expect(results.map(shape)).toEqual(entries.map(() => 'ok'));
    const values = await kv.bulkGet(
      'busy',
      entries.map((e) => e.key),
    );
    expect(values).toEqual(entries.map((e) => e.value));
    for (const [i, r] of results.entries()) {
      if (i % 97 !== 0) continue;
      expect(r.ok && r.revision).toBe((await kv.getEntry('busy', r.key))?.revision);
    }
    expect(new Set(results.map((r) => r.ok && r.revision)).size).toBe(5_000);
  }, 60_000);

  it('keys the server refuses inside the batch (the bucket is full) fail alone with what a put gives', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('full', { history: 1, maxBytes: 20_000 });
    const entries = Array.from({ length: 400 }, (_, i) => ({
      key: `k${i}`,
      value: 'x'.repeat(60),
    }));
    const results = await kv.bulkPut('full', entries, { retry: false });
    const ok = results.filter((r) => r.ok);
    const failed = results.filter((r) => !r.ok);
    expect(ok.length).toBeGreaterThan(0);
    expect(failed.length).toBeGreaterThan(0);
    expect(ok.length + failed.length).toBe(400);
    const nc = await connect({ servers: server.url });
    const state = (await (await jetstreamManager(nc)).streams.info('KV_full')).state;
    await nc.close();
    expect(state.messages).toBe(ok.length); // no acknowledged key missing, none stored twice
    const single = await kv.put('full', 'one-more', 'x'.repeat(60), { retry: false }).then(
      () => 'ok',
      (e: unknown) => (e as { code?: string }).code,
    );
    expect(new Set(failed.map(shape))).toEqual(new Set([single]));
    for (const r of ok)
      expect(r.ok && r.revision).toBe((await kv.getEntry('full', r.key))?.revision);
  }, 60_000);
});

describe('bulkPut through fast ingest when the batch cannot run', () => {
  const entries = Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: i }));

  it('a bucket deleted by another client: 100 per-key KV_BUCKET_NOT_FOUND results, as with 10, not a rejected call', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await kv.createBucket('gone');
    const b = await kv.bucket<number>('gone');
    expect((await b.bulkPut(entries)).map(shape)).toEqual(entries.map(() => 'ok')); // allow_batched now on
    await jsm.streams.delete('KV_gone');
    const results = await b.bulkPut(entries);
    expect(results.map((r) => r.key)).toEqual(entries.map((e) => e.key));
    expect(results.map(shape)).toEqual(entries.map(() => 'KV_BUCKET_NOT_FOUND'));
    await nc.close();
  }, 30_000);

  it('a failure turning allow_batched on that is not a refusal (the bucket was gone): the next bulkPut turns it on', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await kv.createBucket('back');
    const b = await kv.bucket<number>('back');
    const { config } = await jsm.streams.info('KV_back');
    expect(config.allow_batched).not.toBe(true);
    await jsm.streams.delete('KV_back');
    expect((await b.bulkPut(entries)).map(shape)).toEqual(entries.map(() => 'KV_BUCKET_NOT_FOUND'));
    await jsm.streams.add(config); // another client creates the bucket again
    expect((await b.bulkPut(entries)).map(shape)).toEqual(entries.map(() => 'ok'));
    expect((await jsm.streams.info('KV_back')).config.allow_batched).toBe(true);
    await nc.close();
  }, 30_000);

  it("the call's signal reaches the batch: an aborted bulkPut stores nothing and says ABORTED per key", async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('aborted');
    const b = await kv.bucket<number>('aborted');
    await b.bulkPut(entries.map((e) => ({ ...e, value: -1 }))); // turns allow_batched on
    const results = await b.bulkPut(entries, { signal: AbortSignal.abort() });
    expect(results.map(shape)).toEqual(entries.map(() => 'ABORTED'));
    expect(await b.bulkGet(entries.map((e) => e.key))).toEqual(entries.map(() => -1));
  }, 30_000);
});

describe('bulkPut through fast ingest with per-key TTL', () => {
  it('entries with a TTL expire (the Nats-TTL header travels in the fast batch); the others stay', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('ttl', { history: 1, perKeyTtl: true });
    const entries = Array.from({ length: 200 }, (_, i) => ({
      key: `k${i}`,
      value: i,
      ...(i % 2 === 0 ? { ttlMs: 1_000 } : {}),
    }));
    const results = await kv.bulkPut('ttl', entries);
    expect(results.map(shape)).toEqual(entries.map(() => 'ok'));
    const nc = await connect({ servers: server.url });
    const config = (await (await jetstreamManager(nc)).streams.info('KV_ttl')).config;
    await nc.close();
    expect(config.allow_batched).toBe(true);
    const keys = entries.map((e) => e.key);
    const deadline = Date.now() + 10_000;
    let values = await kv.bulkGet('ttl', keys);
    while (values.some((v, i) => i % 2 === 0 && v !== null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      values = await kv.bulkGet('ttl', keys);
    }
    expect(values).toEqual(entries.map((e, i) => (i % 2 === 0 ? null : e.value)));
  }, 30_000);
});

describe('bulkPut through fast ingest when the server stops answering', () => {
  it('a server paused mid-batch (SIGSTOP past the request timeout): no key is lost, none reported stored that is not', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, requestTimeoutMs: 1_000 },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('paused', { history: 1 });
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    const entries = Array.from({ length: 30_000 }, (_, i) => ({ key: `k${i}`, value: i }));
    const put = kv.bulkPut('paused', entries, { retry: { retries: 20, maxDelayMs: 500 } });
    // Paused once part of the batch is stored; resumed after the batch's ack deadline passed.
    while ((await jsm.streams.info('KV_paused')).state.messages < 1_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const pid = server.pid as number;
    process.kill(pid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 1_500));
    process.kill(pid, 'SIGCONT');
    const results = await put;
    expect(results.map(shape)).toEqual(entries.map(() => 'ok'));
    expect(
      await kv.bulkGet(
        'paused',
        entries.map((e) => e.key),
      ),
    ).toEqual(entries.map((e) => e.value));
    const sample = results.filter((_, i) => i % 499 === 0);
    for (const r of sample) {
      const current = (await kv.getEntry('paused', r.key))?.revision ?? 0;
      expect(r.ok && r.revision, r.key).toBeLessThanOrEqual(current);
    }
    await nc.close();
  }, 90_000);
});
