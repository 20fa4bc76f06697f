import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import {
  connect,
  createInbox,
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
  nuid,
} from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, NatskitError, ServiceManager } from '../../src/index.js';
import {
  type BatchMessage,
  interpretReply,
  publishAtomicBatch,
} from '../../src/jetstream/atomic-batch.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

// The server's refusals of atomic batches, produced by a real server (2.15.1 and 2.9.10), and
// what natskit makes of them: the error codes in src/jetstream/atomic-batch.ts and the
// transaction's recovery from an incomplete batch (src/kv/transaction/).

const quiet = { logger: { level: 'silent' as const } };
const encoder = new TextEncoder();
const msg = (subject: string, data: string | Uint8Array = 'x'): BatchMessage => ({
  subject,
  data: typeof data === 'string' ? encoder.encode(data) : data,
});

/** The error a call fails with, or a marker when it does not fail. */
async function failure(p: Promise<unknown>): Promise<NatskitError> {
  const err = await p.then(
    () => new Error('did not fail'),
    (e: unknown) => e,
  );
  if (!(err instanceof NatskitError)) throw err;
  return err;
}

/**
 * Sends batch messages by hand, with the sequences given (a gap, more than natskit allows), and
 * returns the server's reply to the commit: the client-side checks of `publishAtomicBatch` would
 * refuse these batches before the server saw them.
 */
async function rawBatch(
  nc: NatsConnection,
  subject: string,
  sequences: readonly number[],
): Promise<{ reply: Msg; batchId: string }> {
  const batchId = nuid.next();
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, { max: 1, timeout: 5_000 });
  const commit = sequences.at(-1);
  for (const seq of sequences) {
    const h = natsHeaders();
    h.set('Nats-Batch-Id', batchId);
    h.set('Nats-Batch-Sequence', String(seq));
    if (seq === commit) h.set('Nats-Batch-Commit', '1');
    nc.publish(subject, encoder.encode(`m${seq}`), {
      headers: h,
      ...(seq === commit ? { reply: inbox } : {}),
    });
  }
  for await (const reply of sub) return { reply, batchId };
  throw new Error('no commit reply');
}

