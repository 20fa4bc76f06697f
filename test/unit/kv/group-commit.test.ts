import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../../src/errors/natskit-error.js';
import type { BatchMessage } from '../../../src/jetstream/atomic-batch.js';
import {
  GroupCommitter,
  type GroupMember,
  type GroupSink,
} from '../../../src/kv/transaction/group-commit.js';
import { KeyLocks } from '../../../src/kv/transaction/key-locks.js';
import { runTransaction } from '../../../src/kv/transaction/transaction.js';
import { MemoryTxBackend } from '../../support/memory-tx-backend.js';

const fast = { backoff: { minDelayMs: 1, maxDelayMs: 2 } };

/** A member writing `keys` of the memory bucket, each expected at the revision given. */
function member(b: MemoryTxBackend, writes: Record<string, number>, extra?: object): GroupMember {
  const messages: BatchMessage[] = Object.entries(writes).map(([k, rev]) => ({
    subject: b.subject(k),
    data: new TextEncoder().encode('1'),
    headers: { 'Nats-Expected-Last-Subject-Sequence': String(rev), ...extra },
  }));
  return { messages, expects: new Map(Object.entries(writes)), writes: Object.keys(writes) };
}

function sinkOf(b: MemoryTxBackend): GroupSink & { sizes: number[] } {
  const sizes: number[] = [];
  return {
    sizes,
    publishBatch: (messages) => {
      sizes.push(messages.length);
      return b.publishBatch(messages);
    },
    revisionOf: async (key) => b.lastSeq(b.subject(key)),
  };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return await p.then(
    () => 'no error',
    (e: unknown) => e,
  );
}

