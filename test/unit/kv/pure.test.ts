import { StorageType } from '@nats-io/jetstream';
import type { Msg } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../../src/errors/natskit-error.js';
import { parseAckSubject } from '../../../src/jetstream/ack-subject.js';
import { interpretReply, worstCaseBytes } from '../../../src/jetstream/atomic-batch.js';
import { headerBytes, msgHeaders } from '../../../src/jetstream/headers.js';
import {
  checkBucketConfig,
  diffBucket,
  fromStreamConfig,
  toStreamConfig,
} from '../../../src/kv/bucket-config.js';
import { jsonCodec, resolveCodec, stringCodec, validate } from '../../../src/kv/codec.js';
import { checkUserHeaders } from '../../../src/kv/headers.js';
import {
  keyOf,
  maxKeyBytes,
  subjectOf,
  validateBucket,
  validateFilter,
  validateKey,
  validateStoredKey,
} from '../../../src/kv/names.js';
import { testSchema } from '../../support/schema.js';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return NatskitError.is(err) ? err.code : String(err);
  }
};

describe('names', () => {
  it('writes only portable keys, reads any stored key, and bounds both by the protocol line', () => {
    for (const k of ['a', 'a.b', 'x/y=z-_', 'A9']) expect(codeOf(() => validateKey(k))).toBe('ok');
    for (const k of [
      '',
      '.a',
      'a.',
      'a..b',
      'a b',
      'a*',
      '>',
      'user:bob',
      'café',
      '_kv.x',
      '_natskit.x',
    ])
      expect(codeOf(() => validateKey(k))).toBe('INVALID_KEY');
    for (const k of ['user:bob', 'café', 'a.b'])
      expect(codeOf(() => validateStoredKey(k))).toBe('ok');
    for (const k of ['', 'a b', 'a.*', 'a..b', '_natskit.txguard'])
      expect(codeOf(() => validateStoredKey(k))).toBe('INVALID_KEY');
    expect(maxKeyBytes('b'.repeat(10))).toBe(3_536);
    expect(maxKeyBytes('b'.repeat(252))).toBe(3_536 - 2 * 242);
    expect(codeOf(() => validateKey('k'.repeat(3_536), 'b'.repeat(10)))).toBe('ok');
    expect(codeOf(() => validateKey('k'.repeat(3_537), 'b'.repeat(10)))).toBe('INVALID_KEY');
    // Bytes, not characters: 'é' is two.
    expect(codeOf(() => validateStoredKey('é'.repeat(1_769), 'b'.repeat(10)))).toBe('INVALID_KEY');
  });

  it('filters allow * and a final >, buckets are at most 252 characters', () => {
    for (const f of ['>', 'a.*', 'a.>', '*.b', 'user:bob.*'])
      expect(codeOf(() => validateFilter(f))).toBe('ok');
    for (const f of ['', 'a.>.b', 'a b', 'a..b', 'user:*'])
      expect(codeOf(() => validateFilter(f))).toBe('INVALID_KEY');
    expect(codeOf(() => validateBucket('b'.repeat(252)))).toBe('ok');
    expect(codeOf(() => validateBucket('b'.repeat(253)))).toBe('INVALID_BUCKET');
    expect(codeOf(() => validateBucket('a.b'))).toBe('INVALID_BUCKET');
    expect(keyOf('b', subjectOf('b', 'x.y'))).toBe('x.y');
  });
});

