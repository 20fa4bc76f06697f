import { RetentionPolicy, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { ConnectionService } from '../connection/connection-service.js';
import { NatskitAggregateError, NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import type { Codec } from '../kv/codec.js';
import type { KVStoreService } from '../kv/kv-store-service.js';
import type { Service } from '../lifecycle/service.js';
import type { StandardSchemaV1 } from '../schema/standard-schema.js';
import type { StreamService } from '../stream/stream-service.js';
import type { JobDefaults, PlanContext } from './add-options.js';
import { type DeadLetterContext, deadIds, listDead, MAX_HISTORY, redrive } from './dead-letters.js';
import { emit, listen } from './events.js';
import { countJobs, getJob, type InspectContext } from './inspect.js';
import { checkJobId, type QueueNames } from './names.js';
import { pausedState, pauseQueue, resumeQueue } from './pause.js';
import { addBulk, addOne } from './producer.js';
import { startQueueWorker } from './queue-worker.js';
import { type ResolvedResults, ResultStore } from './results.js';
import { listSchedules, putSchedule, removeSchedule } from './schedules.js';
import type {
  AddedJob,
  AddOptions,
  BulkJob,
  DeadJob,
  EventsOptions,
  JobHandler,
  JobInfo,
  JobOutcome,
  Queue,
  QueueCounts,
  QueueEvent,
  QueueEvents,
  QueueWorker,
  QueueWorkerOptions,
  ResultOptions,
  ScheduledJob,
  ScheduleInfo,
  ScheduleOptions,
} from './types.js';

/** A queue's options once validated. */
export interface ResolvedQueue<D> {
  readonly results: ResolvedResults | undefined;
  readonly names: QueueNames;
  readonly codec: Codec<D>;
  readonly schema: StandardSchemaV1<unknown, D> | undefined;
  readonly defaults: JobDefaults;
  readonly dedupeWindowMs: number;
  readonly replicas: number;
}

/**
 * A queue as a service: on start it ensures its two streams (the work queue, with message
 * schedules and atomic publish where the server has them, and the dead letters); on stop it
 * stops the workers it started, before StreamService stops.
 * @internal created by {@link queue}.
 */
export class QueueService<D, R = unknown> implements Queue<D, R>, Service {
  readonly name: string;
  readonly #q: ResolvedQueue<D>;
  readonly #streams: StreamService;
  readonly #connection: ConnectionService;
  readonly #log: Logger;
  readonly #workers = new Set<QueueWorker>();
  readonly #dead: DeadLetterContext;
  readonly #results: ResultStore | undefined;
  readonly #listeners = new Set<QueueEvents>();
  #started = false;

  constructor(
    q: ResolvedQueue<D>,
    streams: StreamService,
    connection: ConnectionService,
    logger: Logger,
    kv: KVStoreService | undefined,
  ) {
    this.#q = q;
    this.name = q.names.queue;
    this.#streams = streams;
    this.#connection = connection;
    this.#log = logger.child({ service: 'queue', queue: q.names.queue });
    this.#dead = {
      names: q.names,
      jsm: () => streams.jsm,
      publish: (subject, data, o) => streams.publish(subject, data, o),
    };
    this.#results =
      q.results && kv ? new ResultStore(q.names.queue, kv, q.results, q.replicas) : undefined;
  }

  async start(): Promise<void> {
    const { names, replicas } = this.#q;
    const features = this.#connection.capabilities.features;
    const main: Partial<StreamConfig> & { name: string } = {
      name: names.stream,
      subjects: [names.readyAll, names.delayed('*'), names.schedule('*')],
      retention: RetentionPolicy.Workqueue,
      duplicate_window: nanos(this.#q.dedupeWindowMs),
      num_replicas: replicas,
      // Asked only where the server has them: an older server would ignore them silently, and
      // ensureStream refuses that. Delayed adds check the capability themselves.
      ...(features.msgSchedules ? { allow_msg_schedules: true } : {}),
      ...(features.atomicBatch ? { allow_atomic: true } : {}),
    };
    await this.#streams.ensureStream(main);
    await this.#streams.ensureStream({
      name: names.deadStream,
      subjects: [names.dead('*'), names.attempts('*')],
      max_msgs_per_subject: MAX_HISTORY,
      allow_direct: true,
      num_replicas: replicas,
    });
    await this.#results?.open();
    this.#started = true;
  }

  #plan(): PlanContext<D> {
    if (!this.#started)
      throw new NatskitError('INVALID_STATE', `queue ${this.name} is not started`);
    return {
      names: this.#q.names,
      codec: this.#q.codec,
      schema: this.#q.schema,
      defaults: this.#q.defaults,
      maxPayload: this.#connection.nc.info?.max_payload ?? Number.POSITIVE_INFINITY,
      requireSchedules: () =>
        this.#connection.requireFeature('msgSchedules', `a delayed job on queue ${this.name}`),
    };
  }

  async add(data: D, options?: AddOptions): Promise<AddedJob> {
    return addOne(this.#plan(), this.#streams, data, options);
  }

  async addBulk(jobs: readonly BulkJob<D>[]): Promise<AddedJob[]> {
    const plan = this.#plan();
    return addBulk(
      plan,
      {
        streams: this.#streams,
        nc: this.#connection.nc,
        atomic: this.#connection.capabilities.features.atomicBatch,
        timeoutMs: this.#connection.requestTimeoutMs,
        resilient: (send) => this.#connection.resilient(send),
      },
      jobs,
    );
  }

  async schedule(name: string, options: ScheduleOptions<D>): Promise<ScheduledJob> {
    const plan = this.#plan();
    return putSchedule(
      {
        ...plan,
        jsm: this.#streams.jsm,
        requireSchedules: () =>
          this.#connection.requireFeature(
            'repeatSchedules',
            `a repeatable job on queue ${this.name}`,
          ),
        publish: (subject, data, o) => this.#streams.publish(subject, data, o),
      },
      name,
      options,
    );
  }

  async unschedule(name: string): Promise<boolean> {
    this.#plan();
    return removeSchedule(this.#streams.jsm, this.#q.names, name);
  }

  async schedules(): Promise<ScheduleInfo<D>[]> {
    this.#plan();
    return listSchedules(this.#streams.jsm, this.#q.names, this.#q.codec);
  }

  async work(handler: JobHandler<D, R>, options?: QueueWorkerOptions<D>): Promise<QueueWorker> {
    this.#plan();
    const { names } = this.#q;
    const worker = await startQueueWorker(
      {
        dead: this.#dead,
        codec: this.#q.codec,
        schema: this.#q.schema,
        defaults: this.#q.defaults,
        log: this.#log,
        results: this.#results,
        emit: (event) => emit(this.#connection.nc, this.#q.names, event, this.#log),
        createWorker: (o) =>
          this.#streams.createWorker<Uint8Array>({
            ...o,
            stream: names.stream,
            consumer: names.consumer,
            filterSubjects: names.readyAll,
            decode: (bytes) => bytes,
          }),
      },
      handler,
      options,
    );
    this.#workers.add(worker);
    return worker;
  }

  async deadJobs(): Promise<DeadJob<D>[]> {
    this.#plan();
    return listDead(this.#dead, this.#q.codec);
  }

  async redrive(id: string): Promise<boolean> {
    this.#plan();
    checkJobId('id', id);
    // Its dead outcome no longer holds: forgotten before the job is back, so the new outcome
    // cannot be the one forgotten.
    const results = this.#results;
    return redrive(this.#dead, id, results ? () => results.forget(id) : undefined);
  }

  async redriveAll(): Promise<number> {
    this.#plan();
    let n = 0;
    for (const id of await deadIds(this.#dead)) if (await this.redrive(id)) n++;
    return n;
  }

  async result(id: string, options?: ResultOptions): Promise<JobOutcome<R>> {
    this.#plan();
    checkJobId('id', id);
    if (!this.#results) {
      throw new NatskitError(
        'INVALID_STATE',
        `queue ${this.name} stores no results: declare it with \`results: true\``,
      );
    }
    return this.#results.wait<R>(id, options);
  }

  async counts(): Promise<QueueCounts> {
    this.#plan();
    return countJobs(this.#inspect());
  }

  async getJob(id: string): Promise<JobInfo<D, R>> {
    this.#plan();
    checkJobId('id', id);
    return getJob<D, R>(this.#inspect(), id);
  }

  async pause(until?: Date): Promise<void> {
    this.#plan();
    this.#connection.requireFeature('consumerPause', `pausing queue ${this.name}`);
    await pauseQueue(this.#streams.jsm, this.#q.names, until);
  }

  async resume(): Promise<void> {
    this.#plan();
    this.#connection.requireFeature('consumerPause', `resuming queue ${this.name}`);
    await resumeQueue(this.#streams.jsm, this.#q.names);
  }

  events(listener: (event: QueueEvent) => void, options?: EventsOptions): QueueEvents {
    this.#plan();
    const sub = listen(this.#connection.nc, this.#q.names, listener, options, this.#log, () =>
      this.#listeners.delete(sub),
    );
    this.#listeners.add(sub);
    return sub;
  }

  async paused(): Promise<{ readonly paused: boolean; readonly until: Date | undefined }> {
    this.#plan();
    return pausedState(this.#streams.jsm, this.#q.names);
  }

  #inspect(): InspectContext<D> {
    return {
      names: this.#q.names,
      jsm: this.#streams.jsm,
      dead: this.#dead,
      codec: this.#q.codec,
      results: this.#results,
    };
  }

  async stop(): Promise<void> {
    for (const l of [...this.#listeners]) l.close();
    const settled = await Promise.allSettled([...this.#workers].map((w) => w.stop()));
    this.#workers.clear();
    const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    if (errors.length > 0) {
      throw new NatskitAggregateError(
        'SERVICE_STOP_FAILED',
        `queue ${this.name}: ${errors.length} worker(s) failed to stop: ${errors.map(describeThrown).join('; ')}`,
        errors,
      );
    }
  }
}
