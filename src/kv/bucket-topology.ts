import {
  JetStreamApiError,
  type StreamConfig,
  type StreamSource,
  type SubjectTransformConfig,
} from '@nats-io/jetstream';
import { checkKnownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { configRefusal } from '../jetstream/config-errors.js';
import { streamOf, subjectOf } from './names.js';

/**
 * A bucket that is a read replica of another bucket (a JetStream mirror of its stream). It holds
 * the origin's keys under the origin's subjects and takes no writes: natskit refuses them with
 * `KV_READ_ONLY` (write to the origin). The mirror cannot be changed once created (server rule).
 * The server also lets it answer the direct gets sent to the origin (`mirror_direct`, as every
 * KV client makes mirrors), so readers of the origin may be served by it, as far behind as it is.
 */
export interface BucketMirror {
  /** The origin bucket, in the same account. */
  readonly bucket: string;
}

/**
 * A bucket the keys of another bucket flow into (a JetStream source with a subject transform),
 * so that one bucket aggregates several. The aggregate keeps taking its own writes; a key written
 * in two origins holds the value written last.
 */
export interface BucketSource {
  /** The origin bucket, in the same account. */
  readonly bucket: string;
}

/** The mirror and sources of a stored bucket, as natskit compares them. */
export interface BucketTopology {
  readonly mirror: { readonly bucket: string } | undefined;
  /** Origin bucket names, sorted; empty without sources. */
  readonly sources: readonly string[];
}

const BUCKET = /^[-\w]+$/;

function bad(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `bucket config ${field} ${why}`, {
    details: { field },
  });
}

function checkOrigin(field: string, o: unknown, known: readonly string[]): string {
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw bad(field, 'must be an object { bucket }');
  checkKnownKeys(field, o, known);
  const bucket = (o as { bucket?: unknown }).bucket;
  if (typeof bucket !== 'string' || !BUCKET.test(bucket) || bucket.length > 252)
    throw bad(`${field}.bucket`, 'must be a bucket name (letters, digits, - and _)');
  return bucket;
}

/** Validates `mirror` and `sources` of a bucket config, naming the field. */
export function checkTopology(config: {
  readonly mirror?: unknown;
  readonly sources?: unknown;
}): void {
  const { mirror, sources } = config;
  if (mirror !== undefined && sources !== undefined) {
    throw bad('mirror', 'and sources cannot be combined (a mirror copies exactly one bucket)');
  }
  if (mirror !== undefined) {
    checkOrigin('mirror', mirror, ['bucket']);
  }
  if (sources !== undefined) {
    if (!Array.isArray(sources) || sources.length === 0)
      throw bad('sources', 'must be a non-empty array of { bucket }');
    const seen = new Set<string>();
    sources.forEach((s: unknown, i) => {
      const b = checkOrigin(`sources[${i}]`, s, ['bucket']);
      if (seen.has(b)) throw bad(`sources[${i}].bucket`, `names ${b} twice`);
      seen.add(b);
    });
  }
}

/** Checks what only the bucket's own name tells: it cannot be its own origin. */
export function checkOrigins(
  bucket: string,
  config: { readonly mirror?: BucketMirror; readonly sources?: readonly BucketSource[] },
): void {
  if (config.mirror?.bucket === bucket)
    throw bad('mirror.bucket', `is the bucket itself (${bucket})`);
  const i = config.sources?.findIndex((s) => s.bucket === bucket) ?? -1;
  if (i >= 0) throw bad(`sources[${i}].bucket`, `is the bucket itself (${bucket})`);
}

/** The origin subjects of `origin` rewritten into the key space of `bucket`. */
function transform(origin: string, bucket: string): SubjectTransformConfig {
  return { src: subjectOf(origin, '>'), dest: subjectOf(bucket, '>') };
}

/**
 * The stream fields of a mirror or an aggregate. A mirror has no subjects and keeps the origin's
 * (as the nats.js KV client and the nats CLI make it), so mirrors made by either read the same.
 */
export function topologyStreamFields(
  bucket: string,
  config: { readonly mirror?: BucketMirror; readonly sources?: readonly BucketSource[] },
): Partial<StreamConfig> {
  if (config.mirror) {
    return { mirror: { name: streamOf(config.mirror.bucket) }, mirror_direct: true };
  }
  if (config.sources) {
    return {
      sources: config.sources.map(
        (s): StreamSource => ({
          name: streamOf(s.bucket),
          subject_transforms: [transform(s.bucket, bucket)],
        }),
      ),
    };
  }
  return {};
}

