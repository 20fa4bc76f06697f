import type { StreamConfig } from '@nats-io/jetstream';

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
