/** The types of a job's outcome, events and inspection (split from types.ts). */

/** How a queue stores its results. */
export interface QueueResultOptions {
  /** How long an outcome is kept. @defaultValue 3600000 (one hour) */
  readonly ttlMs?: number;
  /**
   * The largest stored outcome in bytes; a larger result is stored as an error instead.
   * @defaultValue 65536
   */
  readonly maxBytes?: number;
}

/** Options of `Queue.result`. */
export interface ResultOptions {
  /** How long to wait for an outcome; 0 reads it once. @defaultValue 30000 */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A job's outcome: completed with the handler's value, dead, or not known (yet). */
export type JobOutcome<R> =
  | {
      readonly state: 'completed';
      readonly id: string;
      readonly value: R;
      readonly attempt: number;
      readonly at: Date;
      /** Set when the value could not be stored (too large, not encodable): `value` is null. */
      readonly error?: string;
    }
  | {
      readonly state: 'dead';
      readonly id: string;
      readonly reason: DeadReason;
      readonly error: string;
      readonly at: Date;
    }
  /** Not finished, not added, or its outcome expired. */
  | { readonly state: 'pending'; readonly id: string };

/** An event of a queue, as `Queue.events` delivers it. */
export type QueueEvent =
  | { readonly type: 'completed'; readonly id: string; readonly attempt: number; readonly at: Date }
  | {
      readonly type: 'failed';
      readonly id: string;
      readonly attempt: number;
      readonly error: string;
      readonly code: string | undefined;
      /** When the next attempt comes. */
      readonly retryInMs: number;
      readonly at: Date;
    }
  | {
      readonly type: 'dead';
      readonly id: string;
      readonly reason: DeadReason;
      readonly error: string;
      readonly code: string | undefined;
      readonly at: Date;
    }
  | {
      readonly type: 'progress';
      readonly id: string;
      readonly attempt: number;
      readonly value: unknown;
      readonly at: Date;
    };

/** Which events `Queue.events` delivers. */
export interface EventsOptions {
  /** @defaultValue every type */
  readonly types?: readonly QueueEvent['type'][];
  /** Only this job's events. @defaultValue every job */
  readonly id?: string;
}

/** A subscription to a queue's events; close or dispose it to stop. */
export interface QueueEvents extends Disposable {
  /** Resolves once the server has the subscription (events after that are delivered). */
  readonly ready: Promise<void>;
  close(): void;
}

/** Why a job is dead. */
export type DeadReason = 'failed' | 'unrecoverable' | 'undecodable' | 'stalled';

/** One failed attempt. */
export interface AttemptRecord {
  readonly attempt: number;
  readonly at: string;
  readonly error: string;
  readonly code: string | undefined;
}

/** Where a job is. */
export type JobState = 'waiting' | 'active' | 'delayed' | 'completed' | 'dead' | 'unknown';

/** A job looked up by id (`Queue.getJob`). */
export interface JobInfo<D, R> {
  readonly id: string;
  /**
   * `active`: delivered and not finished (running, or waiting out a retry backoff). `completed`
   * is known only on a queue with `results`; `unknown`: never added, completed without
   * results, or its outcome expired.
   */
  readonly state: JobState;
  /** The payload, while the job is waiting, active, delayed or dead (undefined if undecodable). */
  readonly data: D | undefined;
  readonly headers: Readonly<Record<string, string>>;
  /** The job's attempts, while it is waiting, active or delayed. */
  readonly attempts: number | undefined;
  /** Its failed attempts so far, oldest first. */
  readonly history: readonly AttemptRecord[];
  readonly addedAt: Date | undefined;
  readonly runAt: Date | undefined;
  /** The last error of a dead job. */
  readonly error?: string;
  /** The last `progress` value reported (queues with `results`). */
  readonly progress: unknown;
  /** The stored outcome (queues with `results`). */
  readonly outcome: JobOutcome<R> | undefined;
}
