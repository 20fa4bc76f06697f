import { createHash } from 'node:crypto';
import type { JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { checkOptionsObject, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { asNatskitError } from '../errors/thrown.js';
import { ApiCode, isApiError } from '../jetstream/api-errors.js';
import { headerBytes } from '../jetstream/headers.js';
import type { Codec } from '../kv/codec.js';
import { type StandardSchemaV1, validate } from '../schema/standard-schema.js';
import type { PublishOptions } from '../stream/publish-options.js';
import { checkAttempts, checkBackoff, type JobDefaults, userHeaders } from './add-options.js';
import { keptHeaders } from './dead-letters.js';
import { H, type QueueNames } from './names.js';
import type { ScheduledJob, ScheduleInfo, ScheduleOptions } from './types.js';

const SCHEDULE_KEYS = knownKeys<ScheduleOptions<unknown>>({
  every: true,
  cron: true,
  timeZone: true,
  data: true,
  attempts: true,
  backoff: true,
  headers: true,
  signal: true,
});

/**
 * A schedule name is a subject token and the prefix of every fired job's id (`<name>=<seq>`,
 * within a job id's 128 characters): no dots, wildcards, spaces, `:` or `=`.
 */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** A Go duration as the server parses it, in the units a schedule makes sense with. */
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
/** The server's shorthands for cron expressions. */
const CRON_MACROS = new Set([
  '@yearly',
  '@annually',
  '@monthly',
  '@weekly',
  '@daily',
  '@midnight',
  '@hourly',
]);
/** One cron field: numbers, names (`mon`, `jan`), `*`, `?`, lists, ranges and steps. */
const CRON_FIELD = /^[A-Za-z0-9*?,/-]+$/;

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `${field} ${why}`, { details: { field } });
}

/** Checks a schedule name. @throws NatskitError `INVALID_OPTIONS` */
export function checkScheduleName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw invalid(
      'name',
      `of a schedule must be 1-64 letters, digits, '_' or '-' (it becomes a subject token), got ${describeValue(name)}`,
    );
  }
  return name;
}

/** `every` as the server's `@every` argument. */
function intervalOf(every: unknown): string {
  if (typeof every === 'number') {
    if (!Number.isInteger(every) || every < 1_000) {
      throw invalid('options.every', `must be an integer of milliseconds >= 1000, got ${every}`);
    }
    return `${every}ms`;
  }
  if (typeof every !== 'string' || !DURATION.test(every)) {
    throw invalid(
      'options.every',
      `must be milliseconds or a duration like '30s', '5m', '1h30m' (units ms, s, m, h), got ${describeValue(every)}`,
    );
  }
  let ms = 0;
  for (const [, n, unit] of every.matchAll(DURATION_PART))
    ms += Number(n) * (UNIT_MS[unit ?? ''] ?? 0);
  if (ms < 1_000) throw invalid('options.every', `must be at least one second, got ${every}`);
  return every;
}

/** A cron expression, checked for its shape; the server checks the values and refuses the rest. */
function cronOf(cron: unknown): string {
  if (typeof cron !== 'string') {
    throw invalid('options.cron', `must be a string, got ${describeValue(cron)}`);
  }
  const expr = cron.trim();
  if (CRON_MACROS.has(expr)) return expr;
  const fields = expr.split(/\s+/);
  if (fields.length !== 6 || !fields.every((f) => CRON_FIELD.test(f))) {
    throw invalid(
      'options.cron',
      `must have six fields, seconds first ('sec min hour dom month dow', e.g. '0 30 9 * * mon-fri'), or be @hourly, @daily...; got ${describeValue(cron)}`,
    );
  }
  return fields.join(' ');
}

function timeZoneOf(tz: unknown): string {
  if (typeof tz !== 'string' || tz === '') {
    throw invalid('options.timeZone', `must be an IANA time zone name, got ${describeValue(tz)}`);
  }
  try {
    const known = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
    // The server loads zones by file name, case-sensitively: 'utc' is sent as 'UTC'. A link
    // the runtime resolves to another name (Asia/Kolkata -> Asia/Calcutta) keeps the caller's.
    return known.toLowerCase() === tz.toLowerCase() ? known : tz;
  } catch {
    throw invalid(
      'options.timeZone',
      `is not a time zone this runtime knows: ${describeValue(tz)}`,
    );
  }
}

/** What a schedule needs from its queue. */
export interface ScheduleContext<D> {
  readonly names: QueueNames;
  readonly codec: Codec<D>;
  readonly schema: StandardSchemaV1<unknown, D> | undefined;
  readonly defaults: JobDefaults;
  readonly maxPayload: number;
  readonly jsm: JetStreamManager;
  /** Throws `CAPABILITY_MISSING` when the server has no repeating schedules. */
  requireSchedules(): void;
  publish(subject: string, data: Uint8Array, o: PublishOptions): Promise<unknown>;
}

interface PlannedSchedule {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
  readonly digest: string;
}

