import { describe, expect, it } from 'vitest';
import { ErrorCode, NatskitAggregateError, NatskitError } from '../../src/index.js';

describe('NatskitError', () => {
  it('has exactly these codes', () => {
    // A new code must be added here, with a test that raises it.
    expect(Object.keys(ErrorCode).sort()).toEqual(
      [
        'ABORTED',
        'AUTH_FAILED',
        'CAPABILITY_MISSING',
        'CONNECTION_FAILED',
        'CONSUMER_CONFIG_CONFLICT',
        'EXPECTATION_FAILED',
        'NATS_UNAVAILABLE',
        'PUBLISH_FAILED',
        'STREAM_CONFIG_CONFLICT',
        'STREAM_NOT_FOUND',
        'KV_BUCKET_NOT_FOUND',
        'KV_BUCKET_DRIFT',
        'KV_REVISION_CONFLICT',
        'KV_READ_ONLY',
        'TX_TOO_LARGE',
        'INVALID_KEY',
        'INVALID_BUCKET',
        'INVALID_VALUE',
        'VALUE_TOO_LARGE',
        'VALIDATION_FAILED',
        'DECODE_FAILED',
        'DEPENDENCY_CYCLE',
        'DEPENDENCY_MISSING',
        'INVALID_OPTIONS',
        'INVALID_STATE',
        'INJECTION_MISSING',
        'RESOLUTION_FAILED',
        'SCOPE_DISPOSE_FAILED',
        'SERVICE_NOT_FOUND',
        'SERVICE_START_FAILED',
        'SERVICE_START_TIMEOUT',
        'SERVICE_STOP_FAILED',
        'SERVICE_STOP_TIMEOUT',
        'SHUTDOWN_FAILED',
        'TEST_SERVER_FAILED',
        'REQUEST_FAILED',
        'STORAGE_FAILED',
        'JOB_UNRECOVERABLE',
        'JOB_DUPLICATE',
      ].sort(),
    );
    for (const [key, value] of Object.entries(ErrorCode)) expect(value).toBe(key);
  });

  it('keeps code, cause, service and details', () => {
    const cause = new Error('boom');
    const err = new NatskitError('SERVICE_START_FAILED', 'db failed', {
      cause,
      service: 'db',
      details: { ms: 3 },
    });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('SERVICE_START_FAILED');
    expect(err.cause).toBe(cause);
    expect(err.service).toBe('db');
    expect(err.details).toEqual({ ms: 3 });
    expect(err.name).toBe('NatskitError');
  });

  it('is() recognises errors by brand, also from another copy of the package', () => {
    const err = new NatskitError('INVALID_OPTIONS', 'bad');
    expect(NatskitError.is(err)).toBe(true);
    expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
    expect(NatskitError.is(err, 'INVALID_STATE')).toBe(false);
    expect(NatskitError.is(new Error('plain'))).toBe(false);
    expect(NatskitError.is(null)).toBe(false);
    expect(NatskitError.is({ code: 'INVALID_OPTIONS' })).toBe(false);
    // An error from a duplicate copy: a different class, the same global brand.
    const foreign = Object.assign(new Error('x'), {
      code: 'INVALID_STATE',
      [Symbol.for('natskit.error')]: true,
    });
    expect(NatskitError.is(foreign, 'INVALID_STATE')).toBe(true);
  });

  it('the aggregate is an AggregateError with a code', () => {
    const a = new Error('a');
    const b = new Error('b');
    const err = new NatskitAggregateError('SHUTDOWN_FAILED', 'two stops failed', [a, b]);
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.errors).toEqual([a, b]);
    expect(NatskitError.is(err, 'SHUTDOWN_FAILED')).toBe(true);
  });
});
