import { performance } from 'node:perf_hooks';
import { setImmediate as nextIo } from 'node:timers/promises';
import {
  type NatsConnection,
  type QueuedIterator,
  RequestError,
  type Status,
  TimeoutError,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import type { Metrics } from '../metrics/metrics.js';

/**
 * The default of `nats.deadLinkTimeoutMs`: a connection that receives nothing for half of it is
 * pinged, and one that does not answer within the other half is replaced.
 */
export const DEAD_LINK_TIMEOUT_MS = 6_000;

/** How long a forced reconnect may take to disconnect before its socket is destroyed. */
const UNSTICK_MS = 1_000;

/** Below this, a slow link or a busy event loop would be taken for a dead one too easily. */
const MIN_DEAD_LINK_TIMEOUT_MS = 500;

/** Throws `INVALID_OPTIONS` unless `value` is absent, `false`, or a bound >= 500 ms. */
export function checkDeadLinkTimeout(value: unknown): void {
  if (value === undefined || value === false) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_DEAD_LINK_TIMEOUT_MS) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `options.nats.deadLinkTimeoutMs must be false or a number of milliseconds >= ${MIN_DEAD_LINK_TIMEOUT_MS}, got ${String(value)}`,
      { details: { field: 'nats.deadLinkTimeoutMs' } },
    );
  }
}

/** What the link watch thinks of the connection. */
export type LinkStatus =
  | { readonly status: 'ok' }
  | {
      readonly status: 'suspect';
      /** Why, for `/healthz` and `/readyz`. */
      readonly reason: string;
      /** When it became suspect (epoch ms). */
      readonly since: number;
    };

/**
 * Finds a connection that says "connected" but carries nothing: a NAT entry or a load balancer
 * flow that expired, a link that stalled. The client's own pings find it only after
 * `pingInterval * maxPingOut` (a minute or more); this watch looks at the bytes received. While
 * any arrive (messages, heartbeats, replies, pongs) the link is alive and costs nothing. After
 * half the bound without a byte, one PING goes out; a quarter later with still no byte the link
 * is suspect (readiness falls); at the bound it is dead, and the connection is replaced at once
 * (the client's `reconnect()`: subscriptions are sent again on the new connection, requests in
 * flight are interrupted by the ConnectionService, so that the callers retry). The client
 * buffers what is published meanwhile, and sends it on the new connection.
 *
 * A false "dead" costs a reconnect; so a late PONG is only dead if, once the deadline passed
 * and the event loop had a turn to read, nothing at all came from the server.
 */
export class LinkWatch {
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #quietMs: number;
  readonly #probeMs: number;
  #timer: NodeJS.Timeout | undefined;
  #statuses: Partial<QueuedIterator<Status>> | undefined;
  #connected = true;
  #disconnects = 0;
  #lastIn = -1;
  #lastHeard = performance.now();
  #probing = false;
  #status: LinkStatus = { status: 'ok' };
  #stopped = false;

  constructor(nc: NatsConnection, deadLinkTimeoutMs: number, log: Logger, metrics: Metrics) {
    this.#nc = nc;
    this.#log = log;
    this.#metrics = metrics;
    this.#quietMs = deadLinkTimeoutMs / 2;
    this.#probeMs = deadLinkTimeoutMs / 2;
  }

  /** A started watch on `nc`, or undefined when `deadLinkTimeoutMs` is `false`. */
  static start(
    nc: NatsConnection,
    deadLinkTimeoutMs: number | false,
    log: Logger,
    metrics: Metrics,
  ): LinkWatch | undefined {
    if (deadLinkTimeoutMs === false) return undefined;
    const watch = new LinkWatch(nc, deadLinkTimeoutMs, log, metrics);
    watch.#start();
    return watch;
  }

  get status(): LinkStatus {
    return this.#status;
  }