describe('atomic batch refusals from nats-server 2.15', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const stored = async (stream: string) => (await jsm.streams.info(stream)).state.messages;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: 'ATOMIC',
      subjects: ['atomic.>'],
      allow_atomic: true,
      max_msg_size: 512,
    });
    await jsm.streams.add({ name: 'PLAIN', subjects: ['plain.>'] });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.[Symbol.asyncDispose]();
  });

  it('a committed batch: the ack gives the sequences of every message', async () => {
    const before = (await jsm.streams.info('ATOMIC')).state.last_seq;
    const ack = await publishAtomicBatch(nc, [msg('atomic.a'), msg('atomic.b'), msg('atomic.c')], {
      timeoutMs: 5_000,
    });
    expect(ack).toEqual({ stream: 'ATOMIC', firstSeq: before + 1, seq: before + 3, count: 3 });
  });

  it('a send that fails with an error of its own: the error comes back and the reply inbox is unsubscribed', async () => {
    const own = await connect({ servers: server.url, name: 'batch-send-fails' });
    try {
      const boom = new Error('boom');
      const err = await publishAtomicBatch(own, [msg('atomic.a'), msg('atomic.b')], {
        timeoutMs: 5_000,
        beforeCommit: () => Promise.reject(boom),
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBe(boom);
      await own.flush();
      const connz = await server.monitor<{
        connections: { name?: string; subscriptions_list?: string[] }[];
      }>('/connz?subs=1');
      const mine = connz.connections.find((c) => c.name === 'batch-send-fails');
      expect(mine).toBeDefined();
      expect(mine?.subscriptions_list ?? []).toEqual([]);
    } finally {
      await own.close();
    }
  });

  it('10174, a stream without allow_atomic: CAPABILITY_MISSING, nothing stored', async () => {
    const err = await failure(
      publishAtomicBatch(nc, [msg('plain.a'), msg('plain.b')], { timeoutMs: 5_000 }),
    );
    expect(err.code).toBe('CAPABILITY_MISSING');
    expect(err.details).toMatchObject({ apiCode: 10174, feature: 'atomicBatch' });
    expect(await stored('PLAIN')).toBe(0);
  });

  it('10054, a commit message over the stream max_msg_size: VALUE_TOO_LARGE, nothing stored', async () => {
    const before = await stored('ATOMIC');
    // The client-side size check is told the limit is larger than the stream's, as it is when
    // another client lowered max_msg_size after natskit read the stream's config.
    const err = await failure(
      publishAtomicBatch(nc, [msg('atomic.a'), msg('atomic.big', new Uint8Array(2_000))], {
        timeoutMs: 5_000,
        maxMessageBytes: 1 << 20,
      }),
    );
    expect(err.code).toBe('VALUE_TOO_LARGE');
    expect(err.details).toMatchObject({ apiCode: 10054 });
    expect(await stored('ATOMIC')).toBe(before);
  });

  it('a message over max_msg_size before the commit shows as an incomplete batch (10176): PUBLISH_FAILED', async () => {
    const before = await stored('ATOMIC');
    const err = await failure(
      publishAtomicBatch(
        nc,
        [msg('atomic.a'), msg('atomic.big', new Uint8Array(2_000)), msg('atomic.c')],
        { timeoutMs: 5_000, maxMessageBytes: 1 << 20 },
      ),
    );
    expect(err.code).toBe('PUBLISH_FAILED');
    expect(err.details).toMatchObject({ apiCode: 10176 });
    expect(await stored('ATOMIC')).toBe(before);
  });

  it('10176, a gap in the batch sequence: PUBLISH_FAILED naming the code, nothing stored', async () => {
    const before = await stored('ATOMIC');
    const { reply, batchId } = await rawBatch(nc, 'atomic.gap', [1, 3]);
    expect(reply.json<{ error?: { err_code?: number } }>().error?.err_code).toBe(10176);
    let err: unknown;
    try {
      interpretReply(reply, batchId, 2);
    } catch (e) {
      err = e;
    }
    expect(NatskitError.is(err, 'PUBLISH_FAILED')).toBe(true);
    expect((err as NatskitError).details).toMatchObject({ apiCode: 10176, batchId });
    expect(await stored('ATOMIC')).toBe(before);
  });

  it('10199, more than 1000 messages: TX_TOO_LARGE from the server reply, and refused before sending by publishAtomicBatch', async () => {
    const before = await stored('ATOMIC');
    const sequences = Array.from({ length: 1_001 }, (_, i) => i + 1);
    const { reply, batchId } = await rawBatch(nc, 'atomic.many', sequences);
    expect(reply.json<{ error?: { err_code?: number } }>().error?.err_code).toBe(10199);
    let err: unknown;
    try {
      interpretReply(reply, batchId, sequences.length);
    } catch (e) {
      err = e;
    }
    expect(NatskitError.is(err, 'TX_TOO_LARGE')).toBe(true);
    expect((err as NatskitError).details).toMatchObject({ apiCode: 10199 });
    expect(await stored('ATOMIC')).toBe(before);
    // natskit's own publisher does not send such a batch at all.
    const local = await failure(
      publishAtomicBatch(
        nc,
        sequences.map(() => msg('atomic.many')),
        { timeoutMs: 5_000 },
      ),
    );
    expect(local.code).toBe('TX_TOO_LARGE');
    expect(local.details).toMatchObject({ count: 1_001, max: 1_000 });
    expect(await stored('ATOMIC')).toBe(before);
  });
});

