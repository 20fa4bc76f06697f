/** The JetStream API prefix without a domain. */
export const DEFAULT_API_PREFIX = '$JS.API';

/**
 * The subject to publish a write to a stream subject on. Through a JetStream domain (a leaf node
 * using its hub's JetStream), a publish to `$KV.<bucket>.<key>` does not cross the leaf node
 * connection (measured on 2.15.1: no responders, while a plain stream subject crossed), and the
 * server takes KV writes at `<apiPrefix>.$KV.<bucket>.<key>` instead, as the nats.js and nats.go
 * KV clients send them. Other subjects are sent as they are.
 */
export function writeSubject(apiPrefix: string, subject: string): string {
  return apiPrefix !== DEFAULT_API_PREFIX && subject.startsWith('$KV.')
    ? `${apiPrefix}.${subject}`
    : subject;
}
