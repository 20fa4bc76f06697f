import type { Backoff } from './types.js';

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
