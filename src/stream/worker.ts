import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import { withDeadline } from '../timing/deadline.js';

/** One message handed to a worker's handler. */
export interface Job<T> {
  readonly data: T;
  readonly subject: string;
  readonly headers: MsgHdrs | undefined;
  /** The message's stream sequence. */
  readonly seq: number;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** The raw message, for what natskit does not wrap. Do not ack it yourself. */
  readonly msg: JsMsg;
}

/** Options of a worker: which consumer, the handler, and how failures are retried. */
export interface WorkerOptions<T> {
  readonly stream: string;
  /** The durable consumer's name; several workers (processes) with one name share the work. */
  readonly consumer: string;
  readonly filterSubjects?: string | readonly string[];
  /** Runs one job. Resolve to ack; throw to nak (or term after `maxDeliver`). */
  readonly handler: (job: Job<T>, signal: AbortSignal) => Promise<void> | void;
  /** Jobs run at once. @defaultValue 1 */
  readonly concurrency?: number;
  /** The consumer's ack wait. @defaultValue 30000 */
  readonly ackWaitMs?: number;
  /** Deliveries before a failing job is terminated. @defaultValue 5 */
  readonly maxDeliver?: number;
  /** Delay of the redelivery after failure n (1-based). @defaultValue 1000 * 2^(n-1), at most 60000 */
  readonly retryDelayMs?: (deliveryCount: number) => number;
  /** How often a running job tells the server it is still working. @defaultValue ackWaitMs / 3 */
  readonly heartbeatMs?: number;
  /** How long a stop lets running jobs finish before naking them. @defaultValue 10000 */
  readonly drainTimeoutMs?: number;
  /** Long-poll time of one fetch (at least 1000); the loop ticks at least this often. @defaultValue 2000 */
  readonly fetchExpiresMs?: number;
  /** A loop that has not ticked for this long is reported stuck. @defaultValue 3 * fetchExpiresMs + 5000 */
  readonly stuckAfterMs?: number;
  /** Payload decoder; a payload that fails to decode is terminated at once. @defaultValue JSON */
  readonly decode?: (data: Uint8Array) => T;
}

/** Counters of a worker. */
export interface WorkerStats {
  processed: number;
  failed: number;
  terminated: number;
  nakedOnStop: number;
  inFlight: number;
  /** Fetches that failed in a row (0 after a good one). */
  fetchErrors: number;
  /**
   * Jobs the handler finished whose acknowledgement the server did not confirm (`ackAck`
   * failed): they may be delivered again, so handlers must be idempotent.
   */
  ackFailures: number;
}

/** The fetch loop's heartbeat, for liveness probes. */
export interface WorkerProgress {
  readonly lastTickAt: number;
  readonly msSinceTick: number;
  /** False when the loop has not ticked within `stuckAfterMs`. */
  readonly healthy: boolean;
  /** The last fetch error, while fetches keep failing. */
  readonly lastFetchError: string | undefined;
}

/** A running consumer of jobs. Dispose or stop it to drain it. */
// biome-ignore lint/correctness/noUnusedVariables: T ties a worker to its handler's job type
export interface Worker<T> extends AsyncDisposable {
  readonly name: string;
  readonly running: boolean;
  readonly stats: Readonly<WorkerStats>;
  /** Starts the fetch loop. */
  start(): void;
  /** Stops fetching, lets running jobs finish until the drain deadline, naks the rest. */
  stop(): Promise<{ finished: number; naked: number }>;
  progress(): WorkerProgress;
}

interface Run {
  readonly msg: JsMsg;
  readonly ac: AbortController;
  settled: boolean;
  done: Promise<void>;
}

const defaultDelay = (n: number) => Math.min(60_000, 1_000 * 2 ** (n - 1));
const jsonDecode = (data: Uint8Array) => JSON.parse(new TextDecoder().decode(data));

/** The client's pull consumer the worker fetches from. */
export type PullConsumer = Awaited<ReturnType<JetStreamClient['consumers']['get']>>;

