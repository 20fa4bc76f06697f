import {
  InvalidArgumentError,
  type Msg,
  type NatsConnection,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { checkOptionsObject, knownKeys } from '../config/validate.js';
import type { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { isConnectionClosed } from '../jetstream/api-errors.js';
import { msgHeaders } from '../jetstream/headers.js';
import { assertJsonSafe } from '../kv/codec.js';
import { countingRetries, type Metrics } from '../metrics/metrics.js';
import { checkRetryOptions, type RetryOptions, withRetry } from '../retry/retry.js';
import { type StandardSchemaV1, validate } from '../schema/standard-schema.js';
import { SERVICE_ERROR, SERVICE_ERROR_CODE } from './protocol.js';

/** Options of an {@link endpointClient}. */
export interface EndpointClientOptions<Res> {
  /** How long one attempt waits for the reply. @defaultValue the connection's requestTimeoutMs, or 5000 */
  readonly timeoutMs?: number;
  /**
   * Retries when no instance answers (no responders) or one answered 503 (busy, stopping: the
   * request was not run). A timeout is not retried: the request may have run. `false`: one attempt.
   * @defaultValue RETRY_DEFAULTS (5 retries, 100 ms to 2 s)
   */
  readonly retry?: RetryOptions | false;
  /** Validates each reply. */
  readonly schema?: StandardSchemaV1<unknown, Res>;
  /** Counts retries in `natskit_retries_total{component="endpoint-client"}` (`app.metrics`). */
  readonly metrics?: Metrics;
}

/** Per-call options of {@link EndpointClient.request}. */
export interface EndpointCallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
}

const CLIENT_KEYS = knownKeys<EndpointClientOptions<unknown>>({
  timeoutMs: true,
  retry: true,
  schema: true,
  metrics: true,
});
const CALL_KEYS = knownKeys<EndpointCallOptions>({ signal: true, timeoutMs: true, headers: true });

/** Calls one endpoint: JSON in, JSON out, service errors as `REQUEST_FAILED`. */
export interface EndpointClient<Req, Res> {
  readonly subject: string;
  /**
   * @throws NatskitError `REQUEST_FAILED` (`details.status`: the service's error code),
   * `NATS_UNAVAILABLE` (no instance answered through every retry; a timeout, with
   * `details.timedOut`: the request may have run; the connection closed), `ABORTED`,
   * `INVALID_VALUE` (data that is not JSON), `VALUE_TOO_LARGE` (over the server's max_payload),
   * `DECODE_FAILED` (a reply that is not JSON), `VALIDATION_FAILED` (a reply that fails the schema),
   * `AUTH_FAILED` (no permission to publish to the subject), `PUBLISH_FAILED` (a stream captured
   * the request and answered with its publish ack: `details.stream`, `details.seq`), `INVALID_OPTIONS` (a header name
   * with a space, `:` or a non-ASCII character, a value with CR/LF; nothing was sent).
   */
  request(data: Req, options?: EndpointCallOptions): Promise<Res>;
}

/** A 503 reply: not run, another attempt may find a free instance. */
class ServiceUnavailable extends Error {}

const retryable = (err: unknown) =>
  err instanceof ServiceUnavailable ||
  err instanceof NoRespondersError ||
  (err instanceof RequestError && err.isNoResponders());

/**
 * A typed client for an endpoint. `connection` is the ConnectionService (`app.get(ConnectionService)`)
 * or any NatsConnection.
 */
export function endpointClient<Req = unknown, Res = unknown>(
  connection: ConnectionService | NatsConnection,
  subject: string,
  options: EndpointClientOptions<Res> = {},
): EndpointClient<Req, Res> {
  const tokens = typeof subject === 'string' ? subject.split('.') : [''];
  if (tokens.some((t) => t === '' || t === '*' || t === '>' || /\s/.test(t))) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `endpointClient subject ${JSON.stringify(subject)}: a request goes to one subject, with no empty token, space or wildcard`,
      { details: { field: 'subject' } },
    );
  }
  checkOptionsObject('endpointClient options ', options, CLIENT_KEYS);
  checkRetryOptions('endpointClient options retry', options.retry);
  const nc = () => ('nc' in connection ? connection.nc : connection);
  const defaultTimeout =
    options.timeoutMs ?? ('requestTimeoutMs' in connection ? connection.requestTimeoutMs : 5_000);
  const decoder = new TextDecoder();
  const counter = options.metrics?.enabled
    ? countingRetries(options.metrics, 'endpoint-client')
    : undefined;
  const read = (m: Msg): unknown => {
    const code = m.headers?.get(SERVICE_ERROR_CODE);
    const description = m.headers?.get(SERVICE_ERROR) ?? '';
    if (code) {
      const status = Number(code);
      if (status === 503) throw new ServiceUnavailable(description);
      let body: unknown;
      try {
        body = m.data.length ? JSON.parse(decoder.decode(m.data)) : undefined;
      } catch {
        body = undefined;
      }
      throw new NatskitError('REQUEST_FAILED', `${subject} answered ${status}: ${description}`, {
        details: { subject, status, description, ...(body === undefined ? {} : { body }) },
      });
    }
    if (m.data.length === 0) return undefined;
    let reply: unknown;
    try {
      reply = JSON.parse(decoder.decode(m.data));
    } catch (err) {
      throw new NatskitError('DECODE_FAILED', `the reply from ${subject} is not JSON`, {
        cause: err,
        details: { subject, bytes: m.data.length },
      });
    }
    if (m.headers === undefined && isPublishAck(reply)) {
      throw new NatskitError(
        'PUBLISH_FAILED',
        `request to ${subject}: stream ${reply.stream} captured the request (stored as sequence ${reply.seq}) ` +
          "and answered with its publish ack, so the endpoint's reply was lost (the endpoint may have run; not retried). " +
          "Keep endpoint subjects out of every stream's subjects",
        { details: { subject, stream: reply.stream, seq: reply.seq } },
      );
    }
    return reply;
  };
  return {
    subject,
    async request(data, call = {}) {
      checkOptionsObject('request options ', call, CALL_KEYS);
      // Checked before anything is sent: a typed error naming the header, not the client's.
      const h = msgHeaders(call.headers);
      if (data !== undefined) assertJsonSafe(data);
      const payload = data === undefined ? undefined : JSON.stringify(data);
      const timeoutMs = call.timeoutMs ?? defaultTimeout;
      let reply: unknown;
      try {
        reply = await withRetry(
          async () =>
            read(
              await nc().request(subject, payload, {
                timeout: timeoutMs,
                ...(h ? { headers: h } : {}),
              }),
            ),
          {
            what: `request to ${subject}`,
            retry: options.retry === false ? { retries: 0 } : options.retry,
            signal: call.signal,
            isRetryable: retryable,
            ...(counter ? { counter } : {}),
          },
        );
      } catch (err) {
        const last = NatskitError.is(err, 'NATS_UNAVAILABLE') ? err.cause : undefined;
        if (last instanceof ServiceUnavailable) {
          throw new NatskitError('REQUEST_FAILED', `${subject} answered 503: ${last.message}`, {
            cause: err,
            details: { subject, status: 503, description: last.message },
          });
        }
        throw clientError(err, subject, timeoutMs);
      }
      return options.schema
        ? await validate(options.schema, reply, { label: `reply from ${subject}` })
        : (reply as Res);
    },
  };
}

