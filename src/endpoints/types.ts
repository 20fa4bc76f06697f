import type { MsgHdrs } from '@nats-io/transport-node';
import type { ServiceToken, TokenType } from '../lifecycle/service.js';
import type { StandardSchemaV1 } from '../schema/standard-schema.js';

/** A request handed to an endpoint's handler. */
export interface EndpointRequest<Req> {
  /** The request's payload, decoded (JSON) and validated by the endpoint's schema. */
  readonly data: Req;
  readonly subject: string;
  readonly headers: MsgHdrs | undefined;
  /** Aborted when the service stops and its drain deadline passes: a long handler should give up. */
  readonly signal: AbortSignal;
}

/** One endpoint: a subject, a handler, and how requests are checked and limited. */
export interface EndpointDefinition<Req = unknown, Res = unknown> {
  /** The subject it answers. @defaultValue `<service name>.<endpoint name>` */
  readonly subject?: string;
  /**
   * Validates each request (zod, valibot, arktype...: any Standard Schema). A request that fails
   * is answered with a service error 400 and the issues; the handler never sees it.
   */
  readonly schema?: StandardSchemaV1<unknown, Req>;
  /**
   * Answers one request: what it returns is the reply (JSON; `undefined` for an empty reply). To
   * answer with an error code, throw `endpointError(status, message)`; another error is a 500.
   */
  readonly handler: (request: EndpointRequest<Req>) => Res | Promise<Res>;
  /** Requests handled at once. @defaultValue 64 */
  readonly concurrency?: number;
  /**
   * Requests that may wait for a free slot; beyond that a request is answered 503 at once (not
   * run: the client helper retries it, on this instance or another). @defaultValue 1000
   */
  readonly maxPending?: number;
  /** Queue group; instances with the same share the requests. @defaultValue the service's */
  readonly queue?: string;
  /** Shown by discovery (`$SRV.INFO`). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** An endpoint of any request type, as a service's record of endpoints holds them. */
// biome-ignore lint/suspicious/noExplicitAny: each endpoint's request type is its own (see endpoint())
export type AnyEndpoint = EndpointDefinition<any, unknown>;

/** The types the injected tokens resolve to, in order. */
export type Injected<I extends readonly ServiceToken[]> = {
  readonly [K in keyof I]: TokenType<I[K]>;
};

/** What {@link endpoints} takes: the service, what it needs, and its endpoints. */
export interface EndpointServiceOptions<I extends readonly ServiceToken[]> {
  /** The service's name, shared by its instances: letters, digits, `-` and `_`. */
  readonly name: string;
  /** Its version (semver, e.g. `1.0.0`). */
  readonly version: string;
  readonly description?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** The queue group of its endpoints. @defaultValue 'q' (the protocol's) */
  readonly queue?: string;
  /**
   * Services the handlers use: resolved, and started before the endpoints (which stop before
   * them, so no handler runs against a stopped dependency).
   */
  readonly inject?: I;
  /**
   * The endpoints by name, built from the injected services. Wrap each in `endpoint({...})` for a
   * handler whose `data` is typed by the schema; a bare object works too, with `data: any`.
   */
  readonly endpoints: (...services: Injected<I>) => Readonly<Record<string, AnyEndpoint>>;
  /**
   * On stop, how long requests already accepted may finish; then their signals abort and those
   * still waiting are answered 503 (not run). @defaultValue 10000
   */
  readonly drainTimeoutMs?: number;
  /** Token to reach the running service (`app.get(token).stats()`). @defaultValue a new one */
  readonly token?: ServiceToken<EndpointGroupHandle>;
}

/** One endpoint's counters, as `$SRV.STATS` reports them. */
export interface EndpointStats {
  readonly name: string;
  readonly subject: string;
  readonly queue_group: string;
  readonly num_requests: number;
  readonly num_errors: number;
  /** Total handling time, nanoseconds. */
  readonly processing_time: number;
  readonly average_processing_time: number;
  readonly last_error?: string;
}

/** A running endpoint service. */
export interface EndpointGroupHandle {
  readonly name: string;
  /** This instance's id (unique per start). */
  readonly id: string;
  readonly version: string;
  /** The counters of each endpoint. */
  stats(): readonly EndpointStats[];
  /** Requests running and waiting now. */
  readonly inFlight: number;
}
