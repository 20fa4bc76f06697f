import { JetStreamApiError } from '@nats-io/jetstream';
import { closestName, describeValue } from '../config/validate.js';
import { type ErrorCode, NatskitError } from '../errors/natskit-error.js';

/**
 * Characters a stream or consumer name may not hold: the server (and the client, with a raw
 * `InvalidNameError`) refuse `.`, `*`, `>`, path separators and whitespace, as a name becomes a
 * subject token and a directory on disk.
 */
const BAD_NAME = /[.*>/\\\s]/;

/**
 * Checks a stream or consumer name before any server call.
 * @throws NatskitError `INVALID_OPTIONS` naming `field`.
 */
export function checkJetStreamName(field: string, value: unknown): void {
  if (typeof value === 'string' && value !== '' && !BAD_NAME.test(value)) return;
  const why =
    typeof value === 'string' && value !== ''
      ? `cannot contain '.', '*', '>', '/', '\\' or whitespace`
      : 'must be a non-empty string';
  throw new NatskitError('INVALID_OPTIONS', `${field} ${why}, got ${describeValue(value)}`, {
    details: { field },
  });
}

/**
 * Checks an enumerated field (a stream's `retention`, `storage`, `discard`): absent, or one of
 * `allowed`; a near miss (`work_queue`) names the closest value. The server would answer a
 * wrong one with "invalid JSON" (10025), naming neither the field nor the values.
 */
export function checkOneOf(field: string, value: unknown, allowed: readonly string[]): void {
  if (value === undefined || (typeof value === 'string' && allowed.includes(value))) return;
  const near = typeof value === 'string' ? closestName(value, allowed) : undefined;
  throw new NatskitError(
    'INVALID_OPTIONS',
    `${field} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describeValue(value)}${
      near === undefined ? '' : ` (did you mean '${near}'?)`
    }`,
    { details: { field, allowed, ...(near === undefined ? {} : { suggestion: near }) } },
  );
}

/** JetStream API codes of a config the server refuses, by the natskit code and field. */
const REFUSALS: Readonly<Record<number, { readonly code: ErrorCode; readonly field?: string }>> = {
  /** "invalid JSON": a value of the wrong type or an unknown enum value. */
  10025: { code: 'INVALID_OPTIONS' },
  /** "stream configuration invalid" / "max age needs to be >= 100ms" and other limits. */
  10052: { code: 'INVALID_OPTIONS' },
  /** "stream name already in use with a different configuration". */
  10058: { code: 'STREAM_CONFIG_CONFLICT', field: 'name' },
  /** "subjects overlap with an existing stream". */
  10065: { code: 'STREAM_CONFIG_CONFLICT', field: 'subjects' },
  /** "replicas > 1 not supported in non-clustered mode". */
  10074: { code: 'INVALID_OPTIONS', field: 'num_replicas' },
  /** "multiple non-filtered consumers not allowed on workqueue stream". */
  10099: { code: 'CONSUMER_CONFIG_CONFLICT', field: 'filterSubjects' },
  /** "filtered consumer not unique on workqueue stream". */
  10100: { code: 'CONSUMER_CONFIG_CONFLICT', field: 'filterSubjects' },
};

/**
 * A JetStream API refusal of a stream or consumer config, as the natskit error the caller is
 * promised: the codes above by the table, any other 400 (a bad request) as `INVALID_OPTIONS`;
 * `details.apiCode` and `details.description` keep the server's code and text, `cause` the
 * client's error. Anything else (a timeout, a 503, a natskit error) comes back unchanged.
 */
export function configRefusal(
  err: unknown,
  what: string,
  details: Readonly<Record<string, unknown>> = {},
): unknown {
  if (!(err instanceof JetStreamApiError)) return err;
  const known = REFUSALS[err.code];
  if (known === undefined && err.status !== 400) return err;
  const code = known?.code ?? 'INVALID_OPTIONS';
  const field = known?.field;
  return new NatskitError(code, `${what}: the server refused it: ${err.message} (${err.code})`, {
    cause: err,
    details: {
      ...details,
      ...(field === undefined ? {} : { field }),
      apiCode: err.code,
      description: err.message,
    },
  });
}
