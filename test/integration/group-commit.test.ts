import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, type KvBucket, NatskitError, ServiceManager } from '../../src/index.js';
import type { KvBucketImpl } from '../../src/kv/bucket.js';
import { committerOf, type GroupCommitter } from '../../src/kv/transaction/group-commit.js';
import {
  type NatsServerHandle,
  startNatsCluster,
  startNatsServer,
} from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

interface Transfer {
  readonly id: number;
  readonly from: string;
  readonly to: string;
  readonly amount: number;
}

const START = 1_000;

function transfers(count: number, accounts: readonly string[]): Transfer[] {
  return Array.from({ length: count }, (_, id) => {
    const f = Math.floor(Math.random() * accounts.length);
    const t = (f + 1 + Math.floor(Math.random() * (accounts.length - 1))) % accounts.length;
    return { id, from: accounts[f] as string, to: accounts[t] as string, amount: 1 + (id % 7) };
  });
}

function committer(b: KvBucket<number>): GroupCommitter {
  const state = (b as KvBucketImpl<number>).state;
  return committerOf(state, state.name);
}

/**
 * Runs every transfer exactly once with `concurrency` in flight per bucket handle, as a worker
 * would: a transaction reading `done.<id>`, `from` and `to` and writing all three; a transfer
 * whose transaction failed for want of a server runs again (its done marker makes that safe).
 */
async function runBank(
  handles: readonly KvBucket<number>[],
  jobs: readonly Transfer[],
  concurrency: number,
): Promise<{ committed: Set<number>; conflicts: number; unavailable: number }> {
  const committed = new Set<number>();
  let conflicts = 0;
  let unavailable = 0;
  let next = 0;
  await Promise.all(
    handles.flatMap((bank) =>
      Array.from({ length: concurrency }, async () => {
        while (next < jobs.length) {
          const j = jobs[next++] as Transfer;
          for (;;) {
            try {
              const r = await bank.transaction(
                async (tx) => {
                  const [done, a, b] = await tx.getMany([`done.${j.id}`, j.from, j.to]);
                  if (done !== null) return;
                  await tx.put(j.from, (a ?? 0) - j.amount);
                  await tx.put(j.to, (b ?? 0) + j.amount);
                  await tx.put(`done.${j.id}`, 1);
                },
                { maxAttempts: 50 },
              );
              conflicts += r.attempts - 1;
              committed.add(j.id); // only after the commit returned
              break;
            } catch (err) {
              if (!NatskitError.is(err, 'NATS_UNAVAILABLE')) throw err;
              unavailable++;
              await sleep(100);
            }
          }
        }
      }),
    ),
  );
  return { committed, conflicts, unavailable };
}

/** Every balance is what the job list implies, each transfer applied exactly once. */
async function expectExact(
  bank: KvBucket<number>,
  accounts: readonly string[],
  jobs: readonly Transfer[],
): Promise<void> {
  const want = new Map(accounts.map((a) => [a, START]));
  for (const j of jobs) {
    want.set(j.from, (want.get(j.from) ?? 0) - j.amount);
    want.set(j.to, (want.get(j.to) ?? 0) + j.amount);
  }
  const balances = await bank.bulkGet(accounts, { retry: { retries: 30, minDelayMs: 100 } });
  expect(balances.reduce<number>((s, b) => s + (b ?? 0), 0)).toBe(START * accounts.length);
  expect(balances).toEqual(accounts.map((a) => want.get(a)));
  const done = await bank.bulkGet(jobs.map((j) => `done.${j.id}`));
  expect(done.every((d) => d === 1)).toBe(true);
}

async function openBank(app: ServiceManager, name: string, accounts: readonly string[]) {
  const bank = await app.get(KVStoreService).bucket<number>(name);
  if ((await bank.get(accounts[0] as string)) === null) {
    await bank.bulkPut(accounts.map((key) => ({ key, value: START })));
  }
  return bank;
}

