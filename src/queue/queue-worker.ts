import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { checkOptionsObject, describeValue, knownKeys, positiveInt } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { assertJsonSafe, type Codec } from '../kv/codec.js';
import { type StandardSchemaV1, validate } from '../schema/standard-schema.js';
import type { Job, Worker } from '../stream/worker-types.js';
import { backoffDelay, checkBackoff, type JobDefaults, MAX_ATTEMPTS } from './add-options.js';
import {
  clearHistory,
  type DeadLetterContext,
  deadLetter,
  describeFailure,
  keptHeaders,
  recordAttempt,
} from './dead-letters.js';
import { H } from './names.js';
import type { ResultStore } from './results.js';
import type {
  Backoff,
  DeadReason,
  JobHandler,
  QueueEvent,
  QueueJob,
  QueueWorker,
  QueueWorkerOptions,
  QueueWorkerStats,
} from './types.js';

const WORKER_KEYS = knownKeys<QueueWorkerOptions<unknown>>({
  concurrency: true,
  backoff: true,
  maxStalls: true,
  ackWaitMs: true,
  drainTimeoutMs: true,
  fetchExpiresMs: true,
});

/** The most `maxStalls` a worker may allow. */
const MAX_STALLS = 100;
/**
 * The shared consumer's `max_deliver`: above any job's attempts plus stalls, so the server never
 * stops delivering a job by itself (on a work-queue stream it would stay there, undelivered);
 * the queue decides when a job is dead.
 */
export const CONSUMER_MAX_DELIVER = MAX_ATTEMPTS + MAX_STALLS + 1;

/** What a queue worker needs from its queue. */
export interface QueueWorkerContext<D> {
  readonly dead: DeadLetterContext;
  readonly codec: Codec<D>;
  readonly schema: StandardSchemaV1<unknown, D> | undefined;
  readonly defaults: JobDefaults;
  readonly log: Logger;
  /** Where outcomes are stored, when the queue keeps them. */
  readonly results: ResultStore | undefined;
  /** Publishes an event (at most once). */
  emit(event: QueueEvent): void;
  /** Creates the stream worker (StreamService.createWorker with the queue's consumer). */
  createWorker(o: {
    handler: (job: Job<Uint8Array>, signal: AbortSignal) => Promise<void>;
    retryDelayMs: (n: number, job: Job<Uint8Array>, err: unknown) => number;
    concurrency: number;
    maxDeliver: number;
    ackWaitMs?: number;
    drainTimeoutMs?: number;
    fetchExpiresMs?: number;
  }): Promise<Worker<Uint8Array>>;
}

/** A job's attempts and backoff from its headers (the queue's defaults when absent or bad). */
function jobPolicy(job: Job<Uint8Array>, d: JobDefaults): { attempts: number; backoff: Backoff } {
  const n = Number(job.headers?.get(H.attempts));
  const attempts = Number.isInteger(n) && n >= 1 && n <= MAX_ATTEMPTS ? n : d.attempts;
  let backoff = d.backoff;
  try {
    backoff = checkBackoff('backoff', JSON.parse(job.headers?.get(H.backoff) ?? ''), d.backoff);
  } catch {
    // A message added by hand, without natskit's headers: the queue's default backoff.
  }
  return { attempts, backoff };
}

