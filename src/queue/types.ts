import type { Codec } from '../kv/codec.js';
import type { StandardSchemaV1 } from '../schema/standard-schema.js';
import type {
  AttemptRecord,
  DeadReason,
  EventsOptions,
  JobInfo,
  JobOutcome,
  QueueEvent,
  QueueEvents,
  QueueResultOptions,
  ResultOptions,
} from './outcome-types.js';

export type {
  AttemptRecord,
  DeadReason,
  EventsOptions,
  JobInfo,
  JobOutcome,
  JobState,
  QueueEvent,
  QueueEvents,
  QueueResultOptions,
  ResultOptions,
} from './outcome-types.js';

/**
 * How long a failed job waits before its next attempt: a fixed delay, or a delay that doubles
 * with each failure (`delayMs * 2^(failures-1)`, at most `maxDelayMs`).
 */
export type Backoff =
  | { readonly type: 'fixed'; readonly delayMs: number }
  | { readonly type: 'exponential'; readonly delayMs: number; readonly maxDelayMs?: number };

/** Options of a queue declaration, {@link queue}. */
export interface QueueOptions<D> {
  /** The queue's name: 1-64 letters, digits, `_` or `-`; streams and subjects derive from it. */
  readonly name: string;
  /** Checks every payload on `add` (nothing is sent when it fails) and again in the worker. */
  readonly schema?: StandardSchemaV1<unknown, D>;
  /** How payloads become bytes, on both ends. @defaultValue JSON */
  readonly codec?: Codec<D> | 'json' | 'string' | 'bytes';
  /** Default attempts of a job (the first run included). @defaultValue 3 */
  readonly attempts?: number;
  /** Default backoff between attempts. @defaultValue exponential from 1000 ms, at most 60000 */
  readonly backoff?: Backoff;
  /**
   * How long a job id deduplicates: a second `add` with the same id within it adds nothing (the
   * stream's duplicate window). @defaultValue 120000
   */
  readonly dedupeWindowMs?: number;
  /** Stream replicas (clusters). @defaultValue 1 */
  readonly replicas?: number;
  /**
   * Store each job's outcome (the handler's return value, or why it died) in a KV bucket, for
   * {@link Queue.result}; `true` for the defaults. @defaultValue off
   */
  readonly results?: boolean | QueueResultOptions;
}

