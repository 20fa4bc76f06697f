import { NatskitError } from '../errors/natskit-error.js';

/** Checks a duration: a positive finite number of milliseconds, or absent. */
export function checkMs(field: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `options.${field} must be a positive number of milliseconds, got ${String(value)}`,
      {
        details: { field },
      },
    );
  }
}

/**
 * Returns `value`, or `fallback` when absent, after checking it is a positive integer.
 * @throws NatskitError `INVALID_OPTIONS` naming the field.
 */
export function positiveInt(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${field} must be a positive integer, got ${String(value)}`,
      { details: { field } },
    );
  }
  return value;
}