/** Checks everything and builds the schedule message; throws before anything is sent. */
async function plan<D>(
  ctx: ScheduleContext<D>,
  name: string,
  options: ScheduleOptions<D>,
): Promise<PlannedSchedule> {
  if (options === undefined) throw invalid('options', 'are needed: { every | cron, data }');
  checkOptionsObject('options', options, SCHEDULE_KEYS);
  if (!('data' in options)) throw invalid('options.data', 'is needed (the payload of each job)');
  if ((options.every === undefined) === (options.cron === undefined)) {
    throw invalid('options.every', 'or options.cron must be set, and only one of them');
  }
  let pattern: string;
  let timeZone: string | undefined;
  if (options.every !== undefined) {
    if (options.timeZone !== undefined) {
      throw invalid('options.timeZone', 'applies to cron schedules only, not to every');
    }
    pattern = `@every ${intervalOf(options.every)}`;
  } else {
    pattern = cronOf(options.cron);
    if (options.timeZone !== undefined) timeZone = timeZoneOf(options.timeZone);
  }
  const attempts = checkAttempts('options.attempts', options.attempts, ctx.defaults.attempts);
  const backoff = checkBackoff('options.backoff', options.backoff, ctx.defaults.backoff);
  const caller = userHeaders(options.headers);
  const value = await validate(ctx.schema, options.data, {
    label: `schedule ${name} of queue ${ctx.names.queue}`,
  });
  let bytes: Uint8Array;
  try {
    bytes = ctx.codec.encode(value);
  } catch (err) {
    throw asNatskitError(err, 'INVALID_VALUE', `schedule ${name}: the codec failed`);
  }
  const headers: Record<string, string> = {
    ...caller,
    [H.schedule]: name,
    [H.attempts]: String(attempts),
    [H.backoff]: JSON.stringify(backoff),
    'Nats-Schedule': pattern,
    'Nats-Schedule-Target': ctx.names.scheduleTarget(name),
    ...(timeZone ? { 'Nats-Schedule-Time-Zone': timeZone } : {}),
  };
  const digest = createHash('sha256')
    .update(JSON.stringify(Object.entries(headers).sort(([a], [b]) => (a < b ? -1 : 1))))
    .update(bytes)
    .digest('base64url');
  headers[H.scheduleDigest] = digest;
  const size = bytes.length + headerBytes(Object.entries(headers));
  if (size > ctx.maxPayload) {
    throw new NatskitError(
      'VALUE_TOO_LARGE',
      `schedule ${name} is ${size} bytes with its headers; the server takes ${ctx.maxPayload}`,
      { details: { bytes: size, limit: ctx.maxPayload } },
    );
  }
  return { subject: ctx.names.schedule(name), data: bytes, headers, digest };
}

function timeZoneNote(headers: Readonly<Record<string, string>>): string {
  const tz = headers['Nats-Schedule-Time-Zone'];
  return tz ? ` in ${tz}` : '';
}

const REFUSALS: Readonly<Record<number, string>> = {
  [ApiCode.SchedulePatternInvalid]: 'options',
  [ApiCode.ScheduleTimeZoneInvalid]: 'options.timeZone',
  [ApiCode.ScheduleTargetInvalid]: 'name',
};

/**
 * Creates or replaces schedule `name`. The same definition already stored is left alone, so
 * every process may declare it at start without pushing its next firing back.
 */
export async function putSchedule<D>(
  ctx: ScheduleContext<D>,
  name: string,
  options: ScheduleOptions<D>,
): Promise<ScheduledJob> {
  checkScheduleName(name);
  const p = await plan(ctx, name, options);
  ctx.requireSchedules();
  const current = await ctx.jsm.streams.getMessage(ctx.names.stream, { last_by_subj: p.subject });
  if (current?.header?.get(H.scheduleDigest) === p.digest) return { name, action: 'unchanged' };
  try {
    // A new message on the schedule subject replaces the schedule (the server rolls it up).
    await ctx.publish(p.subject, p.data, {
      headers: p.headers,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    const cause = NatskitError.is(err) ? err.cause : err;
    for (const [code, field] of Object.entries(REFUSALS)) {
      if (isApiError(cause, Number(code))) {
        throw new NatskitError(
          'INVALID_OPTIONS',
          `schedule ${name}: the server refused it: ${(cause as Error).message} (${p.headers['Nats-Schedule']}${timeZoneNote(p.headers)})`,
          { cause: err, details: { field, apiCode: Number(code) } },
        );
      }
    }
    throw err;
  }
  return { name, action: current ? 'updated' : 'created' };
}

/** Removes schedule `name`; false when there was none. A firing already stored still runs. */
export async function removeSchedule(
  jsm: JetStreamManager,
  names: QueueNames,
  name: string,
): Promise<boolean> {
  checkScheduleName(name);
  const r = await jsm.streams.purge(names.stream, { filter: names.schedule(name) });
  return r.purged > 0;
}

function toInfo<D>(m: StoredMsg, codec: Codec<D>): ScheduleInfo<D> {
  const pattern = m.header?.get('Nats-Schedule') ?? '';
  const every = pattern.startsWith('@every ') ? pattern.slice('@every '.length) : undefined;
  let data: D | undefined;
  try {
    data = codec.decode(m.data);
  } catch {
    data = undefined;
  }
  const attempts = Number(m.header?.get(H.attempts));
  return {
    name: m.header?.get(H.schedule) || m.subject.slice(m.subject.lastIndexOf('.') + 1),
    every,
    cron: every === undefined ? pattern : undefined,
    timeZone: m.header?.get('Nats-Schedule-Time-Zone') || undefined,
    data,
    attempts: Number.isInteger(attempts) ? attempts : undefined,
    headers: Object.fromEntries(
      Object.entries(keptHeaders(m.header)).filter(([k]) => !k.startsWith(H.prefix)),
    ),
    updatedAt: m.time,
  };
}

/** Every schedule of the queue, by name. */
export async function listSchedules<D>(
  jsm: JetStreamManager,
  names: QueueNames,
  codec: Codec<D>,
): Promise<ScheduleInfo<D>[]> {
  const info = await jsm.streams.info(names.stream, { subjects_filter: names.schedule('*') });
  const subjects = Object.keys(info.state.subjects ?? {}).sort();
  const out: ScheduleInfo<D>[] = [];
  for (const subject of subjects) {
    const m = await jsm.streams.getMessage(names.stream, { last_by_subj: subject });
    if (m) out.push(toInfo(m, codec));
  }
  return out;
}
