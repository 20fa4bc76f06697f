import type { Container } from 'inversify';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import { type ServiceToken, tokenName } from './service.js';

/**
 * `container.get`, with what the container throws (a constructor or factory that threw, a
 * dependency it could not build) as a `RESOLUTION_FAILED` natskit error naming the token.
 */
export function resolve<T>(container: Container, token: ServiceToken<T>): T {
  try {
    return container.get<T>(token);
  } catch (err) {
    if (NatskitError.is(err)) throw err;
    throw new NatskitError(
      'RESOLUTION_FAILED',
      `${tokenName(token)} could not be created: ${describeThrown(err)}`,
      { cause: err, service: tokenName(token) },
    );
  }
}
