import { jetstreamManager } from '@nats-io/jetstream';
import { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { capturingStreams } from '../jetstream/capturing-streams.js';
import { createToken, type ServiceRegistration, type ServiceToken } from '../lifecycle/service.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { METRICS } from '../metrics/metrics.js';
import { EndpointGroup } from './endpoint-group.js';
import { checkIdentity, checkQueue, checkServiceKeys } from './protocol.js';
import type { EndpointDefinition, EndpointGroupHandle, EndpointServiceOptions } from './types.js';

/** A registration for `services`, with the token of the running endpoints. */
export type EndpointsRegistration = ServiceRegistration<EndpointGroupHandle> & {
  readonly token: ServiceToken<EndpointGroupHandle>;
};

/**
 * Request/reply endpoints on the NATS service protocol, as a service of the ServiceManager: it
 * starts after the connection and the services it injects, and stops (draining) before them.
 * Standard tooling finds it (`$SRV.PING`, `nats micro ls`); instances of one name share the
 * requests in a queue group.
 *
 * @example
 * ```ts
 * const ordersApi = endpoints({
 *   name: 'orders', version: '1.0.0', inject: [OrdersDb],
 *   endpoints: (db) => ({
 *     get: endpoint({ schema: GetOrder, handler: ({ data }) => db.find(data.id) }),
 *   }),
 * });
 * await ServiceManager.start({ nats, services: [{ token: OrdersDb, useClass: OrdersDb }, ordersApi] });
 * ```
 */
export function endpoints<const I extends readonly ServiceToken[] = readonly []>(
  options: EndpointServiceOptions<I>,
): EndpointsRegistration {
  checkServiceKeys(options);
  checkIdentity(options?.name, options?.version);
  checkQueue('endpoints queue', options.queue);
  if (typeof options.endpoints !== 'function') {
    throw new NatskitError(
      'INVALID_OPTIONS',
      'endpoints needs `endpoints: (...injected) => ({ name: endpoint({ handler }) })`',
      { details: { field: 'endpoints' } },
    );
  }
  const token = options.token ?? createToken<EndpointGroupHandle>(`endpoints:${options.name}`);
  const inject: readonly ServiceToken[] = options.inject ?? [];
  return {
    token,
    useFactory: (ctx) => {
      const connection = ctx.get(ConnectionService);
      return new EndpointGroup(
        () => connection.nc,
        ctx.get(LOGGER),
        options as unknown as EndpointServiceOptions<readonly never[]>,
        inject.map((t) => ctx.get(t as symbol)),
        ctx.get(METRICS),
        async (subject) => {
          // Only with JetStream: without it no stream can capture a request.
          if (!connection.capabilities.jetstream) return [];
          const jsm = await jetstreamManager(connection.nc, {
            checkAPI: false,
            timeout: connection.requestTimeoutMs,
            apiPrefix: connection.jetstreamApiPrefix,
          });
          return capturingStreams(jsm, subject);
        },
      );
    },
    dependsOn: [ConnectionService, ...inject],
  };
}

/** One endpoint with its request type inferred from its schema (the identity, for the types). */
export function endpoint<Req = unknown, Res = unknown>(
  definition: EndpointDefinition<Req, Res>,
): EndpointDefinition<Req, Res> {
  return definition;
}
