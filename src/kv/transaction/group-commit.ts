import { NatskitError } from '../../errors/natskit-error.js';
import type { BatchAck } from '../../jetstream/atomic-batch.js';
import { MAX_BATCH_MESSAGES } from '../../jetstream/atomic-batch.js';
import { KeyLocks } from './key-locks.js';

export type { GroupCommitStats, GroupMember, GroupSink } from './group-types.js';

import type { GroupCommitStats, GroupMember, GroupSink } from './group-types.js';

interface Entry {
  readonly member: GroupMember;
  readonly keys: readonly string[];
  readonly resolve: (ack: BatchAck) => void;
  readonly reject: (err: unknown) => void;
}

/** The longest a commit waits for transactions of this process still running their functions. */
export const MAX_GROUP_WINDOW_MS = 4;

/** Sequence numbers of the key subjects this process saw last: a hint, never trusted for a commit. */
const KNOWN_LIMIT = 100_000;

/**
 * Group commit: concurrent transactions on one bucket share one atomic batch, so the server
 * syncs its store once for all of them. Commits that queue behind one in flight share the next
 * batch. A commit about to be sent (alone, or the queue once a batch is answered) is held while
 * other transactions of this process still run their functions (neither waiting for a key nor
 * answered), for half a batch round trip and at most `MAX_GROUP_WINDOW_MS`, so they can join;
 * a transaction alone waits for nothing. Members of one group touch disjoint keys, so each
 * member's expectations are exactly those it would carry alone, and the group is stored only if
 * every member's would be. A group the server refuses (one stale member fails the whole batch)
 * is sorted out: members whose expectation is stale fail alone, the rest commit again, as a
 * group or one by one.
 */
export class GroupCommitter {
  readonly stats: GroupCommitStats = {
    batches: 0,
    grouped: 0,
    alone: 0,
    largest: 0,
    splits: 0,
    staleEarly: 0,
    staleLate: 0,
  };
  /** The keys this process's transactions on the bucket hold. */
  readonly locks = new KeyLocks();
  readonly #bucket: string;
  readonly #maxInFlight: number;
  readonly #queue: Entry[] = [];
  #inFlight = 0;
  /** Batch round trips, smoothed: a grouping window costs a fraction of one. */
  #batchMs = 0;
  #window: NodeJS.Timeout | undefined;
  #windowClosed = false;
  #membersInFlight = 0;
  /** Keys written by members queued or in flight, with who waits for them to settle. */
  readonly #writing = new Map<string, { count: number; waiters: (() => void)[] }>();
  readonly #known = new Map<string, number>();

  constructor(bucket: string, maxInFlight = 1) {
    this.#bucket = bucket;
    this.#maxInFlight = maxInFlight;
  }