  /** Starts watching: a timer (unref'd) and a status iterator of its own. */
  #start(): void {
    const tickMs = Math.max(100, Math.min(1_000, this.#quietMs / 4));
    this.#timer = setInterval(() => this.#tick(), tickMs);
    this.#timer.unref();
    void this.#follow();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#statuses?.stop?.();
  }

  /**
   * A request failed. A timeout suggests the link may be dead: probe it now (when the request
   * timeout is shorter than half the bound, that is sooner), unless a byte came from the server
   * since `sentAt` (`performance.now()` when the request went out).
   */
  requestFailed(err: unknown, sentAt: number): void {
    const timedOut =
      err instanceof TimeoutError ||
      (err instanceof RequestError && err.cause instanceof TimeoutError);
    if (!timedOut) return;
    this.#heard();
    if (this.#lastHeard > sentAt) return;
    void this.#probe('a request timed out');
  }

  async #follow(): Promise<void> {
    const statuses = this.#nc.status();
    this.#statuses = statuses as Partial<QueuedIterator<Status>>;
    for await (const s of statuses) {
      if (this.#stopped) break;
      if (s.type === 'disconnect') {
        this.#connected = false;
        this.#disconnects++;
      } else if (s.type === 'reconnect') {
        this.#connected = true;
        this.#lastHeard = performance.now();
        this.#status = { status: 'ok' };
      } else if (s.type === 'staleConnection') {
        // The client's own pings went unanswered: it disconnects and reconnects itself.
        this.#metrics.staleLink();
        this.#log.warn('nats client found the connection stale (its pings unanswered)');
      }
    }
  }

  /** Notes bytes received since the last look. */
  #heard(): boolean {
    const inBytes = this.#nc.stats().inBytes;
    if (inBytes === this.#lastIn) return false;
    this.#lastIn = inBytes;
    this.#lastHeard = performance.now();
    return true;
  }

  #tick(): void {
    if (this.#stopped || !this.#connected || this.#nc.isClosed()) return;
    this.#heard();
    const quietMs = performance.now() - this.#lastHeard;
    if (quietMs >= this.#quietMs)
      void this.#probe(`no byte from the server for ${Math.round(quietMs)} ms`);
  }

  async #probe(why: string): Promise<void> {
    if (this.#probing || this.#stopped || !this.#connected) return;
    this.#probing = true;
    const started = performance.now();
    try {
      let answered = false;
      const pong = this.#nc.flush().then(
        () => {
          answered = true;
        },
        () => undefined, // rejected on disconnect: the status events take it from there
      );
      // Half-way through the deadline without a byte, the link is suspect: readiness falls (a
      // load balancer stops sending work here) before the connection is replaced.
      if ((await this.#silentFor(pong, this.#probeMs / 2, () => answered)) !== 'silent') return;
      this.#status = {
        status: 'suspect',
        reason: `${why}, and no reply to a ping for ${Math.round(performance.now() - started)} ms`,
        since: Date.now(),
      };
      const after = await this.#silentFor(pong, this.#probeMs / 2, () => answered);
      if (after === 'answered') {
        this.#log.info('nats link answered again');
        this.#status = { status: 'ok' };
      }
      // 'gone': disconnected meanwhile; the reconnect clears the suspicion.
      if (after !== 'silent') return;
      this.#dead(`${why}, and no reply to a ping within ${this.#probeMs} ms`);
    } finally {
      this.#probing = false;
    }
  }

  /**
   * Waits up to `ms` for the pong: `silent` when it did not come and nothing else came from the
   * server either, `answered` when something did, `gone` when the connection went meanwhile.
   */
  async #silentFor(
    pong: Promise<void>,
    ms: number,
    answered: () => boolean,
  ): Promise<'silent' | 'answered' | 'gone'> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    await Promise.race([pong, deadline]);
    clearTimeout(timer);
    if (!answered()) {
      // The deadline may have fired before the event loop read what arrived (a busy loop):
      // give it a turn, then decide on the bytes, not the PONG alone.
      await nextIo();
    }
    if (!this.#connected || this.#stopped) return 'gone';
    const heard = this.#heard(); // also moves the quiet clock on
    return answered() || heard ? 'answered' : 'silent';
  }

  #dead(reason: string): void {
    const since = this.#status.status === 'suspect' ? this.#status.since : Date.now();
    this.#status = { status: 'suspect', reason, since };
    this.#metrics.staleLink();
    this.#log.warn({ reason }, 'nats link looks dead; replacing the connection');
    this.#metrics.forcedReconnect();
    this.#nc.reconnect().then(
      () => this.#unstick(),
      (err: unknown) => {
        // Closed or draining: nothing to replace.
        this.#log.warn({ err }, 'could not force a reconnect');
      },
    );
  }

  /**
   * The client's `reconnect()` closes the socket gracefully: it first waits until what it wrote
   * has left. Over a black hole with a full send buffer (measured: 20 MB published into it) that
   * never happens, and no disconnect follows. If none came within a second, destroy the socket:
   * the client then sees it closed, and reconnects. The socket is not public API (nats.js
   * 3.4.0's NodeTransport), so every step is checked and a different shape does nothing.
   */
  #unstick(): void {
    const before = this.#disconnects;
    const timer = setTimeout(() => {
      // A disconnect came (and maybe a new connection, not to be touched): nothing stuck.
      if (this.#disconnects !== before || this.#stopped || this.#nc.isClosed()) return;
      const internals = this.#nc as unknown as {
        protocol?: { transport?: { socket?: { destroy?: unknown } } };
      };
      const socket = internals.protocol?.transport?.socket;
      if (typeof socket?.destroy !== 'function') return;
      this.#log.warn('nats connection did not close (send buffer full); destroying its socket');
      (socket.destroy as () => void).call(socket);
    }, UNSTICK_MS);
    timer.unref();
  }
}
