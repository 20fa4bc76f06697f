import { describe, expect, it } from 'vitest';
import { KeyLocks, MAX_LOCK_WAIT_MS } from '../../../src/kv/transaction/key-locks.js';
import { runTransaction } from '../../../src/kv/transaction/transaction.js';
import { MemoryTxBackend } from '../../support/memory-tx-backend.js';

const fast = { backoff: { minDelayMs: 1, maxDelayMs: 2 } };

/** A transaction that reads `keys` (so holds them) and writes them once `open` is called. */
function holder(b: MemoryTxBackend, keys: readonly string[]) {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let holding!: () => void;
  const held = new Promise<void>((r) => {
    holding = r;
  });
  const done = runTransaction(b, async (tx) => {
    await tx.getMany(keys);
    holding();
    await gate;
    for (const k of keys) await tx.put(k, 2);
  });
  return { held, open, done };
}

function lockTable(locks: KeyLocks) {
  return { held: locks.held, waiting: locks.waiting, running: locks.running };
}

describe('key locks: a transaction that ends takes no key and leaves no waiter', () => {
  it('an acquire pending when its owner ends returns at once and takes nothing', async () => {
    const locks = new KeyLocks();
    const first = locks.owner();
    await locks.acquire(first, ['k']);
    const dead = locks.owner();
    const pending = locks.acquire(dead, ['k']);
    expect(lockTable(locks)).toEqual({ held: 1, waiting: 1, running: 1 });
    locks.end(dead);
    // Its wait is over: it no longer counts as waiting, nor as blocked (first alone runs).
    expect(lockTable(locks)).toEqual({ held: 1, waiting: 0, running: 1 });
    locks.release(first);
    await pending;
    expect(dead.keys.size).toBe(0);
    expect(lockTable(locks)).toEqual({ held: 0, waiting: 0, running: 1 });
    locks.end(first);
    const next = locks.owner();
    const t0 = performance.now();
    await locks.acquire(next, ['k']);
    expect(performance.now() - t0).toBeLessThan(MAX_LOCK_WAIT_MS / 2);
    expect(next.keys.has('k')).toBe(true);
  });

  it('a wait that times out leaves no waiter behind', async () => {
    const locks = new KeyLocks();
    const first = locks.owner();
    await locks.acquire(first, ['k']);
    const other = locks.owner();
    for (let i = 0; i < 3; i++) await locks.acquire(other, ['k'], 5);
    expect(other.keys.size).toBe(0);
    expect(lockTable(locks)).toEqual({ held: 1, waiting: 0, running: 2 });
  });

  it('a function that throws while its read waits for a key leaves no key locked', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    const t1 = holder(b, ['a']);
    await t1.held;
    let read: Promise<unknown> | undefined;
    const validate = () => Promise.reject(new Error('invalid'));
    const t2 = runTransaction(b, async (tx) => {
      read = tx.get('a'); // waits for t1
      await Promise.all([read, validate()]);
    });
    await expect(t2).rejects.toThrow('invalid');
    expect(lockTable(b.locks)).toEqual({ held: 1, waiting: 0, running: 1 });
    t1.open();
    await t1.done;
    await read; // the abandoned read ran (unlocked) and took nothing
    expect(lockTable(b.locks)).toEqual({ held: 0, waiting: 0, running: 0 });
    // The next transaction on the key does not wait for anyone.
    const waits = b.locks.waits;
    const t0 = performance.now();
    await runTransaction(b, async (tx) => {
      await tx.put('a', ((await tx.get('a')) ?? 0) + 1);
    });
    expect(performance.now() - t0).toBeLessThan(MAX_LOCK_WAIT_MS / 2);
    expect(b.locks.waits).toBe(waits);
    expect(b.value('a')).toBe(3);
    expect(lockTable(b.locks)).toEqual({ held: 0, waiting: 0, running: 0 });
  });

  it('every way a transaction ends leaves the lock table empty', async () => {
    const b = new MemoryTxBackend();
    for (const k of ['a', 'b', 'c']) b.put(k, 1);
    const t1 = holder(b, ['a', 'b']);
    await t1.held;
    const reads: Promise<unknown>[] = [];
    // Throws something that is not an Error while a getMany waits.
    const thrown = runTransaction(b, async (tx) => {
      reads.push(tx.getMany(['a', 'c']).catch(() => undefined));
      throw null;
    });
    // Returns while a read it never awaited waits: the commit waits for it.
    const returned = runTransaction(b, async (tx) => {
      reads.push(tx.get('b').catch(() => undefined));
      await tx.put('c', 5);
    });
    // Aborted in its backoff after a conflict.
    const ac = new AbortController();
    let moved = false;
    const aborted = runTransaction(
      b,
      async (tx) => {
        await tx.put('d', ((await tx.get('c')) ?? 0) + 1);
        await tx.put('e', 1);
        if (!moved) {
          moved = true;
          b.beforeBatch = () => {
            b.beforeBatch = undefined;
            b.put('c', 100);
            ac.abort();
          };
        }
      },
      { ...fast, signal: ac.signal },
    );
    await expect(thrown).rejects.toBeNull();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    t1.open();
    await t1.done;
    await returned;
    await Promise.allSettled(reads);
    // Retried after a conflict, then committed.
    let once = false;
    b.beforeBatch = () => {
      if (!once) b.put('f', 9);
      once = true;
    };
    const retried = await runTransaction(
      b,
      async (tx) => {
        await tx.put('g', ((await tx.get('f')) ?? 0) + 1);
        await tx.put('h', 1);
      },
      fast,
    );
    expect(retried.attempts).toBe(2);
    expect(lockTable(b.locks)).toEqual({ held: 0, waiting: 0, running: 0 });
  });
});
