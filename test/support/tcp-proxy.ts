import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP relay between clients and a server on loopback, for fault tests: `dropReplies()` makes
 * every open connection stop passing the server's bytes on (the server still gets, stores and
 * answers what the client sends; the answers are lost), which is how a reply lost in a crash looks
 * to the client, but on demand instead of by chance. New connections relay normally.
 */
export interface TcpProxy extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` of the relay. */
  readonly url: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** From now on, the open connections lose what the server sends. */
  dropReplies(): void;
  /** Closes every connection attempt at once until {@link TcpProxy.admit} (a server not back yet). */
  refuse(): void;
  admit(): void;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  dropping: boolean;
}

/** Starts a relay to `127.0.0.1:<targetPort>` on a free port. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let accepted = 0;
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    accepted++;
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, dropping: false };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      if (!pair.dropping) client.write(chunk);
    });
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `nats://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    dropReplies() {
      for (const p of pairs) p.dropping = true;
    },
    refuse() {
      refusing = true;
    },
    admit() {
      refusing = false;
    },
    async [Symbol.asyncDispose]() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
