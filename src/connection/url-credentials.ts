import { NatskitError } from '../errors/natskit-error.js';

/** Credentials a server URL carried (`nats://user:password@host`, `nats://token@host`). */
export interface UrlCredentials {
  readonly token?: string;
  readonly user?: string;
  readonly password?: string;
}

/**
 * `scheme://` (optional), the user info up to the LAST `@` (a password may hold a raw `@`), and
 * the rest of a server URL.
 */
const USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/)?(.*)@([^@]*)$/i;

function invalid(why: string): NatskitError {
  // Never the URL itself: it holds a secret.
  return new NatskitError('INVALID_OPTIONS', `nats.servers ${why}`, {
    details: { field: 'nats.servers' },
  });
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid('has credentials that are not valid percent-encoding');
  }
}

/** The credentials of one URL, and the URL without them. */
function split(url: string): { url: string; credentials: UrlCredentials | undefined } {
  const m = USER_INFO.exec(url);
  if (!m) return { url, credentials: undefined };
  const [, scheme = '', info = '', rest = ''] = m;
  const colon = info.indexOf(':');
  const user = decode(colon < 0 ? info : info.slice(0, colon));
  const password = colon < 0 ? undefined : decode(info.slice(colon + 1));
  if (user === '' || password === '')
    throw invalid('has credentials that are neither user:password@ nor token@');
  return {
    url: `${scheme}${rest}`,
    credentials: password === undefined ? { token: user } : { user, password },
  };
}

/**
 * Takes the credentials out of the server URLs, as the Go client and the nats CLI read them:
 * `user:password@` is a user and password, a lone `token@` is a token (both percent-decoded).
 * The @nats-io client ignores them in a URL, so natskit passes them as options and the URLs
 * without them. Every URL that carries credentials must carry the same ones (the client has one
 * set for all servers); URLs without any use them too.
 *
 * @throws NatskitError `INVALID_OPTIONS` (naming `nats.servers`, never the secret).
 */
export function splitUrlCredentials(servers: readonly string[]): {
  servers: string[];
  credentials: UrlCredentials | undefined;
} {
  let credentials: UrlCredentials | undefined;
  const out: string[] = [];
  for (const s of servers) {
    const one = split(s);
    out.push(one.url);
    if (!one.credentials) continue;
    if (
      credentials &&
      (credentials.token !== one.credentials.token ||
        credentials.user !== one.credentials.user ||
        credentials.password !== one.credentials.password)
    ) {
      throw invalid('carry different credentials in different URLs: the client has one set');
    }
    credentials = one.credentials;
  }
  return { servers: out, credentials };
}
