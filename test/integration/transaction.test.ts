import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  KVStoreService,
  type KvBucket,
  NatskitError,
  ServiceManager,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { freeze, thaw } from '../support/freeze.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

/** A gate that N parties wait at until all have arrived. */
function barrier(n: number): () => Promise<void> {
  let arrived = 0;
  let open: () => void = () => undefined;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return async () => {
    if (++arrived >= n) open();
    await opened;
  };
}

describe('transactions', () => {
  let server: NatsServerHandle;
  let apps: ServiceManager[];
  let kv: KVStoreService;
  let raw: NatsConnection;
  const count = async (bucket: string) =>
    (await (await jetstreamManager(raw)).streams.info(`KV_${bucket}`)).state.messages;
  const lastSeq = async (bucket: string) =>
    (await (await jetstreamManager(raw)).streams.info(`KV_${bucket}`)).state.last_seq;

  beforeAll(async () => {
    server = await startNatsServer();
    apps = await Promise.all(
      Array.from({ length: 4 }, () =>
        ServiceManager.start({ ...quiet, nats: { servers: server.url } }),
      ),
    );
    kv = apps[0]?.get(KVStoreService) as KVStoreService;
    raw = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await raw?.close();
    await Promise.all((apps ?? []).map((a) => a.stop()));
    await server?.[Symbol.asyncDispose]();
  });

  it('two concurrent transactions on overlapping keys: one commits first, the other retries, both effects present', async () => {
    await kv.createBucket('tx1');
    await kv.put('tx1', 'a', 0);
    await kv.put('tx1', 'b', 0);
    const bothRead = barrier(2);
    const run = (who: string) =>
      kv.transaction<number, string>('tx1', async (tx) => {
        const a = (await tx.get('a')) ?? 0;
        const b = (await tx.get('b')) ?? 0;
        await bothRead(); // first attempts of both read before either commits
        await tx.put('a', a + 1);
        await tx.put('b', b + 10);
        return who;
      });
    const [r1, r2] = await Promise.all([run('one'), run('two')]);
    expect([r1.attempts, r2.attempts].sort()).toEqual([1, 2]);
    expect(await kv.bulkGet('tx1', ['a', 'b'])).toEqual([2, 20]);
    const winner = r1.attempts === 1 ? r1 : r2;
    expect(Object.keys(winner.revisions).sort()).toEqual(['a', 'b']);
    expect((await kv.getEntry('tx1', 'a'))?.revision).toBe(
      (r1.attempts === 2 ? r1 : r2).revisions.a,
    );
  });

  it('a stale write in the middle of a 3-key batch stores nothing', async () => {
    await kv.createBucket('tx2');
    for (const k of ['a', 'b', 'c']) await kv.put('tx2', k, `${k}0`);
    const other = apps[1]?.get(KVStoreService) as KVStoreService;
    const before = await lastSeq('tx2');
    const err = await kv
      .transaction<string>(
        'tx2',
        async (tx) => {
          for (const k of ['a', 'b', 'c']) await tx.put(k, `${await tx.get(k)}-tx`);
          await other.put('tx2', 'b', 'b1'); // someone else changes b before the commit
        },
        { maxAttempts: 1 },
      )
      .catch((e: unknown) => e as NatskitError);
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    expect((err as NatskitError).details?.keys).toEqual(['b']);
    expect(await kv.bulkGet('tx2', ['a', 'b', 'c'])).toEqual(['a0', 'b1', 'c0']);
    expect(await lastSeq('tx2')).toBe(before + 1); // only the other client's write was stored
  });

  it('an error thrown by the function aborts with nothing written and is rethrown unchanged', async () => {
    await kv.createBucket('tx3');
    const boom = new Error('boom');
    const err = await kv
      .transaction('tx3', async (tx) => {
        await tx.put('a', 1);
        await tx.put('b', 2);
        throw boom;
      })
      .catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect(await count('tx3')).toBe(0);
  });

  it('reads see the transaction own writes; writes are invisible to others until commit', async () => {
    await kv.createBucket('tx4');
    await kv.put('tx4', 'a', 'old');
    await kv.transaction<string>('tx4', async (tx) => {
      await tx.put('a', 'new');
      await tx.put('n', 'fresh');
      expect(await tx.get('a')).toBe('new');
      expect(await kv.get('tx4', 'a')).toBe('old');
      expect(await kv.get('tx4', 'n')).toBeNull();
      await tx.delete('a');
      expect(await tx.get('a')).toBeNull();
    });
    expect(await kv.bulkGet('tx4', ['a', 'n'])).toEqual([null, 'fresh']);
    // The guard key natskit keeps for itself is never listed.
    await kv.transaction<string>('tx4', async (tx) => {
      await tx.get('n');
      await tx.put('m', 'x');
    });
    expect((await kv.keys('tx4')).sort()).toEqual(['m', 'n']);
  });

  it('create inside a transaction refuses a live key and accepts a deleted one', async () => {
    await kv.createBucket('tx5');
    await kv.put('tx5', 'live', 1);
    await kv.put('tx5', 'gone', 1);
    await kv.delete('tx5', 'gone');
    const err = await kv.transaction('tx5', (tx) => tx.create('live', 2)).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    await kv.transaction('tx5', async (tx) => {
      await tx.create('gone', 3);
      await tx.create('never', 4);
    });
    expect(await kv.bulkGet('tx5', ['live', 'gone', 'never'])).toEqual([1, 3, 4]);
  });

  it('more writes than one batch carries fail with TX_TOO_LARGE before anything is sent', async () => {
    await kv.createBucket('tx6');
    const err = await kv
      .transaction('tx6', async (tx) => {
        for (let i = 0; i < 1_001; i++) await tx.put(`k${i}`, i);
      })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'TX_TOO_LARGE')).toBe(true);
    expect(await count('tx6')).toBe(0);
  });

  it('write skew: possible in write-only mode, impossible in the default mode', async () => {
    // Invariant: x + y >= 0. Each transaction withdraws 100 from one account if the sum allows it.
    const skew = async (bucket: string, isolation: 'serializable' | 'write-only') => {
      await kv.createBucket(bucket);
      await kv.put(bucket, 'x', 50);
      await kv.put(bucket, 'y', 50);
      const bothRead = barrier(2);
      const withdraw = (from: 'x' | 'y') =>
        kv.transaction<number>(
          bucket,
          async (tx) => {
            const x = (await tx.get('x')) ?? 0;
            const y = (await tx.get('y')) ?? 0;
            await bothRead();
            if (x + y >= 100) await tx.put(from, (from === 'x' ? x : y) - 100);
          },
          { isolation, maxAttempts: 5 },
        );
      await Promise.all([withdraw('x'), withdraw('y')]);
      const [x, y] = (await kv.bulkGet<number>(bucket, ['x', 'y'])) as number[];
      return (x ?? 0) + (y ?? 0);
    };
    expect(await skew('skew_w', 'write-only')).toBe(-100); // both committed: the invariant broke
    expect(await skew('skew_s', 'serializable')).toBe(0); // the second saw the first and stopped
  });

  it('a read-only transaction is validated too', async () => {
    await kv.createBucket('tx7');
    await kv.put('tx7', 'a', 1);
    let runs = 0;
    const result = await kv.transaction<number, number>('tx7', async (tx) => {
      runs++;
      const a = (await tx.get('a')) ?? 0;
      if (runs === 1) await kv.put('tx7', 'a', 2);
      return a;
    });
    expect(result).toMatchObject({ value: 2, attempts: 2 });
  });

  it('bank: 8 workers on 4 connections, 10,000 transfers among 50 accounts: total unchanged, no lost update', async () => {
    // A memory bucket: atomicity and conflicts are the same as on file storage, where the server
    // syncs the store on every batch commit (about 250 commits/s on this machine, 40 s for the test).
    await kv.createBucket('bank', { storage: 'memory' });
    const accounts = Array.from({ length: 50 }, (_, i) => `acct${i}`);
    await kv.bulkPut(
      'bank',
      accounts.map((key) => ({ key, value: 1_000 })),
    );
    const workers = 8;
    const perWorker = 10_000 / workers;
    const committed: { from: string; to: string; amount: number }[] = [];
    let conflicts = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const service = apps[w % apps.length]?.get(KVStoreService) as KVStoreService;
        const bank = await service.bucket<number>('bank');
        for (let i = 0; i < perWorker; i++) {
          const from = accounts[Math.floor(Math.random() * 50)] as string;
          let to = accounts[Math.floor(Math.random() * 50)] as string;
          if (to === from) to = accounts[(accounts.indexOf(from) + 1) % 50] as string;
          const amount = 1 + Math.floor(Math.random() * 20);
          const r = await bank.transaction(
            async (tx) => {
              const a = (await tx.get(from)) ?? 0;
              const b = (await tx.get(to)) ?? 0;
              if (a < amount) return false;
              await tx.put(from, a - amount);
              await tx.put(to, b + amount);
              return true;
            },
            { maxAttempts: 50 },
          );
          conflicts += r.attempts - 1;
          if (r.value) committed.push({ from, to, amount }); // side effect after the commit
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1_000;
    const balances = await kv.bulkGet<number>('bank', accounts);
    const expected = new Map(accounts.map((a) => [a, 1_000]));
    for (const t of committed) {
      expected.set(t.from, (expected.get(t.from) ?? 0) - t.amount);
      expected.set(t.to, (expected.get(t.to) ?? 0) + t.amount);
    }
    expect(balances.reduce<number>((s, b) => s + (b ?? 0), 0)).toBe(50_000);
    expect(balances).toEqual(accounts.map((a) => expected.get(a))); // every committed transfer visible
    console.log(
      `bank: ${committed.length} transfers committed of 10000 in ${seconds.toFixed(1)} s (${Math.round(10_000 / seconds)} tx/s), ${conflicts} conflicts retried`,
    );
  });

  it('property: random interleavings of transactions agree with a model', async () => {
    await kv.createBucket('prop', { history: 1 });
    const bucket = (await kv.bucket<number>('prop')) as KvBucket<number>;
    // One process per transaction (at most 4): the schedule below lets every transaction read
    // before any commits, which only holds across processes. Within one, a transaction reading a
    // key another one holds waits for its commit (tested in test/unit/kv/group-commit.test.ts).
    const handles = await Promise.all(
      apps.map(
        async (a) => (await a.get(KVStoreService).bucket<number>('prop')) as KvBucket<number>,
      ),
    );
    const keys = ['a', 'b', 'c'];
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            reads: fc.subarray(keys),
            writes: fc.subarray(keys, { minLength: 1 }),
            value: fc.integer({ min: 1, max: 1_000 }),
          }),
          { minLength: 2, maxLength: 4 },
        ),
        fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
        async (txs, order) => {
          round++;
          for (const k of keys) await bucket.put(k, 0);
          // Model: versions bump on every committed write; a commit succeeds iff every key it
          // read or writes is still at the version it saw when it read.
          const model = new Map(keys.map((k) => [k, { value: 0, version: 0 }]));
          const seen: Map<string, number>[] = txs.map(() => new Map());
          const gates = txs.map(() => {
            let release: () => void = () => undefined;
            const p = new Promise<void>((r) => {
              release = r;
            });
            return { p, release };
          });
          const outcomes: (boolean | undefined)[] = txs.map(() => undefined);
          const running = txs.map((t, i) =>
            (handles[i % handles.length] as KvBucket<number>)
              .transaction(
                async (tx) => {
                  for (const k of new Set([...t.reads, ...t.writes])) {
                    await tx.get(k);
                    seen[i]?.set(k, model.get(k)?.version ?? 0);
                  }
                  await gates[i]?.p; // commit when the schedule says
                  for (const k of t.writes) await tx.put(k, t.value + i);
                },
                { maxAttempts: 1 },
              )
              .then(
                () => true,
                (e: unknown) => {
                  if (NatskitError.is(e, 'KV_REVISION_CONFLICT')) return false;
                  throw e;
                },
              ),
          );
          // Let every transaction read first, then commit them in the generated order.
          await sleep(30);
          const commitOrder = txs
            .map((_, i) => i)
            .sort((x, y) => (order[x] ?? 0) - (order[y] ?? 0) || x - y);
          for (const i of commitOrder) {
            const t = txs[i];
            if (!t) continue;
            const ok = [...(seen[i] ?? [])].every(([k, v]) => model.get(k)?.version === v);
            if (ok)
              for (const k of t.writes)
                model.set(k, { value: t.value + i, version: (model.get(k)?.version ?? 0) + 1 });
            gates[i]?.release();
            outcomes[i] = await running[i];
            expect(outcomes[i], `round ${round} tx ${i}`).toBe(ok);
          }
          expect(await bucket.bulkGet(keys)).toEqual(keys.map((k) => model.get(k)?.value));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('updateWith: 8 workers x 100 increments on one key end exact', async () => {
    await kv.createBucket('counter');
    let attempts = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        const service = apps[w % apps.length]?.get(KVStoreService) as KVStoreService;
        for (let i = 0; i < 100; i++) {
          const r = await service.updateWith<number>('counter', 'n', (n) => (n ?? 0) + 1, {
            maxAttempts: 100,
          });
          attempts += r.attempts;
        }
      }),
    );
    expect(await kv.get('counter', 'n')).toBe(800);
    expect(attempts).toBeGreaterThanOrEqual(800);
  });
});

