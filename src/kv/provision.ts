import type { JetStreamManager, StreamConfig } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { ApiCode, closedError, isApiError, isConnectionClosed } from '../jetstream/api-errors.js';
import { type RetryCounter, type RetryOptions, withRetry } from '../retry/retry.js';
import {
  type BucketConfig,
  type BucketDifference,
  checkBucketConfig,
  type DriftPolicy,
  diffBucket,
  toStreamConfig,
} from './bucket-config.js';
import { checkOrigins, createError, requireTransforms, topologyOf } from './bucket-topology.js';
import { streamOf } from './names.js';

/** What binding and provisioning buckets needs. */
export interface ProvisionContext {
  readonly connection: ConnectionService;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
  readonly retry: RetryOptions | undefined;
  readonly metrics: RetryCounter;
  stopped(): boolean;
}

/** Which stream fields each bucket field is stored in. */
const STREAM_FIELDS: Readonly<Record<string, readonly (keyof StreamConfig)[]>> = {
  history: ['max_msgs_per_subject'],
  ttlMs: ['max_age', 'duplicate_window'],
  maxValueSize: ['max_msg_size'],
  maxBytes: ['max_bytes'],
  replicas: ['num_replicas'],
  perKeyTtl: ['allow_msg_ttl'],
  markerTtlMs: ['subject_delete_marker_ttl', 'allow_msg_ttl'],
  directGet: ['allow_direct'],
  placement: ['placement'],
  sources: ['sources'],
};

/** The bucket's stored stream config, or undefined when there is no such bucket. */
async function info(c: ProvisionContext, name: string): Promise<StreamConfig | undefined> {
  try {
    const found = await withRetry(
      () => c.connection.resilient(() => c.jsm.streams.info(streamOf(name))),
      { what: `bucket info ${name}`, retry: c.retry, counter: c.metrics },
    );
    return found.config;
  } catch (err) {
    if (isApiError(err, ApiCode.StreamNotFound)) return undefined;
    if (isConnectionClosed(err)) throw closedError(`bucket ${name}`, c.stopped(), err);
    throw err;
  }
}

/**
 * The stored config of an existing bucket: binding fails fast with `KV_BUCKET_NOT_FOUND` (the
 * client's `open()` makes no server call and fails later, confusingly).
 */
export async function bindBucket(c: ProvisionContext, name: string): Promise<StreamConfig> {
  const config = await info(c, name);
  if (!config) {
    throw new NatskitError(
      'KV_BUCKET_NOT_FOUND',
      `bucket ${name} does not exist (bind; pass provision to create it)`,
      { details: { bucket: name } },
    );
  }
  return config;
}

/**
 * Creates the bucket, or compares the stored config with the one asked for and applies the
 * drift policy. Safe when several processes provision at once.
 */
export async function provisionBucket(
  c: ProvisionContext,
  name: string,
  wanted: BucketConfig,
  drift: DriftPolicy,
): Promise<StreamConfig> {
  checkBucketConfig(wanted);
  checkOrigins(name, wanted);
  c.connection.requireFeature('jetstream', `bucket ${name}`);
  if (wanted.perKeyTtl || wanted.markerTtlMs)
    c.connection.requireFeature('perKeyTtl', `bucket ${name} with per-key TTL`);
  if (wanted.sources) requireTransforms(name, c.connection.capabilities.serverVersion);
  let stored = await info(c, name);
  if (!stored) {
    const made = await create(c, name, wanted);
    if (made.created) return made.config;
    stored = made.config; // created by someone else meanwhile: compare below
  }
  const diff = diffBucket(stored, wanted);
  if (diff.length === 0) return stored;
  return await applyDrift(c, name, stored, wanted, diff, drift);
}

