import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  checkMs,
  checkOptionsObject,
  describeValue,
  knownKeys,
  positiveInt,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { ApiCode, isApiError } from '../jetstream/api-errors.js';
import { checkJetStreamName } from '../jetstream/config-errors.js';
import type { Metrics } from '../metrics/metrics.js';
import { sameValue } from './stream-config.js';
import { JobWorker, type Worker, type WorkerOptions } from './worker.js';

const IMMUTABLE_CONSUMER = ['ack_policy', 'deliver_policy'] as const;

/** Creates or updates the durable consumer; incompatible differences fail. */
async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  want: Partial<ConsumerConfig>,
): Promise<ConsumerInfo> {
  let existing: ConsumerInfo | undefined;
  try {
    existing = await jsm.consumers.info(stream, want.durable_name ?? '');
  } catch (err) {
    if (isApiError(err, ApiCode.StreamNotFound)) {
      throw new NatskitError('STREAM_NOT_FOUND', `stream ${stream} does not exist`, {
        cause: err,
        details: { stream },
      });
    }
    if (!isApiError(err, ApiCode.ConsumerNotFound)) throw err;
  }
  if (!existing) return await jsm.consumers.add(stream, want);
  const cfg = existing.config as unknown as Record<string, unknown>;
  const conflicts = IMMUTABLE_CONSUMER.filter(
    (f) => want[f] !== undefined && !sameValue(cfg[f], want[f]),
  );
  if (conflicts.length > 0) {
    throw new NatskitError(
      'CONSUMER_CONFIG_CONFLICT',
      `consumer ${want.durable_name} on ${stream} exists with ${conflicts.map((f) => `${f}=${JSON.stringify(cfg[f])}`).join(', ')}`,
      { details: { stream, consumer: want.durable_name, conflicts } },
    );
  }
  const changed = Object.entries(want).filter(([k, v]) => !sameValue(cfg[k], v));
  if (changed.length === 0) return existing;
  return await jsm.consumers.update(stream, want.durable_name ?? '', Object.fromEntries(changed));
}

/** What creating a worker needs from StreamService. */
export interface WorkerContext {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  readonly onStopped: () => void;
  readonly metrics: Metrics;
}

const WORKER_KEYS = knownKeys<WorkerOptions<unknown>>({
  stream: true,
  consumer: true,
  filterSubjects: true,
  handler: true,
  concurrency: true,
  ackWaitMs: true,
  maxDeliver: true,
  retryDelayMs: true,
  heartbeatMs: true,
  drainTimeoutMs: true,
  fetchExpiresMs: true,
  stuckAfterMs: true,
  decode: true,
});

/**
 * Validates the options, creates or updates the durable consumer, and returns the worker (not
 * started yet).
 * @internal used by StreamService.createWorker.
 */
export async function createWorker<T>(
  ctx: WorkerContext,
  options: WorkerOptions<T>,
): Promise<Worker<T>> {
  checkOptionsObject('worker', options, WORKER_KEYS);
  // Before any server call: the client would throw its own InvalidNameError.
  checkJetStreamName('worker.stream', options.stream);
  checkJetStreamName('worker.consumer', options.consumer);
  const concurrency = positiveInt('worker.concurrency', options.concurrency, 1);
  if (typeof options.handler !== 'function')
    throw new NatskitError(
      'INVALID_OPTIONS',
      `worker.handler must be a function, got ${describeValue(options.handler)}`,
    );
  for (const f of [
    'ackWaitMs',
    'heartbeatMs',
    'drainTimeoutMs',
    'fetchExpiresMs',
    'stuckAfterMs',
  ] as const) {
    checkMs(`worker.${f}`, options[f]);
  }
  if (options.fetchExpiresMs !== undefined && options.fetchExpiresMs < 1_000) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `worker.fetchExpiresMs must be at least 1000, got ${describeValue(options.fetchExpiresMs)}`,
    );
  }
  const maxDeliver = positiveInt('worker.maxDeliver', options.maxDeliver, 5);
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  const filters = options.filterSubjects === undefined ? [] : [options.filterSubjects].flat();
  const config: Partial<ConsumerConfig> = {
    durable_name: options.consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    max_deliver: maxDeliver,
    ...(filters.length === 1 ? { filter_subject: filters[0] } : {}),
    ...(filters.length > 1 ? { filter_subjects: filters as string[] } : {}),
  };
  await ensureConsumer(ctx.jsm, options.stream, config);
  return new JobWorker(options, {
    nc: ctx.nc,
    apiPrefix: ctx.jsm.getOptions().apiPrefix ?? '$JS.API',
    requestTimeoutMs: ctx.requestTimeoutMs,
    ackWaitMs,
    maxDeliver,
    concurrency,
    logger: ctx.logger,
    onStopped: ctx.onStopped,
    metrics: ctx.metrics.enabled ? ctx.metrics.worker(options.stream, options.consumer) : undefined,
  });
}
