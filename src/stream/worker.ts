import { performance } from 'node:perf_hooks';
import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import type { WorkerMetrics } from '../metrics/metrics.js';
import { withDeadline } from '../timing/deadline.js';
import type { JobMsg } from './job-msg.js';
import { PullLoop } from './pull-loop.js';

export type { Job, Worker, WorkerOptions, WorkerProgress, WorkerStats } from './worker-types.js';

import type { Job, Worker, WorkerOptions, WorkerProgress, WorkerStats } from './worker-types.js';

// One job being handled.
interface Run {
  readonly msg: JsMsg;
  readonly ac: AbortController;
  settled: boolean;
  done: Promise<void>;
  /** When the server last heard this job is alive (its delivery, or the last `working()`). */
  aliveAt: number;
}

const defaultDelay = (n: number) => Math.min(60_000, 1_000 * 2 ** (n - 1));
const decoder = new TextDecoder();
const jsonDecode = (data: Uint8Array) => JSON.parse(decoder.decode(data));

/** Where a worker pulls from, and its settings once validated. */
export interface WorkerSetup {
  readonly nc: NatsConnection;
  readonly apiPrefix: string;
  readonly requestTimeoutMs: number;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly concurrency: number;
  readonly logger: Logger;
  readonly onStopped: () => void;
  /** The worker's instruments; undefined when metrics are off (nothing is timed then). */
  readonly metrics: WorkerMetrics | undefined;
}

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
  readonly #setup: WorkerSetup;
  readonly #log: Logger;
  readonly #concurrency: number;
  readonly #heartbeatMs: number;
  readonly #fetchExpiresMs: number;
  readonly #stuckAfterMs: number;
  readonly #inflight = new Set<Run>();
  /** Acks of finished jobs whose confirmation is on its way. */
  readonly #acking = new Set<Promise<void>>();
  #pull: PullLoop | undefined;
  #busyTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #fillQueued = false;
  #stopping: Promise<{ finished: number; naked: number }> | undefined;
  /** When the loop last made progress, on the monotonic clock (elapsed time only). */
  #lastTickAt = performance.now();
  #lastFetchError: string | undefined;
  #blocked = false;
  /** Jobs to give back once the pulls have ended (see #stop and #giveBack). */
  readonly #givingBack: JsMsg[] = [];

  /** @internal test seam: the loop stops pulling and reporting progress, as a stuck loop would. */
  [Symbol.for('natskit.test.blockFetchLoop')](): void {
    this.#blocked = true;
  }

  constructor(o: WorkerOptions<T>, setup: WorkerSetup) {
    this.#o = o;
    this.#setup = setup;
    this.name = `${o.stream}/${o.consumer}`;
    this.#concurrency = setup.concurrency;
    this.#heartbeatMs = o.heartbeatMs ?? Math.max(1, Math.floor(setup.ackWaitMs / 3));
    this.#fetchExpiresMs = o.fetchExpiresMs ?? 2_000;
    this.#stuckAfterMs = o.stuckAfterMs ?? 3 * this.#fetchExpiresMs + 5_000;
    this.#log = setup.logger.child({ worker: this.name });
  }

  get running(): boolean {
    return this.#pull !== undefined && this.#stopping === undefined;
  }

  progress(): WorkerProgress {
    const msSinceTick = Math.round(performance.now() - this.#lastTickAt);
    return {
      lastTickAt: Date.now() - msSinceTick,
      msSinceTick,
      healthy: msSinceTick <= this.#stuckAfterMs,
      lastFetchError: this.#lastFetchError,
    };
  }

  #tick(): void {
    if (!this.#blocked) this.#lastTickAt = performance.now();
  }

  start(): void {
    if (this.#stopping !== undefined)
      throw new NatskitError('INVALID_STATE', `worker ${this.name} is stopped`);
    if (this.#pull) return;
    this.#lastTickAt = performance.now();
    this.#pull = new PullLoop({
      nc: this.#setup.nc,
      apiPrefix: this.#setup.apiPrefix,
      stream: this.#o.stream,
      consumer: this.#o.consumer,
      expiresMs: this.#fetchExpiresMs,
      heartbeatMs: Math.min(5_000, Math.floor(this.#fetchExpiresMs / 2)),
      ackTimeoutMs: this.#setup.requestTimeoutMs,
      log: this.#log,
      onMessage: (msg) => this.#onMessage(msg),
      onActivity: () => this.#tick(),
      onError: (why) => {
        this.stats.fetchErrors++;
        this.#lastFetchError = why;
        this.#log.warn({ why, failedInARow: this.stats.fetchErrors }, 'pull failed; retrying');
      },
      onHealthy: () => {
        this.stats.fetchErrors = 0;
        this.#lastFetchError = undefined;
      },
      wantMore: () => this.#fill(),
    });
    // A worker whose slots are all busy asks the server nothing: that is progress, not a stall.
    this.#busyTimer = setInterval(() => {
      if ((this.#pull?.requested ?? 0) === 0) this.#tick();
    }, this.#fetchExpiresMs / 2);
    this.#busyTimer.unref();
    // Checked four times a heartbeat period: a job is kept alive within 1.25 x heartbeatMs.
    this.#heartbeatTimer = setInterval(
      () => this.#heartbeats(),
      Math.max(1, this.#heartbeatMs / 4),
    );
    this.#heartbeatTimer.unref();
    this.#fill();
  }

  /** Asks for the free slots, once per turn of the event loop however many slots freed. */
  #fill(): void {
    if (this.#fillQueued) return;
    this.#fillQueued = true;
    queueMicrotask(() => {
      this.#fillQueued = false;
      if (this.#stopping !== undefined || this.#blocked) return;
      this.#pull?.fill(this.#concurrency - this.#inflight.size);
    });
  }

  #onMessage(msg: JobMsg): void {
    if (this.#stopping !== undefined) {
      this.#givingBack.push(msg); // arrived while stopping: given back once the pulls end
      return;
    }
    if (this.#inflight.size >= this.#concurrency) {
      // Never more than `concurrency` handlers, whatever the server sent.
      this.#log.warn({ seq: msg.seq }, 'a message beyond the free slots arrived; given back');
      msg.nak();
      return;
    }
    const run: Run = {
      msg,
      ac: new AbortController(),
      settled: false,
      done: Promise.resolve(),
      aliveAt: performance.now(),
    };
    this.#inflight.add(run);
    this.stats.inFlight = this.#inflight.size;
    run.done = this.#run(run).finally(() => {
      this.#inflight.delete(run);
      this.stats.inFlight = this.#inflight.size;
      this.#fill();
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
      this.#setup.metrics?.job('terminated');
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
    const m = this.#setup.metrics;
    if (m && job.deliveryCount > 1) m.redelivered();
    const began = m ? performance.now() : 0;
    try {
      await this.#o.handler(job, run.ac.signal);
      if (run.settled) return; // naked at the drain deadline: never ack after that
      run.settled = true;
      this.stats.processed++;
      m?.job('processed', (performance.now() - began) / 1000);
      // The slot frees now: the next pull overlaps the ack's round trip. Stop waits for it.
      const confirmed: Promise<void> = msg
        .ackAck()
        .then(
          () => undefined,
          (err: unknown) => {
            // The job ran; the server did not confirm the ack (its consumer gone, a lost reply):
            // it may be delivered again.
            this.stats.ackFailures++;
            m?.ackFailed();
            this.#log.warn(
              { err, seq: job.seq },
              'ack not confirmed; the job may be delivered again',
            );
          },
        )
        .finally(() => this.#acking.delete(confirmed));
      this.#acking.add(confirmed);
    } catch (err) {
      if (run.settled) return;
      run.settled = true;
      const seconds = (performance.now() - began) / 1000;
      if (job.deliveryCount >= this.#setup.maxDeliver) {
        m?.job('terminated', seconds);
        msg.term(`failed ${job.deliveryCount} times`);
        this.stats.terminated++;
        this.#log.error(
          { err, seq: job.seq, deliveries: job.deliveryCount },
          'job failed on its last delivery; terminated',
        );
      } else {
        let delay = defaultDelay(job.deliveryCount);
        try {
          // User code, run in a catch nobody awaits: a throw here would leave the job unanswered.
          delay = (this.#o.retryDelayMs ?? defaultDelay)(job.deliveryCount, job, err);
        } catch (thrown) {
          this.#log.error({ err: thrown, seq: job.seq }, 'retryDelayMs threw; default delay');
        }
        msg.nak(delay);
        this.stats.failed++;
        m?.job('failed', seconds);
        this.#log.warn(
          { err, seq: job.seq, deliveries: job.deliveryCount, retryInMs: delay },
          'job failed; will retry',
        );
      }
    }
  }

  /** One timer for the worker: a job running for `heartbeatMs` tells the server it is alive. */
  #heartbeats(): void {
    const now = performance.now();
    for (const run of this.#inflight) {
      if (run.settled || now - run.aliveAt < this.#heartbeatMs) continue;
      run.aliveAt = now;
      run.msg.working();
    }
  }

  stop(): Promise<{ finished: number; naked: number }> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<{ finished: number; naked: number }> {
    // No pull is sent after this; the inbox stays open until the pulls sent have ended, and
    // what they still deliver is given back (counted in `naked`).
    const pullStopped = this.#pull?.stop() ?? Promise.resolve();
    clearInterval(this.#busyTimer);
    const drainMs = this.#o.drainTimeoutMs ?? 10_000;
    const before = this.stats.processed + this.stats.failed + this.stats.terminated;
    let naked = 0;
    // What came while the pulls were open is given back as soon as they end, not after the
    // drain: it waits for no running job, and gets no `working()` while it waits.
    const arrivalsGivenBack = pullStopped.then(() => {
      naked += this.#giveBack();
    });
    await withDeadline(Promise.all([...this.#inflight].map((r) => r.done)), drainMs);
    for (const run of this.#inflight) {
      if (run.settled) continue;
      run.settled = true;
      run.ac.abort(new NatskitError('ABORTED', `worker ${this.name} is stopping`));
      this.#givingBack.push(run.msg);
    }
    clearInterval(this.#heartbeatTimer);
    await arrivalsGivenBack;
    naked += this.#giveBack(); // the jobs cut off at the drain deadline
    await withDeadline(Promise.all(this.#acking), this.#setup.requestTimeoutMs);
    // The naks above must leave before the caller closes the connection.
    await this.#setup.nc.flush().catch(() => undefined);
    this.#setup.onStopped();
    const finished = this.stats.processed + this.stats.failed + this.stats.terminated - before;
    this.#log.info({ finished, naked }, 'worker stopped');
    return { finished, naked };
  }

  /**
   * Naks (no delay: another worker takes them at once) the jobs waiting in `#givingBack`; only
   * once no pull of ours is left open: a job naked while one was open came straight back to it,
   * one delivery spent each time. Returns how many.
   */
  #giveBack(): number {
    const n = this.#givingBack.length;
    for (const msg of this.#givingBack) {
      msg.nak();
      this.#setup.metrics?.job('naked');
    }
    this.#givingBack.length = 0;
    this.stats.nakedOnStop += n;
    return n;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
