import {
  checkKnownKeys,
  checkOptionsObject,
  describeValue,
  knownKeys,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { NatsServerVersion } from './server-binary.js';

/** Credentials the test server demands from clients. */
export type NatsServerAuth =
  | { readonly token: string }
  | { readonly user: string; readonly password: string };

/** TLS files for the test server (PEM). */
export interface NatsServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA that signed client certificates; with `verify` the server demands one. */
  readonly caFile?: string;
  /** Require and verify client certificates. @defaultValue false */
  readonly verify?: boolean;
}

/** Options of `startNatsServer`. */
export interface NatsServerOptions {
  /** Which server to run. @defaultValue 'modern' (2.12 or newer) */
  readonly version?: NatsServerVersion;
  /** A binary to run instead of looking one up. */
  readonly binary?: string;
  /** Enable JetStream. @defaultValue true */
  readonly jetstream?: boolean;
  /**
   * The JetStream domain (`jetstream { domain }`): its API is then also served at
   * `$JS.<domain>.API`, as a leaf node's is. @defaultValue none
   */
  readonly jetstreamDomain?: string;
  /** Require these credentials from clients. */
  readonly auth?: NatsServerAuth;
  /** Serve TLS with these files. */
  readonly tls?: NatsServerTls;
  /** The server's name. @defaultValue 'natskit-test' */
  readonly serverName?: string;
  /** Extra lines appended to the generated configuration. */
  readonly extraConfig?: string;
  /** How long to wait for the server to be ready. @defaultValue 20000 */
  readonly startTimeoutMs?: number;
}

/** How to stop a test server. */
export interface NatsServerStopOptions {
  /** `SIGKILL` simulates a crash. @defaultValue 'SIGTERM' */
  readonly signal?: 'SIGTERM' | 'SIGKILL';
}

// The harness's options are checked like the library's: a misspelt `jetstream` or `auth` must
// not start a server without JetStream or without authentication and let a test pass for the
// wrong reason.

const SERVER_KEYS = knownKeys<NatsServerOptions>({
  version: true,
  binary: true,
  jetstream: true,
  jetstreamDomain: true,
  auth: true,
  tls: true,
  serverName: true,
  extraConfig: true,
  startTimeoutMs: true,
});
const TLS_KEYS = knownKeys<NatsServerTls>({
  certFile: true,
  keyFile: true,
  caFile: true,
  verify: true,
});
const TOKEN_KEYS = ['token'];
const USER_KEYS = ['user', 'password'];
const STOP_KEYS = knownKeys<NatsServerStopOptions>({ signal: true });

/**
 * Throws `INVALID_OPTIONS` when the options of `startNatsServer` (or, with the cluster's `known`
 * list, `startNatsCluster`) have an unknown field.
 */
export function checkHarnessOptions(
  what: 'startNatsServer' | 'startNatsCluster',
  options: unknown,
  known: readonly string[] = SERVER_KEYS,
): void {
  const where = `${what} options`;
  checkOptionsObject(where, options, known);
  const o = options as NatsServerOptions | undefined;
  checkOptionsObject(`${where}.tls`, o?.tls, TLS_KEYS);
  if (typeof o?.auth === 'object' && o.auth !== null)
    checkKnownKeys(`${where}.auth`, o.auth, 'token' in o.auth ? TOKEN_KEYS : USER_KEYS);
  const domain = o?.jetstreamDomain;
  if (domain !== undefined && (typeof domain !== 'string' || !/^[A-Za-z0-9_-]+$/.test(domain))) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${where}.jetstreamDomain must be letters, digits, '-' or '_', got ${describeValue(domain)}`,
      { details: { field: 'jetstreamDomain' } },
    );
  }
}

/** Throws `INVALID_OPTIONS` when stop or restart options have an unknown field. */
export function checkStopOptions(options: unknown): void {
  checkOptionsObject('stop options', options, STOP_KEYS);
}
