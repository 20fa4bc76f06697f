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
  EventsOptions,
  JobHandler,
  JobInfo,
  JobOutcome,
  JobState,
  Queue,
  QueueCounts,
  QueueEvent,
  QueueEvents,
  QueueJob,
  QueueOptions,
  QueueResultOptions,
  QueueWorker,
  QueueWorkerOptions,
  QueueWorkerStats,
  ResultOptions,
  ScheduledJob,
  ScheduleInfo,
  ScheduleOptions,
} from './types.js';