describe('group commit (in memory)', () => {
  it('a commit alone is sent at once; those queued behind it share the next batch', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 5;
    const c = new GroupCommitter('mem');
    const sink = sinkOf(b);
    const first = c.submit(member(b, { a: 0 }), sink);
    expect(sink.sizes).toEqual([1]); // sent in the same tick: nothing made it wait
    const rest = ['b', 'c', 'd'].map((k) => c.submit(member(b, { [k]: 0, [`${k}2`]: 0 }), sink));
    const acks = await Promise.all([first, ...rest]);
    expect(sink.sizes).toEqual([1, 6]);
    // Each member's ack is its own slice of the batch: the revisions its keys got.
    for (const [i, k] of ['b', 'c', 'd'].entries()) {
      const ack = acks[i + 1];
      expect(ack?.count).toBe(2);
      expect([b.lastSeq(b.subject(k)), b.lastSeq(b.subject(`${k}2`))]).toEqual([
        ack?.firstSeq,
        ack?.seq,
      ]);
    }
    expect(c.stats).toMatchObject({ batches: 2, alone: 1, grouped: 3, largest: 3, splits: 0 });
  });

  it('waits for transactions still running their functions, never for a lone one', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 10;
    const c = new GroupCommitter('mem');
    const sink = sinkOf(b);
    await c.submit(member(b, { warm: 0 }), sink); // a batch round trip of about 10 ms
    const lone = c.locks.owner(); // one transaction under way: this one
    const first = c.submit(member(b, { a: 0 }), sink);
    expect(sink.sizes).toEqual([1, 1]); // sent at once
    await first;
    const other = c.locks.owner(); // a second one, still in its function
    const t0 = performance.now();
    const mine = c.submit(member(b, { b: 0 }), sink);
    expect(sink.sizes).toEqual([1, 1]); // held for the other
    await new Promise((r) => setTimeout(r, 1));
    const theirs = c.submit(member(b, { c: 0 }), sink);
    await Promise.all([mine, theirs]);
    expect(sink.sizes).toEqual([1, 1, 2]); // one batch for both
    c.locks.end(other);
    // Held at most half a batch round trip, 4 ms at most.
    expect(performance.now() - t0).toBeLessThan(10 + 4 + 20);
    const late = c.submit(member(b, { d: 0 }), sink); // the other never commits: bounded wait
    await late;
    expect(sink.sizes).toEqual([1, 1, 2, 1]);
    c.locks.end(lone);
  });

  it('a commit queued behind a batch is not held for the members that batch answered', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 10;
    const c = new GroupCommitter('mem');
    const sizes = sinkOf(b);
    const sentAt: number[] = [];
    const sink: GroupSink = {
      ...sizes,
      publishBatch: (messages) => {
        sentAt.push(performance.now());
        return sizes.publishBatch(messages);
      },
    };
    await c.submit(member(b, { warm: 0 }), sink); // a batch round trip of about 10 ms
    // Two transactions, as runTransaction runs them: each ends once its commit is answered.
    const run = (key: string) => {
      const owner = c.locks.owner();
      return c.submit({ ...member(b, { [key]: 0 }), owner }, sink).then(() => c.locks.end(owner));
    };
    let sentWhenAAnswered = 0;
    const a = run('a').then(() => {
      sentWhenAAnswered = sentAt.length;
    }); // sent at once
    const queued = run('b'); // queued behind a; nobody else runs a function
    await Promise.all([a, queued]);
    const gap = (sentAt[2] as number) - (sentAt[1] as number);
    console.log(`b sent ${gap.toFixed(1)} ms after a (10 ms round trip)`);
    // b went as a was answered, not a grouping window later: a no longer runs its function.
    expect(sentWhenAAnswered).toBe(3);
    expect(sizes.sizes).toEqual([1, 1, 1]);
  });

  it('members that share a key never share a batch', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 5;
    const c = new GroupCommitter('mem');
    const sink = sinkOf(b);
    const p = [
      c.submit(member(b, { z: 0 }), sink),
      c.submit(member(b, { x: 0, y: 0 }), sink),
      c.submit(member(b, { x: 0 }), sink), // x again: left for the next batch
      c.submit(member(b, { w: 0 }), sink),
    ];
    const results = await Promise.allSettled(p);
    expect(sink.sizes).toEqual([1, 3]); // together they would have made a batch of 4
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    // Left out of the group, then refused without a round trip: the group's ack replaced x's revision.
    expect(c.stats.staleEarly).toBe(1);
  });

  it('a stale member fails alone with KV_REVISION_CONFLICT; the rest of its group commits', async () => {
    const b = new MemoryTxBackend();
    b.put('a', 1);
    b.replyDelayMs = 5;
    const c = new GroupCommitter('mem');
    const sink = sinkOf(b);
    const lone = c.submit(member(b, { q: 0 }), sink);
    const stale = c.submit(member(b, { a: 1 }), sink);
    const others = [c.submit(member(b, { m: 0 }), sink), c.submit(member(b, { n: 0 }), sink)];
    b.put('a', 5); // another process moves a while the group waits
    const err = await failure(stale);
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    expect((err as NatskitError).details).toMatchObject({ keys: ['a'] });
    await Promise.all([lone, ...others]);
    expect([b.value('m'), b.value('n'), b.value('a')]).toEqual([1, 1, 5]);
    // The group of 3 was refused, then the 2 current members went together.
    expect(sink.sizes).toEqual([1, 3, 2]);
    expect(c.stats).toMatchObject({ splits: 1, staleLate: 1, grouped: 2 });
  });

  it('a group refused for another reason is sent member by member: each gets its own answer', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 5;
    const c = new GroupCommitter('mem');
    const inner = sinkOf(b);
    const sink: GroupSink = {
      ...inner,
      publishBatch: async (messages) => {
        if (messages.some((m) => m.headers?.bad)) {
          throw new NatskitError('VALUE_TOO_LARGE', 'too large');
        }
        return await inner.publishBatch(messages);
      },
    };
    const lone = c.submit(member(b, { q: 0 }), sink);
    const bad = c.submit(member(b, { big: 0 }, { bad: '1' }), sink);
    const good = c.submit(member(b, { small: 0 }), sink);
    await lone;
    expect(NatskitError.is(await failure(bad), 'VALUE_TOO_LARGE')).toBe(true);
    await good;
    expect([b.value('small'), b.value('big')]).toEqual([1, null]);
    expect(c.stats.splits).toBe(1);
  });

  it('a group whose reply comes late: each member reads its own slice of the late answer', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 5;
    const c = new GroupCommitter('mem');
    const inner = sinkOf(b);
    const sink: GroupSink = {
      ...inner,
      publishBatch: async (messages) => {
        const ack = await inner.publishBatch(messages);
        if (messages.length !== 3) return ack; // the group of two members loses its reply
        throw new NatskitError('NATS_UNAVAILABLE', 'late', {
          details: { outcome: 'unknown', lateReply: Promise.resolve(() => ack) },
        });
      },
    };
    const lone = c.submit(member(b, { q: 0 }), sink);
    const members = [
      c.submit(member(b, { x: 0, x2: 0 }), sink),
      c.submit(member(b, { y: 0 }), sink),
    ];
    await lone;
    const errs = (await Promise.all(members.map(failure))) as NatskitError[];
    const slices = await Promise.all(
      errs.map(async (e) => {
        expect(e.details).toMatchObject({ outcome: 'unknown', group: 2 });
        const late = (await e.details?.lateReply) as () => { firstSeq: number; count: number };
        return late();
      }),
    );
    expect(slices.map((a) => [a.firstSeq, a.count])).toEqual([
      [b.lastSeq(b.subject('x')), 2],
      [b.lastSeq(b.subject('y')), 1],
    ]);
  });

  it('a member expecting a revision this process saw replaced is refused without a round trip', async () => {
    const b = new MemoryTxBackend();
    const c = new GroupCommitter('mem');
    const sink = sinkOf(b);
    c.observe('k', 7);
    const err = await failure(c.submit(member(b, { k: 3 }), sink));
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
    expect(sink.sizes).toEqual([]);
    // A lower revision read later (the subject was purged) replaces the hint: no refusal forever.
    c.observe('k', 0);
    await c.submit(member(b, { k: 0 }), sink);
    expect(sink.sizes).toEqual([1]);
  });

  it('transactions: a stale member retries alone, its group commits on the first attempt', async () => {
    const b = new MemoryTxBackend();
    for (const k of ['a', 'b', 'c', 'd']) b.put(k, 0);
    b.replyDelayMs = 5;
    let batch = 0;
    b.beforeBatch = () => {
      if (++batch === 2) b.put('a', 100); // another process, just before the group is applied
    };
    const add = (k: string, also: string) =>
      runTransaction(
        b,
        async (tx) => {
          await tx.put(k, ((await tx.get(k)) ?? 0) + 1);
          await tx.put(also, 1);
        },
        fast,
      );
    const lone = add('d', 'd2');
    const group = [add('a', 'a2'), add('b', 'b2'), add('c', 'c2')];
    const results = await Promise.all([lone, ...group]);
    expect(results.map((r) => r.attempts)).toEqual([1, 2, 1, 1]);
    expect(['a', 'b', 'c', 'd'].map((k) => b.value(k))).toEqual([101, 1, 1, 1]);
    expect(b.committer.stats).toMatchObject({ splits: 1, staleLate: 1 });
  });

  it('a group whose reply is lost: each member finds its own messages, applied once', async () => {
    const b = new MemoryTxBackend();
    b.replyDelayMs = 5;
    let batch = 0;
    b.beforeBatch = () => {
      if (++batch === 2) b.loseNextReply = 'applied';
    };
    let runs = 0;
    const put = (k: string) =>
      runTransaction(b, async (tx) => {
        runs++;
        await tx.put(k, ((await tx.get(k)) ?? 0) + 1);
        await tx.put(`${k}.done`, 1);
      });
    const results = await Promise.all(['w', 'x', 'y', 'z'].map(put));
    expect(results.map((r) => r.attempts)).toEqual([1, 1, 1, 1]);
    expect(runs).toBe(4);
    expect(['w', 'x', 'y', 'z'].map((k) => b.value(k))).toEqual([1, 1, 1, 1]);
    for (const [i, k] of ['w', 'x', 'y', 'z'].entries()) {
      expect(results[i]?.revisions[k]).toBe(b.lastSeq(b.subject(k)));
    }
  });
});

