import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../../src/errors/natskit-error.js';
import { runTransaction } from '../../../src/kv/transaction/transaction.js';
import { MemoryTxBackend } from '../../support/memory-tx-backend.js';

const fast = { backoff: { minDelayMs: 1, maxDelayMs: 2 } };

async function failure(p: Promise<unknown>): Promise<unknown> {
  return await p.then(
    () => 'no error',
    (e: unknown) => e,
  );
}

describe('runTransaction (in memory)', () => {
  it('commits the writes of one attempt in one batch, with the revisions they got', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    b.put('b', 2);
    const r = await runTransaction(b, async (tx) => {
      const [a, x] = await tx.getMany(['a', 'b']);
      await tx.put('a', (a ?? 0) + 10);
      await tx.put('b', (x ?? 0) + 10);
      return 'done';
    });
    expect(r).toEqual({ value: 'done', attempts: 1, revisions: { a: 3, b: 4 } });
    expect([b.value('a'), b.value('b')]).toEqual([11, 12]);
    expect(b.batches).toBe(1);
  });

  it('runs again on fresh reads when a key moved before the commit', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    b.put('b', 1);
    let moved = false;
    b.beforeBatch = () => {
      if (!moved) b.put('a', 100); // someone else writes between read and commit
      moved = true;
    };
    const r = await runTransaction(
      b,
      async (tx) => {
        await tx.put('b', ((await tx.get('a')) ?? 0) + 1);
        await tx.put('c', 0);
      },
      fast,
    );
    expect(r.attempts).toBe(2);
    expect(b.value('b')).toBe(101);
  });

  it('gives up after maxAttempts with KV_REVISION_CONFLICT naming the keys that moved', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 0);
    b.beforeBatch = () => b.put('a', Math.random());
    const err = await failure(
      runTransaction(
        b,
        async (tx) => {
          await tx.put('a', ((await tx.get('a')) ?? 0) + 1);
          await tx.put('b', 1);
        },
        { ...fast, maxAttempts: 3 },
      ),
    );
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    expect((err as NatskitError).details).toMatchObject({ keys: ['a'], attempts: 3 });
  });

  it('serializable: a key only read is guarded; write-only: it is not (write skew)', async () => {
    const skew = async (isolation: 'serializable' | 'write-only') => {
      const b = new MemoryTxBackend();
      b.put('x', 50);
      b.put('y', 50);
      let other = true;
      const r = await runTransaction(
        b,
        async (tx) => {
          const [x, y] = await tx.getMany(['x', 'y']);
          if (other) b.put('y', -60); // a concurrent transaction that read x and wrote y
          other = false;
          if ((x ?? 0) + (y ?? 0) >= 100) await tx.put('x', -60);
        },
        { ...fast, isolation },
      );
      return { attempts: r.attempts, x: b.value('x'), y: b.value('y') };
    };
    expect(await skew('write-only')).toEqual({ attempts: 1, x: -60, y: -60 });
    expect(await skew('serializable')).toEqual({ attempts: 2, x: 50, y: -60 });
  });

  it('commits writes that were not awaited, including one chained on a pending read', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    await runTransaction(b, (tx) => {
      void tx.put('p', 1);
      void tx.get('a').then((a) => tx.put('q', (a ?? 0) + 1));
      void tx.delete('a');
    });
    expect([b.value('p'), b.value('q'), b.value('a')]).toEqual([1, 2, null]);
  });

  it('a failed write aborts with its error, unchanged and not retried, even when caught', async () => {
    const b = new MemoryTxBackend();
    const before = b.log.length;
    const err = await failure(
      runTransaction(b, async (tx) => {
        await tx.put('ok', 1);
        await tx.put('bad', Number.NaN).catch(() => undefined);
      }),
    );
    expect(NatskitError.is(err, 'INVALID_VALUE')).toBe(true);
    expect(b.log.length).toBe(before);
    expect(b.batches).toBe(0);
  });

  it('create on a live key aborts with KV_REVISION_CONFLICT; on a deleted key it expects the tombstone', async () => {
    const b = new MemoryTxBackend();
    b.put('live', 1);
    const err = await failure(runTransaction(b, (tx) => void tx.create('live', 2)));
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    b.put('gone', 1);
    b.put('gone', null);
    const r = await runTransaction(b, (tx) => tx.create('gone', 3));
    expect(r.attempts).toBe(1);
    expect(b.value('gone')).toBe(3);
  });

  it('refuses operations after the function returned with INVALID_STATE', async () => {
    const b = new MemoryTxBackend();
    let late: ((v: number) => Promise<void>) | undefined;
    await runTransaction(b, (tx) => {
      late = (v) => tx.put('late', v);
    });
    const err = await failure((late as (v: number) => Promise<void>)(1));
    expect(NatskitError.is(err, 'INVALID_STATE')).toBe(true);
    expect(b.value('late')).toBeNull();
  });

  it('getEntry of a buffered write is marked buffered, without revision or date', async () => {
    const b = new MemoryTxBackend();
    await runTransaction(b, async (tx) => {
      await tx.put('k', 7);
      expect(await tx.getEntry('k')).toEqual({
        key: 'k',
        value: 7,
        buffered: true,
        revision: undefined,
        created: undefined,
      });
    });
  });

  it('a read-only transaction is validated: a read that moved runs it again', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    let runs = 0;
    const r = await runTransaction(
      b,
      async (tx) => {
        runs++;
        const a = await tx.get('a');
        if (runs === 1) b.put('a', 2); // moves after the read, before the commit
        return a;
      },
      fast,
    );
    expect(r).toMatchObject({ value: 2, attempts: 2 });
  });

  it('too many writes and guards fail with TX_TOO_LARGE before anything is sent', async () => {
    const b = new MemoryTxBackend();
    const err = await failure(
      runTransaction(b, async (tx) => {
        for (let i = 0; i < 1_001; i++) void tx.put(`k${i}`, i);
      }),
    );
    expect(NatskitError.is(err, 'TX_TOO_LARGE')).toBe(true);
    expect(b.batches).toBe(0);
  });

  it('a lost commit reply is looked up: applied once when it was stored, run again when not', async () => {
    const b = new MemoryTxBackend();
    b.put('n', 0);
    let runs = 0;
    const inc = () =>
      runTransaction(
        b,
        async (tx) => {
          runs++;
          await tx.put('n', ((await tx.get('n')) ?? 0) + 1);
          await tx.put('other', runs);
        },
        fast,
      );
    b.loseNextReply = 'applied';
    expect((await inc()).attempts).toBe(1);
    expect([b.value('n'), runs]).toEqual([1, 1]);
    b.loseNextReply = 'not-applied';
    expect((await inc()).attempts).toBe(2);
    expect([b.value('n'), runs]).toEqual([2, 3]);
  });
});