  /**
   * Commits one member, grouped with others when a commit is in flight.
   * @returns the member's own acknowledgement: its first message's sequence and its count.
   * @throws the errors of `publishAtomicBatch`, each meaning what it means for a batch of this
   * member alone (`KV_REVISION_CONFLICT`: this member's expectation failed; nothing of it stored).
   */
  submit(member: GroupMember, sink: GroupSink): Promise<BatchAck> {
    const stale = this.#staleKnown(member);
    if (stale.length > 0) {
      this.stats.staleEarly++;
      return Promise.reject(this.#conflict(stale, 'a newer revision was committed'));
    }
    const keys = [...new Set([...member.expects.keys(), ...member.writes])];
    for (const k of member.writes) {
      const w = this.#writing.get(k);
      if (w) w.count++;
      else this.#writing.set(k, { count: 1, waiters: [] });
    }
    return new Promise<BatchAck>((resolve, reject) => {
      const done = () => this.#release(member);
      this.#queue.push({
        member,
        keys,
        resolve: (ack) => {
          done();
          resolve(ack);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
      this.#pump(sink);
    });
  }

  /** Members waiting for a batch. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Members of the batches the server has now (for tests that strike in the middle of a group). */
  get membersInFlight(): number {
    return this.#membersInFlight;
  }

  /**
   * Resolves once no commit of this process that writes `key` is queued or in flight; undefined
   * when none is. A read that waits sees the commit's outcome instead of a revision about to be
   * replaced (a certain conflict).
   */
  settledFor(key: string): Promise<void> | undefined {
    const w = this.#writing.get(key);
    if (!w) return undefined;
    return new Promise((resolve) => w.waiters.push(resolve));
  }

  /** A revision read from the server: the newest this process knows of, for now. */
  observe(key: string, revision: number): void {
    // Set, not max: a subject purged or a bucket recreated goes back to a lower revision, and a
    // stale hint must never refuse a member forever. The hint only ever refuses early what the
    // server would refuse.
    if (this.#known.size >= KNOWN_LIMIT && !this.#known.has(key)) this.#known.clear();
    this.#known.set(key, revision);
  }

  #release(member: GroupMember): void {
    for (const k of member.writes) {
      const w = this.#writing.get(k);
      if (!w) continue;
      if (--w.count > 0) continue;
      this.#writing.delete(k);
      for (const wake of w.waiters) wake();
    }
  }

  #staleKnown(member: GroupMember): string[] {
    const out: string[] = [];
    for (const [k, rev] of member.expects) {
      const known = this.#known.get(k);
      if (known !== undefined && known > rev) out.push(k);
    }
    return out;
  }

  #conflict(keys: string[], why: string, cause?: unknown): NatskitError {
    return new NatskitError(
      'KV_REVISION_CONFLICT',
      `transaction on bucket ${this.#bucket}: ${why} (${keys.join(', ')})`,
      { cause, details: { bucket: this.#bucket, keys } },
    );
  }

  /**
   * Should the queue wait for transactions still running their functions? Only while some are
   * (a transaction alone never waits), for a fraction of a batch's round trip, at most
   * `MAX_GROUP_WINDOW_MS`: on a file bucket a batch costs a store sync, and one more member in it
   * is nearly free.
   */
  #holdFor(): number {
    if (this.#windowClosed) return 0;
    const soon = this.locks.running - this.#queue.length - this.#membersInFlight;
    return soon > 0 ? Math.min(MAX_GROUP_WINDOW_MS, this.#batchMs / 2) : 0;
  }

  #pump(sink: GroupSink): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const hold = this.#holdFor();
      if (hold >= 0.5) {
        this.#window ??= setTimeout(() => {
          this.#window = undefined;
          this.#windowClosed = true;
          try {
            this.#pump(sink);
          } finally {
            this.#windowClosed = false;
          }
        }, hold);
        return;
      }
      clearTimeout(this.#window);
      this.#window = undefined;
      const group = this.#take();
      if (group.length > 0) void this.#run(group, sink); // takes its slot at once
    }
  }

  /** The next group: queued members in order, skipping any that shares a key with one taken. */
  #take(): Entry[] {
    const group: Entry[] = [];
    const taken = new Set<string>();
    let messages = 0;
    for (let i = 0; i < this.#queue.length; ) {
      const e = this.#queue[i] as Entry;
      const fits =
        messages + e.member.messages.length <= MAX_BATCH_MESSAGES &&
        !e.keys.some((k) => taken.has(k));
      if (!fits) {
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      // Commits acknowledged while it queued may have made it stale: refuse it now, alone.
      const stale = this.#staleKnown(e.member);
      if (stale.length > 0) {
        this.stats.staleEarly++;
        e.reject(this.#conflict(stale, 'a newer revision was committed'));
        continue;
      }
      for (const k of e.keys) taken.add(k);
      messages += e.member.messages.length;
      group.push(e);
    }
    return group;
  }

  /** Sends one group in a slot of its own; the next group goes as soon as this one is answered. */
  async #run(group: Entry[], sink: GroupSink): Promise<void> {
    this.#inFlight++;
    this.stats.batches++;
    this.stats.largest = Math.max(this.stats.largest, group.length);
    const messages = group.flatMap((e) => e.member.messages);
    let ack: BatchAck;
    this.#membersInFlight += group.length;
    const t0 = performance.now();
    try {
      ack = await sink.publishBatch(messages);
      const ms = performance.now() - t0;
      this.#batchMs = this.#batchMs === 0 ? ms : this.#batchMs * 0.8 + ms * 0.2;
    } catch (err) {
      this.#membersInFlight -= group.length;
      try {
        if (group.length === 1) (group[0] as Entry).reject(err);
        else await this.#refused(group, sink, err); // keeps the slot until sorted out
      } finally {
        this.#inFlight--;
        this.#pump(sink);
      }
      return;
    }
    this.#membersInFlight -= group.length;
    this.#inFlight--;
    let offset = ack.firstSeq;
    const acks = group.map((e): BatchAck => {
      const count = e.member.messages.length;
      const first = offset;
      offset += count;
      const writesFrom = first + count - e.member.writes.length;
      for (const [i, k] of e.member.writes.entries()) this.observe(k, writesFrom + i);
      return { stream: ack.stream, firstSeq: first, seq: first + count - 1, count };
    });
    if (group.length > 1) this.stats.grouped += group.length;
    else this.stats.alone++;
    // The members answered only have to return now: the next group is not held for them.
    for (const e of group) if (e.member.owner) this.locks.answered(e.member.owner);
    // What queued meanwhile goes now, checked against the revisions just stored.
    this.#pump(sink);
    for (const [i, e] of group.entries()) e.resolve(acks[i] as BatchAck);
  }

