import { setTimeout as sleep } from 'node:timers/promises';
import {
  AuthorizationError,
  connect,
  type NatsConnection,
  type NodeConnectionOptions,
  UserAuthenticationExpiredError,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import { hasCredentials, type ResolvedConnectionOptions, redactUrl } from './options.js';

/**
 * The natskit error of one failed connect attempt; never carries the credentials. `credentials`:
 * whether any were given, so that an auth server met with none says so rather than "refused".
 */
function connectFailure(
  err: unknown,
  servers: string,
  attempt: number,
  credentials: boolean,
): NatskitError {
  const auth = err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError;
  const reason = describeThrown(err);
  const refused = credentials
    ? `refused the credentials (${err instanceof Error ? err.name : 'error'})`
    : 'requires credentials and none were given (nats.user/password, token, nkeySeed, credsFile or user:password@ in the URL)';
  return new NatskitError(
    auth ? 'AUTH_FAILED' : 'CONNECTION_FAILED',
    auth
      ? `the NATS server at ${servers} ${refused}`
      : `could not connect to NATS at ${servers}: ${redactUrl(reason)}${attempt > 1 ? ` (${attempt} attempts)` : ''}`,
    {
      cause: err,
      details: { attempts: attempt, ...(auth ? { credentialsGiven: credentials } : {}) },
    },
  );
}

const ABANDONED = Symbol('abandoned');

/**
 * Settles like `attempt`, or rejects with {@link ABANDONED} as soon as `signal` aborts; a
 * connection that opens after that is closed, not leaked.
 */
function unlessAborted(
  attempt: Promise<NatsConnection>,
  signal: AbortSignal,
): Promise<NatsConnection> {
  return new Promise<NatsConnection>((resolve, reject) => {
    const onAbort = () => {
      attempt.then(
        (nc) => nc.close(),
        () => undefined,
      );
      reject(ABANDONED);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    attempt.then(
      (nc) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) void nc.close();
        else resolve(nc);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Connects; with `waitForFirstConnect`, tries again until a server answers or `signal` aborts.
 * Refused credentials fail at once. When `signal` aborts (the start deadline passed), it rejects
 * with the last attempt's failure, so that the timeout can say why nothing connected.
 */
export async function firstConnect(
  o: ResolvedConnectionOptions,
  client: NodeConnectionOptions,
  log: Logger,
  signal: AbortSignal,
): Promise<NatsConnection> {
  const servers = o.servers.map(redactUrl).join(', ');
  let last: NatskitError | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const nc = await (o.waitForFirstConnect
        ? unlessAborted(connect(client), signal)
        : connect(client));
      if (attempt > 1) log.info({ attempts: attempt }, 'connected after waiting for a server');
      return nc;
    } catch (err) {
      if (err === ABANDONED) {
        throw (
          last ??
          new NatskitError(
            'CONNECTION_FAILED',
            `could not connect to NATS at ${servers}: the first attempt had not finished (connectTimeoutMs ${o.connectTimeoutMs})`,
            { details: { attempts: attempt } },
          )
        );
      }
      const failure = connectFailure(err, servers, attempt, hasCredentials(o));
      last = failure;
      if (failure.code === 'AUTH_FAILED' || !o.waitForFirstConnect || signal.aborted) throw failure;
      if (attempt === 1 || attempt % 10 === 0) {
        log.warn(
          { servers, attempts: attempt, err: failure.message },
          'no NATS server yet; waiting for one',
        );
      }
      const waitMs = o.reconnectTimeWaitMs + Math.random() * o.reconnectJitterMs;
      await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) throw failure;
    }
  }
}
