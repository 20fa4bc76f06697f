import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, NatskitError, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';

const quiet = { logger: { level: 'silent' as const } };

/** The error code a call fails with, or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<string> {
  return await p.then(
    () => 'ok',
    (e: unknown) => (NatskitError.is(e) ? e.code : `not a NatskitError: ${String(e)}`),
  );
}

/** Refuses null and undefined: objects `{ n: number }` only. */
const objects = testSchema<{ n: number } | null>((v) =>
  typeof v === 'object' && v !== null && typeof (v as { n?: unknown }).n === 'number'
    ? undefined
    : 'must be { n: number }',
);

describe('tx.put encodes and validates every value as put does (null and undefined too)', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let raw: NatsConnection;
  const lastSeq = async (bucket: string) =>
    (await (await jetstreamManager(raw)).streams.info(`KV_${bucket}`)).state.last_seq;

  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    kv = app.get(KVStoreService);
    raw = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await raw?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('schema bucket: tx.put(k, null) fails VALIDATION_FAILED like put(k, null) and commits nothing (it used to delete k)', async () => {
    const b = await kv.bucket('schema_null', { provision: {}, schema: objects });
    await b.put('k', { n: 1 });
    await b.put('other', { n: 2 });
    const before = await lastSeq('schema_null');
    expect(await outcome(b.put('k', null))).toBe('VALIDATION_FAILED');
    // One key written: the compare-and-set path.
    expect(await outcome(b.transaction((tx) => tx.put('k', null)))).toBe('VALIDATION_FAILED');
    // Several keys: the atomic batch path.
    expect(
      await outcome(
        b.transaction(async (tx) => {
          await tx.put('other', { n: 3 });
          await tx.put('k', null);
        }),
      ),
    ).toBe('VALIDATION_FAILED');
    // undefined as well, awaited or not.
    const undef = undefined as unknown as { n: number };
    expect(await outcome(b.put('k', undef))).toBe('VALIDATION_FAILED');
    expect(await outcome(b.transaction((tx) => void tx.put('k', undef)))).toBe('VALIDATION_FAILED');
    expect(await outcome(b.transaction((tx) => tx.create('new', null)))).toBe('VALIDATION_FAILED');
    expect(await outcome(b.updateWith('k', () => null))).toBe('VALIDATION_FAILED');
    expect(await lastSeq('schema_null')).toBe(before); // nothing committed
    expect(await b.bulkGet(['k', 'other', 'new'])).toEqual([{ n: 1 }, { n: 2 }, null]);
    // A delete is tx.delete, and skips the schema as delete does.
    await b.transaction((tx) => tx.delete('k'));
    expect(await b.getEntry('k')).toBeNull();
  });

  it('plain JSON bucket: tx.put(k, null) stores the JSON value null, as put(k, null) does', async () => {
    await kv.createBucket('plain_null', { history: 5 });
    const b = await kv.bucket('plain_null');
    await b.put('outside', null);
    await b.put('inside', 1);
    await b.put('second', 1);
    const buffered = await b.transaction(async (tx) => {
      await tx.put('inside', null);
      await tx.create('created', null);
      return await tx.getEntry('inside');
    });
    expect(buffered.value).toMatchObject({ key: 'inside', value: null, buffered: true });
    await b.transaction((tx) => tx.put('second', null)); // the single-write path
    for (const key of ['outside', 'inside', 'created', 'second']) {
      const e = await b.getEntry(key);
      expect(e?.value, key).toBeNull();
      expect(e?.revision, key).toBeGreaterThan(0); // an entry holding null, not an absent key
      const m = await (await jetstreamManager(raw)).streams.getMessage('KV_plain_null', {
        last_by_subj: `$KV.plain_null.${key}`,
      });
      expect(new TextDecoder().decode(m?.data), key).toBe('null');
      expect(m?.header?.get('KV-Operation') ?? '', key).toBe('');
    }
    expect((await b.keys()).sort()).toEqual(['created', 'inside', 'outside', 'second']);
    const history = await b.history('inside');
    expect(history.map((h) => h.type)).toEqual(['put', 'put']);

    // updateWith is a transaction too: returning null stores null, it does not delete the key.
    const r = await b.updateWith('second', () => null);
    expect(r.value).toBeNull();
    expect((await b.getEntry('second'))?.revision).toBe(r.revision);
  });

  it('plain JSON bucket: undefined fails INVALID_VALUE inside and outside, and commits nothing', async () => {
    await kv.createBucket('plain_undef');
    const b = await kv.bucket('plain_undef');
    await b.put('k', 1);
    const before = await lastSeq('plain_undef');
    expect(await outcome(b.put('k', undefined))).toBe('INVALID_VALUE');
    expect(await outcome(b.transaction((tx) => tx.put('k', undefined)))).toBe('INVALID_VALUE');
    expect(
      await outcome(
        b.transaction(async (tx) => {
          await tx.put('a', 1);
          await tx.put('k', undefined);
        }),
      ),
    ).toBe('INVALID_VALUE');
    expect(await lastSeq('plain_undef')).toBe(before);
    expect(await b.get('k')).toBe(1);
  });

  it('string bucket: tx.put(k, null) fails INVALID_VALUE like put(k, null)', async () => {
    const s = await kv.bucket<string>('str_null', { provision: {}, codec: 'string' });
    await s.put('k', 'v');
    const before = await lastSeq('str_null');
    const nul = null as unknown as string;
    expect(await outcome(s.put('k', nul))).toBe('INVALID_VALUE');
    expect(await outcome(s.transaction((tx) => tx.put('k', nul)))).toBe('INVALID_VALUE');
    expect(await lastSeq('str_null')).toBe(before);
    expect(await s.get('k')).toBe('v');
  });

  it('a delete then a create of one key in a transaction writes the value', async () => {
    await kv.createBucket('del_create');
    const b = await kv.bucket('del_create');
    await b.put('k', 1);
    await b.transaction(async (tx) => {
      await tx.delete('k');
      await tx.create('k', null);
    });
    expect((await b.getEntry('k'))?.value).toBeNull();
    expect(await b.keys()).toEqual(['k']);
  });
});