  /** A group the server refused: each member learns what the refusal means for it alone. */
  async #refused(group: Entry[], sink: GroupSink, err: unknown): Promise<void> {
    if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'unknown') {
      // The group is stored or not, for all members alike: each finds its own messages by its
      // own transaction id, or learns the late reply's meaning for its slice of the group.
      let offset = 0;
      const late = err.details.lateReply as Promise<(() => BatchAck) | undefined> | undefined;
      for (const e of group) {
        const first = offset;
        const count = e.member.messages.length;
        offset += count;
        const lateReply = (late ?? Promise.resolve(undefined)).then((r) =>
          r === undefined
            ? undefined
            : () => {
                const a = r();
                const seq = a.firstSeq + first;
                return { stream: a.stream, firstSeq: seq, seq: seq + count - 1, count };
              },
        );
        e.reject(
          new NatskitError('NATS_UNAVAILABLE', err.message, {
            cause: err,
            details: { ...err.details, lateReply, group: group.length },
          }),
        );
      }
      return;
    }
    if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'not-applied') {
      for (const e of group) e.reject(err); // nothing stored, for anyone
      return;
    }
    this.stats.splits++;
    let rest = group;
    if (NatskitError.is(err, 'KV_REVISION_CONFLICT')) {
      // A revision only grows: a member stale when the group was refused is stale now.
      const revisions = await this.#revisions(group, sink);
      if (revisions) {
        rest = [];
        for (const e of group) {
          const stale = [...e.member.expects].filter(([k, r]) => revisions.get(k) !== r);
          if (stale.length === 0) rest.push(e);
          else {
            this.stats.staleLate++;
            e.reject(
              this.#conflict(
                stale.map(([k]) => k),
                'a key moved',
                err,
              ),
            );
          }
        }
        // Members all current (they raced a writer in between, or the refusal was something
        // else): each goes alone, and gets its own answer.
        if (rest.length < group.length && rest.length > 0) return await this.#run(rest, sink);
        if (rest.length === 0) return;
      }
    }
    // Another refusal (a message too large, a guard subject missing...): alone, each member
    // gets the answer that is its own.
    await Promise.all(rest.map((e) => this.#run([e], sink)));
  }

  /** The current revision of every key the group expected, or undefined if one cannot be read. */
  async #revisions(group: Entry[], sink: GroupSink): Promise<Map<string, number> | undefined> {
    const keys = [...new Set(group.flatMap((e) => [...e.member.expects.keys()]))];
    try {
      const revs = await Promise.all(keys.map((k) => sink.revisionOf(k)));
      const out = new Map(keys.map((k, i) => [k, revs[i] as number]));
      for (const [k, r] of out) this.observe(k, r);
      return out;
    } catch {
      return undefined; // sort it out one by one instead
    }
  }
}

const committers = new WeakMap<object, GroupCommitter>();

/** The committer of a bucket's shared state: one per bucket and process. */
export function committerOf(state: object, bucket: string): GroupCommitter {
  let c = committers.get(state);
  if (!c) {
    c = new GroupCommitter(bucket);
    committers.set(state, c);
  }
  return c;
}
