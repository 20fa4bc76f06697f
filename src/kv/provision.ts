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
};

/** The bucket's stored stream config, or undefined when there is no such bucket. */
async function info(c: ProvisionContext, name: string): Promise<StreamConfig | undefined> {
  try {
    const found = await withRetry(
      () => c.connection.resilient(c.jsm.streams.info(streamOf(name))),
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
  c.connection.requireFeature('jetstream', `bucket ${name}`);
  if (wanted.perKeyTtl || wanted.markerTtlMs)
    c.connection.requireFeature('perKeyTtl', `bucket ${name} with per-key TTL`);
  let stored = await info(c, name);
  if (!stored) {
    const atomic = c.connection.capabilities.features.atomicBatch;
    try {
      // Atomic publish is turned on where the server has it: transactions and fast bulk writes need it.
      stored = (await c.jsm.streams.add(toStreamConfig(name, wanted, atomic))).config;
      c.log.info({ bucket: name }, 'bucket created');
      return stored;
    } catch (err) {
      stored = await info(c, name); // created by someone else meanwhile: compare below
      if (!stored) throw err;
    }
  }
  const diff = diffBucket(stored, wanted);
  if (diff.length === 0) return stored;
  return await applyDrift(c, name, stored, diff, drift);
}

async function applyDrift(
  c: ProvisionContext,
  name: string,
  stored: StreamConfig,
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
  const wanted = Object.fromEntries(diff.map((d) => [d.field, d.requested])) as BucketConfig;
  const patch = toStreamConfig(name, wanted, stored.allow_atomic === true);
  const fields = diff.flatMap((d) => STREAM_FIELDS[d.field] ?? []);
  const update = {
    ...stored,
    ...Object.fromEntries(fields.map((k) => [k, patch[k]])),
  } as StreamConfig;
  const updated = await c.jsm.streams.update(streamOf(name), update);
  c.log.info({ bucket: name, fields: diff.map((d) => d.field) }, 'bucket config updated');
  return updated.config;
}

/** Whether two opens ask for the same provisioning (then the second reuses the first). */
export function sameProvision(
  a: { readonly drift?: DriftPolicy; readonly provision?: BucketConfig },
  b: { readonly drift?: DriftPolicy; readonly provision?: BucketConfig },
): boolean {
  return (
    a.drift === b.drift &&
    JSON.stringify(a.provision ?? null) === JSON.stringify(b.provision ?? null)
  );
}