describe('group commit on a real server', () => {
  let server: NatsServerHandle;
  let apps: ServiceManager[];

  beforeAll(async () => {
    server = await startNatsServer();
    apps = await Promise.all(
      [0, 1].map(() => ServiceManager.start({ ...quiet, nats: { servers: server.url } })),
    );
  });
  afterAll(async () => {
    await Promise.all((apps ?? []).map((a) => a.stop()));
    await server?.[Symbol.asyncDispose]();
  });

  it('bank: 2 processes x 8 in flight, 600 transfers among 20 accounts on a file bucket, grouped: each balance exact, each transfer once', async () => {
    const kv = apps[0]?.get(KVStoreService) as KVStoreService;
    await kv.createBucket('gbank', { history: 1 });
    const accounts = Array.from({ length: 20 }, (_, i) => `a${i}`);
    const handles = await Promise.all(apps.map((a) => openBank(a, 'gbank', accounts)));
    const jobs = transfers(600, accounts);
    const r = await runBank(handles, jobs, 8);
    expect(r.committed.size).toBe(600);
    await expectExact(handles[0] as KvBucket<number>, accounts, jobs);
    const stats = handles.map((h) => committer(h).stats);
    console.log(`group commit bank: ${r.conflicts} conflicts retried, ${JSON.stringify(stats)}`);
    // Groups happened, in both processes: the test is about them.
    for (const s of stats) expect(s.grouped).toBeGreaterThan(0);
  });

  it('a member made stale by another process fails alone: its group commits on the first attempt', async () => {
    const kv = apps[0]?.get(KVStoreService) as KVStoreService;
    await kv.createBucket('gstale', { history: 1 });
    const bank = (await kv.bucket<number>('gstale')) as KvBucket<number>;
    const other = apps[1]?.get(KVStoreService) as KVStoreService;
    await bank.bulkPut(['s', 'm', 'n'].map((key) => ({ key, value: 0 })));
    const c = committer(bank);
    await bank.transaction(async (tx) => {
      await tx.put('warm', 1); // readies atomic publish before the server is paused
      await tx.put('warm2', 1);
    });
    const before = { ...c.stats };
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let waiting = 0;
    let runs = 0;
    const bump = (k: string) =>
      bank.transaction(async (tx) => {
        if (k === 's') runs++;
        const v = (await tx.get(k)) ?? 0;
        if (k === 's' && runs === 1) await other.put('gstale', 's', 100); // another process
        waiting++;
        if (runs <= 1 || k !== 's') await gate;
        await tx.put(k, v + 1);
        await tx.put(`${k}.done`, 1);
      });
    const members = [bump('s'), bump('m'), bump('n')];
    while (waiting < 3) await sleep(1);
    // The server pauses with one commit in flight: the three queue behind it, then go together.
    const pid = server.pid as number;
    process.kill(pid, 'SIGSTOP');
    let lone: Promise<unknown>;
    try {
      lone = bank.transaction(async (tx) => {
        await tx.put('q', 1);
        await tx.put('q2', 1);
      });
      while (c.membersInFlight === 0) await sleep(1);
      open();
      while (c.queued < 3) await sleep(1);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const [rs, rm, rn] = await Promise.all(members);
    await lone;
    expect([rs?.attempts, rm?.attempts, rn?.attempts]).toEqual([2, 1, 1]);
    expect(await bank.bulkGet(['s', 'm', 'n'])).toEqual([101, 1, 1]);
    // The group of three was refused whole, the stale member failed alone, the two others
    // committed together.
    expect(c.stats.splits - before.splits).toBe(1);
    expect(c.stats.staleLate - before.staleLate).toBe(1);
    expect(c.stats.grouped - before.grouped).toBe(2);
  });

  it('a lone transaction is committed alone, in one batch, on the first attempt', async () => {
    const kv = apps[0]?.get(KVStoreService) as KVStoreService;
    await kv.createBucket('glone', { history: 1 });
    const bank = (await kv.bucket<number>('glone')) as KvBucket<number>;
    const c = committer(bank);
    for (let i = 0; i < 5; i++) {
      const r = await bank.transaction(async (tx) => {
        await tx.put('x', i);
        await tx.put('y', i);
      });
      expect(r.attempts).toBe(1);
    }
    expect(c.stats).toMatchObject({ batches: 5, alone: 5, grouped: 0 });
  });

  it('a transaction that throws while its read waits for a key leaves nothing locked: the next is not slowed', async () => {
    const kv = apps[0]?.get(KVStoreService) as KVStoreService;
    await kv.createBucket('gleak', { storage: 'memory' });
    const bank = (await kv.bucket<number>('gleak')) as KvBucket<number>;
    const locks = committer(bank).locks;
    await bank.put('a', 1);
    await bank.put('b', 1);
    const lone = async () => {
      const t0 = performance.now();
      await bank.transaction(async (tx) => {
        const [a, b] = await tx.getMany(['a', 'b']);
        await tx.put('a', (a ?? 0) + 1);
        await tx.put('b', (b ?? 0) - 1);
      });
      return performance.now() - t0;
    };
    await lone();
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let holding!: () => void;
    const held = new Promise<void>((r) => {
      holding = r;
    });
    const first = bank.transaction(async (tx) => {
      await tx.getMany(['a', 'b']);
      holding();
      await gate;
      await tx.put('a', 5);
      await tx.put('b', 5);
    });
    await held;
    let read: Promise<unknown> | undefined;
    const thrower = bank.transaction(async (tx) => {
      read = tx.get('a'); // waits for the first transaction's lock on a
      await Promise.all([read, Promise.reject(new Error('validation failed'))]);
    });
    await expect(thrower).rejects.toThrow('validation failed');
    open();
    await first;
    await read; // the abandoned read ran, and took no key
    expect({ held: locks.held, waiting: locks.waiting }).toEqual({ held: 0, waiting: 0 });
    const waits = locks.waits;
    const after = [await lone(), await lone(), await lone()];
    console.log(
      `lone two-key transactions after the throw: ${after.map((ms) => ms.toFixed(1))} ms`,
    );
    expect(locks.waits).toBe(waits); // none waited for a key
    expect(Math.max(...after)).toBeLessThan(500); // a leaked lock costs each 1 s
    expect({ held: locks.held, waiting: locks.waiting, running: locks.running }).toEqual({
      held: 0,
      waiting: 0,
      running: 0,
    });
  });
});

describe('group commit under faults', () => {
  it('bank across a SIGKILL restart of the server in the middle of a group: every committed transfer there, none twice', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, requestTimeoutMs: 2_000 },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('kbank', { history: 1 });
    const accounts = Array.from({ length: 20 }, (_, i) => `a${i}`);
    const bank = await openBank(app, 'kbank', accounts);
    const jobs = transfers(400, accounts);
    const c = committer(bank);
    const running = runBank([bank], jobs, 16);
    // Strike while a batch of several members is at the server.
    let acked = 0;
    while (!(c.membersInFlight >= 2 && c.stats.grouped > 20)) {
      await sleep(0);
      if (++acked > 1_000_000) throw new Error('no group in flight');
    }
    const inFlight = c.membersInFlight;
    await server.stop({ signal: 'SIGKILL' });
    await server.restart();
    const r = await running;
    console.log(
      `SIGKILL with ${inFlight} members in flight: ${r.unavailable} transactions failed NATS_UNAVAILABLE and ran again, ${JSON.stringify(c.stats)}`,
    );
    expect(inFlight).toBeGreaterThanOrEqual(2);
    expect(r.committed.size).toBe(400);
    await expectExact(bank, accounts, jobs);
  }, 120_000);

  it('bank on an R3 bucket across a kill of the stream leader in the middle of a group', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    const nats = {
      servers: [...cluster.urls],
      reconnectTimeWaitMs: 100,
      reconnectJitterMs: 50,
      requestTimeoutMs: 2_000,
    };
    await using app = await ServiceManager.start({ ...quiet, nats });
    const kv = app.get(KVStoreService);
    await kv.createBucket('cbank', { replicas: 3, history: 1 });
    const accounts = Array.from({ length: 20 }, (_, i) => `a${i}`);
    const bank = await openBank(app, 'cbank', accounts);
    const jobs = transfers(300, accounts);
    const c = committer(bank);
    const running = runBank([bank], jobs, 16);
    const observer = await connect({ servers: [...cluster.urls] });
    const jsm = await jetstreamManager(observer);
    const leader = (await jsm.streams.info('KV_cbank')).cluster?.leader ?? '';
    while (!(c.membersInFlight >= 2 && c.stats.grouped > 20)) await sleep(0);
    const inFlight = c.membersInFlight;
    await cluster.stop(cluster.indexOf(leader), { signal: 'SIGKILL' });
    const r = await running;
    await observer.close();
    console.log(
      `leader kill with ${inFlight} members in flight: ${r.unavailable} transactions failed NATS_UNAVAILABLE and ran again, ${JSON.stringify(c.stats)}`,
    );
    expect(inFlight).toBeGreaterThanOrEqual(2);
    expect(r.committed.size).toBe(300);
    await expectExact(bank, accounts, jobs);
  }, 180_000);
});
