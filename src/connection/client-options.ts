import { readFileSync } from 'node:fs';
import {
  credsAuthenticator,
  type NodeConnectionOptions,
  nkeyAuthenticator,
} from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import type { CONNECTION_DEFAULTS, ConnectionOptions } from './options.js';

/** Builds the client's options; reads key files here so that a missing file fails clearly. */
export function toClientOptions(
  o: ConnectionOptions & typeof CONNECTION_DEFAULTS,
): NodeConnectionOptions {
  const read = (field: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new NatskitError('INVALID_OPTIONS', `nats.${field}: cannot read ${path}`, {
        cause: err,
      });
    }
  };
  const client: NodeConnectionOptions = {
    servers: [...(o.servers as string[])],
    name: o.name,
    timeout: o.connectTimeoutMs,
    reconnect: o.reconnect,
    maxReconnectAttempts: o.maxReconnectAttempts,
    reconnectTimeWait: o.reconnectTimeWaitMs,
    reconnectJitter: o.reconnectJitterMs,
    reconnectJitterTLS: o.reconnectJitterMs,
    pingInterval: o.pingIntervalMs,
    waitOnFirstConnect: false,
  };
  if (o.token !== undefined) client.token = o.token;
  if (o.user !== undefined) client.user = o.user;
  if (o.password !== undefined) client.pass = o.password;
  const seed =
    o.nkeySeed ?? (o.nkeySeedFile ? read('nkeySeedFile', o.nkeySeedFile).trim() : undefined);
  if (seed !== undefined) client.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  if (o.credsFile !== undefined) {
    client.authenticator = credsAuthenticator(
      new TextEncoder().encode(read('credsFile', o.credsFile)),
    );
  }
  if (o.tls) {
    const tls: NonNullable<NodeConnectionOptions['tls']> = {};
    if (o.tls.caFile) tls.caFile = o.tls.caFile;
    if (o.tls.certFile) tls.certFile = o.tls.certFile;
    if (o.tls.keyFile) tls.keyFile = o.tls.keyFile;
    if (o.tls.handshakeFirst) tls.handshakeFirst = true;
    client.tls = tls;
  }
  return client;
}
