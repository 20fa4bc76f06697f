import { type Msg, headers as natsHeaders } from '@nats-io/transport-node';
import {
  checkKnownKeys,
  checkOptionsObject,
  describeValue,
  knownKeys,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { EndpointDefinition, EndpointServiceOptions, EndpointStats } from './types.js';

/**
 * The NATS service protocol (ADR-32, "micro" v1), as @nats-io/services and the `nats` CLI speak
 * it: endpoints answer in a queue group; `$SRV.PING|INFO|STATS`, `.<name>` and `.<name>.<id>`
 * answer discovery; errors travel in two headers.
 */
export const SERVICE_ERROR = 'Nats-Service-Error';
export const SERVICE_ERROR_CODE = 'Nats-Service-Error-Code';
export const DEFAULT_QUEUE = 'q';

export type Verb = 'PING' | 'INFO' | 'STATS';
export const VERBS: readonly Verb[] = ['PING', 'INFO', 'STATS'];

/** `$SRV.<verb>`, `$SRV.<verb>.<name>` and `$SRV.<verb>.<name>.<id>`: the three an instance answers. */
export function controlSubjects(verb: Verb, name: string, id: string): string[] {
  return [`$SRV.${verb}`, `$SRV.${verb}.${name}`, `$SRV.${verb}.${name}.${id}`];
}

const SERVICE_KEYS = knownKeys<EndpointServiceOptions<readonly []>>({
  name: true,
  version: true,
  description: true,
  metadata: true,
  queue: true,
  inject: true,
  endpoints: true,
  drainTimeoutMs: true,
  token: true,
});
const ENDPOINT_KEYS = knownKeys<EndpointDefinition>({
  subject: true,
  schema: true,
  handler: true,
  concurrency: true,
  maxPending: true,
  queue: true,
  metadata: true,
});

/** Throws `INVALID_OPTIONS` when the options of `endpoints()` have an unknown field. */
export function checkServiceKeys(options: unknown): void {
  checkOptionsObject('endpoints options ', options, SERVICE_KEYS);
}

const NAME = /^[-\w]+$/;
const SEMVER = /^\d+\.\d+\.\d+(?:-[\w.-]+)?(?:\+[\w.-]+)?$/;

/** Throws `INVALID_OPTIONS` unless the name and version follow the protocol's rules. */
export function checkIdentity(name: unknown, version: unknown): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `endpoints name ${JSON.stringify(name)}: use letters, digits, - and _`,
      { details: { field: 'name' } },
    );
  }
  if (typeof version !== 'string' || !SEMVER.test(version)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `endpoints version ${JSON.stringify(version)} must be semver (1.0.0)`,
      { details: { field: 'version' } },
    );
  }
}

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `${field} ${why}`, { details: { field } });
}

/** A subject to subscribe to: tokens of visible characters, `*` anywhere, `>` only last. */
function checkSubject(field: string, subject: unknown): void {
  if (typeof subject !== 'string' || subject === '')
    throw invalid(field, 'must be a non-empty subject');
  const tokens = subject.split('.');
  tokens.forEach((t, i) => {
    if (t === '' || /\s/.test(t))
      throw invalid(field, `${JSON.stringify(subject)} is not a subject (empty token or space)`);
    if (t === '>' && i !== tokens.length - 1)
      throw invalid(field, `${JSON.stringify(subject)} has '>' before its last token`);
  });
}

/** A queue group name: one or more visible characters, no space. */
export function checkQueue(field: string, queue: unknown): void {
  if (queue !== undefined && (typeof queue !== 'string' || !/^\S+$/.test(queue)))
    throw invalid(field, `must be a queue group name without spaces, got ${describeValue(queue)}`);
}

/**
 * Throws `INVALID_OPTIONS` unless `defs` (what the `endpoints` function returned) is a record of
 * endpoints with protocol names (letters, digits, `-`, `_`), handlers and valid subjects.
 */
export function checkEndpoints(defs: unknown): void {
  if (typeof defs !== 'object' || defs === null || Array.isArray(defs))
    throw invalid('endpoints', 'function must return an object of endpoints by name');
  for (const [name, def] of Object.entries(defs)) {
    if (!NAME.test(name))
      throw invalid(`endpoint ${JSON.stringify(name)}`, 'name: use letters, digits, - and _');
    if (typeof def !== 'object' || def === null)
      throw invalid(`endpoint ${name}`, 'must be an endpoint({ handler, ... })');
    checkKnownKeys(`endpoint ${name} `, def, ENDPOINT_KEYS);
    const d = def as { handler?: unknown; subject?: unknown; queue?: unknown };
    if (typeof d.handler !== 'function')
      throw invalid(`endpoint ${name}`, 'needs a handler function');
    if (d.subject !== undefined) checkSubject(`endpoint ${name} subject`, d.subject);
    checkQueue(`endpoint ${name} queue`, d.queue);
  }
}

/** What identifies an instance in every discovery answer. */
export interface Identity {
  readonly name: string;
  readonly id: string;
  readonly version: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export function pingResponse(i: Identity): object {
  return { type: 'io.nats.micro.v1.ping_response', ...i };
}

export function infoResponse(
  i: Identity,
  description: string,
  endpoints: readonly {
    name: string;
    subject: string;
    queue_group: string;
    metadata: Readonly<Record<string, string>>;
  }[],
): object {
  return { type: 'io.nats.micro.v1.info_response', ...i, description, endpoints };
}

export function statsResponse(
  i: Identity,
  started: string,
  endpoints: readonly EndpointStats[],
): object {
  return { type: 'io.nats.micro.v1.stats_response', ...i, started, endpoints };
}

/** Answers `msg` with a service error: the code and text in the headers, details in the body. */
export function respondError(msg: Msg, status: number, description: string, body?: unknown): void {
  const h = natsHeaders();
  h.set(SERVICE_ERROR_CODE, String(status));
  // A header value is one line.
  h.set(SERVICE_ERROR, description.replace(/[\r\n]+/g, ' '));
  msg.respond(body === undefined ? undefined : JSON.stringify(body), { headers: h });
}

/**
 * An error a handler throws to answer with a service error code (400, 404, 409...): the client
 * sees `REQUEST_FAILED` with `details.status`.
 */
export function endpointError(status: number, message: string, details?: unknown): NatskitError {
  return new NatskitError('REQUEST_FAILED', message, {
    details: { status, description: message, ...(details === undefined ? {} : { body: details }) },
  });
}

/** The status a handler's error is answered with: its own, or a natskit code's meaning. */
export function statusOf(err: unknown): { status: number; description: string } {
  if (NatskitError.is(err)) {
    const d = err.details as { status?: unknown } | undefined;
    if (err.code === 'REQUEST_FAILED' && typeof d?.status === 'number') {
      return { status: d.status, description: err.message };
    }
    const byCode: Partial<Record<string, number>> = {
      VALIDATION_FAILED: 400,
      INVALID_KEY: 400,
      INVALID_VALUE: 400,
      VALUE_TOO_LARGE: 413,
      KV_BUCKET_NOT_FOUND: 404,
      STREAM_NOT_FOUND: 404,
      KV_REVISION_CONFLICT: 409,
      EXPECTATION_FAILED: 409,
      NATS_UNAVAILABLE: 503,
    };
    return { status: byCode[err.code] ?? 500, description: `${err.code}: ${err.message}` };
  }
  // Anything else may carry internals: the reply says only that it failed (the log says more).
  return { status: 500, description: 'internal error' };
}