/** @internal created by {@link createWorker}. */
export class JobWorker<T> implements Worker<T> {
  readonly name: string;
  readonly stats: WorkerStats = {
    processed: 0,
    failed: 0,
    terminated: 0,
    nakedOnStop: 0,
    inFlight: 0,
    fetchErrors: 0,
    ackFailures: 0,
  };
  readonly #o: WorkerOptions<T>;
  readonly #consumer: PullConsumer;
  readonly #log: Logger;
  readonly #concurrency: number;
  readonly #maxDeliver: number;
  readonly #heartbeatMs: number;
  readonly #fetchExpiresMs: number;
  readonly #stuckAfterMs: number;
  readonly #inflight = new Set<Run>();
  readonly #stopAbort = new AbortController();
  readonly #onStopped: () => void;
  #slotFreed: () => void = () => undefined;
  #loop: Promise<void> | undefined;
  #stopping: Promise<{ finished: number; naked: number }> | undefined;
  #lastTickAt = Date.now();
  #lastFetchError: string | undefined;
  #blocked: Promise<void> | undefined;

  /** @internal test seam: the fetch loop's next await never settles, as a stuck loop's would. */
  [Symbol.for('natskit.test.blockFetchLoop')](): void {
    this.#blocked = new Promise<void>(() => undefined);
  }

  constructor(
    o: WorkerOptions<T>,
    consumer: PullConsumer,
    ackWaitMs: number,
    maxDeliver: number,
    concurrency: number,
    logger: Logger,
    onStopped: () => void,
  ) {
    this.#o = o;
    this.name = `${o.stream}/${o.consumer}`;
    this.#consumer = consumer;
    this.#concurrency = concurrency;
    this.#maxDeliver = maxDeliver;
    this.#heartbeatMs = o.heartbeatMs ?? Math.max(1, Math.floor(ackWaitMs / 3));
    this.#fetchExpiresMs = o.fetchExpiresMs ?? 2_000;
    this.#stuckAfterMs = o.stuckAfterMs ?? 3 * this.#fetchExpiresMs + 5_000;
    this.#log = logger.child({ worker: this.name });
    this.#onStopped = onStopped;
  }

  get running(): boolean {
    return this.#loop !== undefined && this.#stopping === undefined;
  }

  progress(): WorkerProgress {
    const msSinceTick = Date.now() - this.#lastTickAt;
    return {
      lastTickAt: this.#lastTickAt,
      msSinceTick,
      healthy: msSinceTick <= this.#stuckAfterMs,
      lastFetchError: this.#lastFetchError,
    };
  }

  start(): void {
    if (this.#stopping !== undefined)
      throw new NatskitError('INVALID_STATE', `worker ${this.name} is stopped`);
    this.#lastTickAt = Date.now();
    this.#loop ??= this.#fetchLoop();
  }

  async #fetchLoop(): Promise<void> {
    const stop = this.#stopAbort.signal;
    while (!stop.aborted) {
      this.#lastTickAt = Date.now();
      const free = this.#concurrency - this.#inflight.size;
      if (free <= 0) {
        // Wait for a slot, but tick at least every fetch period: a busy worker is not stuck.
        await Promise.race([
          new Promise<void>((resolve) => {
            this.#slotFreed = resolve;
          }),
          sleep(this.#fetchExpiresMs, undefined, { signal: stop }).catch(() => undefined),
        ]);
        continue;
      }
      try {
        if (this.#blocked !== undefined) await this.#blocked; // test seam: a fetch that never returns
        const batch = await this.#consumer.fetch({
          max_messages: free,
          expires: this.#fetchExpiresMs,
        });
        for await (const msg of batch) {
          if (stop.aborted)
            msg.nak(); // arrived while stopping: give it straight back
          else this.#dispatch(msg);
        }
        this.stats.fetchErrors = 0;
        this.#lastFetchError = undefined;
      } catch (err) {
        if (stop.aborted) break;
        this.stats.fetchErrors++;
        this.#lastFetchError = err instanceof Error ? err.message : String(err);
        this.#log.warn({ err, failedInARow: this.stats.fetchErrors }, 'fetch failed; retrying');
        await sleep(500, undefined, { signal: stop }).catch(() => undefined);
      }
    }
  }

