import { checkOptionsObject, describeValue, knownKeys, positiveInt } from '../config/validate.js';
import { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { resolveCodec } from '../kv/codec.js';
import { KVStoreService } from '../kv/kv-store-service.js';
import { createToken, type ServiceRegistration, type Token } from '../lifecycle/service.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { StreamService } from '../stream/stream-service.js';
import { checkAttempts, checkBackoff } from './add-options.js';
import { queueNames } from './names.js';
import { QueueService, type ResolvedQueue } from './queue-service.js';
import { checkResults } from './results.js';
import type { Backoff, Queue, QueueOptions } from './types.js';

/** A queue's registration for `services`, with the token of the running queue. */
export type QueueRegistration<D, R = unknown> = ServiceRegistration<Queue<D, R>> & {
  readonly token: Token<Queue<D, R>>;
};

const QUEUE_KEYS = knownKeys<QueueOptions<unknown>>({
  name: true,
  schema: true,
  codec: true,
  attempts: true,
  backoff: true,
  dedupeWindowMs: true,
  replicas: true,
  results: true,
});

/** The defaults of {@link QueueOptions}. */
export const QUEUE_DEFAULTS = Object.freeze({
  attempts: 3,
  backoff: Object.freeze({ type: 'exponential', delayMs: 1_000, maxDelayMs: 60_000 }) as Backoff,
  dedupeWindowMs: 120_000,
  replicas: 1,
});

function resolve<D>(options: QueueOptions<D>): ResolvedQueue<D> {
  checkOptionsObject('queue', options, QUEUE_KEYS);
  if (options === undefined) {
    throw new NatskitError('INVALID_OPTIONS', 'queue needs options: { name }', {
      details: { field: 'name' },
    });
  }
  const names = queueNames(options.name);
  const schema = options.schema;
  if (schema !== undefined && typeof schema?.['~standard']?.validate !== 'function') {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `queue.schema must be a Standard Schema (zod, valibot, arktype...), got ${describeValue(schema)}`,
      { details: { field: 'schema' } },
    );
  }
  const window = options.dedupeWindowMs ?? QUEUE_DEFAULTS.dedupeWindowMs;
  if (typeof window !== 'number' || !Number.isInteger(window) || window < 1_000) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `queue.dedupeWindowMs must be an integer of milliseconds >= 1000, got ${describeValue(window)}`,
      { details: { field: 'dedupeWindowMs' } },
    );
  }
  return {
    names,
    codec: resolveCodec(options.codec),
    schema,
    defaults: {
      attempts: checkAttempts('queue.attempts', options.attempts, QUEUE_DEFAULTS.attempts),
      backoff: checkBackoff('queue.backoff', options.backoff, QUEUE_DEFAULTS.backoff),
    },
    dedupeWindowMs: window,
    replicas: positiveInt('queue.replicas', options.replicas, QUEUE_DEFAULTS.replicas),
    results: checkResults(options.results),
  };
}

/**
 * Declares a job queue, registered with the ServiceManager like the other built-ins: it starts
 * after StreamService (ensuring its streams) and stops its workers before it. One codec and one
 * schema serve both ends, so the payload type of `add` is the type the handler receives.
 * Options are checked here, at declaration.
 *
 * @example
 * ```ts
 * const emails = queue<{ to: string }, { messageId: string }>({ name: 'emails', schema: Email, results: true });
 * await using app = await ServiceManager.start({ nats, services: [emails] });
 * const q = app.get(emails.token);
 * await q.work(async (job) => ({ messageId: await send(job.data.to) }));
 * const { id } = await q.add({ to: 'a@example.com' }, { jobId: 'welcome-42', delayMs: 60_000 });
 * const outcome = await q.result(id, { timeoutMs: 120_000 }); // { state: 'completed', value }
 * ```
 */
export function queue<D = unknown, R = unknown>(options: QueueOptions<D>): QueueRegistration<D, R> {
  const resolved = resolve(options);
  const token = createToken<Queue<D, R>>(`queue:${resolved.names.queue}`);
  return {
    token,
    useFactory: (ctx) =>
      new QueueService<D, R>(
        resolved,
        ctx.get(StreamService),
        ctx.get(ConnectionService),
        ctx.get(LOGGER),
        resolved.results ? ctx.get(KVStoreService) : undefined,
      ),
    dependsOn: [StreamService, ConnectionService, ...(resolved.results ? [KVStoreService] : [])],
  };
}