describe('a client killed in the middle of a batch', () => {
  it('never gets any of the batch applied', async () => {
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('killed'); // provisioned with atomic publish
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../fixtures/batch-kill-child.mjs', import.meta.url)),
        server.url,
        'killed',
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('published')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    child.kill('SIGKILL'); // 499 messages sent, no commit
    await new Promise((r) => child.once('exit', r));
    const observer = await connect({ servers: server.url });
    const jsm = await jetstreamManager(observer);
    expect((await jsm.streams.info('KV_killed')).state.messages).toBe(0);
    await sleep(11_000); // past the server's 10 s abandon timeout for idle batches
    expect((await jsm.streams.info('KV_killed')).state.messages).toBe(0);
    expect(await kv.keys('killed')).toEqual([]);
    // The keys are free: a transaction on them commits normally.
    await kv.transaction<number>('killed', async (tx) => {
      await tx.put('k0', 1);
      await tx.put('k1', 2);
    });
    expect(await kv.bulkGet('killed', ['k0', 'k1', 'k2'])).toEqual([1, 2, null]);
    await observer.close();
  });
});

describe('a commit whose reply is lost', () => {
  it('is looked up before anything runs again: applied once, reported once', async () => {
    const timeoutMs = 2_000; // the commit's deadline
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, pingIntervalMs: 60_000, requestTimeoutMs: timeoutMs },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('lost');
    await kv.bulkPut('lost', [
      { key: 'a', value: 0 },
      { key: 'b', value: 0 },
    ]);
    const pid = server.pid as number;
    // When the commit left, and when the server's reply to it came: the reply must come after
    // the commit's deadline, or no reply was lost and the lookup below never ran.
    const nc = app.get(ConnectionService).nc;
    const publish = nc.publish.bind(nc);
    let commitAt: number | undefined;
    let commitInbox: string | undefined;
    let stoppedAt: number | undefined;
    let continuedAt: number | undefined;
    nc.publish = (subject, payload, options) => {
      if (options?.headers?.get('Nats-Batch-Commit') === '1' && commitAt === undefined) {
        commitAt = performance.now();
        commitInbox = options.reply;
        // The server wakes only once the commit's deadline has passed.
        setTimeout(() => {
          continuedAt = performance.now();
          thaw(pid);
        }, timeoutMs + 1_000);
      }
      publish(subject, payload, options);
    };
    const observer = await connect({ servers: server.url });
    let replyAt: number | undefined;
    observer.subscribe('_INBOX.>', {
      callback: (_err, m) => {
        if (m.subject === commitInbox) replyAt = performance.now();
      },
    });
    await observer.flush();
    let runs = 0;
    try {
      const result = await kv.transaction<number>('lost', async (tx) => {
        runs++;
        const [a, b] = await tx.getMany(['a', 'b']);
        await tx.put('a', (a ?? 0) + 1);
        await tx.put('b', (b ?? 0) + 1);
        if (runs === 1) {
          // Freeze the server: the commit is sent but not answered within its deadline.
          await freeze(pid);
          stoppedAt = performance.now();
        }
      });
      await waitUntil(() => replyAt !== undefined, 5_000, 'the observer saw the commit reply');
      // The fault happened: the commit left while the server was frozen, and its reply came
      // after the deadline the transaction waited for it.
      expect(commitAt).toBeDefined();
      expect(commitAt as number).toBeGreaterThan(stoppedAt as number);
      expect(commitAt as number).toBeLessThan(continuedAt as number);
      expect((replyAt as number) - (commitAt as number)).toBeGreaterThan(timeoutMs);
      expect(runs).toBe(1); // the function did not run again
      expect(result.attempts).toBe(1);
      expect(await kv.bulkGet('lost', ['a', 'b'])).toEqual([1, 1]); // applied exactly once
      expect(result.revisions.a).toBe((await kv.getEntry('lost', 'a'))?.revision);
    } finally {
      if (continuedAt === undefined) thaw(pid);
      await observer.close();
    }
  });
});

describe('transactions on nats-server 2.9.10', () => {
  it('multi-key fails with CAPABILITY_MISSING; single-key transactions and updateWith work', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: old.url } });
    const kv = app.get(KVStoreService);
    await kv.createBucket('compat');
    await kv.put('compat', 'a', 1);
    const multi = await kv
      .transaction<number>('compat', async (tx) => {
        await tx.put('a', ((await tx.get('a')) ?? 0) + 1);
        await tx.put('b', 1);
      })
      .catch((e: unknown) => e);
    expect(NatskitError.is(multi, 'CAPABILITY_MISSING')).toBe(true);
    expect(await kv.bulkGet('compat', ['a', 'b'])).toEqual([1, null]); // nothing written
    const single = await kv.transaction<number>('compat', async (tx) => {
      await tx.put('a', ((await tx.get('a')) ?? 0) + 1);
    });
    expect(single.attempts).toBe(1);
    const u = await kv.updateWith<number>('compat', 'a', (n) => (n ?? 0) + 10);
    expect(u.value).toBe(12);
    expect(await kv.get('compat', 'a')).toBe(12);
  });
});
