/** What the error of a URL {@link isServerUrl} refuses says about it. */
export const NOT_A_SERVER_URL = 'which is not a server URL (host, host:port or nats://host:port)';

/**
 * A server URL (its credentials taken out) the client can parse: `host`, `host:port`,
 * `nats://host:port`, IPv6 in brackets. The client finds out only when it connects, as
 * `CONNECTION_FAILED` "Invalid URL" (`localhost:notaport`); it parses with the scheme replaced
 * by http, as done here.
 */
export function isServerUrl(url: string): boolean {
  const rest = url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/$/, '');
  if (rest === '' || /[\s/?#]/.test(rest)) return false;
  // A bare IPv6 address the client puts in brackets itself.
  const host = /^[^[]*:.*:/.test(rest) ? `[${rest}]` : rest;
  try {
    new URL(`http://${host}`);
    return true;
  } catch {
    return false;
  }
}
