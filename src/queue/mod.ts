/**
 * Job queues on JetStream: the public face of `src/queue`.
 * @packageDocumentation
 */
export { QUEUE_DEFAULTS, type QueueRegistration, queue } from './queue.js';
export { unrecoverable } from './queue-worker.js';
export type {
  AddedJob,
  AddOptions,
  AttemptRecord,
  Backoff,
  BulkJob,
  DeadJob,
  DeadReason,
  JobHandler,
  Queue,
  QueueCounts,
  QueueJob,
  QueueOptions,
  QueueWorker,
  QueueWorkerOptions,
  QueueWorkerStats,
} from './types.js';
