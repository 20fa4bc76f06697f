import { ConnectionService } from '../connection/connection-service.js';
import { CONNECTION_OPTIONS, type ConnectionOptions } from '../connection/options.js';
import { KV_OPTIONS, type KVStoreOptions, KVStoreService } from '../kv/kv-store-service.js';
import type { ServiceModule } from '../lifecycle/module.js';
import { StreamService } from '../stream/stream-service.js';

/**
 * The NATS built-ins as one module: `ConnectionService`, `StreamService` (after it) and
 * `KVStoreService` (after both), with their options bound; the app is not ready while the
 * connection is not connected, or while its link looks dead (it is being replaced).
 * `ServiceManager.start({ nats, kv })` adds it for you; a service you register under one of
 * these tokens replaces the built-in.
 *
 * @example
 * ```ts
 * await using app = await ServiceManager.start({ modules: [natsModule({ servers: NATS_URL })] });
 * ```
 */
export function natsModule(nats: ConnectionOptions, kv: KVStoreOptions = {}): ServiceModule {
  return {
    name: 'nats',
    services: [
      { token: ConnectionService, useClass: ConnectionService },
      { token: StreamService, useClass: StreamService },
      { token: KVStoreService, useClass: KVStoreService },
    ],
    values: [
      { token: CONNECTION_OPTIONS, value: nats },
      { token: KV_OPTIONS, value: kv },
    ],
    notReady: (get) => {
      const connection = get(ConnectionService);
      const state = connection?.status.state ?? 'connected';
      if (state !== 'connected') return `NATS connection is ${state}`;
      const link = connection?.link;
      return link?.status === 'suspect' ? `NATS link looks dead: ${link.reason}` : undefined;
    },
  };
}
