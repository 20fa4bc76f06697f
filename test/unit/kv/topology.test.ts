import type { StreamConfig } from '@nats-io/jetstream';
import { JetStreamApiError } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../../src/errors/natskit-error.js';
import { diffBucket, toStreamConfig } from '../../../src/kv/bucket-config.js';
import { createError, keySpaceOf, topologyOf } from '../../../src/kv/bucket-topology.js';

describe('bucket topology (mirror and sources)', () => {
  it('a mirror stream has no subjects and no atomic publish, and serves the origin direct gets', () => {
    const s = toStreamConfig('copy', { mirror: { bucket: 'orders' } }, true);
    expect(s.subjects).toBeUndefined();
    expect(s.allow_atomic).toBeUndefined();
    expect(s).toMatchObject({
      mirror: { name: 'KV_orders' },
      mirror_direct: true,
      allow_direct: true,
    });
    expect(topologyOf(s)).toEqual({ mirror: { bucket: 'orders' }, sources: [] });
    expect(keySpaceOf('copy', s)).toBe('orders');
  });

  it('a mirror someone made with a transform into its own key space reads as itself', () => {
    const s = {
      name: 'KV_copy',
      mirror: {
        name: 'KV_orders',
        subject_transforms: [{ src: '$KV.orders.>', dest: '$KV.copy.>' }],
      },
    } as StreamConfig;
    expect(keySpaceOf('copy', s)).toBe('copy');
    expect(keySpaceOf('plain', { name: 'KV_plain' } as StreamConfig)).toBe('plain');
  });

  it('sources rewrite each origin into the aggregate; a source without that transform is named as such', () => {
    const s = toStreamConfig('all', { sources: [{ bucket: 'west' }, { bucket: 'east' }] }, false);
    expect(s.subjects).toEqual(['$KV.all.>']);
    expect(s.sources).toEqual([
      { name: 'KV_west', subject_transforms: [{ src: '$KV.west.>', dest: '$KV.all.>' }] },
      { name: 'KV_east', subject_transforms: [{ src: '$KV.east.>', dest: '$KV.all.>' }] },
    ]);
    expect(topologyOf(s).sources).toEqual(['east', 'west']); // sorted: order does not matter
    const raw = { ...s, sources: [{ name: 'KV_east' }] } as StreamConfig;
    expect(topologyOf(raw).sources).toEqual(['KV_east (without the key transform)']);
    expect(diffBucket(raw, { sources: [{ bucket: 'east' }] })).toEqual([
      {
        field: 'sources',
        existing: ['KV_east (without the key transform)'],
        requested: ['east'],
        updatable: true,
      },
    ]);
    expect(diffBucket(s, { sources: [{ bucket: 'east' }, { bucket: 'west' }] })).toEqual([]);
  });

  it('maps the server refusing a create to INVALID_OPTIONS naming the field, other refusals with their code; non-API errors pass', () => {
    const apiError = (code: number) =>
      new JetStreamApiError({ code: 400, err_code: code, description: 'refused' });
    const placement = createError('b', { placement: { tags: ['x'] } }, apiError(10005));
    expect(NatskitError.is(placement, 'INVALID_OPTIONS')).toBe(true);
    expect((placement as NatskitError).details).toEqual({
      field: 'placement',
      bucket: 'b',
      apiCode: 10005,
    });
    expect((createError('b', {}, apiError(10005)) as NatskitError).details?.field).toBe('replicas');
    // Any other refusal of the create is typed too, with the server's code and text.
    const other = createError('b', {}, apiError(10047));
    expect(NatskitError.is(other, 'INVALID_OPTIONS')).toBe(true);
    expect((other as NatskitError).details).toMatchObject({ apiCode: 10047, bucket: 'b' });
    expect(createError('b', {}, null)).toBe(null);
  });
});
