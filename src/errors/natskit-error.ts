/**
 * Every error code natskit raises. Codes are stable strings that read well in JSON logs.
 */
export const ErrorCode = {
  /** An options object or field is invalid; the message names the field. */
  INVALID_OPTIONS: 'INVALID_OPTIONS',
  /** The service graph has a cycle; the message names it (`A -> B -> A`). */
  DEPENDENCY_CYCLE: 'DEPENDENCY_CYCLE',
  /** A service depends on a token nobody registered; the message names both. */
  DEPENDENCY_MISSING: 'DEPENDENCY_MISSING',
  /** A service's `start()` threw or rejected; `cause` is what it threw. */
  SERVICE_START_FAILED: 'SERVICE_START_FAILED',
  /** A service's `start()` overran its `startTimeoutMs`; its signal was aborted. */
  SERVICE_START_TIMEOUT: 'SERVICE_START_TIMEOUT',
  /** A service's `stop()` threw or rejected; `cause` is what it threw. */
  SERVICE_STOP_FAILED: 'SERVICE_STOP_FAILED',
  /** A service's `stop()` overran its `stopTimeoutMs` or the shutdown budget. */
  SERVICE_STOP_TIMEOUT: 'SERVICE_STOP_TIMEOUT',
  /** Stopping the manager failed; `errors` holds one error per failed stop step. */
  SHUTDOWN_FAILED: 'SHUTDOWN_FAILED',
  /** Disposing a scope's services failed; `errors` holds each failure. */
  SCOPE_DISPOSE_FAILED: 'SCOPE_DISPOSE_FAILED',
  /**
   * A class's constructor parameter gets no token: no `inject: [...]` entry, or no `@inject(TOKEN)`
   * (natskit does not use `emitDecoratorMetadata`); the message names the service, the parameter
   * indexes and the fix in the form the registration used (`details.form`).
   */
  INJECTION_MISSING: 'INJECTION_MISSING',
  /** Creating an instance through the container failed (its constructor or factory threw). */
  RESOLUTION_FAILED: 'RESOLUTION_FAILED',
  /** `get()` asked for a token that is not registered. */
  SERVICE_NOT_FOUND: 'SERVICE_NOT_FOUND',
  /** The call is not allowed in the object's current state (e.g. a scope after disposal). */
  INVALID_STATE: 'INVALID_STATE',
  /** Connecting to NATS failed (servers unreachable, TLS, timeout). */
  CONNECTION_FAILED: 'CONNECTION_FAILED',
  /**
   * The server refused the credentials, or a subject the credentials may not use (an endpoint
   * request). The message never contains the credentials.
   */
  AUTH_FAILED: 'AUTH_FAILED',
  /** The server lacks a feature; the message names it and the minimum server version. */
  CAPABILITY_MISSING: 'CAPABILITY_MISSING',
  /**
   * A stream exists with a configuration that cannot be changed to the one asked for, or the one
   * asked for clashes with another stream (subjects that overlap: `details.apiCode` 10065).
   */
  STREAM_CONFIG_CONFLICT: 'STREAM_CONFIG_CONFLICT',
  /**
   * A durable consumer exists with a configuration that cannot be changed to the one asked for,
   * or the stream refuses another like it (a second unfiltered consumer on a workqueue stream:
   * `details.apiCode` 10099).
   */
  CONSUMER_CONFIG_CONFLICT: 'CONSUMER_CONFIG_CONFLICT',
  /** The stream does not exist, or no stream captures a published subject (`details.subject`). */
  STREAM_NOT_FOUND: 'STREAM_NOT_FOUND',
  /** A publish expectation (last sequence, last subject sequence, last message id) did not hold. */
  EXPECTATION_FAILED: 'EXPECTATION_FAILED',
  /**
   * A publish failed for a reason that is not transient; `cause` is the client's error. Also an
   * endpoint request a stream captured (the reply was its publish ack: `details.stream`).
   */
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  /** NATS stayed unavailable (timeouts, no responders, reconnecting) through every retry. */
  NATS_UNAVAILABLE: 'NATS_UNAVAILABLE',
  /** The operation was aborted through its `AbortSignal`. */
  ABORTED: 'ABORTED',
  /** The KV bucket does not exist (bind), or was deleted. */
  KV_BUCKET_NOT_FOUND: 'KV_BUCKET_NOT_FOUND',
  /** A provisioned bucket exists with a different config; `details.differences` lists it. */
  KV_BUCKET_DRIFT: 'KV_BUCKET_DRIFT',
  /** A revision did not match: the key changed (or exists, for `create`). `details` names keys. */
  KV_REVISION_CONFLICT: 'KV_REVISION_CONFLICT',
  /** A write to a bucket that takes none (a mirror: write to its origin); nothing was sent. */
  KV_READ_ONLY: 'KV_READ_ONLY',
  /** A transaction writes more keys than one atomic batch can carry. */
  TX_TOO_LARGE: 'TX_TOO_LARGE',
  /** A key breaks the NATS KV key rules. */
  INVALID_KEY: 'INVALID_KEY',
  /** A bucket name breaks the NATS rules. */
  INVALID_BUCKET: 'INVALID_BUCKET',
  /** A value cannot be encoded (BigInt, a cycle, a function...). Nothing was sent. */
  INVALID_VALUE: 'INVALID_VALUE',
  /** An encoded value is larger than the bucket or the server allows. Nothing was sent. */
  VALUE_TOO_LARGE: 'VALUE_TOO_LARGE',
  /** A value failed the schema: on write nothing was sent; on read `details` has key and revision. */
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  /** A stored value could not be decoded (corrupt JSON...); `details` has key and revision. */
  DECODE_FAILED: 'DECODE_FAILED',
  /**
   * A request to an endpoint was answered with a service error (`Nats-Service-Error-Code`):
   * `details.status` is the code (400 invalid request, 503 busy or stopping...), `details.description`
   * the server's text. Thrown by the endpoint client; thrown by a handler (`endpointError()`) to
   * answer with that code.
   */
  REQUEST_FAILED: 'REQUEST_FAILED',
  /**
   * The embedded (SQLite) state store could not read or write its file: in use by another
   * process, disk full, an I/O error. `details.path` names the file; nothing was half-written.
   */
  STORAGE_FAILED: 'STORAGE_FAILED',
  /**
   * Thrown by a job handler (`unrecoverable()`): the job goes to the dead letters at once, with no
   * attempt left. Also the code of a dead job whose payload could not be decoded or validated.
   */
  JOB_UNRECOVERABLE: 'JOB_UNRECOVERABLE',
  /** `addBulk`: a job id is already in the queue's duplicate window; nothing was added. */
  JOB_DUPLICATE: 'JOB_DUPLICATE',
  /** The test harness could not start or control a nats-server. */
  TEST_SERVER_FAILED: 'TEST_SERVER_FAILED',
} as const;

