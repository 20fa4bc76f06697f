import { performance } from 'node:perf_hooks';
import type { NatsConnection, QueuedIterator, Status } from '@nats-io/transport-node';
import { inject } from 'inversify';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import type { HealthCheckResult, Service } from '../lifecycle/service.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { METRICS, type Metrics, NO_METRICS } from '../metrics/metrics.js';
import { withDeadline } from '../timing/deadline.js';
import {
  type Capabilities,
  detectCapabilities,
  type Feature,
  requireFeature,
} from './capabilities.js';
import { toClientOptions } from './client-options.js';
import { connectionHealth } from './connection-health.js';
import { firstConnect } from './first-connect.js';
import { InFlightRequests } from './in-flight.js';
import { type LinkStatus, LinkWatch } from './link-watch.js';
import {
  CONNECTION_OPTIONS,
  type ConnectionOptions,
  jetstreamApiPrefix,
  redactUrl,
  resolveConnectionOptions,
} from './options.js';

/** The connection's state. */
export type ConnectionState = 'connected' | 'reconnecting' | 'disconnected' | 'closed';

/** What the connection is doing now; every change is passed to `onStatus` listeners. */
export interface ConnectionStatus {
  readonly state: ConnectionState;
  /** The server announced lame duck mode: it will shut down soon, the client will move. */
  readonly lameDuck: boolean;
  /** When `state` was entered (epoch ms). */
  readonly since: number;
  /** The server connected to, without credentials. */
  readonly server: string | undefined;
}

/** How the connection ended: drained in time, closed after the drain deadline, or not ours. */
export type CloseResult = 'drained' | 'forced' | 'external';

/**
 * The NATS connection as a service: connects on start, follows the connection's state and the
 * server's capabilities, and drains with a deadline on stop. A connection handed in through
 * `options.connection` is used as is and never closed.
 */
