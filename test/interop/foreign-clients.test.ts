import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  connect as connect2,
  KvWatchInclude as KvWatchInclude2,
  type NatsConnection as NatsConnection2,
} from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

/** Reads a watch until `end` shows up (or 10 s pass); returns the keys seen, in order. */
async function keysUntil(
  watch: AsyncIterable<{ key: string; operation: string }>,
  end: string,
): Promise<string[]> {
  const seen: string[] = [];
  const timeout = setTimeout(() => {
    (watch as { stop?: () => void }).stop?.();
  }, 10_000);
  for await (const e of watch) {
    seen.push(`${e.operation} ${e.key}`);
    if (e.key === end) break;
  }
  clearTimeout(timeout);
  (watch as { stop?: () => void }).stop?.();
  return seen;
}

describe('a bucket natskit shares with other KV clients', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let nc: NatsConnection;
  let nc2: NatsConnection2;

  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    kv = app.get(KVStoreService);
    nc = await connect({ servers: server.url });
    nc2 = await connect2({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await nc2?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('shows them no transaction guard: keys(), get() and watch() of @nats-io/kv 3 and nats 2.x list only real keys', async () => {
    await kv.createBucket('shared', { history: 5 });
    // What natskit 0.1 left behind: guard messages on a key in the key space.
    await jetstream(nc).publish('$KV.shared._natskit.txguard', new Uint8Array(0));
    await kv.put('shared', 'a', 1);
    await kv.put('shared', 'b', 1);
    for (let i = 0; i < 3; i++) {
      // Serializable: `a` is only read, so each commit stores a guard message.
      await kv.transaction<number>('shared', async (tx) => {
        const a = (await tx.get('a')) ?? 0;
        await tx.put('b', a + i);
        await tx.put('c', i);
      });
    }
    await kv.put('shared', 'zz-end', true);
    const guards = await (await jetstreamManager(nc)).streams.info('KV_shared', {
      subjects_filter: '>',
    });
    expect(Object.keys(guards.state.subjects ?? {}).sort()).toEqual([
      '$KV.shared.a',
      '$KV.shared.b',
      '$KV.shared.c',
      '$KV.shared.zz-end',
      '$NATSKIT.TXGUARD.shared',
    ]); // the old guard key was purged; the guards live outside the key space

    const real = ['a', 'b', 'c', 'zz-end'];
    const v3 = await new Kvm(nc).open('shared');
    const v3keys: string[] = [];
    for await (const k of await v3.keys()) v3keys.push(k);
    expect(v3keys.sort()).toEqual(real);
    expect(await v3.get('_natskit.txguard')).toBeNull();
    const v3history = await keysUntil(
      await v3.watch({ include: KvWatchInclude.AllHistory }),
      'zz-end',
    );
    expect(v3history.every((e) => real.includes(e.split(' ')[1] as string))).toBe(true);
    expect(v3history.filter((e) => e.endsWith(' b'))).toHaveLength(4); // 1 put + 3 transactions

    const v2 = await nc2.jetstream().views.kv('shared', { bindOnly: true });
    const v2keys: string[] = [];
    for await (const k of await v2.keys()) v2keys.push(k);
    expect(v2keys.sort()).toEqual(real);
    expect(await v2.get('_natskit.txguard')).toBeNull();
    const v2history = await keysUntil(
      await v2.watch({ include: KvWatchInclude2.AllHistory }),
      'zz-end',
    );
    expect(v2history.every((e) => real.includes(e.split(' ')[1] as string))).toBe(true);
    expect(v2history.filter((e) => e.endsWith(' c'))).toHaveLength(3);
  });

  it('reads, lists and deletes what other clients stored, including keys natskit would not write', async () => {
    await kv.createBucket('theirs', { history: 3 });
    const v3 = await new Kvm(nc).open('theirs');
    await v3.put('from-v3', JSON.stringify({ by: 'v3' }));
    const v2 = await nc2.jetstream().views.kv('theirs', { bindOnly: true });
    await v2.put('from.v2', JSON.stringify({ by: 'v2' }));
    // Keys the KV rules do not allow, written by publishing to the subject directly.
    const js = jetstream(nc);
    await js.publish('$KV.theirs.user:bob', JSON.stringify({ by: 'raw' }));
    await js.publish('$KV.theirs.café', JSON.stringify({ by: 'raw utf-8' }));

    const keys = await kv.keys('theirs');
    expect(keys.sort()).toEqual(['café', 'from-v3', 'from.v2', 'user:bob']);
    for (const key of keys) expect(await kv.get('theirs', key)).toHaveProperty('by');
    expect([...(await kv.getAll('theirs')).keys()].sort()).toEqual(keys.sort());
    expect(await kv.bulkGet('theirs', ['user:bob', 'café'])).toEqual([
      { by: 'raw' },
      { by: 'raw utf-8' },
    ]);
    expect(await kv.delete('theirs', 'user:bob')).toBe(true);
    await kv.purge('theirs', 'café');
    expect((await kv.history('theirs', 'from-v3')).map((c) => c.type)).toEqual(['put']);
    expect((await kv.keys('theirs')).sort()).toEqual(['from-v3', 'from.v2']);
    // natskit still writes only keys every client can read.
    await expect(kv.put('theirs', 'user:alice', 1)).rejects.toMatchObject({ code: 'INVALID_KEY' });
    // The other clients see natskit's deletes as deletes.
    expect(await v3.get('user:bob').catch(() => 'v3 refuses the key')).toBe('v3 refuses the key');
    const e = await v2.get('from.v2');
    expect(e?.json()).toEqual({ by: 'v2' });
    await kv.delete('theirs', 'from.v2');
    expect((await v2.get('from.v2'))?.operation).toBe('DEL');
  });
});
