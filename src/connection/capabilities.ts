import { JetStreamApiError } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import { ApiCode } from '../jetstream/api-errors.js';
import { withRetry } from '../retry/retry.js';

/**
 * Server features natskit gates on, with the JetStream API level and server version that bring
 * them. nats-server 2.9.10 accepts newer options and headers without error and ignores them, so
 * natskit checks these instead of trusting the server to refuse.
 */
export const FEATURES = Object.freeze({
  /** Per-message TTL (`Nats-TTL`), used for per-key TTL in KV. */
  perKeyTtl: { apiLevel: 1, server: '2.11' },
  /** `multi_last` direct get: many keys' last values in one request. */
  multiGet: { apiLevel: 1, server: '2.11' },
  /** An expectation on another subject (`Nats-Expected-Last-Subject-Sequence-Subject`). */
  subjectSequenceGuard: { apiLevel: 1, server: '2.11' },
  /** Atomic batch publish (ADR-50): all messages stored or none. */
  atomicBatch: { apiLevel: 2, server: '2.12' },
  /** Consumer pause (`pause_until`): pausing a queue's workers. */
  consumerPause: { apiLevel: 1, server: '2.11' },
  /** Message scheduling (ADR-51, `Nats-Schedule: @at`): delayed jobs. */
  msgSchedules: { apiLevel: 2, server: '2.12' },
  /** Repeating message schedules (`@every`, cron, `Nats-Schedule-Time-Zone`): repeatable jobs. */
  repeatSchedules: { apiLevel: 4, server: '2.14' },
  /** Distributed counters. */
  counters: { apiLevel: 2, server: '2.12' },
  /** Fast-ingest batches and batch commit with `eob`. */
  fastIngest: { apiLevel: 4, server: '2.14' },
});

/** A feature name from {@link FEATURES}. */
export type Feature = keyof typeof FEATURES;

/** What the connected server can do. */
export interface Capabilities {
  /** The server's version, e.g. `2.15.1`. */
  readonly serverVersion: string;
  readonly serverId: string;
  readonly serverName: string;
  /** JetStream enabled for this account. */
  readonly jetstream: boolean;
  /** `$JS.API.INFO` `api.level`; 0 when absent (servers before 2.11). */
  readonly apiLevel: number;
  /** One flag per {@link FEATURES} entry. */
  readonly features: Readonly<Record<Feature, boolean>>;
}

/** `$JS.API.INFO` answered with this code: JetStream is not enabled for the account. */
const JS_NOT_ENABLED_FOR_ACCOUNT = ApiCode.JetStreamNotEnabledForAccount;

/**
 * Reads the server's version and JetStream API level and derives the feature flags. Only a
 * definite answer turns JetStream off: the server's INFO says it has none, or `$JS.API.INFO`
 * answers "not enabled for account". A temporary failure (a timeout, a 503 while the cluster
 * elects a meta leader) is retried and, if it persists, thrown: never read as "no JetStream".
 */
export async function detectCapabilities(
  nc: NatsConnection,
  timeoutMs: number,
  signal?: AbortSignal,
  apiPrefix = '$JS.API',
): Promise<Capabilities> {
  const info = nc.info;
  let jetstream = info?.jetstream === true;
  let apiLevel = 0;
  if (jetstream) {
    const body = await withRetry(
      async () => {
        const reply = await nc.request(`${apiPrefix}.INFO`, undefined, { timeout: timeoutMs });
        const parsed = reply.json<{
          api?: { level?: number };
          error?: { code?: number; err_code?: number };
        }>();
        const err = parsed.error;
        if (err && err.err_code !== JS_NOT_ENABLED_FOR_ACCOUNT) {
          throw new JetStreamApiError({
            code: err.code ?? 503,
            err_code: err.err_code ?? 0,
            description: 'JetStream API info',
          });
        }
        return parsed;
      },
      { what: 'reading the JetStream API level', retry: { retries: 8, maxDelayMs: 1_000 }, signal },
    );
    jetstream = body.error === undefined;
    apiLevel = jetstream ? (body.api?.level ?? 0) : 0;
  }
  const features = Object.fromEntries(
    Object.entries(FEATURES).map(([name, f]) => [name, jetstream && apiLevel >= f.apiLevel]),
  ) as Record<Feature, boolean>;
  return {
    serverVersion: info?.version ?? 'unknown',
    serverId: info?.server_id ?? 'unknown',
    serverName: info?.server_name ?? 'unknown',
    jetstream,
    apiLevel,
    features,
  };
}

/**
 * Throws `CAPABILITY_MISSING` naming the feature and the minimum server when `caps` lacks it.
 * @param what what the caller was doing, for the message (e.g. `a per-key TTL`).
 */
export function requireFeature(
  caps: Capabilities,
  feature: Feature | 'jetstream',
  what: string,
): void {
  if (feature === 'jetstream') {
    if (caps.jetstream) return;
    throw new NatskitError(
      'CAPABILITY_MISSING',
      `${what} needs JetStream, which is not enabled on server ${caps.serverName}`,
      {
        details: { feature },
      },
    );
  }
  if (caps.features[feature]) return;
  const need = FEATURES[feature];
  throw new NatskitError(
    'CAPABILITY_MISSING',
    `${what} needs ${feature} (nats-server >= ${need.server}, JetStream API level >= ${need.apiLevel}); ` +
      `the server is ${caps.serverVersion} at API level ${caps.apiLevel}`,
    {
      details: {
        feature,
        minServer: need.server,
        minApiLevel: need.apiLevel,
        serverVersion: caps.serverVersion,
      },
    },
  );
}
