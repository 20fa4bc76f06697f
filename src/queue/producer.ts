import type { NatsConnection } from '@nats-io/transport-node';
import { NatskitAggregateError, NatskitError } from '../errors/natskit-error.js';
import {
  type BatchMessage,
  MAX_BATCH_MESSAGES,
  publishAtomicBatch,
} from '../jetstream/atomic-batch.js';
import type { StreamService } from '../stream/stream-service.js';
import { type PlanContext, type PlannedJob, planJob } from './add-options.js';
import type { AddedJob, AddOptions, BulkJob } from './types.js';

/** The server refused a batch because a message id in it was already stored. */
const BATCH_DUPLICATE_MSG_ID = 10201;

/** Adds one job through the stream service's publish edge (retries, error mapping). */
export async function addOne<D>(
  plan: PlanContext<D>,
  streams: StreamService,
  data: D,
  options: AddOptions | undefined,
): Promise<AddedJob> {
  const job = await planJob(plan, data, options, Date.now());
  const ack = await streams.publish(job.subject, job.data, {
    msgId: job.id,
    headers: job.headers,
    ...(options?.signal ? { signal: options.signal } : {}),
  });
  return { id: job.id, duplicate: ack.duplicate, runAt: job.runAt };
}

/** What a bulk add needs besides the plan. */
export interface BulkContext {
  readonly streams: StreamService;
  readonly nc: NatsConnection;
  /** The server has atomic batches (and the stream was created with `allow_atomic`). */
  readonly atomic: boolean;
  readonly timeoutMs: number;
  resilient<R>(send: () => Promise<R>): Promise<R>;
}

/** Plans every job first: one bad job, or an id twice, and nothing is sent. */
async function planAll<D>(
  plan: PlanContext<D>,
  jobs: readonly BulkJob<D>[],
): Promise<PlannedJob[]> {
  if (!Array.isArray(jobs)) {
    throw new NatskitError('INVALID_OPTIONS', 'addBulk needs an array of { data, options? }', {
      details: { field: 'jobs' },
    });
  }
  if (jobs.length > MAX_BATCH_MESSAGES) {
    throw new NatskitError(
      'TX_TOO_LARGE',
      `addBulk takes at most ${MAX_BATCH_MESSAGES} jobs (one atomic batch), got ${jobs.length}`,
      { details: { count: jobs.length, max: MAX_BATCH_MESSAGES } },
    );
  }
  const now = Date.now();
  const planned: PlannedJob[] = [];
  const ids = new Set<string>();
  for (const [i, j] of jobs.entries()) {
    if (typeof j !== 'object' || j === null || !('data' in j)) {
      throw new NatskitError('INVALID_OPTIONS', `jobs[${i}] must be { data, options? }`, {
        details: { field: `jobs[${i}]` },
      });
    }
    const p = await planJob(plan, j.data, j.options, now).catch((err: unknown) => {
      if (NatskitError.is(err)) {
        throw new NatskitError(err.code, `jobs[${i}]: ${err.message}`, {
          cause: err,
          details: { ...err.details, index: i },
        });
      }
      throw err;
    });
    if (ids.has(p.id)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `jobs[${i}].options.jobId ${p.id} is in the batch twice`,
        {
          details: { field: `jobs[${i}].options.jobId`, index: i },
        },
      );
    }
    ids.add(p.id);
    planned.push(p);
  }
  return planned;
}

/**
 * Adds jobs: one atomic batch where the server has them (all or none), else one publish each.
 * Delayed and immediate jobs may be mixed.
 */
export async function addBulk<D>(
  plan: PlanContext<D>,
  ctx: BulkContext,
  jobs: readonly BulkJob<D>[],
): Promise<AddedJob[]> {
  const planned = await planAll(plan, jobs);
  if (planned.length === 0) return [];
  if (ctx.atomic) {
    const messages: BatchMessage[] = planned.map((p) => ({
      subject: p.subject,
      data: p.data,
      headers: { ...p.headers, 'Nats-Msg-Id': p.id },
    }));
    try {
      await publishAtomicBatch(ctx.nc, messages, {
        timeoutMs: ctx.timeoutMs,
        resilient: (send) => ctx.resilient(send),
      });
    } catch (err) {
      if (
        NatskitError.is(err, 'PUBLISH_FAILED') &&
        err.details?.apiCode === BATCH_DUPLICATE_MSG_ID
      ) {
        throw new NatskitError(
          'JOB_DUPLICATE',
          `addBulk on queue ${plan.names.queue}: a job id is already in the duplicate window; nothing was added`,
          { cause: err, details: { ids: planned.map((p) => p.id) } },
        );
      }
      throw err;
    }
    return planned.map((p) => ({ id: p.id, duplicate: false, runAt: p.runAt }));
  }
  const settled = await Promise.allSettled(
    planned.map((p) => ctx.streams.publish(p.subject, p.data, { msgId: p.id, headers: p.headers })),
  );
  const failed = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  const added = planned.flatMap((p, i) => {
    const r = settled[i];
    return r?.status === 'fulfilled'
      ? [{ id: p.id, duplicate: r.value.duplicate, runAt: p.runAt }]
      : [];
  });
  if (failed.length > 0) {
    throw new NatskitAggregateError(
      'PUBLISH_FAILED',
      `addBulk on queue ${plan.names.queue}: ${failed.length} of ${planned.length} jobs were not added (this server has no atomic batch)`,
      failed,
      { details: { added: added.map((a) => a.id) } },
    );
  }
  return added;
}