describe('codecs', () => {
  it('JSON refuses what it would lose; string and bytes check their type', () => {
    const json = jsonCodec();
    expect(json.decode(json.encode({ a: [1, 'x', null] }))).toEqual({ a: [1, 'x', null] });
    for (const bad of [
      10n,
      () => 1,
      new Map(),
      new Set(),
      Number.NaN,
      undefined,
      { d: Number.POSITIVE_INFINITY },
    ])
      expect(codeOf(() => json.encode(bad))).toBe('INVALID_VALUE');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(codeOf(() => json.encode(cyclic))).toBe('INVALID_VALUE');
    expect(codeOf(() => stringCodec().encode(1 as unknown as string))).toBe('INVALID_VALUE');
    expect(codeOf(() => resolveCodec({ encode: 1 } as never))).toBe('INVALID_OPTIONS');
  });

  it('JSON encodes sparse arrays as JSON does, and names the path of a problem at any depth', () => {
    const json = jsonCodec();
    const text = (v: unknown) => new TextDecoder().decode(json.encode(v));
    // A hole is null in JSON (before: a TypeError from the check, not a stored value).
    // biome-ignore lint/suspicious/noSparseArray: the hole is the case under test
    expect(text({ a: [1, , 3] })).toBe('{"a":[1,null,3]}');
    const messageOf = (v: unknown) => {
      try {
        json.encode(v);
        return 'ok';
      } catch (err) {
        return NatskitError.is(err, 'INVALID_VALUE') ? err.message : String(err);
      }
    };
    // biome-ignore lint/suspicious/noSparseArray: a problem after a hole is still found
    expect(messageOf({ a: [1, , 3n] })).toContain('a bigint at $.a[2]');
    expect(messageOf({ a: [{ b: Number.NaN }] })).toContain('NaN at $.a[0].b');
    // Nesting past the allocation-free check: an acyclic value passes, a deep cycle is named.
    const deep = (n: number, leaf: unknown) => {
      let v: unknown = leaf;
      for (let i = 0; i < n; i++) v = { c: v };
      return v as Record<string, unknown>;
    };
    expect(messageOf(deep(100, 1))).toBe('ok');
    expect(JSON.parse(text(deep(100, 'x')))).toEqual(deep(100, 'x'));
    expect(messageOf(deep(100, () => 1))).toContain(`a function at $${'.c'.repeat(100)}`);
    const ring = deep(40, null);
    let end = ring;
    while (end.c !== null) end = end.c as Record<string, unknown>;
    end.c = ring;
    expect(messageOf(ring)).toBe(`value is not JSON-serializable: a cycle at $${'.c'.repeat(40)}`);
  });

  it('a Standard Schema failure is VALIDATION_FAILED with the issues and their paths', async () => {
    const schema = testSchema<{ n: number }>((v) =>
      (v as { n?: number })?.n === 1 ? undefined : 'n must be 1',
    );
    await expect(validate(schema, { n: 1 }, { key: 'k' })).resolves.toEqual({ n: 1 });
    await expect(validate(schema, { n: 2 }, { key: 'k' })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      details: { issues: [{ message: 'n must be 1', path: 'n' }] },
    });
  });
});

describe('bucket config', () => {
  it('refuses unknown fields and bad values (mirror and sources too), naming the field', () => {
    expect(codeOf(() => checkBucketConfig({ history: 3, placement: { tags: ['a'] } }))).toBe('ok');
    for (const bad of [
      { history: 0 },
      { history: 65 },
      { replicas: 6 },
      { maxValueSize: 0 },
      { storage: 'disk' },
      { histroy: 2 },
      { mirror: {} },
      { sources: [] },
      { placement: {} },
      { placement: { tags: [''] } },
    ]) {
      expect(codeOf(() => checkBucketConfig(bad as never))).toBe('INVALID_OPTIONS');
    }
  });

  it('maps to the KV stream conventions and back, and diffs only the fields asked for', () => {
    const s = toStreamConfig(
      'b',
      { history: 5, ttlMs: 60_000, storage: 'memory', placement: { tags: ['z', 'a'] } },
      true,
    );
    expect(s).toMatchObject({
      name: 'KV_b',
      subjects: ['$KV.b.>'],
      max_msgs_per_subject: 5,
      storage: StorageType.Memory,
      allow_direct: true,
      allow_atomic: true,
      deny_delete: true,
      allow_rollup_hdrs: true,
      placement: { tags: ['a', 'z'] },
    });
    expect(fromStreamConfig(s)).toMatchObject({ history: 5, ttlMs: 60_000, storage: 'memory' });
    expect(diffBucket(s, { history: 5, placement: { tags: ['a', 'z'] } })).toEqual([]);
    expect(diffBucket(s, { history: 7, storage: 'file' })).toEqual([
      { field: 'history', existing: 5, requested: 7, updatable: true },
      { field: 'storage', existing: 'memory', requested: 'file', updatable: false },
    ]);
  });
});