const ACK_KEYS = new Set(['stream', 'seq', 'domain', 'duplicate']);

/**
 * A JetStream publish ack: `stream` and `seq`, optionally `domain` and `duplicate`, nothing
 * else. Sent with no headers, unlike a service error; an endpoint replying exactly this shape is
 * taken for one (the price of telling the caller its request went to a stream).
 */
function isPublishAck(v: unknown): v is { stream: string; seq: number } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.stream === 'string' &&
    typeof o.seq === 'number' &&
    Object.keys(o).every((k) => ACK_KEYS.has(k))
  );
}

/** `err`, or the error a RequestError wraps, is an `E`. */
function is<E>(err: unknown, type: abstract new (...args: never[]) => E): boolean {
  return err instanceof type || (err instanceof RequestError && err.cause instanceof type);
}

/** What the NATS client threw, as the natskit error the caller is promised. */
function clientError(err: unknown, subject: string, timeoutMs: number): unknown {
  if (NatskitError.is(err)) return err;
  const details = { subject };
  if (is(err, TimeoutError)) {
    return new NatskitError(
      'NATS_UNAVAILABLE',
      `no reply from ${subject} within ${timeoutMs} ms (the request may have run; not retried)`,
      { cause: err, details: { ...details, timeoutMs, timedOut: true } },
    );
  }
  if (isConnectionClosed(err)) {
    return new NatskitError('NATS_UNAVAILABLE', `request to ${subject}: the connection is closed`, {
      cause: err,
      details,
    });
  }
  if (is(err, PermissionViolationError)) {
    return new NatskitError('AUTH_FAILED', `no permission to request ${subject}`, {
      cause: err,
      details,
    });
  }
  if (err instanceof InvalidArgumentError && /max_payload/.test(err.message)) {
    return new NatskitError('VALUE_TOO_LARGE', `the request to ${subject} is over max_payload`, {
      cause: err,
      details,
    });
  }
  return err;
}
