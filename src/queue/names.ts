import { describeValue } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';

/**
 * Where a queue lives on the server. One work-queue stream holds the jobs ready to run and the
 * server-side schedules of delayed ones; a second, limits-based stream holds the dead letters and
 * the attempt history of jobs that failed at least once.
 */
export interface QueueNames {
  readonly queue: string;
  /** `QUEUE_<name>`: ready jobs and schedules (work-queue retention: an acked job is gone). */
  readonly stream: string;
  /** `QUEUE_<name>_DEAD`: dead letters and attempt history. */
  readonly deadStream: string;
  /** The durable consumer every worker of the queue shares. */
  readonly consumer: string;
  /** `queue.<name>.ready.<id>`: one job ready to run (what workers consume). */
  ready(id: string): string;
  /** `queue.<name>.ready.*`: every ready job, the consumer's filter. */
  readonly readyAll: string;
  /** `queue.<name>.delayed.<id>`: the schedule of one delayed job. */
  delayed(id: string): string;
  /** `queue.<name>.dead.<id>`: the dead letter of one job. */
  dead(id: string): string;
  /** `queue.<name>.attempts.<id>`: one message per failed attempt of one job. */
  attempts(id: string): string;
  /** `queue.<name>.schedules.<schedule>`: the server-side schedule of one repeatable job. */
  schedule(name: string): string;
  /** `queue.<name>.ready.schedule=<schedule>`: where the server stores each firing. */
  scheduleTarget(name: string): string;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** A job id becomes a subject token and a message id: no dots, wildcards or spaces. */
// A job id is a subject token and a key of the results bucket: KV keys take no ':'.
const JOB_ID = /^[A-Za-z0-9_=-]{1,128}$/;

/** The names of queue `name`. @throws NatskitError `INVALID_OPTIONS` for a bad name. */
export function queueNames(name: unknown): QueueNames {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `queue.name must be 1-64 letters, digits, '_' or '-', got ${describeValue(name)}`,
      { details: { field: 'name' } },
    );
  }
  const base = `queue.${name}`;
  return {
    queue: name,
    stream: `QUEUE_${name}`,
    deadStream: `QUEUE_${name}_DEAD`,
    consumer: `queue_${name}`,
    ready: (id) => `${base}.ready.${id}`,
    readyAll: `${base}.ready.*`,
    delayed: (id) => `${base}.delayed.${id}`,
    dead: (id) => `${base}.dead.${id}`,
    attempts: (id) => `${base}.attempts.${id}`,
    schedule: (s) => `${base}.schedules.${s}`,
    scheduleTarget: (s) => `${base}.ready.schedule=${s}`,
  };
}

/** Checks a job id given by the caller. @throws NatskitError `INVALID_OPTIONS` naming `field`. */
export function checkJobId(field: string, id: unknown): string {
  if (typeof id !== 'string' || !JOB_ID.test(id)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${field} must be 1-128 letters, digits, '_', '-' or '=' (it becomes a subject token and a KV key), got ${describeValue(id)}`,
      { details: { field } },
    );
  }
  return id;
}

/** Headers natskit sets on a job; a caller's header may not use the prefix. */
export const H = Object.freeze({
  prefix: 'Natskit-',
  id: 'Natskit-Job-Id',
  attempts: 'Natskit-Job-Attempts',
  backoff: 'Natskit-Job-Backoff',
  runAt: 'Natskit-Job-Run-At',
  addedAt: 'Natskit-Job-Added-At',
  /** The repeatable schedule a job was fired by (its name). */
  schedule: 'Natskit-Schedule',
  /** A digest of a schedule's definition: declaring the same one again changes nothing. */
  scheduleDigest: 'Natskit-Schedule-Digest',
});
