import { createInbox, type NatsConnection } from '@nats-io/transport-node';

/**
 * A new reply inbox under the connection's own inbox prefix: a connection handed in may be
 * allowed to subscribe only there (permissions), and a reply sent elsewhere never arrives. The
 * client offers no public accessor for the prefix.
 */
export function inboxOf(nc: NatsConnection): string {
  return createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
}
