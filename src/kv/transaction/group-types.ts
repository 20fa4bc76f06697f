import type { BatchAck, BatchMessage } from '../../jetstream/atomic-batch.js';
import type { LockOwner } from './key-locks.js';

/** One transaction's commit: its messages (guards, then writes) and what they expect. */
export interface GroupMember {
  readonly messages: readonly BatchMessage[];
  /** Every key whose revision a message expects (a guarded read or a compare-and-set write). */
  readonly expects: ReadonlyMap<string, number>;
  /** The keys written, in the order of the last `writes.length` messages. */
  readonly writes: readonly string[];
  /** The transaction committing, if any: once answered it no longer holds a commit back. */
  readonly owner?: LockOwner;
}

/** What the committer needs from the bucket. */
export interface GroupSink {
  publishBatch(messages: readonly BatchMessage[]): Promise<BatchAck>;
  /** The stored revision of a key now (0 if it never was written). */
  revisionOf(key: string): Promise<number>;
}

/** Counts of what group commit did, for benchmarks and tests. */
export interface GroupCommitStats {
  /** Batches sent (a group of one included). */
  batches: number;
  /** Members committed in a batch with at least one other. */
  grouped: number;
  /** Members committed alone. */
  alone: number;
  /** The most members one batch carried. */
  largest: number;
  /** Groups the server refused, then sorted out member by member. */
  splits: number;
  /** Members refused without a round trip: they expected a revision this process saw replaced. */
  staleEarly: number;
  /** Members found stale after their group was refused. */
  staleLate: number;
}
