import { ConnectionService } from '../connection/connection-service.js';
import { NatskitError, supersede } from '../errors/natskit-error.js';
import { KVStoreService } from '../kv/kv-store-service.js';
import { SERVICE_HOST, ServiceHost } from '../lifecycle/host.js';
import type {
  CheckRegistrations,
  ScopedRegistration,
  ServiceRegistration,
  ServiceToken,
  Token,
} from '../lifecycle/service.js';
import { StreamService } from '../stream/stream-service.js';
import { resolveOptions, type ServiceManagerOptions } from './options.js';

/**
 * Boots services in dependency order, stops them in reverse, with deadlines, and rolls back a
 * failed boot. Start one with {@link ServiceManager.start}; stop it with `stop()` or `await using`.
 *
 * @example
 * ```ts
 * await using app = await ServiceManager.start({
 *   services: [{ token: Mailer, useClass: Mailer, dependsOn: [Database] }, { token: Database, useClass: Database }],
 * });
 * app.get(Mailer).send(...);
 * ```
 */
export class ServiceManager extends ServiceHost {
  /**
   * Validates the options, plans the dependency graph (a cycle or a missing dependency fails
   * here, before anything starts), then starts the services level by level.
   *
   * @throws NatskitError `INVALID_OPTIONS`, `DEPENDENCY_CYCLE`, `DEPENDENCY_MISSING`,
   * `INJECTION_MISSING` before anything starts; after a failed start, once the services that
   * had started were stopped again: `SERVICE_START_TIMEOUT`, the code of a natskit error the
   * service threw (e.g. `AUTH_FAILED`), or `SERVICE_START_FAILED` for any other error; `service`
   * names the service, `cause` is what it threw (for a natskit error, that error's own cause: its
   * message is already in this one), `details.rollbackErrors` holds any stop that failed then.
   * A timeout's message and `cause` say why the start had not finished when the service's start
   * gives a reason once aborted (the connection: the last connect error).
   *
   * Registrations are checked by the compiler: a `useClass` must create its token's type, a
   * `useValue` must be of it, and `inject` must list tokens that fit the constructor.
   */
  static async start<
    const S extends readonly ServiceRegistration[] = readonly [],
    const C extends readonly ScopedRegistration[] = readonly [],
  >(
    options: ServiceManagerOptions & {
      readonly services?: S & CheckRegistrations<S>;
      readonly scoped?: C & CheckRegistrations<C>;
    } = {},
  ): Promise<ServiceManager> {
    return await ServiceHost.launch(resolveOptions(options), (o) => new ServiceManager(o));
  }

  /**
   * Resolves a service by its token. A NATS built-in that is not registered says how to get it:
   * the `nats` option registers it.
   * @throws NatskitError `SERVICE_NOT_FOUND`, `RESOLUTION_FAILED`.
   */
  override get<T>(token: ServiceToken<T>): T {
    try {
      return super.get(token);
    } catch (err) {
      if (!NatskitError.is(err, 'SERVICE_NOT_FOUND') || !NATS_BUILT_INS.has(token)) throw err;
      throw supersede(
        err,
        err.code,
        `${err.message}: it is registered by the \`nats\` option (ServiceManager.start({ nats: { servers } })) or natsModule()`,
        { ...(err.service === undefined ? {} : { service: err.service }) },
      );
    }
  }
}

/** The tokens the `nats` option (the NATS module) registers. */
const NATS_BUILT_INS: ReadonlySet<unknown> = new Set([
  ConnectionService,
  StreamService,
  KVStoreService,
]);

/** Token of the ServiceManager itself, for `@inject(SERVICE_MANAGER)`. */
export const SERVICE_MANAGER = SERVICE_HOST as Token<unknown> as Token<ServiceManager>;
