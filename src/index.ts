/**
 * natskit: a service framework for NATS.
 * @packageDocumentation
 */
export type { NatskitErrorOptions } from './errors/natskit-error.js';

export { ErrorCode, NatskitAggregateError, NatskitError } from './errors/natskit-error.js';
