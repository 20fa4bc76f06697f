import type { NatsConnection } from '@nats-io/transport-node';
import {
  checkKnownKeys,
  checkMs,
  checkOptionsObject,
  describeType,
  describeValue,
  knownKeys,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { createToken, type Token } from '../lifecycle/service.js';
import { checkDeadLinkTimeout, DEAD_LINK_TIMEOUT_MS } from './link-watch.js';
import { isServerUrl, NOT_A_SERVER_URL } from './server-url.js';
import { splitUrlCredentials } from './url-credentials.js';

/** TLS settings of a connection (file paths, PEM). */
export interface ConnectionTlsOptions {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Do the TLS handshake before the NATS INFO (servers configured with `handshake_first`). */
  readonly handshakeFirst?: boolean;
}

/** Options of the NATS connection. Secrets given here are never logged. */
export interface ConnectionOptions {
  /**
   * Server URLs. Credentials in them (`nats://user:password@host`, `nats://token@host`, as the Go
   * client and the nats CLI read them, and as `NATS_URL` often carries them) are used: every URL
   * with credentials must carry the same ones, and they cannot be combined with `token`, `user`,
   * `password`, `nkeySeed`, `nkeySeedFile` or `credsFile` (`INVALID_OPTIONS`). They are never
   * logged. @defaultValue ['nats://127.0.0.1:4222']
   */
  readonly servers?: string | readonly string[];
  /** The connection's name, shown by the server. @defaultValue 'natskit' */
  readonly name?: string;
  readonly token?: string;
  readonly user?: string;
  readonly password?: string;
  /** An nkey seed (`SU...`). */
  readonly nkeySeed?: string;
  /** A file holding an nkey seed. */
  readonly nkeySeedFile?: string;
  /** A `.creds` file (JWT and seed). */
  readonly credsFile?: string;
  readonly tls?: ConnectionTlsOptions;
  /** @defaultValue 5000 */
  readonly connectTimeoutMs?: number;
  /** Reconnect after a lost connection. @defaultValue true */
  readonly reconnect?: boolean;
  /** -1 for unlimited. @defaultValue -1 */
  readonly maxReconnectAttempts?: number;
  /**
   * Wait between attempts on one server. Short, so that a restarted server (back in well under a
   * second) is found again quickly: with 250 ms, writes resumed 0.07-0.42 s after a SIGKILLed
   * server was back, 0.8-1.0 s with 1000 ms. Raise it for thousands of clients on one server.
   * @defaultValue 250
   */
  readonly reconnectTimeWaitMs?: number;
  /** Random extra wait, so that many clients do not reconnect in step. @defaultValue 250 */
  readonly reconnectJitterMs?: number;
  /** @defaultValue 30000 */
  readonly pingIntervalMs?: number;
  /**
   * How soon a connection that says "connected" but carries nothing (a NAT entry or load
   * balancer flow that expired, a stalled link) is found and replaced: after half of it without
   * a byte from the server, natskit sends one PING; a quarter later with still no byte the app
   * turns not ready, and at the bound it reconnects. A link that carries traffic costs nothing;
   * an idle one carries one PING/PONG (about 12 bytes each way) every half of it. `false` leaves
   * it to the client's pings (2 unanswered `pingIntervalMs`: about 90 s measured). Not applied to
   * a handed-in `connection`. At least 500. See docs/reliability.md.
   * @defaultValue 6000
   */
  readonly deadLinkTimeoutMs?: number | false;
  /**
   * How long a lost connection is only `warn` in health checks (reconnecting), before it is
   * `fail`: orchestrators should not restart pods for a short reconnect. @defaultValue 30000
   */
  readonly reconnectGraceMs?: number;
  /** Deadline of the drain on stop, after which the connection is closed. @defaultValue 10000 */
  readonly drainTimeoutMs?: number;
  /**
   * Deadline of one request: JetStream API calls, publishes, KV reads and writes, atomic batch
   * commits, capability detection (each retry of a transient failure gets its own).
   * @defaultValue 5000
   */
  readonly requestTimeoutMs?: number;
  /**
   * When no server answers at start, keep trying (every `reconnectTimeWaitMs` plus jitter) until
   * one does, within the service's start deadline (`startTimeoutMs`, 30 s by default), instead of
   * failing at once: for containers that may start before NATS. Refused credentials still fail at
   * once. @defaultValue false
   */
  readonly waitForFirstConnect?: boolean;
  /** An existing connection to use; natskit never closes it. */
  readonly connection?: NatsConnection;
  /**
   * The JetStream domain to use (a leaf node using its hub's JetStream, say): every JetStream API
   * request goes to `$JS.<domain>.API`. Not with `jetstreamApiPrefix`. @defaultValue none
   */
  readonly jetstreamDomain?: string;
  /**
   * The subject prefix of the JetStream API, for an account that imports it under another name.
   * Not with `jetstreamDomain`. @defaultValue '$JS.API'
   */
  readonly jetstreamApiPrefix?: string;
}

/** Token of the connection options, bound by the ServiceManager when `options.nats` is given. */
export const CONNECTION_OPTIONS: Token<ConnectionOptions> =
  createToken<ConnectionOptions>('ConnectionOptions');

/** The defaults of {@link ConnectionOptions}. */
export const CONNECTION_DEFAULTS = Object.freeze({
  servers: ['nats://127.0.0.1:4222'] as readonly string[],
  name: 'natskit',
  connectTimeoutMs: 5_000,
  reconnect: true,
  maxReconnectAttempts: -1,
  reconnectTimeWaitMs: 250,
  reconnectJitterMs: 250,
  pingIntervalMs: 30_000,
  deadLinkTimeoutMs: DEAD_LINK_TIMEOUT_MS as number | false,
  reconnectGraceMs: 30_000,
  drainTimeoutMs: 10_000,
  requestTimeoutMs: 5_000,
  waitForFirstConnect: false,
});

const CONNECTION_KEYS = knownKeys<ConnectionOptions>({
  servers: true,
  name: true,
  token: true,
  user: true,
  password: true,
  nkeySeed: true,
  nkeySeedFile: true,
  credsFile: true,
  tls: true,
  connectTimeoutMs: true,
  reconnect: true,
  maxReconnectAttempts: true,
  reconnectTimeWaitMs: true,
  reconnectJitterMs: true,
  pingIntervalMs: true,
  reconnectGraceMs: true,
  drainTimeoutMs: true,
  requestTimeoutMs: true,
  waitForFirstConnect: true,
  connection: true,
  jetstreamDomain: true,
  jetstreamApiPrefix: true,
  deadLinkTimeoutMs: true,
});
const TLS_KEYS = knownKeys<ConnectionTlsOptions>({
  caFile: true,
  certFile: true,
  keyFile: true,
  handshakeFirst: true,
});

/**
 * The @nats-io client's names of options natskit has under another name. natskit passes no
 * option through to the client as is: each is named, checked and converted here, so an
 * unknown name (the client's own included) is refused rather than ignored. For a client option
 * natskit does not have, connect yourself and hand the connection in as `connection`.
 */
const CLIENT_NAMES: Readonly<Record<string, string>> = {
  pass: 'password',
  timeout: 'connectTimeoutMs',
  reconnectTimeWait: 'reconnectTimeWaitMs',
  reconnectJitter: 'reconnectJitterMs',
  reconnectJitterTLS: 'reconnectJitterMs',
  pingInterval: 'pingIntervalMs',
  waitOnFirstConnect: 'waitForFirstConnect',
  authenticator: 'nkeySeed, nkeySeedFile or credsFile',
  port: 'servers',
};

const AUTH_FIELDS = ['token', 'user', 'password', 'nkeySeed', 'nkeySeedFile', 'credsFile'] as const;

/** Whether any credentials are given (in a field or, once resolved, in a server URL). */
export const hasCredentials = (o: ConnectionOptions): boolean =>
  AUTH_FIELDS.some((f) => o[f] !== undefined);

/** Connection options with the defaults applied. */
export type ResolvedConnectionOptions = ConnectionOptions & typeof CONNECTION_DEFAULTS;

/**
 * Removes `user:password@` (or `token@`) from a URL (`host:port` forms too), or from every URL
 * in a text such as a client's error message, for messages and logs.
 */
export function redactUrl(url: string): string {
  // Greedy up to the last '@' of a word: a password may hold a raw '@' or '/'; redacting a host
  // too is the safe mistake.
  const schemed = url.replace(/([a-z][a-z0-9+.-]*:\/\/)\S*@/gi, '$1[redacted]@');
  return schemed.includes('://') ? schemed : schemed.replace(/^\S*@/, '[redacted]@');
}

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `nats.${field} ${why}`, {
    details: { field: `nats.${field}` },
  });
}