function dateHeader(job: Job<Uint8Array>, name: string): Date | undefined {
  const v = job.headers?.get(name);
  const d = v ? new Date(v) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

/**
 * A job's id. Every firing of a repeatable schedule lands on the same subject with the same
 * headers, so each gets `<schedule>=<stream sequence>` (`=`: a KV key cannot hold `:`, and the outcome is stored under the id): its own outcome, history and dead letter
 * (a redriven firing comes back on that id's subject). A message written by hand, without
 * natskit's headers: its subject names the job.
 */
function jobId(job: Job<Uint8Array>): string {
  const schedule = job.headers?.get(H.schedule);
  if (schedule && job.headers?.get('Nats-Scheduler')) return `${schedule}=${job.seq}`;
  return job.headers?.get(H.id) || job.subject.slice(job.subject.lastIndexOf('.') + 1);
}

/**
 * Runs a queue's handler on the stream worker: decodes and validates the payload, retries a
 * failed attempt after the job's backoff (a nak with delay), records each failure, and moves a
 * job that exhausted its attempts, threw `unrecoverable()`, cannot be decoded, or stalled too
 * often to the dead letters (then acks it).
 */
export async function startQueueWorker<D, R>(
  ctx: QueueWorkerContext<D>,
  handler: JobHandler<D, R>,
  options: QueueWorkerOptions<D> = {},
): Promise<QueueWorker> {
  checkOptionsObject('work options', options, WORKER_KEYS);
  if (typeof handler !== 'function') {
    throw new NatskitError('INVALID_OPTIONS', 'work: the handler must be a function', {
      details: { field: 'handler' },
    });
  }
  if (options.backoff !== undefined && typeof options.backoff !== 'function') {
    throw new NatskitError('INVALID_OPTIONS', 'work options.backoff must be a function', {
      details: { field: 'backoff' },
    });
  }
  const maxStalls = options.maxStalls ?? 3;
  if (!Number.isInteger(maxStalls) || maxStalls < 0 || maxStalls > MAX_STALLS) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `work options.maxStalls must be an integer from 0 to ${MAX_STALLS}, got ${describeValue(options.maxStalls)}`,
      { details: { field: 'maxStalls' } },
    );
  }
  const stats: QueueWorkerStats = { completed: 0, retried: 0, dead: 0, running: 0 };
  const jobs = new WeakMap<JsMsg, QueueJob<D>>();

  const toDead = async (job: Job<Uint8Array>, id: string, reason: DeadReason, err: unknown) => {
    await deadLetter(ctx.dead, {
      id,
      seq: job.seq,
      reason,
      error: err,
      payload: job.msg.data,
      headers: job.headers,
    });
    stats.dead++;
    ctx.log.warn({ id, reason, err, deliveries: job.deliveryCount }, 'job dead-lettered');
    ctx.emit({ type: 'dead', id, reason, ...describeFailure(err), at: new Date() });
    // The dead letter is what counts; a waiter that misses this outcome times out as pending.
    await ctx.results
      ?.dead(id, reason, describeFailure(err).error)
      .catch((e: unknown) => ctx.log.warn({ err: e, id }, 'dead outcome not stored'));
  };

  const run = async (job: Job<Uint8Array>, signal: AbortSignal): Promise<void> => {
    const id = jobId(job);
    const { attempts } = jobPolicy(job, ctx.defaults);
    if (job.deliveryCount > attempts + maxStalls) {
      const why = `delivered ${job.deliveryCount} times without finishing (attempts ${attempts}, maxStalls ${maxStalls})`;
      return toDead(job, id, 'stalled', new NatskitError('JOB_UNRECOVERABLE', why));
    }
    let data: D;
    try {
      data = await validate(ctx.schema, ctx.codec.decode(job.msg.data), { label: `job ${id}` });
    } catch (err) {
      return toDead(job, id, 'undecodable', err);
    }
    const qjob: QueueJob<D> = {
      id,
      queue: ctx.dead.names.queue,
      data,
      attempt: job.deliveryCount,
      attempts,
      headers: Object.fromEntries(
        Object.entries(keptHeaders(job.headers)).filter(([k]) => !k.startsWith(H.prefix)),
      ),
      addedAt: dateHeader(job, H.addedAt),
      runAt: dateHeader(job, H.runAt),
      schedule: job.headers?.get(H.schedule) || undefined,
      progress: async (value) => {
        assertJsonSafe(value); // INVALID_VALUE before anything is sent
        ctx.emit({ type: 'progress', id, attempt: job.deliveryCount, value, at: new Date() });
        await ctx.results?.progress(id, value);
      },
    };
    jobs.set(job.msg, qjob);
    stats.running++;
    let value: R;
    try {
      value = await handler(qjob, signal);
    } catch (err) {
      // Given back at the drain deadline: another worker runs it; record nothing.
      if (signal.aborted) throw err;
      const unrecoverable = NatskitError.is(err, 'JOB_UNRECOVERABLE');
      if (unrecoverable || job.deliveryCount >= attempts) {
        return toDead(job, id, unrecoverable ? 'unrecoverable' : 'failed', err);
      }
      const record = {
        attempt: job.deliveryCount,
        at: new Date().toISOString(),
        ...describeFailure(err),
      };
      await recordAttempt(
        ctx.dead,
        id,
        record,
        `attempt:${id}:${job.seq}:${job.deliveryCount}`,
      ).catch((e: unknown) => ctx.log.warn({ err: e, id }, 'attempt history not recorded'));
      stats.retried++;
      throw err; // the stream worker naks it after retryDelayMs
    } finally {
      stats.running--;
    }
    // Finished after the drain deadline: the job was given back and runs again elsewhere, so it
    // is not complete (the stream worker does not ack it either).
    if (signal.aborted) return;
    // Redelivered: it may have failed before; its history has no use any more.
    if (job.deliveryCount > 1) {
      await clearHistory(ctx.dead, id).catch((e: unknown) =>
        ctx.log.warn({ err: e, id }, 'attempt history not cleared'),
      );
    }
    if (ctx.results) {
      // The job completed: its effects are done, so a result that cannot be stored must not
      // run it again (that would repeat them). Logged; a waiter sees `pending`.
      await ctx.results
        .completed(id, value, job.deliveryCount)
        .catch((e: unknown) => ctx.log.warn({ err: e, id }, 'job result not stored'));
    }
    stats.completed++;
    ctx.emit({ type: 'completed', id, attempt: job.deliveryCount, at: new Date() });
  };

  /** The delay before the next attempt, announced in a `failed` event. */
  const retryDelayMs = (failures: number, job: Job<Uint8Array>, err: unknown): number => {
    const ms = nextDelay(failures, job, err);
    const id = jobs.get(job.msg)?.id ?? jobId(job);
    ctx.emit({
      type: 'failed',
      id,
      attempt: failures,
      ...describeFailure(err),
      retryInMs: ms,
      at: new Date(),
    });
    return ms;
  };

  const nextDelay = (failures: number, job: Job<Uint8Array>, err: unknown): number => {
    const byJob = backoffDelay(jobPolicy(job, ctx.defaults).backoff, failures);
    const qjob = jobs.get(job.msg);
    if (!options.backoff || !qjob) return byJob;
    try {
      const ms = options.backoff(failures, qjob, err);
      return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : byJob;
    } catch (thrown) {
      ctx.log.error(
        { err: thrown, id: qjob.id },
        'the backoff function threw; the job backoff applies',
      );
      return byJob;
    }
  };

  const worker = await ctx.createWorker({
    handler: run,
    retryDelayMs,
    concurrency: positiveInt('work options.concurrency', options.concurrency, 1),
    maxDeliver: CONSUMER_MAX_DELIVER,
    ...(options.ackWaitMs === undefined ? {} : { ackWaitMs: options.ackWaitMs }),
    ...(options.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: options.drainTimeoutMs }),
    ...(options.fetchExpiresMs === undefined ? {} : { fetchExpiresMs: options.fetchExpiresMs }),
  });
  worker.start();
  return {
    stats,
    get running() {
      return worker.running;
    },
    stop: () => worker.stop(),
    [Symbol.asyncDispose]: () => worker.stop().then(() => undefined),
  };
}

/**
 * An error for a job handler to throw when retrying cannot help (bad input, a deleted account):
 * the job goes to the dead letters at once, with reason `unrecoverable`.
 */
export function unrecoverable(message: string, cause?: unknown): NatskitError {
  return new NatskitError('JOB_UNRECOVERABLE', message, cause === undefined ? {} : { cause });
}
