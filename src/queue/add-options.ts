import { nuid } from '@nats-io/transport-node';
import {
  checkKnownKeys,
  checkOptionsObject,
  describeValue,
  knownKeys,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { asNatskitError } from '../errors/thrown.js';
import { checkHeaders, headerBytes } from '../jetstream/headers.js';
import type { Codec } from '../kv/codec.js';
import { type StandardSchemaV1, validate } from '../schema/standard-schema.js';
import { checkJobId, H, type QueueNames } from './names.js';
import type { AddOptions, Backoff } from './types.js';

/** The most attempts a job may have. */
export const MAX_ATTEMPTS = 1_000;

/** The defaults every job of a queue starts from. */
export interface JobDefaults {
  readonly attempts: number;
  readonly backoff: Backoff;
}

const ADD_KEYS = knownKeys<AddOptions>({
  jobId: true,
  delayMs: true,
  runAt: true,
  attempts: true,
  backoff: true,
  headers: true,
  signal: true,
});
const FIXED_KEYS = knownKeys<Extract<Backoff, { type: 'fixed' }>>({ type: true, delayMs: true });
const EXP_KEYS = knownKeys<Extract<Backoff, { type: 'exponential' }>>({
  type: true,
  delayMs: true,
  maxDelayMs: true,
});

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `${field} ${why}`, { details: { field } });
}

function nonNegativeMs(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalid(field, `must be a number of milliseconds >= 0, got ${describeValue(value)}`);
  }
}

/** Checks a backoff; returns it (frozen copy) or `fallback` when absent. */
export function checkBackoff(field: string, value: unknown, fallback: Backoff): Backoff {
  if (value === undefined) return fallback;
  checkOptionsObject(field, value, EXP_KEYS);
  const b = value as { type?: unknown; delayMs?: unknown; maxDelayMs?: unknown };
  if (b.type !== 'fixed' && b.type !== 'exponential') {
    throw invalid(
      `${field}.type`,
      `must be 'fixed' or 'exponential', got ${describeValue(b.type)}`,
    );
  }
  if (b.type === 'fixed') checkKnownKeys(field, value as object, FIXED_KEYS);
  nonNegativeMs(`${field}.delayMs`, b.delayMs);
  if (b.maxDelayMs !== undefined) nonNegativeMs(`${field}.maxDelayMs`, b.maxDelayMs);
  return Object.freeze({ ...b }) as Backoff;
}

/** Checks a number of attempts; returns it or `fallback` when absent. */
export function checkAttempts(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_ATTEMPTS) {
    throw invalid(
      field,
      `must be an integer from 1 to ${MAX_ATTEMPTS}, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** The delay before attempt `failures + 1` by a backoff. */
export function backoffDelay(backoff: Backoff, failures: number): number {
  if (backoff.type === 'fixed') return backoff.delayMs;
  const raw = backoff.delayMs * 2 ** Math.max(0, failures - 1);
  return Math.min(raw, backoff.maxDelayMs ?? Number.POSITIVE_INFINITY);
}

/**
 * When the job is due: undefined for now. A `runAt` not in the future, or `delayMs: 0`, is now
 * (a producer's clock, or a time computed a moment ago, must not make the add fail).
 */
function dueAt(o: AddOptions, now: number): Date | undefined {
  if (o.delayMs !== undefined && o.runAt !== undefined) {
    throw invalid('options.delayMs', 'and options.runAt cannot both be set');
  }
  if (o.delayMs !== undefined) {
    nonNegativeMs('options.delayMs', o.delayMs);
    return o.delayMs > 0 ? new Date(now + o.delayMs) : undefined;
  }
  if (o.runAt !== undefined) {
    if (!(o.runAt instanceof Date) || Number.isNaN(o.runAt.getTime())) {
      throw invalid('options.runAt', `must be a valid Date, got ${describeValue(o.runAt)}`);
    }
    return o.runAt.getTime() > now ? new Date(o.runAt.getTime()) : undefined;
  }
  return undefined;
}

/** Checks the caller's headers: natskit's rules, and no reserved `Nats-`/`Natskit-` prefix. */
export function userHeaders(value: unknown): Record<string, string> {
  const list = checkHeaders(
    value as Readonly<Record<string, string>> | undefined,
    'options.headers',
  );
  for (const [k] of list) {
    const lower = k.toLowerCase();
    if (lower.startsWith('nats-') || lower.startsWith('natskit-')) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `options.headers: header ${JSON.stringify(k)} uses a reserved prefix (Nats-, Natskit-)`,
        { details: { field: 'options.headers', header: k } },
      );
    }
  }
  return Object.fromEntries(list);
}

/** What a producer needs to turn an add into a message. */
export interface PlanContext<D> {
  readonly names: QueueNames;
  readonly codec: Codec<D>;
  readonly schema: StandardSchemaV1<unknown, D> | undefined;
  readonly defaults: JobDefaults;
  /** The largest message the server takes (payload plus headers). */
  readonly maxPayload: number;
  /** Throws `CAPABILITY_MISSING` when the server cannot schedule messages. */
  requireSchedules(): void;
}

/** One job ready to publish. */
export interface PlannedJob {
  readonly id: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly runAt: Date | undefined;
}

/**
 * Checks the options and the payload and builds the message; throws before anything is sent.
 * `field` prefixes messages (`options`, `jobs[3].options`).
 */
export async function planJob<D>(
  ctx: PlanContext<D>,
  data: D,
  options: AddOptions | undefined,
  now: number,
): Promise<PlannedJob> {
  checkOptionsObject('options', options, ADD_KEYS);
  const o = options ?? {};
  const id = o.jobId === undefined ? nuid.next() : checkJobId('options.jobId', o.jobId);
  const attempts = checkAttempts('options.attempts', o.attempts, ctx.defaults.attempts);
  const backoff = checkBackoff('options.backoff', o.backoff, ctx.defaults.backoff);
  const due = dueAt(o, now);
  const headers: Record<string, string> = {
    ...userHeaders(o.headers),
    [H.id]: id,
    [H.attempts]: String(attempts),
    [H.backoff]: JSON.stringify(backoff),
    [H.addedAt]: new Date(now).toISOString(),
  };
  const value = await validate(ctx.schema, data, { label: `job for queue ${ctx.names.queue}` });
  let bytes: Uint8Array;
  try {
    bytes = ctx.codec.encode(value);
  } catch (err) {
    throw asNatskitError(
      err,
      'INVALID_VALUE',
      `job for queue ${ctx.names.queue}: the codec failed`,
    );
  }
  let subject = ctx.names.ready(id);
  if (due) {
    ctx.requireSchedules();
    subject = ctx.names.delayed(id);
    headers[H.runAt] = due.toISOString();
    headers['Nats-Schedule'] = `@at ${due.toISOString()}`;
    headers['Nats-Schedule-Target'] = ctx.names.ready(id);
  }
  const size = bytes.length + headerBytes(Object.entries(headers)) + 64; // + Nats-Msg-Id
  if (size > ctx.maxPayload) {
    throw new NatskitError(
      'VALUE_TOO_LARGE',
      `job for queue ${ctx.names.queue} is ${size} bytes with its headers; the server takes ${ctx.maxPayload}`,
      { details: { bytes: size, limit: ctx.maxPayload } },
    );
  }
  return { id, subject, data: bytes, headers, runAt: due };
}
