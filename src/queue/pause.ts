import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { describeValue } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { ApiCode, isApiError } from '../jetstream/api-errors.js';
import type { QueueNames } from './names.js';
import { CONSUMER_MAX_DELIVER } from './queue-worker.js';

/** "Until resumed": the server needs a time; a century is as good as forever for a queue. */
const FOREVER_MS = 100 * 365 * 24 * 3_600_000;

/**
 * Makes sure the shared consumer exists, so a queue can be paused before any worker started:
 * created with what a worker with default options asks for (a worker later updates what it
 * asks differently; an update keeps the pause).
 */
async function ensureConsumer(jsm: JetStreamManager, n: QueueNames): Promise<void> {
  try {
    await jsm.consumers.info(n.stream, n.consumer);
  } catch (err) {
    if (!isApiError(err, ApiCode.ConsumerNotFound)) throw err;
    await jsm.consumers.add(n.stream, {
      durable_name: n.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(30_000),
      max_deliver: CONSUMER_MAX_DELIVER,
      filter_subject: n.readyAll,
    });
  }
}

/** Pauses the queue's consumer until `until` (or until resumed). */
export async function pauseQueue(
  jsm: JetStreamManager,
  n: QueueNames,
  until?: Date,
): Promise<void> {
  if (until !== undefined && (!(until instanceof Date) || Number.isNaN(until.getTime()))) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `pause: until must be a valid Date, got ${describeValue(until)}`,
      {
        details: { field: 'until' },
      },
    );
  }
  await ensureConsumer(jsm, n);
  await jsm.consumers.pause(n.stream, n.consumer, until ?? new Date(Date.now() + FOREVER_MS));
}

/** Resumes the queue's consumer (nothing to do when it does not exist yet). */
export async function resumeQueue(jsm: JetStreamManager, n: QueueNames): Promise<void> {
  try {
    await jsm.consumers.resume(n.stream, n.consumer);
  } catch (err) {
    if (!isApiError(err, ApiCode.ConsumerNotFound)) throw err;
  }
}

/** Whether the queue's consumer is paused now, and until when. */
export async function pausedState(
  jsm: JetStreamManager,
  n: QueueNames,
): Promise<{ paused: boolean; until: Date | undefined }> {
  try {
    const info = await jsm.consumers.info(n.stream, n.consumer);
    const until = info.config.pause_until ? new Date(info.config.pause_until) : undefined;
    return info.paused === true ? { paused: true, until } : { paused: false, until: undefined };
  } catch (err) {
    if (isApiError(err, ApiCode.ConsumerNotFound)) return { paused: false, until: undefined };
    throw err;
  }
}
