import {
  DiscardPolicy,
  type Placement,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import { millis, nanos } from '@nats-io/transport-node';
import { checkKnownKeys, checkMs, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import {
  type BucketMirror,
  type BucketSource,
  checkTopology,
  topologyOf,
  topologyStreamFields,
} from './bucket-topology.js';
import { streamOf, subjectOf } from './names.js';

/** The config of a bucket natskit provisions. */
export interface BucketConfig {
  /** Revisions kept per key (1-64). @defaultValue 1 */
  readonly history?: number;
  /** Age after which values expire; 0 keeps them. @defaultValue 0 */
  readonly ttlMs?: number;
  /** Largest value in bytes; -1 for the server's limit. @defaultValue -1 */
  readonly maxValueSize?: number;
  /** Largest bucket in bytes; -1 for unlimited. @defaultValue -1 */
  readonly maxBytes?: number;
  /** @defaultValue 1 */
  readonly replicas?: number;
  /** @defaultValue 'file' */
  readonly storage?: 'file' | 'memory';
  /** Allow per-key TTL (`put(k, v, { ttlMs })`), server >= 2.11. @defaultValue false */
  readonly perKeyTtl?: boolean;
  /**
   * Leave a delete marker for this long when a key expires, so watchers see the expiry.
   * Beware: with history > 1, per-key TTLs shorter than this are raised to it. @defaultValue 0
   */
  readonly markerTtlMs?: number;
  /** Where a clustered server places the bucket's stream: a cluster name and server tags. */
  readonly placement?: BucketPlacement;
  /**
   * Make the bucket a read replica of another bucket (a mirror: read-only, it cannot be changed
   * later). Not with `sources`.
   */
  readonly mirror?: BucketMirror;
  /** Copy the keys of these buckets into this one, as they are written (an aggregate). */
  readonly sources?: readonly BucketSource[];
  readonly description?: string;
}

/** Placement of a bucket's stream in a (super)cluster. */
export interface BucketPlacement {
  /** The cluster to place it in. */
  readonly cluster?: string;
  /** Servers with all of these tags (`server_tags` in their config). */
  readonly tags?: readonly string[];
}

const FIELDS = knownKeys<BucketConfig>({
  history: true,
  ttlMs: true,
  maxValueSize: true,
  maxBytes: true,
  replicas: true,
  storage: true,
  perKeyTtl: true,
  markerTtlMs: true,
  placement: true,
  mirror: true,
  sources: true,
  description: true,
});
const PLACEMENT_FIELDS = knownKeys<BucketPlacement>({ cluster: true, tags: true });

/** What natskit does when a provisioned bucket exists with another config. */
export type DriftPolicy = 'error' | 'warn' | 'update';

/** One difference between the stored bucket and the one asked for. */
export interface BucketDifference {
  readonly field: keyof BucketConfig | 'directGet';
  readonly existing: unknown;
  readonly requested: unknown;
  /** Whether a stream update can apply it. */
  readonly updatable: boolean;
}

/** Validates a bucket config, naming the field. */
export function checkBucketConfig(config: BucketConfig): void {
  const bad = (field: string, why: string) =>
    new NatskitError('INVALID_OPTIONS', `bucket config ${field} ${why}`, { details: { field } });
  if (typeof config !== 'object' || config === null || Array.isArray(config))
    throw bad('', `must be an object, got ${describeValue(config)}`);
  checkKnownKeys('bucket config ', config, FIELDS);
  const p = config.placement;
  if (typeof p === 'object' && p !== null)
    checkKnownKeys('bucket config placement', p, PLACEMENT_FIELDS);
  if (
    p !== undefined &&
    (typeof p !== 'object' ||
      p === null ||
      (p.cluster !== undefined && (typeof p.cluster !== 'string' || p.cluster === '')) ||
      (p.tags !== undefined &&
        !(Array.isArray(p.tags) && p.tags.every((t) => typeof t === 'string' && t !== ''))) ||
      (p.cluster === undefined && (p.tags?.length ?? 0) === 0))
  ) {
    throw bad('placement', 'must be { cluster?: string, tags?: string[] } naming at least one');
  }
  checkTopology(config);
  if (
    config.history !== undefined &&
    !(Number.isInteger(config.history) && config.history >= 1 && config.history <= 64)
  ) {
    throw bad('history', `must be an integer from 1 to 64, got ${describeValue(config.history)}`);
  }
  if (config.ttlMs !== undefined && config.ttlMs !== 0) checkMs('ttlMs', config.ttlMs);
  if (config.markerTtlMs !== undefined && config.markerTtlMs !== 0)
    checkMs('markerTtlMs', config.markerTtlMs);
  for (const f of ['maxValueSize', 'maxBytes'] as const) {
    const v = config[f];
    if (v !== undefined && !(Number.isInteger(v) && (v === -1 || v > 0)))
      throw bad(f, `must be -1 or a positive integer, got ${describeValue(v)}`);
  }
  if (
    config.replicas !== undefined &&
    !(Number.isInteger(config.replicas) && config.replicas >= 1 && config.replicas <= 5)
  ) {
    throw bad('replicas', `must be an integer from 1 to 5, got ${describeValue(config.replicas)}`);
  }
  if (config.storage !== undefined && config.storage !== 'file' && config.storage !== 'memory') {
    throw bad('storage', `must be 'file' or 'memory', got ${describeValue(config.storage)}`);
  }
}

/** The KV stream config for a bucket (the conventions of the nats.js KV client, plus direct get). */
export function toStreamConfig(bucket: string, c: BucketConfig, atomic: boolean): StreamConfig {
  const ttlMs = c.ttlMs ?? 0;
  const config: Partial<StreamConfig> = {
    name: streamOf(bucket),
    subjects: [subjectOf(bucket, '>')],
    retention: RetentionPolicy.Limits,
    max_msgs_per_subject: c.history ?? 1,
    max_age: nanos(ttlMs),
    max_msg_size: c.maxValueSize ?? -1,
    max_bytes: c.maxBytes ?? -1,
    num_replicas: c.replicas ?? 1,
    storage: c.storage === 'memory' ? StorageType.Memory : StorageType.File,
    discard: DiscardPolicy.New,
    allow_rollup_hdrs: true,
    deny_delete: true,
    allow_direct: true,
    duplicate_window: nanos(ttlMs > 0 && ttlMs < 120_000 ? ttlMs : 120_000),
  };
  if (c.description) config.description = c.description;
  if (c.placement) config.placement = toPlacement(c.placement);
  if (c.perKeyTtl || c.markerTtlMs) config.allow_msg_ttl = true;
  if (c.markerTtlMs) config.subject_delete_marker_ttl = nanos(c.markerTtlMs);
  Object.assign(config, topologyStreamFields(bucket, c));
  if (c.mirror) {
    delete config.subjects; // a mirror listens on no subject: writes go to its origin
  } else if (atomic) {
    config.allow_atomic = true;
  }
  return config as StreamConfig;
}

function toPlacement(p: BucketPlacement): Placement {
  return {
    ...(p.cluster ? { cluster: p.cluster } : {}),
    ...(p.tags?.length ? { tags: [...p.tags].sort() } : {}),
  } as Placement;
}

/** The bucket view of a stored stream config. */
export function fromStreamConfig(s: StreamConfig): Required<
  Omit<BucketConfig, 'description' | 'placement' | 'mirror' | 'sources'>
> & {
  directGet: boolean;
  placement: BucketPlacement | undefined;
  mirror: { bucket: string } | undefined;
  sources: readonly string[];
} {
  return {
    ...topologyOf(s),
    placement:
      s.placement?.cluster || s.placement?.tags?.length ? toPlacement(s.placement) : undefined,
    history: s.max_msgs_per_subject,
    ttlMs: millis(s.max_age ?? 0),
    maxValueSize: s.max_msg_size ?? -1,
    maxBytes: s.max_bytes ?? -1,
    replicas: s.num_replicas ?? 1,
    storage: s.storage === StorageType.Memory ? 'memory' : 'file',
    perKeyTtl: s.allow_msg_ttl === true,
    markerTtlMs: millis(s.subject_delete_marker_ttl ?? 0),
    directGet: s.allow_direct === true,
  };
}

/** Compares the fields the caller asked for (and direct get) with the stored stream. */
export function diffBucket(stored: StreamConfig, requested: BucketConfig): BucketDifference[] {
  const have = fromStreamConfig(stored);
  const out: BucketDifference[] = [];
  for (const [field, want] of Object.entries(requested)) {
    if (want === undefined || field === 'description') continue;
    const existing = have[field as keyof typeof have];
    if (field === 'placement') {
      const asked = toPlacement(want as BucketPlacement);
      if (JSON.stringify(existing ?? {}) === JSON.stringify(asked)) continue;
      out.push({ field: 'placement', existing, requested: asked, updatable: true });
      continue;
    }
    if (field === 'mirror' || field === 'sources') {
      // Compared as topologyOf reads them; a mirror cannot be changed (server rule), sources can.
      const self = stored.name.startsWith('KV_') ? stored.name.slice(3) : stored.name;
      const asked = topologyOf(toStreamConfig(self, requested, false));
      const key = field as 'mirror' | 'sources';
      if (JSON.stringify(existing) === JSON.stringify(asked[key])) continue;
      out.push({ field: key, existing, requested: asked[key], updatable: field === 'sources' });
      continue;
    }
    if (existing === want) continue;
    const updatable = field !== 'storage' && !(field === 'perKeyTtl' && existing === true);
    out.push({ field: field as keyof BucketConfig, existing, requested: want, updatable });
  }
  if (!have.directGet)
    out.push({ field: 'directGet', existing: false, requested: true, updatable: true });
  return out;
}