/** Validates the options once; returns the server list and the defaults applied. */
export function resolveConnectionOptions(
  options: ConnectionOptions,
): ConnectionOptions & typeof CONNECTION_DEFAULTS {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw invalid('', `must be an object, got ${describeValue(options)}`);
  checkKnownKeys('nats', options, CONNECTION_KEYS, CLIENT_NAMES);
  checkOptionsObject('nats.tls', options.tls, TLS_KEYS);
  for (const f of ['name', 'nkeySeedFile', 'credsFile'] as const) {
    const v = options[f];
    if (v !== undefined && (typeof v !== 'string' || v === ''))
      throw invalid(f, `must be a non-empty string, got ${describeValue(v)}`);
  }
  for (const f of ['caFile', 'certFile', 'keyFile'] as const) {
    const v = options.tls?.[f];
    if (v !== undefined && (typeof v !== 'string' || v === ''))
      throw invalid(`tls.${f}`, `must be a file path, got ${describeValue(v)}`);
  }
  for (const f of ['token', 'user', 'password', 'nkeySeed'] as const) {
    const v = options[f];
    // A secret's type only: its value must not reach a message.
    if (v !== undefined && (typeof v !== 'string' || v === ''))
      throw invalid(f, `must be a non-empty string, got ${describeType(v)}`);
  }
  for (const f of ['reconnect', 'waitForFirstConnect'] as const) {
    const v = options[f];
    if (v !== undefined && typeof v !== 'boolean')
      throw invalid(f, `must be a boolean, got ${describeValue(v)}`);
  }
  if (options.tls?.handshakeFirst !== undefined && typeof options.tls.handshakeFirst !== 'boolean')
    throw invalid(
      'tls.handshakeFirst',
      `must be a boolean, got ${describeValue(options.tls.handshakeFirst)}`,
    );
  const servers =
    typeof options.servers === 'string' ? options.servers.split(',') : options.servers;
  if (
    servers !== undefined &&
    (!Array.isArray(servers) ||
      servers.length === 0 ||
      servers.some((s) => typeof s !== 'string' || !s.trim()))
  ) {
    // Redacted: a URL may carry a password.
    const given =
      typeof options.servers === 'string'
        ? options.servers.split(',').map(redactUrl).join(',')
        : options.servers;
    throw invalid('servers', `must be a non-empty list of URLs, got ${describeValue(given)}`);
  }
  for (const f of [
    'reconnectGraceMs',
    'connectTimeoutMs',
    'reconnectTimeWaitMs',
    'pingIntervalMs',
    'drainTimeoutMs',
    'requestTimeoutMs',
  ] as const) {
    checkMs(`nats.${f}`, options[f]);
  }
  checkDeadLinkTimeout(options.deadLinkTimeoutMs);
  const jitter: unknown = options.reconnectJitterMs;
  if (
    jitter !== undefined &&
    !(typeof jitter === 'number' && jitter >= 0 && Number.isFinite(jitter))
  ) {
    throw invalid('reconnectJitterMs', `must be a number >= 0, got ${describeValue(jitter)}`);
  }
  if (
    options.maxReconnectAttempts !== undefined &&
    !Number.isInteger(options.maxReconnectAttempts)
  ) {
    throw invalid(
      'maxReconnectAttempts',
      `must be an integer (-1 for unlimited), got ${describeValue(options.maxReconnectAttempts)}`,
    );
  }
  checkJetStreamApi(options);
  if ((options.user === undefined) !== (options.password === undefined)) {
    throw invalid(
      options.user === undefined ? 'user' : 'password',
      'must be given together with the other',
    );
  }
  const auths = [
    options.token,
    options.user,
    options.nkeySeed ?? options.nkeySeedFile,
    options.credsFile,
  ].filter((a) => a !== undefined);
  if (auths.length > 1)
    throw invalid('token', 'only one of token, user/password, nkey and creds may be given');
  const fromUrls = splitUrlCredentials(
    (servers ?? CONNECTION_DEFAULTS.servers).map((s) => s.trim()),
  );
  // Shown redacted, though its credentials are already taken out.
  const bad = fromUrls.servers.find((url) => !isServerUrl(url));
  if (bad !== undefined)
    throw invalid('servers', `has ${describeValue(redactUrl(bad))}, ${NOT_A_SERVER_URL}`);
  if (fromUrls.credentials) {
    const explicit = AUTH_FIELDS.find((f) => options[f] !== undefined);
    // No precedence to learn: credentials are given in one place.
    if (explicit)
      throw invalid(
        explicit,
        'is given, and nats.servers carries credentials (user:password@ or token@) too: give them once',
      );
  }
  return {
    ...CONNECTION_DEFAULTS,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    ...fromUrls.credentials,
    servers: fromUrls.servers,
  } as ResolvedConnectionOptions;
}

/** The subject prefix of the JetStream API these options ask for (`$JS.API` by default). */
export function jetstreamApiPrefix(options: ConnectionOptions): string {
  if (options.jetstreamDomain !== undefined) return `$JS.${options.jetstreamDomain}.API`;
  return options.jetstreamApiPrefix ?? '$JS.API';
}

function checkJetStreamApi(options: ConnectionOptions): void {
  const { jetstreamDomain: domain, jetstreamApiPrefix: prefix } = options;
  if (domain !== undefined && prefix !== undefined)
    throw invalid('jetstreamDomain', 'and nats.jetstreamApiPrefix cannot both be given');
  // A domain is one subject token; a prefix is tokens without wildcards (the API's subjects are
  // built by appending to it).
  if (domain !== undefined && (typeof domain !== 'string' || !/^[^\s.*>]+$/.test(domain)))
    throw invalid('jetstreamDomain', `must be one subject token, got ${describeValue(domain)}`);
  if (
    prefix !== undefined &&
    (typeof prefix !== 'string' || !/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(prefix))
  )
    throw invalid(
      'jetstreamApiPrefix',
      `must be a subject without wildcards, got ${describeValue(prefix)}`,
    );
}