/** Creates the bucket; `created: false` when another process created it first. */
async function create(
  c: ProvisionContext,
  name: string,
  wanted: BucketConfig,
): Promise<{ created: boolean; config: StreamConfig }> {
  await checkOriginsExist(c, name, wanted);
  const atomic = c.connection.capabilities.features.atomicBatch;
  let config: StreamConfig;
  try {
    // Atomic publish is turned on where the server has it: transactions and fast bulk writes need it.
    config = (await c.jsm.streams.add(toStreamConfig(name, wanted, atomic))).config;
  } catch (err) {
    const existing = await info(c, name);
    if (!existing) throw createError(name, wanted, err);
    return { created: false, config: existing };
  }
  await checkTopologyKept(c, name, wanted, config);
  c.log.info({ bucket: name }, 'bucket created');
  return { created: true, config };
}

/** A mirror or source of a bucket that does not exist would stay empty: refuse it. */
async function checkOriginsExist(c: ProvisionContext, name: string, wanted: BucketConfig) {
  const origins = [
    ...(wanted.mirror ? [['mirror.bucket', wanted.mirror.bucket] as const] : []),
    ...(wanted.sources ?? []).map((s, i) => [`sources[${i}].bucket`, s.bucket] as const),
  ];
  for (const [field, origin] of origins) {
    const found = await info(c, origin);
    if (!found) {
      throw new NatskitError(
        'KV_BUCKET_NOT_FOUND',
        `bucket ${name}: its ${field} ${origin} does not exist`,
        { details: { bucket: origin, field } },
      );
    }
  }
}

/**
 * Checks the server stored the mirror and sources asked for: one that predates subject
 * transforms (2.9) accepts a source's transform and drops it. Then the bucket it half made is
 * deleted and the call fails with `CAPABILITY_MISSING`.
 */
async function checkTopologyKept(
  c: ProvisionContext,
  name: string,
  wanted: BucketConfig,
  stored: StreamConfig,
): Promise<void> {
  if (!wanted.mirror && !wanted.sources) return;
  const asked = topologyOf(toStreamConfig(name, wanted, false));
  const got = topologyOf(stored);
  if (JSON.stringify(asked) === JSON.stringify(got)) return;
  await c.jsm.streams.delete(streamOf(name)).catch((err: unknown) => {
    c.log.warn({ err, bucket: name }, 'could not delete the bucket the server half made');
  });
  throw new NatskitError(
    'CAPABILITY_MISSING',
    `bucket ${name}: the server stored ${JSON.stringify(got)} for ${JSON.stringify(asked)} (subject transforms need nats-server 2.10 or newer)`,
    { details: { bucket: name, feature: 'subjectTransforms' } },
  );
}

async function applyDrift(
  c: ProvisionContext,
  name: string,
  stored: StreamConfig,
  requested: BucketConfig,
  diff: BucketDifference[],
  drift: DriftPolicy,
): Promise<StreamConfig> {
  const text = diff
    .map((d) => `${d.field} is ${JSON.stringify(d.existing)}, asked ${JSON.stringify(d.requested)}`)
    .join('; ');
  if (drift === 'error' || (drift === 'update' && diff.some((d) => !d.updatable))) {
    throw new NatskitError(
      'KV_BUCKET_DRIFT',
      `bucket ${name} exists with a different config: ${text}`,
      { details: { bucket: name, differences: diff } },
    );
  }
  if (drift === 'warn') {
    c.log.warn(
      { bucket: name, differences: diff },
      'bucket exists with a different config; using it as it is',
    );
    return stored;
  }
  // Only the stream fields of the differences are taken from the config asked for.
  const patch = toStreamConfig(name, requested, stored.allow_atomic === true);
  const fields = diff.flatMap((d) => STREAM_FIELDS[d.field] ?? []);
  const update = {
    ...stored,
    ...Object.fromEntries(fields.map((k) => [k, patch[k]])),
  } as StreamConfig;
  const updated = await c.jsm.streams.update(streamOf(name), update);
  c.log.info({ bucket: name, fields: diff.map((d) => d.field) }, 'bucket config updated');
  return updated.config;
}