describe('key locks (in memory)', () => {
  it('transactions of one process on one hot key wait for each other instead of conflicting', async () => {
    const b = new MemoryTxBackend();
    b.put('n', 0);
    b.replyDelayMs = 2;
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        runTransaction(
          b,
          async (tx) => {
            const n = (await tx.getMany(['n', `done.${i}`]))[0] ?? 0;
            await tx.put('n', n + 1);
            await tx.put(`done.${i}`, 1);
          },
          fast,
        ),
      ),
    );
    expect(b.value('n')).toBe(8);
    expect(results.map((r) => r.attempts)).toEqual(Array(8).fill(1));
  });

  it('two transactions taking two keys in opposite orders both finish (no deadlock)', async () => {
    const b = new MemoryTxBackend();
    b.put('x', 0);
    b.put('y', 0);
    b.replyDelayMs = 2;
    const swap = (first: string, second: string) =>
      runTransaction(
        b,
        async (tx) => {
          const p = (await tx.get(first)) ?? 0;
          await new Promise((r) => setTimeout(r, 5)); // both hold their first key now
          const q = (await tx.get(second)) ?? 0;
          await tx.put(first, p + 1);
          await tx.put(second, q + 1);
        },
        fast,
      );
    const t0 = performance.now();
    await Promise.all([swap('x', 'y'), swap('y', 'x')]);
    expect(performance.now() - t0).toBeLessThan(900); // no wait ran into its bound
    expect([b.value('x'), b.value('y')]).toEqual([2, 2]);
  });

  it('a wait is bounded: a holder that never lets go delays a read, never blocks it', async () => {
    const locks = new KeyLocks();
    const holder = locks.owner();
    await locks.acquire(holder, ['k']);
    const other = locks.owner();
    const t0 = performance.now();
    await locks.acquire(other, ['k'], 30);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    expect(other.keys.has('k')).toBe(false); // went on unlocked
    locks.release(holder);
    await locks.acquire(other, ['k'], 30);
    expect(other.keys.has('k')).toBe(true);
  });

  it('a holder never waits for an older holder; an older one waits for a younger', async () => {
    const locks = new KeyLocks();
    const older = locks.owner();
    const younger = locks.owner();
    await locks.acquire(older, ['a']);
    await locks.acquire(younger, ['b']);
    // younger holds b and asks for a (older's): it goes on unlocked at once.
    await locks.acquire(younger, ['a'], 10_000);
    expect(younger.keys.has('a')).toBe(false);
    // older asks for b (younger's): it waits until younger releases.
    let got = false;
    const waiting = locks.acquire(older, ['b'], 10_000).then(() => {
      got = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBe(false);
    locks.release(younger);
    await waiting;
    expect(older.keys.has('b')).toBe(true);
  });
});
