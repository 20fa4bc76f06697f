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