describe('atomic batch replies', () => {
  const reply = (body: unknown, headers?: { code?: number; hasError?: boolean }) =>
    ({
      data: new TextEncoder().encode(JSON.stringify(body)),
      headers,
      json: () => body,
    }) as unknown as Msg;

  it('an ack gives the first sequence; error codes become natskit codes', () => {
    expect(interpretReply(reply({ stream: 'S', seq: 12, batch: 'B', count: 3 }), 'B', 3)).toEqual({
      stream: 'S',
      seq: 12,
      count: 3,
      firstSeq: 10,
    });
    const err = (code: number) => {
      try {
        interpretReply(reply({ error: { err_code: code, description: 'x' } }), 'B', 3);
        return 'no error';
      } catch (e) {
        return (e as NatskitError).code;
      }
    };
    expect(err(10071)).toBe('KV_REVISION_CONFLICT');
    expect(err(10164)).toBe('KV_REVISION_CONFLICT');
    expect(err(10174)).toBe('CAPABILITY_MISSING');
    expect(err(10054)).toBe('VALUE_TOO_LARGE');
    expect(err(10199)).toBe('TX_TOO_LARGE');
    expect(err(10176)).toBe('PUBLISH_FAILED');
    // An old server's plain ack (no batch): never passed off as atomic.
    expect(codeOf(() => interpretReply(reply({ stream: 'S', seq: 12 }), 'B', 3))).toBe(
      'CAPABILITY_MISSING',
    );
    expect(codeOf(() => interpretReply(reply({}, { code: 503 }), 'B', 3))).toBe('NATS_UNAVAILABLE');
  });
});

describe('headers and ack subjects', () => {
  it('headerBytes is what the client encodes', () => {
    const lists: [string, string][][] = [
      [
        ['Nats-TTL', '1000ms'],
        ['Nats-Rollup', 'sub'],
      ],
      [
        ['X-Trace', 'abc'],
        ['Owner', 'svc-a'],
        ['Nats-Msg-Id', 'x'.repeat(22)],
      ],
      [['K', 'é€']],
    ];
    for (const list of lists) {
      // encode() is on the client's header class, not on its public type.
      const encoded = (msgHeaders(list) as unknown as { encode(): Uint8Array }).encode();
      expect(headerBytes(list)).toBe(encoded.length);
    }
    expect(headerBytes([])).toBe(0);
    expect(worstCaseBytes({ subject: 's', data: new Uint8Array(10) })).toBe(10 + 100);
  });

  it('user headers: token names, none of NATS, KV or natskit, no line breaks', () => {
    expect(checkUserHeaders({ 'X-A': '1' })).toEqual([['X-A', '1']]);
    for (const bad of [
      { 'nats-x': '1' },
      { 'KV-Operation': 'DEL' },
      { 'Natskit-Tx': 'x' },
      { 'a b': '1' },
      { X: 'a\nb' },
    ])
      expect(codeOf(() => checkUserHeaders(bad))).toBe('INVALID_OPTIONS');
  });

  it('parses both ack subject forms and refuses anything else', () => {
    const ts = '1763850000123456789';
    expect(parseAckSubject(`$JS.ACK.KV_b.c1.2.42.7.${ts}.3`)).toEqual({
      domain: '',
      accountHash: undefined,
      stream: 'KV_b',
      consumer: 'c1',
      delivered: 2,
      seq: 42,
      dseq: 7,
      ts: Number(ts),
      pending: 3,
    });
    expect(parseAckSubject(`$JS.ACK.dom.ACCHASH.KV_b.c1.1.42.7.${ts}.3.tok`)).toMatchObject({
      domain: 'dom',
      accountHash: 'ACCHASH',
      stream: 'KV_b',
      delivered: 1,
      seq: 42,
      dseq: 7,
      pending: 3,
    });
    expect(new Date(Math.floor(Number(ts) / 1e6)).getTime()).toBe(1763850000123);
    for (const bad of ['_INBOX.x', '$JS.ACK.a.b', `$JS.ACK.KV_b.c1.1.x.7.${ts}.3`])
      expect(parseAckSubject(bad)).toBeUndefined();
  });
});
