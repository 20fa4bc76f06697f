import { performance } from 'node:perf_hooks';
import { fromStreamConfig } from './bucket-config.js';
import type { BucketState } from './bucket-state.js';
import { guardSubjectOf, subjectOf } from './names.js';
import type { KvBucketHealth } from './types.js';

/** A bucket's health: its stream's state and replicas, and the time of one direct read. */
export async function bucketHealth(s: BucketState): Promise<KvBucketHealth> {
  const guard = guardSubjectOf(s.name);
  // The guard subject's messages are in the stream, but they are no key's values.
  const info = await s.call('health check', () =>
    s.ctx.jsm.streams.info(s.stream, { subjects_filter: guard }),
  );
  const guards = info.state.subjects?.[guard] ?? 0;
  const t0 = performance.now();
  await s.call('health read', () => s.last(subjectOf(s.name, '_natskit_health_probe')));
  const readLatencyMs = Math.round((performance.now() - t0) * 100) / 100;
  const b = fromStreamConfig(info.config);
  const replicas = info.cluster?.replicas ?? [];
  const replicasCurrent = replicas.every((r) => r.current && !r.offline);
  const leader = info.cluster?.leader;
  const reasons = [
    ...(info.cluster && !leader ? ['no stream leader'] : []),
    ...(replicasCurrent
      ? []
      : [
          `replicas behind or offline: ${replicas
            .filter((r) => !r.current || r.offline)
            .map((r) => r.name)
            .join(', ')}`,
        ]),
  ];
  return {
    bucket: s.name,
    healthy: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    values: info.state.messages - guards,
    keys: (info.state.num_subjects ?? 0) - (guards > 0 ? 1 : 0),
    bytes: info.state.bytes,
    history: b.history,
    ttlMs: b.ttlMs,
    maxValueSize: b.maxValueSize,
    replicas: b.replicas,
    leader,
    replicasCurrent,
    directGet: b.directGet,
    readLatencyMs,
  };
}