export class ConnectionService implements Service {
  readonly #options: ReturnType<typeof resolveConnectionOptions>;
  readonly #log: Logger;
  readonly #listeners = new Set<(status: ConnectionStatus) => void>();
  #nc: NatsConnection | undefined;
  #status: ConnectionStatus = {
    state: 'disconnected',
    lameDuck: false,
    since: Date.now(),
    server: undefined,
  };
  #capabilities: Capabilities | undefined;
  #closeResult: CloseResult | undefined;
  /** When the connection was last lost (undefined while connected). */
  #outageSince: number | undefined;
  #statusLoop: Promise<void> = Promise.resolve();
  #statusIterator: Partial<QueuedIterator<Status>> | undefined;
  #stopped = false;
  readonly #requests = new InFlightRequests();
  #link: LinkWatch | undefined;

  readonly #metrics: Metrics;

  constructor(
    @inject(CONNECTION_OPTIONS) options: ConnectionOptions,
    @inject(LOGGER) logger: Logger,
    @inject(METRICS) metrics: Metrics = NO_METRICS,
  ) {
    this.#options = resolveConnectionOptions(options);
    this.#log = logger.child({ service: 'connection' });
    this.#metrics = metrics;
  }

  /** The connection. @throws NatskitError `INVALID_STATE` before start or after stop. */
  get nc(): NatsConnection {
    if (!this.#nc || this.#stopped || this.#status.state === 'closed') {
      throw new NatskitError(
        'INVALID_STATE',
        'the NATS connection is not open (ConnectionService not started, or stopped)',
      );
    }
    return this.#nc;
  }

  get status(): ConnectionStatus {
    return this.#status;
  }

  /** The connected server's capabilities. @throws NatskitError `INVALID_STATE` before start. */
  get capabilities(): Capabilities {
    if (!this.#capabilities)
      throw new NatskitError('INVALID_STATE', 'capabilities are known once connected');
    return this.#capabilities;
  }

  /** The deadline of one request (option `nats.requestTimeoutMs`). */
  get requestTimeoutMs(): number {
    return this.#options.requestTimeoutMs;
  }

  /** The subject prefix of the JetStream API (`$JS.API`, or the configured domain's). */
  get jetstreamApiPrefix(): string {
    return jetstreamApiPrefix(this.#options);
  }

  /** Whether the link looks dead while connected (option `nats.deadLinkTimeoutMs`). */
  get link(): LinkStatus {
    return this.#link?.status ?? { status: 'ok' };
  }

  /** How the connection ended, once stopped. */
  get closeResult(): CloseResult | undefined {
    return this.#closeResult;
  }

  /** True once stopped (or once a failed start released the connection). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Sends `send()` on a live connection and settles like it: while the connection is down it
   * waits for it (up to `waitMs`, then rejects with a transient `NotConnectedError`, nothing
   * sent), because the client drops what is published then; and a request in flight when the
   * connection is lost is rejected with `RequestInterruptedError` as soon as the connection is
   * back, instead of waiting for its timeout. Both are retried by `withRetry`.
   * @internal used by the built-in services around each JetStream request.
   */
  resilient<R>(
    send: () => Promise<R>,
    waitMs: number = this.#options.requestTimeoutMs,
  ): Promise<R> {
    return this.#requests.run(send, waitMs);
  }

  /** Throws `CAPABILITY_MISSING` naming the feature and minimum server version when absent. */
  requireFeature(feature: Feature | 'jetstream', what: string): void {
    requireFeature(this.capabilities, feature, what);
  }

  /** Calls `listener` on every status change; returns the function that removes it. */
  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(state: ConnectionState, changes: Partial<ConnectionStatus> = {}): void {
    const lameDuck = changes.lameDuck ?? this.#status.lameDuck;
    if (state === this.#status.state && lameDuck === this.#status.lameDuck) return;
    if (state === 'connected') this.#outageSince = undefined;
    else if (this.#status.state === 'connected') this.#outageSince = performance.now();
    const server = changes.server ?? this.#status.server;
    this.#status = {
      state,
      lameDuck,
      server,
      since: state === this.#status.state ? this.#status.since : Date.now(),
    };
    this.#metrics.connectionState(state === 'connected');
    const line = { state, lameDuck, server };
    if ((state === 'connected' && !lameDuck) || state === 'closed')
      this.#log.info(line, 'nats connection status');
    else this.#log.warn(line, 'nats connection status');
    for (const listener of this.#listeners) {
      try {
        listener(this.#status);
      } catch (err) {
        this.#log.error({ err }, 'status listener threw');
      }
    }
  }

  async start(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    let nc: NatsConnection;
    if (o.connection) {
      nc = o.connection;
    } else {
      nc = await firstConnect(o, toClientOptions(o), this.#log, signal);
    }
    this.#nc = nc;
    try {
      signal.throwIfAborted();
      this.#statusLoop = this.#follow(nc);
      this.#capabilities = await detectCapabilities(
        nc,
        o.requestTimeoutMs,
        signal,
        jetstreamApiPrefix(o),
      );
    } catch (err) {
      // The manager only stops services that started: a start failing after the connect (its
      // signal aborted by a failing sibling, say) must release what it holds itself.
      await this.#release(nc);
      throw err;
    }
    this.#set('connected', { server: redactUrl(nc.getServer()) });
    this.#requests.connected();
    // A handed-in connection is not ours to replace.
    this.#link = LinkWatch.start(
      nc,
      !o.connection && o.deadLinkTimeoutMs,
      this.#log,
      this.#metrics,
    );
    // A request that times out while the link says connected makes the link watch probe at once.
    const link = this.#link;
    this.#requests.onFailure = link ? (err, sentAt) => link.requestFailed(err, sentAt) : undefined;
    this.#log.info(
      {
        server: this.#status.server,
        version: this.#capabilities.serverVersion,
        apiLevel: this.#capabilities.apiLevel,
      },
      'connected',
    );
  }

  /** Stops following the connection, and closes it unless it was handed in. */
  async #release(nc: NatsConnection): Promise<void> {
    this.#stopped = true;
    this.#link?.stop();
    this.#statusIterator?.stop?.();
    this.#requests.release();
    if (!this.#options.connection) await nc.close().catch(() => undefined);
    await this.#statusLoop.catch(() => undefined);
  }

  async #follow(nc: NatsConnection): Promise<void> {
    void nc.closed().then(() => {
      this.#requests.release();
      if (!this.#stopped || !this.#options.connection) this.#set('closed');
    });
    const statuses = nc.status();
    this.#statusIterator = statuses as Partial<QueuedIterator<Status>>;
    for await (const s of statuses) {
      if (this.#stopped) break;
      switch (s.type) {
        case 'disconnect':
          this.#requests.disconnected();
          this.#set('disconnected', { server: redactUrl(s.server) });
          break;
        case 'reconnecting':
          this.#set('reconnecting');
          break;
        case 'reconnect': {
          this.#metrics.reconnect();
          const previous = this.#capabilities?.serverId;
          this.#set('connected', { server: redactUrl(s.server), lameDuck: false });
          this.#requests.connected();
          if (nc.info?.server_id !== previous) void this.#redetect(nc);
          break;
        }
        case 'ldm':
          this.#set(this.#status.state, { lameDuck: true });
          break;
        case 'error':
          this.#log.warn({ err: s.error }, 'nats server error');
          break;
        case 'slowConsumer':
          this.#log.warn({ subject: s.sub.getSubject(), pending: s.pending }, 'slow consumer');
          break;
        default:
          break;
      }
    }
  }

  async #redetect(nc: NatsConnection): Promise<void> {
    try {
      this.#capabilities = await detectCapabilities(
        nc,
        this.#options.requestTimeoutMs,
        undefined,
        jetstreamApiPrefix(this.#options),
      );
      this.#log.info(
        { version: this.#capabilities.serverVersion, apiLevel: this.#capabilities.apiLevel },
        'reconnected to another server; capabilities read again',
      );
    } catch (err) {
      // Keep what we knew; a later reconnect reads them again.
      this.#log.warn(
        { err },
        'could not read the capabilities of the new server; keeping the previous ones',
      );
    }
  }

  /**
   * Drains within `drainTimeoutMs`, then closes. A handed-in connection is left open, and no
   * longer followed: its status changes are not reported after this.
   */
  async stop(): Promise<void> {
    const nc = this.#nc;
    if (!nc || this.#stopped) return;
    if (this.#options.connection) {
      this.#closeResult = 'external';
      await this.#release(nc);
      this.#log.info(
        { result: this.#closeResult },
        'connection released (it is not ours to close)',
      );
      return;
    }
    if (nc.isClosed()) {
      this.#stopped = true;
      this.#closeResult = 'forced';
      return;
    }
    this.#stopped = true;
    this.#link?.stop();
    const drained = nc.drain().then(
      () => 'drained' as const,
      (err: unknown) => {
        this.#log.warn({ err }, 'drain failed; closing');
        return 'failed' as const;
      },
    );
    const outcome = await withDeadline(drained, this.#options.drainTimeoutMs);
    if (outcome !== 'drained') await nc.close();
    this.#closeResult = outcome === 'drained' ? 'drained' : 'forced';
    this.#statusIterator?.stop?.();
    await this.#statusLoop.catch(() => undefined);
    this.#set('closed');
    this.#log.info({ result: this.#closeResult }, 'connection closed');
  }

  /** `pass` when connected (RTT in ms), `warn` while reconnecting, `fail` otherwise. */
  async health(): Promise<HealthCheckResult> {
    return await connectionHealth({
      ...this.#status,
      nc: this.#nc,
      capabilities: this.#capabilities,
      outageSince: this.#outageSince,
      reconnectGraceMs: this.#options.reconnectGraceMs,
      link: this.link,
    });
  }
}
