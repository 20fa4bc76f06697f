import type { JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { checkKnownKeys, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { checkOneOf } from '../jetstream/config-errors.js';

/** One field where the stored stream config differs from the one asked for. */
export interface ConfigDifference {
  readonly field: string;
  readonly existing: unknown;
  readonly requested: unknown;
  /** Whether a stream update can apply it without losing data or being refused. */
  readonly compatible: boolean;
  /** Why it is incompatible. */
  readonly reason?: string;
}

/**
 * The fields of a stream config, as @nats-io/jetstream types them (the server's names): a
 * misspelt one (`maxAge`, `max_msg_per_subject`) would create the stream without it and then
 * fail as if the server had ignored it. A client upgrade that adds fields fails to compile here.
 */
const STREAM_CONFIG_KEYS = knownKeys<StreamConfig>({
  allow_atomic: true,
  allow_batched: true,
  allow_direct: true,
  allow_msg_counter: true,
  allow_msg_schedules: true,
  allow_msg_ttl: true,
  allow_rollup_hdrs: true,
  compression: true,
  consumer_limits: true,
  deny_delete: true,
  deny_purge: true,
  description: true,
  discard: true,
  discard_new_per_subject: true,
  duplicate_window: true,
  first_seq: true,
  max_age: true,
  max_bytes: true,
  max_consumers: true,
  max_msg_size: true,
  max_msgs: true,
  max_msgs_per_subject: true,
  metadata: true,
  mirror: true,
  mirror_direct: true,
  name: true,
  no_ack: true,
  num_replicas: true,
  persist_mode: true,
  placement: true,
  republish: true,
  retention: true,
  sealed: true,
  sources: true,
  storage: true,
  subject_delete_marker_ttl: true,
  subject_transform: true,
  subjects: true,
});

/** The values of the enumerated fields (@nats-io/jetstream's RetentionPolicy, StorageType...). */
const ENUMS = {
  retention: ['limits', 'interest', 'workqueue'],
  storage: ['file', 'memory'],
  discard: ['old', 'new'],
} as const;

/** Each enumerated field absent or one of its values: the server's "invalid JSON" names neither. */
function checkStreamEnums(config: Partial<StreamConfig> & { readonly name: string }): void {
  for (const [field, allowed] of Object.entries(ENUMS)) {
    checkOneOf(
      `ensureStream ${config.name} config.${field}`,
      (config as Record<string, unknown>)[field],
      allowed,
    );
  }
}

/** One second in nanoseconds, the unit of a stream config's durations. */
const SECOND_NS = 1_000_000_000;

/**
 * `max_age` and `duplicate_window` are nanoseconds (the server's unit, unlike natskit's `...Ms`
 * options). A value in milliseconds is a million times too short: a week in ms is 0.6 s in ns,
 * which the server accepts and then expires every message. Below one second is refused (legal
 * for the server above 100 ms, but almost always that mistake); 0 means "none".
 */
function checkStreamDurations(config: Partial<StreamConfig> & { readonly name: string }): void {
  for (const field of ['max_age', 'duplicate_window'] as const) {
    const value: unknown = config[field];
    if (value === undefined || value === 0) continue;
    if (typeof value === 'number' && Number.isInteger(value) && value >= SECOND_NS) continue;
    const what = `ensureStream ${config.name} config.${field}`;
    const hint =
      typeof value === 'number' && Number.isInteger(value) && value > 0
        ? ` (${value} ns is ${value / 1e6} ms: milliseconds given as nanoseconds?)`
        : '';
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${what} is in nanoseconds and must be 0 (none) or at least one second (1e9), got ${describeValue(value)}${hint}; ` +
        'convert milliseconds with nanos(ms) from @nats-io/transport-node',
      { details: { field: what, unit: 'nanoseconds' } },
    );
  }
}

/** Fields the server will not change on an existing stream, or only one way. */
const IMMUTABLE: Record<string, string> = {
  storage: 'the storage type of a stream cannot change',
  retention: 'the retention policy of a stream cannot change',
  mirror: 'a mirror cannot be changed',
  template_owner: 'the template owner cannot change',
};
/** Flags that may be turned on by an update but never off again. */
const ONE_WAY_ON = new Set(['sealed', 'deny_delete', 'deny_purge', 'allow_msg_ttl']);

function canonical(value: unknown): string {
  if (Array.isArray(value)) return JSON.stringify([...value].map(canonical).sort());
  if (value && typeof value === 'object') {
    return JSON.stringify(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return JSON.stringify(value ?? null);
}

/** True when two config values are the same (arrays compared as sets). */
export function sameValue(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/**
 * Compares only the fields the caller asked for with the stored config, so server defaults the
 * caller did not mention never count as drift.
 */
export function diffStreamConfig(
  existing: StreamConfig,
  requested: Partial<StreamConfig>,
): ConfigDifference[] {
  const out: ConfigDifference[] = [];
  for (const [field, want] of Object.entries(requested)) {
    if (want === undefined || field === 'name') continue;
    const have = (existing as unknown as Record<string, unknown>)[field];
    if (sameValue(have, want)) continue;
    if (field in IMMUTABLE) {
      out.push({
        field,
        existing: have,
        requested: want,
        compatible: false,
        reason: IMMUTABLE[field] ?? '',
      });
    } else if (ONE_WAY_ON.has(field) && have === true && want === false) {
      out.push({
        field,
        existing: have,
        requested: want,
        compatible: false,
        reason: `${field} cannot be turned off`,
      });
    } else if (field === 'subjects') {
      const removed = ((have as string[] | undefined) ?? []).filter(
        (s) => !(want as string[]).includes(s),
      );
      out.push({
        field,
        existing: have,
        requested: want,
        compatible: removed.length === 0,
        ...(removed.length > 0
          ? { reason: `subjects would be removed: ${removed.join(', ')}` }
          : {}),
      });
    } else {
      out.push({ field, existing: have, requested: want, compatible: true });
    }
  }
  return out;
}

/** The fields of `requested` that the stored config does not carry (a server ignored them). */
export function ignoredFields(stored: StreamConfig, requested: Partial<StreamConfig>): string[] {
  return diffStreamConfig(stored, requested).map((d) => d.field);
}

/** What {@link StreamService.ensureStream} did. */
export interface EnsureStreamResult {
  readonly action: 'created' | 'updated' | 'unchanged';
  readonly info: StreamInfo;
  /** The compatible differences an update applied. */
  readonly applied: readonly ConfigDifference[];
}

/** What {@link ensureStreamConfig} needs besides the manager. */
export interface EnsureContext {
  /** The stream's info, or undefined when it does not exist (transient errors retried). */
  info(name: string): Promise<StreamInfo | undefined>;
  serverVersion(): string;
  readonly log: Logger;
}

/**
 * Creates the stream when absent; when present, applies the compatible differences from the
 * fields asked for, fails with `STREAM_CONFIG_CONFLICT` listing the incompatible ones, and reads
 * the stored config back: a field the server silently ignored fails with `CAPABILITY_MISSING`.
 */
export async function ensureStreamConfig(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { readonly name: string },
  ctx: EnsureContext,
): Promise<EnsureStreamResult> {
  checkKnownKeys(`ensureStream ${config.name} config `, config, STREAM_CONFIG_KEYS);
  checkStreamEnums(config);
  checkStreamDurations(config);
  let info = await ctx.info(config.name);
  let action: EnsureStreamResult['action'] = 'unchanged';
  if (!info) {
    try {
      info = await jsm.streams.add(config);
      action = 'created';
    } catch (err) {
      // Another process created it first: compare with what it created.
      info = await ctx.info(config.name);
      if (!info) throw err;
    }
  }
  const diff = diffStreamConfig(info.config, config);
  const incompatible = diff.filter((d) => !d.compatible);
  if (incompatible.length > 0) {
    throw new NatskitError(
      'STREAM_CONFIG_CONFLICT',
      `stream ${config.name} exists with a different config: ${incompatible
        .map(
          (d) =>
            `${d.field} is ${JSON.stringify(d.existing)}, asked ${JSON.stringify(d.requested)} (${d.reason})`,
        )
        .join('; ')}`,
      { details: { stream: config.name, differences: diff } },
    );
  }
  if (diff.length > 0) {
    info = await jsm.streams.update(config.name, { ...info.config, ...config });
    action = action === 'created' ? 'created' : 'updated';
    ctx.log.info({ stream: config.name, fields: diff.map((d) => d.field) }, 'stream updated');
  }
  const ignored = diffStreamConfig(info.config, config);
  if (ignored.length > 0) {
    throw new NatskitError(
      'CAPABILITY_MISSING',
      `stream ${config.name}: the server (${ctx.serverVersion()}) did not apply ${ignored
        .map((d) => d.field)
        .join(', ')}`,
      { details: { stream: config.name, ignored } },
    );
  }
  if (action === 'created') ctx.log.info({ stream: config.name }, 'stream created');
  return { action, info, applied: action === 'updated' ? diff : [] };
}
