import type { JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';

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
  /**
   * Delay of the redelivery after failure n (1-based); `job` and `err` are the failed job and
   * what the handler threw. @defaultValue 1000 * 2^(n-1), at most 60000
   */
  readonly retryDelayMs?: (deliveryCount: number, job: Job<T>, err: unknown) => number;
  /** How often a running job tells the server it is still working. @defaultValue ackWaitMs / 3 */
  readonly heartbeatMs?: number;
  /** How long a stop lets running jobs finish before naking them. @defaultValue 10000 */
  readonly drainTimeoutMs?: number;
  /**
   * How long one pull request waits on the server (at least 1000); its idle heartbeat comes every
   * half of it, so an idle worker still shows progress. @defaultValue 2000
   */
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
  /**
   * Stops fetching, gives back (naks) every job the pulls still delivered as soon as none is
   * left open (up to `fetchExpiresMs`, while the running jobs drain), lets running jobs finish
   * until the drain deadline and gives back the rest: `naked` counts both.
   */
  stop(): Promise<{ finished: number; naked: number }>;
  progress(): WorkerProgress;
}
