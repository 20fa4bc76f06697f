import { performance } from 'node:perf_hooks';
/**
 * Watches a pull for signs of life. The server sends an idle heartbeat every `heartbeatMs` while
 * a pull waits; a pull in flight that neither delivers nor sends heartbeats for `missed` of them
 * is lost (its server died), and `onSilent` is called so the consumer can be replaced.
 */
export class HeartbeatWatchdog {
  readonly #heartbeatMs: number;
  readonly #missed: number;
  readonly #waiting: () => boolean;
  readonly #onSilent: () => void;
  readonly #timer: NodeJS.Timeout;
  /** On the monotonic clock: a wall clock stepped back must not hide a silence. */
  #lastActivityMs = performance.now();

  constructor(heartbeatMs: number, missed: number, waiting: () => boolean, onSilent: () => void) {
    this.#heartbeatMs = heartbeatMs;
    this.#missed = missed;
    this.#waiting = waiting;
    this.#onSilent = onSilent;
    this.#timer = setInterval(() => this.check(), heartbeatMs / 2);
    this.#timer.unref();
  }

  /** Something arrived (a message, a heartbeat, a status), or a new pull began. */
  touch(): void {
    this.#lastActivityMs = performance.now();
  }

  /** Calls `onSilent` when a pull waits and nothing came for too long; runs on a timer too. */
  check(now = performance.now()): void {
    if (this.#waiting() && now - this.#lastActivityMs > this.#missed * this.#heartbeatMs) {
      this.#onSilent();
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