/** One of the {@link ErrorCode} strings. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for('natskit.error');

/** Fields an error can carry beside its message. */
export interface NatskitErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** The service (token name) the error is about. */
  service?: string;
  /** Extra structured detail for logs and callers. */
  details?: Readonly<Record<string, unknown>>;
}

/**
 * The one error class of natskit. Tell errors apart by {@link NatskitError.code}, never by message.
 *
 * @example
 * ```ts
 * try { await ServiceManager.start(options) }
 * catch (err) { if (NatskitError.is(err, 'SERVICE_START_TIMEOUT')) console.error(err.service) }
 * ```
 */
export class NatskitError extends Error {
  /** What went wrong, as a stable string. */
  readonly code: ErrorCode;
  /** The service (token name) the error is about, when there is one. */
  readonly service: string | undefined;
  /** Extra structured detail. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly [brand] = true;

  constructor(code: ErrorCode, message: string, options: NatskitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NatskitError';
    this.code = code;
    this.service = options.service;
    this.details = options.details;
  }

  /**
   * True when `err` is a natskit error (from any copy of the package), and, when `code` is
   * given, has that code.
   */
  static is(err: unknown, code?: ErrorCode): err is NatskitError {
    if (typeof err !== 'object' || err === null) return false;
    try {
      // `err` may be anything user code threw, a Proxy whose every read throws included.
      if ((err as { [brand]?: unknown })[brand] !== true) return false;
      return code === undefined || (err as NatskitError).code === code;
    } catch {
      return false;
    }
  }
}

/**
 * A natskit error that takes the place of `inner` (another natskit error) and says more: its
 * `message` already contains inner's. It keeps inner's `cause` (not inner itself) and the stack
 * where inner was thrown, so nothing is said twice where the messages of a cause chain are joined
 * (pino's `err` serializer does, `util.inspect` prints each).
 */
export function supersede(
  inner: NatskitError,
  code: ErrorCode,
  message: string,
  options: Omit<NatskitErrorOptions, 'cause'> = {},
): NatskitError {
  const err = new NatskitError(code, message, {
    ...options,
    ...(inner.cause === undefined ? {} : { cause: inner.cause }),
  });
  const frames = typeof inner.stack === 'string' ? inner.stack.indexOf('\n    at ') : -1;
  if (frames >= 0) err.stack = `${err.name}: ${message}${(inner.stack as string).slice(frames)}`;
  return err;
}

/**
 * Several failures gathered into one error (every failed stop step of a shutdown, say). It is
 * a real `AggregateError` (`errors` holds each failure, in order) and carries a natskit `code`,
 * so `NatskitError.is(err, 'SHUTDOWN_FAILED')` works on it.
 */
export class NatskitAggregateError extends AggregateError {
  /** What went wrong, as a stable string. */
  readonly code: ErrorCode;
  /** The service the error is about, when there is one. */
  readonly service: string | undefined;
  /** Extra structured detail. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly [brand] = true;

  constructor(
    code: ErrorCode,
    message: string,
    errors: readonly unknown[],
    options: NatskitErrorOptions = {},
  ) {
    super(errors, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NatskitAggregateError';
    this.code = code;
    this.service = options.service;
    this.details = options.details;
  }
}
