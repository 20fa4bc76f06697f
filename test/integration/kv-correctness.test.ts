import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  KVStoreService,
  NatskitError,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { maxKeyBytes } from '../../src/kv/names.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

async function failure(p: Promise<unknown>): Promise<NatskitError | string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (NatskitError.is(err)) return err;
  return err === undefined ? 'no error' : `not a NatskitError: ${String(err)}`;
}
const code = async (p: Promise<unknown>) => {
  const f = await failure(p);
  return typeof f === 'string' ? f : f.code;
};

describe('KV correctness', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let raw: NatsConnection;
  const stored = async (bucket: string) =>
    (await (await jetstreamManager(raw)).streams.info(`KV_${bucket}`)).state.messages;

  beforeAll(async () => {
    // A small max_payload makes the server's own limit testable at its exact edge.
    server = await startNatsServer({ extraConfig: 'max_payload: 4096' });
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    kv = app.get(KVStoreService);
    raw = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await raw?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  describe('transaction operations without await', () => {
    it('a tx.put and tx.delete that are not awaited are committed, not dropped', async () => {
      await kv.createBucket('noawait');
      await kv.put('noawait', 'a', 1);
      await kv.put('noawait', 'gone', 'x');
      const result = await kv.transaction<number>('noawait', async (tx) => {
        const v = (await tx.get('a')) ?? 0;
        void tx.put('a', v + 1);
        void tx.put('b', v + 1);
        void tx.delete('gone');
      });
      expect(result.attempts).toBe(1);
      expect(Object.keys(result.revisions).sort()).toEqual(['a', 'b', 'gone']);
      expect(await kv.bulkGet('noawait', ['a', 'b', 'gone'])).toEqual([2, 2, null]);
    });

    it('an operation started from another pending operation is committed too', async () => {
      await kv.createBucket('chain');
      await kv.put('chain', 'src', 41);
      await kv.transaction<number>('chain', (tx) => {
        // The function returns at once; the put runs when the read comes back.
        void tx.get('src').then((v) => tx.put('dst', (v ?? 0) + 1));
      });
      expect(await kv.get('chain', 'dst')).toBe(42);
    });

    it('a write that fails without await aborts the transaction with its error; nothing is stored', async () => {
      await kv.createBucket('noawait2');
      const before = await stored('noawait2');
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const err = await failure(
        kv.transaction('noawait2', (tx) => {
          void tx.put('ok', 1);
          void tx.put('bad', cyclic);
        }),
      );
      expect(typeof err === 'string' ? err : err.code).toBe('INVALID_VALUE');
      // Caught by the function: still aborted, never committed without the write.
      const caught = await failure(
        kv.transaction('noawait2', async (tx) => {
          await tx.put('ok', 1);
          await tx.put('bad key', 2).catch(() => undefined);
        }),
      );
      expect(typeof caught === 'string' ? caught : caught.code).toBe('INVALID_KEY');
      expect(await stored('noawait2')).toBe(before);
    });

    it('an operation after the function returned is refused with INVALID_STATE, not lost silently', async () => {
      await kv.createBucket('late');
      let late: Promise<void> | undefined;
      await kv.transaction('late', (tx) => {
        setTimeout(() => {
          late = tx.put('k', 'late');
          late.catch(() => undefined);
        }, 50);
        void tx.put('early', 1);
      });
      await sleep(150);
      expect(late).toBeDefined();
      expect(await code(late as Promise<void>)).toBe('INVALID_STATE');
      expect(await kv.keys('late')).toEqual(['early']);
    });

    it('tx.getEntry of a buffered write invents no revision or date', async () => {
      await kv.createBucket('buffered');
      await kv.put('buffered', 'k', 'stored');
      await kv.transaction<string>('buffered', async (tx) => {
        const read = await tx.getEntry('k');
        expect(read).toMatchObject({ buffered: false, value: 'stored' });
        expect(read?.revision).toBeGreaterThan(0);
        await tx.put('k', 'mine');
        expect(await tx.getEntry('k')).toEqual({
          key: 'k',
          value: 'mine',
          buffered: true,
          revision: undefined,
          created: undefined,
        });
      });
    });
  });

  describe('limits are checked before sending', () => {
    it('a 5000-character key fails at once with INVALID_KEY and the connection stays up', async () => {
      await kv.createBucket('longkey');
      const disconnects: string[] = [];
      const stop = app.get(ConnectionService).onStatus((s) => disconnects.push(s.state));
      const t0 = performance.now();
      const key = 'k'.repeat(5_000);
      for (const call of [
        () => kv.put('longkey', key, 1),
        () => kv.get('longkey', key),
        () => kv.delete('longkey', key),
        () => kv.bulkGet('longkey', [key]),
        () => kv.transaction('longkey', (tx) => tx.get(key)),
      ]) {
        const err = await failure(call());
        expect(typeof err === 'string' ? err : err.code).toBe('INVALID_KEY');
        // The message names the limit and does not carry the whole key.
        expect(typeof err === 'string' ? err : err.message.length).toBeLessThan(400);
      }
      expect(performance.now() - t0).toBeLessThan(1_000);
      await kv.put('longkey', 'short', 1); // the shared connection still works
      stop();
      expect(disconnects).toEqual([]);
      // The longest key the limit allows works end to end.
      const longest = 'k'.repeat(maxKeyBytes('longkey'));
      await kv.put('longkey', longest, 'edge');
      expect(await kv.get('longkey', longest)).toBe('edge');
      expect(await code(kv.put('longkey', `${longest}k`, 'over'))).toBe('INVALID_KEY');
    });

    it('bucket names over 252 characters fail with INVALID_BUCKET; 252 works', async () => {
      expect(await code(kv.createBucket('b'.repeat(253)))).toBe('INVALID_BUCKET');
      await kv.createBucket('b'.repeat(252));
      await kv.put('b'.repeat(252), 'k', 1);
      expect(await kv.get('b'.repeat(252), 'k')).toBe(1);
    });

    it("a value at the bucket's exact limit is stored, one byte more is VALUE_TOO_LARGE, headers counted", async () => {
      await kv.createBucket('edge', { maxValueSize: 1_024 });
      const s = await kv.bucket<string>('edge', { codec: 'string' });
      await s.put('plain', 'x'.repeat(1_024));
      expect(await code(s.put('plain', 'x'.repeat(1_025)))).toBe('VALUE_TOO_LARGE');
      // A TTL adds `Nats-TTL: 1000ms` and `Nats-Rollup: sub`: 48 bytes of headers.
      await s.put('ttl', 'x'.repeat(1_024 - 48), { ttlMs: 1_000 });
      expect(await code(s.put('ttl', 'x'.repeat(1_024 - 47), { ttlMs: 1_000 }))).toBe(
        'VALUE_TOO_LARGE',
      );
      // User headers count too.
      const h = { 'X-Trace': 't'.repeat(10) }; // 12 + 7 + 10 + 4 = 33 bytes
      await s.put('hdr', 'x'.repeat(1_024 - 33), { headers: h });
      expect(await code(s.put('hdr', 'x'.repeat(1_024 - 32), { headers: h }))).toBe(
        'VALUE_TOO_LARGE',
      );
      const before = await stored('edge');
      // A compare-and-set adds a message id and the expected revision.
      const rev = (await s.getEntry('plain'))?.revision as number;
      const err = await failure(s.update('plain', 'x'.repeat(1_024), rev));
      expect(typeof err === 'string' ? err : err.code).toBe('VALUE_TOO_LARGE');
      expect(typeof err === 'string' ? err : err.details?.headerBytes).toBeGreaterThan(0);
      expect(await stored('edge')).toBe(before);
    });

    it("a value at the server's max_payload is stored; over it is VALUE_TOO_LARGE, also in bulk and transactions", async () => {
      await kv.createBucket('payload'); // no bucket limit: the server's 4096 applies
      const s = await kv.bucket<string>('payload', { codec: 'string' });
      await s.put('max', 'x'.repeat(4_096));
      expect(await code(s.put('max', 'x'.repeat(4_097)))).toBe('VALUE_TOO_LARGE');
      const before = await stored('payload');
      // A 2-key transaction near the limit: the batch headers do not fit.
      const err = await failure(
        s.transaction(async (tx) => {
          await tx.put('a', 'x'.repeat(4_090));
          await tx.put('b', 'y');
        }),
      );
      expect(typeof err === 'string' ? err : err.code).toBe('VALUE_TOO_LARGE');
      expect(await stored('payload')).toBe(before);
      // bulkPut: the value too big for a batch message is written alone; the rest batch.
      const results = await s.bulkPut([
        { key: 'big', value: 'x'.repeat(4_090) },
        { key: 'small', value: 'y' },
        { key: 'huge', value: 'x'.repeat(5_000) },
      ]);
      expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual([
        'ok',
        'ok',
        'VALUE_TOO_LARGE',
      ]);
      expect(await s.get('big')).toBe('x'.repeat(4_090));
    });
  });

  describe('one bucket, one decoding', () => {
    it('a string handle opened first does not change how kv.get decodes, and the other way round', async () => {
      await kv.createBucket('codecs');
      await kv.put('codecs', 'json', { n: 1 });
      const asString = await kv.bucket<string>('codecs', { codec: 'string' });
      expect(await asString.get('json')).toBe('{"n":1}');
      expect(await kv.get('codecs', 'json')).toEqual({ n: 1 }); // JSON, whatever came before
      await kv.createBucket('codecs2');
      await kv.put('codecs2', 'json', [1, 2]);
      expect(await kv.get('codecs2', 'json')).toEqual([1, 2]);
      expect(await (await kv.bucket<string>('codecs2', { codec: 'string' })).get('json')).toBe(
        '[1,2]',
      );
      expect(await kv.bucket('codecs', { codec: 'string' })).toBe(asString); // still cached
    });
  });

  describe('seed parity', () => {
    it('delete and deleteState report whether the key existed', async () => {
      await kv.createBucket('del', { history: 5 });
      await kv.put('del', 'k', 1);
      expect(await kv.delete('del', 'k')).toBe(true);
      const last = await (await jetstreamManager(raw)).streams.info('KV_del');
      expect(await kv.delete('del', 'k')).toBe(false); // already deleted: nothing written
      expect(await kv.delete('del', 'never')).toBe(false);
      expect((await (await jetstreamManager(raw)).streams.info('KV_del')).state.last_seq).toBe(
        last.state.last_seq,
      );
      const r = await kv.put('del', 'k', 2);
      expect(await code(kv.delete('del', 'k', { revision: r + 7 }))).toBe('KV_REVISION_CONFLICT');
      expect(await kv.delete('del', 'k', { revision: r })).toBe(true);
      await kv.setState('s', 1);
      expect(await kv.deleteState('s')).toBe(true);
      expect(await kv.deleteState('s')).toBe(false);
    });

    it('put stores user headers and getEntry returns them; reserved names are refused', async () => {
      await kv.createBucket('headers');
      await kv.put('headers', 'k', 1, { headers: { 'X-Trace': 'abc', Owner: 'svc-a' } });
      const e = await kv.getEntry('headers', 'k');
      expect(e?.headers).toEqual({ 'X-Trace': 'abc', Owner: 'svc-a' });
      for (const bad of [{ 'Nats-Msg-Id': 'x' }, { 'KV-Operation': 'DEL' }, { 'a b': 'x' }]) {
        expect(await code(kv.put('headers', 'k', 2, { headers: bad }))).toBe('INVALID_OPTIONS');
      }
      expect(await code(kv.put('headers', 'k', 2, { headers: { X: 'a\r\nb' } }))).toBe(
        'INVALID_OPTIONS',
      );
      // Another client sees them as message headers.
      const m = await (await jetstreamManager(raw)).direct.getMessage('KV_headers', {
        last_by_subj: '$KV.headers.k',
      });
      expect(m?.header.get('X-Trace')).toBe('abc');
    });

    it('bucket config: unknown fields, mirror and sources are refused; placement is applied', async () => {
      expect(
        await code(kv.createBucket('cfg', { histroy: 3 } as unknown as { history: number })),
      ).toBe('INVALID_OPTIONS');
      const mirror = await failure(
        kv.createBucket('cfg', { mirror: { name: 'KV_x' } } as unknown as { history: number }),
      );
      expect(typeof mirror === 'string' ? mirror : mirror.message).toContain('mirror');
      expect(
        await code(kv.createBucket('cfg', { sources: [] } as unknown as { history: number })),
      ).toBe('INVALID_OPTIONS');
      expect(await code(kv.createBucket('cfg', { placement: {} }))).toBe('INVALID_OPTIONS');
      await expect(
        (await jetstreamManager(raw)).streams.info('KV_cfg').catch((e: unknown) => e),
      ).resolves.toBeInstanceOf(Error); // nothing was created
      await kv.createBucket('placed', { placement: { tags: ['ssd', 'az:1'] } });
      const info = await (await jetstreamManager(raw)).streams.info('KV_placed');
      expect(info.config.placement).toEqual({ tags: ['az:1', 'ssd'] });
      await kv.bucket('placed', { provision: { placement: { tags: ['az:1', 'ssd'] } } }); // same
      expect(
        await code(kv.bucket('placed', { provision: { placement: { cluster: 'east' } } })),
      ).toBe('KV_BUCKET_DRIFT');
    });

    it('bucket health reports maxValueSize, and no guard subject among keys and values', async () => {
      await kv.createBucket('hc', { maxValueSize: 2_048 });
      await kv.put('hc', 'a', 1);
      await kv.put('hc', 'b', 2);
      await kv.transaction('hc', async (tx) => {
        await tx.get('a'); // a guard message for a
        await tx.put('b', 3);
        await tx.put('c', 4);
      });
      // The stream holds a, b, c (history 1) and one guard message; health counts the keys.
      expect(await stored('hc')).toBe(4);
      const h = await kv.healthCheck('hc');
      expect(h).toMatchObject({ maxValueSize: 2_048, keys: 3, values: 3 });
    });
  });

  describe('after stop', () => {
    it('every KV and stream call fails with INVALID_STATE, never a raw client error', async () => {
      await using own = await startNatsServer();
      const other = await ServiceManager.start({ ...quiet, nats: { servers: own.url } });
      const okv = other.get(KVStoreService);
      const streams = other.get(StreamService);
      await okv.createBucket('after');
      const handle = await okv.bucket('after');
      await other.stop();
      const calls: [string, () => Promise<unknown>][] = [
        ['kv.put', () => okv.put('after', 'k', 1)],
        ['kv.get', () => okv.get('after', 'k')],
        ['kv.bucket', () => okv.bucket('after')],
        ['handle.put', () => handle.put('k', 1)],
        ['handle.get', () => handle.get('k')],
        ['handle.keys', () => handle.keys()],
        ['handle.watch', () => handle.watch()],
        ['handle.transaction', () => handle.transaction((tx) => tx.put('k', 1))],
        ['handle.bulkPut', () => handle.bulkPut([{ key: 'k', value: 1 }])],
        ['streams.publish', () => streams.publish('x', 'y')],
        ['streams.ensureStream', () => streams.ensureStream({ name: 'S', subjects: ['s'] })],
      ];
      for (const [what, call] of calls) {
        expect(`${what}: ${await code(call())}`).toBe(`${what}: INVALID_STATE`);
      }
    });
  });
});

describe('KV correctness on nats-server 2.9.10', () => {
  it('delete reports existence, user headers round-trip, limits are checked', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: old.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('c', { history: 3, maxValueSize: 256 });
    await kv.put('c', 'k', 'v', { headers: { 'X-A': '1' } });
    expect((await kv.getEntry('c', 'k'))?.headers).toEqual({ 'X-A': '1' });
    expect(await kv.delete('c', 'k')).toBe(true);
    expect(await kv.delete('c', 'k')).toBe(false);
    expect(await code(kv.put('c', 'k'.repeat(5_000), 1))).toBe('INVALID_KEY');
    const s = await kv.bucket<string>('c', { codec: 'string' });
    await s.put('max', 'x'.repeat(256));
    expect(await code(s.put('max', 'x'.repeat(257)))).toBe('VALUE_TOO_LARGE');
    // A raw client's key natskit would not write is readable and deletable.
    const nc = await connect({ servers: old.url });
    await jetstream(nc).publish('$KV.c.user:bob', JSON.stringify('bob'));
    await nc.close();
    expect(await kv.keys('c')).toContain('user:bob');
    expect(await kv.get('c', 'user:bob')).toBe('bob');
    expect(await kv.delete('c', 'user:bob')).toBe(true);
  });
});
