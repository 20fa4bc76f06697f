import { describe, expect, it } from 'vitest';
import { NatskitError } from '../../src/errors/natskit-error.js';
import { describeThrown, thrownProperty } from '../../src/errors/thrown.js';
import { createRootLogger } from '../../src/logging/logger.js';
import { captureLogs } from '../support/log-capture.js';
import { oddThrownValues } from '../support/thrown-values.js';

describe('reading what user code threw', () => {
  const odd = oddThrownValues();

  it('describeThrown never throws and says what was thrown', () => {
    for (const [kind, value] of Object.entries(odd)) {
      expect(typeof describeThrown(value), kind).toBe('string');
    }
    expect(describeThrown(null)).toBe('null');
    expect(describeThrown(undefined)).toBe('undefined');
    expect(describeThrown('a plain string')).toBe('a plain string');
    expect(describeThrown(42)).toBe('42');
    expect(describeThrown(Symbol('s'))).toBe('Symbol(s)');
    expect(describeThrown(odd.object)).toBe('{"reason":"no message field"}');
    expect(describeThrown(new Error('plain'))).toBe('plain');
    expect(describeThrown(odd.noPrototype)).toBe('[object Object]');
    expect(describeThrown({ long: 'x'.repeat(500) })).toHaveLength(203);
  });

  it('thrownProperty gives undefined for non-objects and for reads that throw', () => {
    expect(thrownProperty(null, 'details')).toBeUndefined();
    expect(thrownProperty(undefined, 'details')).toBeUndefined();
    expect(thrownProperty('s', 'length')).toBeUndefined();
    expect(thrownProperty(odd.getters, 'details')).toBeUndefined();
    expect(thrownProperty(odd.proxy, 'code')).toBeUndefined();
    expect(thrownProperty({ code: 'X' }, 'code')).toBe('X');
  });

  it('NatskitError.is is false for a Proxy whose reads throw, instead of throwing', () => {
    expect(NatskitError.is(odd.proxy)).toBe(false);
    expect(NatskitError.is(odd.getters, 'INVALID_STATE')).toBe(false);
  });

  it('the root logger logs { err } for every odd value without throwing', () => {
    const logs = captureLogs();
    const log = createRootLogger({ level: 'info', destination: logs.stream });
    for (const [kind, err] of Object.entries(odd)) log.error({ err, kind }, 'failed');
    const lines = logs.lines();
    expect(lines.map((l) => l.kind)).toEqual(Object.keys(odd));
    const byKind = new Map(lines.map((l) => [l.kind, l.err]));
    expect(byKind.get('frozen')).toMatchObject({ type: 'Error', message: 'frozen error' });
    expect(byKind.get('getters')).toMatchObject({ type: 'Object' });
    expect(byKind.get('string')).toBe('a plain string');
    // A normal error still goes through pino's serializer (stack, own fields).
    const logs2 = captureLogs();
    createRootLogger({ level: 'info', destination: logs2.stream }).error(
      { err: Object.assign(new Error('x'), { code: 'E1' }) },
      'failed',
    );
    expect(logs2.lines()[0]?.err).toMatchObject({ type: 'Error', message: 'x', code: 'E1' });
  });

  it("a user's logger keeps its own err serializer, made safe", async () => {
    const { pino } = await import('pino');
    const logs = captureLogs();
    const user = pino(
      { serializers: { err: (e: { message?: string }) => ({ mine: e.message }) } },
      logs.stream,
    );
    const log = createRootLogger(user);
    log.error({ err: new Error('kept') }, 'failed');
    log.error({ err: odd.getters }, 'failed');
    expect(logs.lines().map((l) => l.err)).toEqual([
      { mine: 'kept' },
      { type: 'Object', message: '[object Object]' },
    ]);
  });

  it('a logged error says each message of its cause chain once (pino joins them all)', () => {
    const logs = captureLogs();
    const client = new Error('Authorization Violation');
    const wrapped = new NatskitError(
      'AUTH_FAILED',
      'the NATS server at nats://127.0.0.1:4222 refused the credentials: Authorization Violation',
      { cause: client },
    );
    const outer = new Error('start failed', { cause: wrapped });
    createRootLogger({ level: 'info', destination: logs.stream }).error({ err: outer }, 'failed');
    const message = (logs.lines()[0]?.err as { message?: string } | undefined)?.message ?? '';
    expect(message).toBe(
      'start failed: the NATS server at nats://127.0.0.1:4222 refused the credentials: Authorization Violation',
    );
    expect(message.split('Authorization Violation')).toHaveLength(2);
    // A cause that adds something is still said.
    const other = new Error('outer', { cause: new Error('inner detail') });
    createRootLogger({ level: 'info', destination: logs.stream }).error({ err: other }, 'x');
    expect((logs.lines()[1]?.err as { message?: string } | undefined)?.message).toBe(
      'outer: inner detail',
    );
  });
});