/** Options of one {@link Queue.add}. */
export interface AddOptions {
  /**
   * The job's id (1-128 letters, digits, `_ - = :`). A second add with an id already added
   * within the queue's `dedupeWindowMs` adds nothing and returns `duplicate: true`.
   * @defaultValue a generated unique id
   */
  readonly jobId?: string;
  /** Run no earlier than this many milliseconds from now (0: now). Needs nats-server >= 2.12. */
  readonly delayMs?: number;
  /** Run no earlier than this time; a time not in the future runs now. Needs nats-server >= 2.12. */
  readonly runAt?: Date;
  /** Attempts, the first run included (1-1000). @defaultValue the queue's `attempts` */
  readonly attempts?: number;
  /** @defaultValue the queue's `backoff` */
  readonly backoff?: Backoff;
  /** Headers carried to the handler (names may not start with `Natskit-` or `Nats-`). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

/** One job of {@link Queue.addBulk}. */
export interface BulkJob<D> {
  readonly data: D;
  readonly options?: Omit<AddOptions, 'signal'>;
}

/** What {@link Queue.add} did. */
export interface AddedJob {
  readonly id: string;
  /** True when a job with this id was already added within the duplicate window. */
  readonly duplicate: boolean;
  /** When a delayed job is due; undefined for a job that runs now. */
  readonly runAt: Date | undefined;
}

/** A job as its handler sees it. */
export interface QueueJob<D> {
  readonly id: string;
  readonly queue: string;
  /** The payload, decoded and validated by the queue's codec and schema. */
  readonly data: D;
  /** This attempt's number, from 1 (the delivery count: see docs/jobs.md). */
  readonly attempt: number;
  /** The job's attempts, the first run included. */
  readonly attempts: number;
  /** The caller's headers. */
  readonly headers: Readonly<Record<string, string>>;
  /** When the job was added. */
  readonly addedAt: Date | undefined;
  /** When a delayed job was due. */
  readonly runAt: Date | undefined;
  /** The repeatable schedule that fired this job (its name), {@link Queue.schedule}. */
  readonly schedule: string | undefined;
  /**
   * Reports progress (a JSON value): a `progress` event, and, on a queue with `results`, stored
   * for {@link Queue.getJob} (the latest value).
   */
  progress(value: unknown): Promise<void>;
}

/** Runs one job; resolve (with the job's result) to complete it, throw to fail this attempt. */
export type JobHandler<D, R = unknown> = (job: QueueJob<D>, signal: AbortSignal) => R | Promise<R>;

/** Options of {@link Queue.work}. */
export interface QueueWorkerOptions<D> {
  /** Jobs run at once by this worker. @defaultValue 1 */
  readonly concurrency?: number;
  /**
   * The delay before the next attempt, replacing the job's backoff: `failures` counts from 1.
   * A throw or a value that is not a number >= 0 falls back to the job's backoff.
   */
  readonly backoff?: (failures: number, job: QueueJob<D>, error: unknown) => number;
  /**
   * Deliveries beyond the job's attempts that ended without a result (the worker crashed or was
   * stopped mid-job) before the job is dead-lettered as `stalled` without running. @defaultValue 3
   */
  readonly maxStalls?: number;
  /** The consumer's ack wait; a running job is kept alive by heartbeats. @defaultValue 30000 */
  readonly ackWaitMs?: number;
  /** How long a stop lets running jobs finish. @defaultValue 10000 */
  readonly drainTimeoutMs?: number;
  /** How long one pull waits on the server (at least 1000). @defaultValue 2000 */
  readonly fetchExpiresMs?: number;
}

/** Counters of a queue worker. */
export interface QueueWorkerStats {
  completed: number;
  /** Attempts that failed and will be retried. */
  retried: number;
  /** Jobs moved to the dead letters. */
  dead: number;
  running: number;
}

/** A running worker of a queue; stop or dispose it to drain it. */
export interface QueueWorker extends AsyncDisposable {
  readonly stats: Readonly<QueueWorkerStats>;
  readonly running: boolean;
  /** Stops fetching, lets running jobs finish until the drain deadline, gives back the rest. */
  stop(): Promise<{ finished: number; naked: number }>;
}

/** A job in the dead letters. */
export interface DeadJob<D> {
  readonly id: string;
  readonly reason: DeadReason;
  /** The last error, described. */
  readonly error: string;
  /** Its natskit code, when it had one. */
  readonly code: string | undefined;
  /** The failed attempts, oldest first (at most the last 50). */
  readonly history: readonly AttemptRecord[];
  /** The payload decoded, or undefined when it cannot be (`undecodable`). */
  readonly data: D | undefined;
  /** The original payload, as added. */
  readonly payload: Uint8Array;
  /** The caller's headers. */
  readonly headers: Readonly<Record<string, string>>;
  readonly deadAt: Date;
  /** Its sequence in the dead-letter stream. */
  readonly seq: number;
}

/** Jobs by state. */
export interface QueueCounts {
  /** Ready, not yet delivered to a worker. */
  readonly waiting: number;
  /** Delivered and not yet finished (running, or waiting out a retry backoff). */
  readonly active: number;
  /** Scheduled for later. */
  readonly delayed: number;
  readonly dead: number;
}

/** A queue: add jobs, run workers, look at and redrive the dead letters. */
export interface Queue<D, R = unknown> {
  readonly name: string;
  /**
   * Adds one job. Nothing is sent when the payload fails the codec or schema or an option is
   * invalid. @throws NatskitError `INVALID_OPTIONS`, `INVALID_VALUE`, `VALIDATION_FAILED`,
   * `VALUE_TOO_LARGE`, `CAPABILITY_MISSING` (a delay on a server without message schedules),
   * and what `StreamService.publish` throws.
   */
  add(data: D, options?: AddOptions): Promise<AddedJob>;
  /**
   * Adds up to 1000 jobs in one atomic batch (nats-server >= 2.12): all are added or none.
   * On older servers they are published one by one; a failure then throws a
   * `NatskitAggregateError` whose `details.added` lists the ids that were added.
   * @throws NatskitError `JOB_DUPLICATE` (an id already in the duplicate window: nothing added),
   * `TX_TOO_LARGE`, and what {@link Queue.add} throws.
   */
  addBulk(jobs: readonly BulkJob<D>[]): Promise<AddedJob[]>;
  /** Starts a worker on the queue; it is stopped with the queue's service at the latest. */
  work(handler: JobHandler<D, R>, options?: QueueWorkerOptions<D>): Promise<QueueWorker>;
  /**
   * The job's outcome, waiting up to `timeoutMs` for it (`pending` after that).
   * @throws NatskitError `INVALID_STATE` on a queue declared without `results`, `ABORTED`.
   */
  result(id: string, options?: ResultOptions): Promise<JobOutcome<R>>;
  /** The dead jobs, oldest first. */
  deadJobs(): Promise<DeadJob<D>[]>;
  /** Puts a dead job back on the queue with fresh attempts; false when no job has the id. */
  redrive(id: string): Promise<boolean>;
  /** Redrives every dead job; returns how many. */
  redriveAll(): Promise<number>;
  /** Jobs by state, from the streams' and consumer's counters. */
  counts(): Promise<QueueCounts>;
  /** Where job `id` is, with its payload, attempts and history. */
  getJob(id: string): Promise<JobInfo<D, R>>;
  /**
   * Pauses every worker of the queue, in every process (the shared consumer delivers nothing),
   * until `until` or until {@link Queue.resume}. Jobs running go on; adds are still accepted.
   * @throws NatskitError `CAPABILITY_MISSING` before nats-server 2.11, `INVALID_OPTIONS`.
   */
  pause(until?: Date): Promise<void>;
  /** Resumes a paused queue. */
  resume(): Promise<void>;
  /**
   * Calls `listener` for the queue's events, from every worker in every process: core NATS
   * messages, delivered at most once to whoever listens at the time (not stored).
   */
  events(listener: (event: QueueEvent) => void, options?: EventsOptions): QueueEvents;
  /**
   * Creates, or replaces, the repeatable job `name`: the server fires a job every interval or at
   * a cron expression's times (in a time zone), with no client timer. Idempotent by name across
   * processes: the same name is one schedule, and the same definition declared again (every
   * process at start) is left alone. Fired jobs have ids `<name>=<sequence>`.
   * @throws NatskitError `INVALID_OPTIONS` (a bad name, interval, cron expression or time zone,
   * also when the server refuses it: nothing is stored), `VALIDATION_FAILED`, `INVALID_VALUE`,
   * `CAPABILITY_MISSING` before nats-server 2.14 (JetStream API level 4).
   */
  schedule(name: string, options: ScheduleOptions<D>): Promise<ScheduledJob>;
  /** Removes the repeatable job `name`; false when there was none. A firing already stored still runs. */
  unschedule(name: string): Promise<boolean>;
  /** The repeatable jobs of the queue, by name. */
  schedules(): Promise<ScheduleInfo<D>[]>;
  /** Whether the queue is paused now, and until when. */
  paused(): Promise<{ readonly paused: boolean; readonly until: Date | undefined }>;
}

/**
 * A repeatable job's definition, {@link Queue.schedule}: one of `every` or `cron`, and the
 * payload each firing carries. Job options apply to every job it fires.
 */
export interface ScheduleOptions<D> {
  /**
   * Fire every interval: milliseconds (an integer >= 1000) or a duration such as `'30s'`,
   * `'5m'`, `'1h30m'` (units `ms`, `s`, `m`, `h`; at least one second). Not with `timeZone`.
   */
  readonly every?: number | string;
  /**
   * Fire at the times of a cron expression with **six** fields, seconds first
   * (`sec min hour day-of-month month day-of-week`, e.g. `'0 30 9 * * mon-fri'`), or one of
   * `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
   */
  readonly cron?: string;
  /** The IANA time zone a cron expression is read in (e.g. `Europe/Paris`). @defaultValue UTC */
  readonly timeZone?: string;
  /** The payload of every job the schedule fires (checked by the queue's schema and codec). */
  readonly data: D;
  /** Attempts of each fired job. @defaultValue the queue's `attempts` */
  readonly attempts?: number;
  /** Backoff of each fired job. @defaultValue the queue's `backoff` */
  readonly backoff?: Backoff;
  /** Headers carried to each fired job's handler (not `Nats-` or `Natskit-`). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

/** What {@link Queue.schedule} did. */
export interface ScheduledJob {
  readonly name: string;
  /**
   * `created`; `updated` (the definition changed: the server replaced the schedule, and its
   * next firing counts from now); `unchanged` (the same definition was already stored, as when
   * every process of a service declares it at start: its timing is left alone).
   */
  readonly action: 'created' | 'updated' | 'unchanged';
}

/** A repeatable job as stored on the server, from {@link Queue.schedules}. */
export interface ScheduleInfo<D> {
  readonly name: string;
  /** The interval as given to the server (e.g. `'1000ms'`, `'5m'`), for an interval schedule. */
  readonly every: string | undefined;
  /** The cron expression, for a cron schedule. */
  readonly cron: string | undefined;
  /** The cron's time zone; undefined for UTC. */
  readonly timeZone: string | undefined;
  /** The payload decoded, or undefined when the codec cannot decode it. */
  readonly data: D | undefined;
  readonly attempts: number | undefined;
  /** The caller's headers. */
  readonly headers: Readonly<Record<string, string>>;
  /** When it was created or last updated (the schedule message's time). */
  readonly updatedAt: Date;
}
