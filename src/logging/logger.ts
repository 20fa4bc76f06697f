import { type DestinationStream, type Level, type Logger, pino } from 'pino';
import { safeErrSerializer } from '../errors/thrown.js';

/** Keys whose values never reach a log line, at any of the first four levels of nesting. */
const SECRET_KEYS = [
  'password',
  'pass',
  'token',
  'authToken',
  'auth_token',
  'secret',
  'seed',
  'nkey',
  'nkeySeed',
  'creds',
  'credentials',
  'jwt',
  'authorization',
  'Authorization',
  'authenticator',
];

/** The pino redaction paths natskit configures on every logger it uses. */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((key) => [
  key,
  `*.${key}`,
  `*.*.${key}`,
  `*.*.*.${key}`,
]);

const REDACT = { paths: [...REDACT_PATHS], censor: '[redacted]' };

/** Options for the logger natskit creates. */
export interface LoggerOptions {
  /** @defaultValue 'info' */
  readonly level?: Level | 'silent';
  /** Where lines go: a pino destination stream, a file path, or a file descriptor. @defaultValue stdout */
  readonly destination?: DestinationStream | string | number;
}

/** Either a pino logger of the user's (natskit adds its redaction to a child of it) or options. */
export type LoggerOption = Logger | LoggerOptions;

/** The log levels pino accepts, for validation. */
export const LOG_LEVELS: readonly string[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

function isLogger(value: LoggerOption): value is Logger {
  return (
    typeof (value as Logger).child === 'function' && typeof (value as Logger).info === 'function'
  );
}

/**
 * An error's message followed by those of its causes, each cause's only when the text so far
 * does not hold it already: a natskit error that says what its cause said (`could not connect to
 * NATS at ...: Authorization Violation`) is not followed by the same words again, as pino's own
 * join of the cause chain does.
 */
export function messageWithNewCauses(err: Error): string {
  let text = String(err.message);
  const seen = new Set<unknown>([err]);
  for (let c: unknown = err.cause; c instanceof Error && !seen.has(c); c = c.cause) {
    seen.add(c);
    if (c.message && !text.includes(c.message)) text += `: ${c.message}`;
  }
  return text;
}

/** pino's error serializer, with each message of the cause chain said once. */
function stdErr(value: never): unknown {
  const out = pino.stdSerializers.err(value);
  if (
    (value as unknown) instanceof Error &&
    typeof out === 'object' &&
    out !== null &&
    'message' in out
  ) {
    (out as { message: string }).message = messageWithNewCauses(value as Error);
  }
  return out;
}

/** The `err` serializer a logger uses (pino's own unless its owner set one). */
function errSerializer(logger: Logger | undefined): (value: never) => unknown {
  const own = (
    logger as unknown as Record<symbol, Record<string, unknown> | undefined> | undefined
  )?.[pino.symbols.serializersSym]?.err;
  return typeof own === 'function' ? (own as (value: never) => unknown) : stdErr;
}

/**
 * The root logger of a ServiceManager. Secrets (passwords, tokens, nkey seeds, creds, JWTs,
 * authorization headers) are redacted here, once, for every line any service logs. Logging
 * `{ err }` never throws, whatever user code threw (see {@link safeErrSerializer}).
 */
export function createRootLogger(option: LoggerOption = {}): Logger {
  if (isLogger(option)) {
    return option.child(
      {},
      { redact: REDACT, serializers: { err: safeErrSerializer(errSerializer(option)) } },
    );
  }
  const destination =
    typeof option.destination === 'string' || typeof option.destination === 'number'
      ? pino.destination({ dest: option.destination, sync: true })
      : option.destination;
  const options = {
    level: option.level ?? 'info',
    redact: REDACT,
    serializers: { err: safeErrSerializer(stdErr) },
  };
  return destination ? pino(options, destination) : pino(options);
}