  #dispatch(msg: JsMsg): void {
    const run: Run = { msg, ac: new AbortController(), settled: false, done: Promise.resolve() };
    this.#inflight.add(run);
    this.stats.inFlight = this.#inflight.size;
    run.done = this.#run(run).finally(() => {
      this.#inflight.delete(run);
      this.stats.inFlight = this.#inflight.size;
      this.#slotFreed();
    });
  }

  async #run(run: Run): Promise<void> {
    const { msg } = run;
    let data: T;
    try {
      data = (this.#o.decode ?? jsonDecode)(msg.data) as T;
    } catch (err) {
      run.settled = true;
      msg.term('payload could not be decoded');
      this.stats.terminated++;
      this.#log.error({ err, seq: msg.seq }, 'job payload could not be decoded; terminated');
      return;
    }
    const job: Job<T> = {
      data,
      subject: msg.subject,
      headers: msg.headers,
      seq: msg.seq,
      deliveryCount: msg.info.deliveryCount,
      msg,
    };
    const heartbeat = setInterval(() => {
      if (!run.settled) msg.working();
    }, this.#heartbeatMs);
    try {
      await this.#o.handler(job, run.ac.signal);
      if (run.settled) return; // naked at the drain deadline: never ack after that
      run.settled = true;
      this.stats.processed++;
      await msg.ackAck().catch((err: unknown) => {
        // The job ran; the server did not confirm the ack (its consumer gone, a lost reply):
        // it may be delivered again.
        this.stats.ackFailures++;
        this.#log.warn({ err, seq: job.seq }, 'ack not confirmed; the job may be delivered again');
      });
    } catch (err) {
      if (run.settled) return;
      run.settled = true;
      if (job.deliveryCount >= this.#maxDeliver) {
        msg.term(`failed ${job.deliveryCount} times`);
        this.stats.terminated++;
        this.#log.error(
          { err, seq: job.seq, deliveries: job.deliveryCount },
          'job failed on its last delivery; terminated',
        );
      } else {
        const delay = (this.#o.retryDelayMs ?? defaultDelay)(job.deliveryCount);
        msg.nak(delay);
        this.stats.failed++;
        this.#log.warn(
          { err, seq: job.seq, deliveries: job.deliveryCount, retryInMs: delay },
          'job failed; will retry',
        );
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  stop(): Promise<{ finished: number; naked: number }> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<{ finished: number; naked: number }> {
    this.#stopAbort.abort();
    this.#slotFreed();
    const drainMs = this.#o.drainTimeoutMs ?? 10_000;
    const before = this.stats.processed + this.stats.failed + this.stats.terminated;
    await withDeadline(Promise.all([...this.#inflight].map((r) => r.done)), drainMs);
    let naked = 0;
    for (const run of this.#inflight) {
      if (run.settled) continue;
      run.settled = true;
      run.ac.abort(new NatskitError('ABORTED', `worker ${this.name} is stopping`));
      run.msg.nak(); // no delay: another worker takes it at once
      naked++;
    }
    this.stats.nakedOnStop += naked;
    // The loop ends within one fetch period; naks above are already on their way.
    // Bounded: a stuck loop must not hang the shutdown.
    await withDeadline(
      this.#loop?.catch(() => undefined) ?? Promise.resolve(),
      this.#fetchExpiresMs + 1_000,
    );
    this.#onStopped();
    const finished = this.stats.processed + this.stats.failed + this.stats.terminated - before;
    this.#log.info({ finished, naked }, 'worker stopped');
    return { finished, naked };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