const bucketOfStream = (name: string) => (name.startsWith('KV_') ? name.slice(3) : name);

/** The mirror and sources of a stored stream; a source without natskit's transform is named as its stream. */
export function topologyOf(s: StreamConfig): BucketTopology {
  return {
    mirror: s.mirror ? { bucket: bucketOfStream(s.mirror.name) } : undefined,
    sources: (s.sources ?? [])
      .map((src) => {
        const b = bucketOfStream(src.name);
        const t = src.subject_transforms ?? [];
        const want = transform(b, bucketOfStream(s.name));
        const kept = t.length === 1 && t[0]?.src === want.src && t[0]?.dest === want.dest;
        return kept ? b : `${src.name} (without the key transform)`;
      })
      .sort(),
  };
}

/**
 * The bucket whose `$KV.<bucket>.` subjects the stream's keys carry: the origin for a mirror (a
 * mirror keeps the origin's subjects), else the bucket itself.
 */
export function keySpaceOf(bucket: string, s: StreamConfig): string {
  const t = s.mirror?.subject_transforms ?? [];
  // A mirror someone made with a transform into its own key space reads as itself.
  if (!s.mirror || t.some((x) => x.dest === subjectOf(bucket, '>'))) return bucket;
  return bucketOfStream(s.mirror.name);
}

/** The error of a write to a mirror bucket. */
export function readOnlyError(bucket: string, origin: string, what: string): NatskitError {
  return new NatskitError(
    'KV_READ_ONLY',
    `${what}: bucket ${bucket} is a mirror of bucket ${origin} and takes no writes; write to ${origin}`,
    { details: { bucket, origin } },
  );
}

/** Server refusals of a bucket's config, by JetStream API code, and the field each is about. */
const REFUSED: Readonly<Record<number, (c: CreateAsked) => string>> = {
  /** No server matches the placement (tags, cluster), or too few for the replicas. */
  10005: (c) => (c.placement ? 'placement' : 'replicas'),
  /** "stream mirrors can not also contain other sources". */
  10031: () => 'mirror',
  /** "stream mirrors can not contain subjects" and other mirror rules. */
  10034: () => 'mirror',
  /** "replicas > 1 not supported in non-clustered mode": a single server. */
  10074: () => 'replicas',
  /** "stream configuration invalid". */
  10052: (c) => (c.mirror ? 'mirror' : c.sources ? 'sources' : ''),
};

interface CreateAsked {
  readonly placement?: unknown;
  readonly mirror?: unknown;
  readonly sources?: unknown;
}

/**
 * A create the server refused: its config, as `INVALID_OPTIONS` naming the bucket field (a
 * placement no server matches, say); another refusal as the stream config mapping has it (a
 * stream of the user's over the bucket's `$KV.<bucket>.>`: `STREAM_CONFIG_CONFLICT`); other
 * errors come back unchanged.
 */
export function createError(bucket: string, asked: CreateAsked, err: unknown): unknown {
  if (!(err instanceof JetStreamApiError)) return err;
  const field = REFUSED[err.code]?.(asked);
  if (field === undefined) return configRefusal(err, `createBucket ${bucket}`, { bucket });
  return new NatskitError(
    'INVALID_OPTIONS',
    `bucket config${field ? ` ${field}` : ''} refused by the server for bucket ${bucket}: ${err.message}`,
    { cause: err, details: { field, bucket, apiCode: err.code } },
  );
}

/**
 * Throws `CAPABILITY_MISSING` when the server predates subject transforms (2.10), which a source
 * needs to rewrite its keys into the aggregate. (The client refuses them with a plain error, and
 * the server's API level says nothing below 2.11.)
 */
export function requireTransforms(bucket: string, serverVersion: string): void {
  const [major = 0, minor = 0] = serverVersion.split('.').map(Number);
  if (major > 2 || (major === 2 && minor >= 10)) return;
  throw new NatskitError(
    'CAPABILITY_MISSING',
    `bucket ${bucket} with sources needs subject transforms (nats-server >= 2.10); the server is ${serverVersion}`,
    { details: { bucket, feature: 'subjectTransforms', minServer: '2.10', serverVersion } },
  );
}