describe('transactions against the refusals of a real server', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let kv: KVStoreService;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    kv = app.get(KVStoreService);
    nc = await connect({ servers: server.url });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    await nc?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('a guard subject removed by another tool: the incomplete batch (10176) re-adds it and the transaction commits on its next attempt', async () => {
    await kv.createBucket('guards');
    await kv.bulkPut('guards', [
      { key: 'src', value: 1 },
      { key: 'dst', value: 0 },
    ]);
    const move = () =>
      kv.transaction<number>('guards', async (tx) => {
        const src = (await tx.get('src')) ?? 0; // read only: guarded
        const dst = (await tx.get('dst')) ?? 0;
        await tx.put('dst', dst + src);
      });
    expect((await move()).attempts).toBe(1); // readies the guard subject
    const config = (await jsm.streams.info('KV_guards')).config;
    const keySpace = '$KV.guards.>';
    const guard = (config.subjects ?? []).find((s) => s !== keySpace);
    expect(guard).toBeDefined();
    // Another tool rewrites the stream's config with the key space only.
    await jsm.streams.update('KV_guards', { ...config, subjects: [keySpace] });
    const before = (await jsm.streams.info('KV_guards')).state.last_seq;
    const result = await move();
    // The first attempt's guard went to a subject no stream listens on: the server found the
    // batch incomplete, stored nothing; the second attempt put the subject back and committed.
    expect(result.attempts).toBe(2);
    expect((await jsm.streams.info('KV_guards')).config.subjects).toContain(guard);
    expect(await kv.get('guards', 'dst')).toBe(2);
    // Exactly one batch stored: the guard and the write, nothing from the refused attempt.
    expect((await jsm.streams.info('KV_guards')).state.last_seq).toBe(before + 2);
  });

  it('atomic publish turned off by another tool (10174): the next attempt turns it on again and commits, as a fresh start would', async () => {
    // Regression: the bucket's cached config still said allow_atomic, so every transaction of
    // this process failed with CAPABILITY_MISSING until it restarted.
    await kv.createBucket('atomicoff');
    const pair = (n: number) =>
      kv.transaction<number>('atomicoff', async (tx) => {
        await tx.put('a', n);
        await tx.put('b', n);
      });
    expect((await pair(1)).attempts).toBe(1); // turns atomic publish on
    const config = (await jsm.streams.info('KV_atomicoff')).config;
    expect(config.allow_atomic).toBe(true);
    await jsm.streams.update('KV_atomicoff', { ...config, allow_atomic: false });
    expect((await jsm.streams.info('KV_atomicoff')).config.allow_atomic).not.toBe(true);
    const before = (await jsm.streams.info('KV_atomicoff')).state.last_seq;
    const result = await pair(2);
    expect(result.attempts).toBe(2); // the first was refused with 10174, nothing stored
    expect((await jsm.streams.info('KV_atomicoff')).config.allow_atomic).toBe(true);
    expect((await jsm.streams.info('KV_atomicoff')).state.last_seq).toBe(before + 2);
    expect(await kv.bulkGet('atomicoff', ['a', 'b'])).toEqual([2, 2]);
  });

  it('max_msg_size lowered by another tool: the commit is refused by the server (10054) as VALUE_TOO_LARGE, nothing stored', async () => {
    await kv.createBucket('sizes');
    const small = async () =>
      kv.transaction<string>('sizes', async (tx) => {
        await tx.put('a', 'small');
        await tx.put('b', 'small');
      });
    await small(); // natskit has read the stream's config (no size limit) by now
    const config = (await jsm.streams.info('KV_sizes')).config;
    await jsm.streams.update('KV_sizes', { ...config, max_msg_size: 256 });
    const before = (await jsm.streams.info('KV_sizes')).state.last_seq;
    const err = await failure(
      kv.transaction<string>('sizes', async (tx) => {
        await tx.put('a', 'still small');
        await tx.put('b', 'x'.repeat(1_000)); // the commit message
      }),
    );
    expect(err.code).toBe('VALUE_TOO_LARGE');
    expect(err.details).toMatchObject({ apiCode: 10054 });
    expect((await jsm.streams.info('KV_sizes')).state.last_seq).toBe(before);
    expect(await kv.bulkGet('sizes', ['a', 'b'])).toEqual(['small', 'small']);
  });
});

describe('an atomic batch sent to nats-server 2.9.10', () => {
  it('gets a plain ack (the batch headers ignored, the messages stored one by one): CAPABILITY_MISSING, never passed off as atomic', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    const nc = await connect({ servers: old.url });
    try {
      const jsm = await jetstreamManager(nc);
      // 2.9.10 takes allow_atomic without error and drops it.
      await jsm.streams.add({ name: 'OLD', subjects: ['old.>'], allow_atomic: true });
      const err = await failure(
        publishAtomicBatch(nc, [msg('old.a'), msg('old.b'), msg('old.c')], { timeoutMs: 5_000 }),
      );
      expect(err.code).toBe('CAPABILITY_MISSING');
      expect(err.details).toMatchObject({ feature: 'atomicBatch', reply: { stream: 'OLD' } });
      expect(err.details?.reply).not.toHaveProperty('batch');
      // What the error warns about: the server stored each message alone.
      expect((await jsm.streams.info('OLD')).state.messages).toBe(3);
    } finally {
      await nc.close();
    }
  });
});
