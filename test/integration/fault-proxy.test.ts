import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatskitError } from '../../src/index.js';
import {
  type NatsServerHandle,
  startFaultProxy,
  startNatsServer,
} from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer({ jetstream: false });
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
});

/** A client that would only notice a dead link after minutes, so the proxy alone decides. */
async function client(url: string, extra: Parameters<typeof connect>[0] = {}) {
  const nc = await connect({
    servers: url,
    pingInterval: 120_000,
    reconnectTimeWait: 50,
    reconnectJitter: 0,
    ...extra,
  });
  return Object.assign(nc, { [Symbol.asyncDispose]: () => nc.close() });
}

/** Resolves true when the promise settles within `ms`, false otherwise. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function echo(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) m.respond(m.data);
  })();
  await nc.flush();
}

describe('fault proxy', () => {
  it('forwards both ways and lists its connections with the bytes each carried', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    expect(proxy.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    await using nc = await client(proxy.url);
    await echo(nc, 'fp.echo');
    const reply = await nc.request('fp.echo', 'hello', { timeout: 2_000 });
    expect(reply.string()).toBe('hello');
    expect(proxy.connections).toHaveLength(1);
    const [c] = proxy.connections;
    expect(c).toMatchObject({ id: 1, open: true, blackholed: false });
    expect(c?.bytesUp).toBeGreaterThan(0);
    expect(c?.bytesDown).toBeGreaterThan(0);
  });

  it('black-holes one connection (no pong, no disconnect) while a new connection passes; heal delivers what was held', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    await using victim = await client(proxy.url);
    await victim.flush();
    const disconnects: string[] = [];
    void (async () => {
      for await (const s of victim.status()) if (s.type === 'disconnect') disconnects.push(s.type);
    })();
    proxy.blackhole({ connection: 1 });
    const ping = victim.flush();
    expect(await settlesWithin(ping, 1_000)).toBe(false);
    expect(victim.isClosed()).toBe(false);

    // The path to the server is fine for a new connection.
    await using other = await client(proxy.url);
    await echo(other, 'fp.other');
    expect((await other.request('fp.other', 'x', { timeout: 2_000 })).string()).toBe('x');
    expect(proxy.connections.map((c) => c.blackholed)).toEqual([true, false]);

    proxy.heal({ connection: 1 });
    expect(await settlesWithin(ping, 5_000)).toBe(true);
    expect(disconnects).toEqual([]);
  });

  it('does not pass a close through a black hole: the server drops the client, the client learns it on heal', async () => {
    // A server that pings every 200 ms and drops a client after 2 unanswered pings.
    await using strict = await startNatsServer({
      jetstream: false,
      extraConfig: 'ping_interval: "200ms"\nping_max: 2',
    });
    await using proxy = await startFaultProxy({ target: strict.url });
    await using nc = await client(proxy.url);
    await nc.flush();
    const seen: string[] = [];
    void (async () => {
      for await (const s of nc.status()) seen.push(s.type);
    })();
    proxy.blackhole({ connection: 1 });
    const monitor = `http://127.0.0.1:${strict.monitorPort}/connz`;
    const connz = async () =>
      ((await (await fetch(monitor)).json()) as { num_connections: number }).num_connections;
    const until = performance.now() + 10_000;
    while ((await connz()) > 0 && performance.now() < until) await sleep(50);
    expect(await connz()).toBe(0); // the server closed its side
    expect(seen).toEqual([]); // the client knows nothing yet
    expect(proxy.connections[0]?.open).toBe(true);
    proxy.heal({ connection: 1 });
    await waitUntil(() => seen.includes('disconnect'), 5_000);
  });

  it('black-holes every connection, later ones too: a new client cannot finish its connect', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    proxy.blackhole();
    const attempt = connect({ servers: proxy.url, timeout: 800, reconnect: false });
    await expect(attempt).rejects.toBeDefined();
    expect(proxy.connections[0]?.blackholed).toBe(true);
    proxy.heal();
    await using nc = await client(proxy.url);
    await nc.flush();
  });

  it('adds latency in each direction', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    await using nc = await client(proxy.url);
    const before = await nc.rtt();
    proxy.latency(150);
    const rtt = await nc.rtt();
    // A round trip crosses the proxy twice.
    expect(rtt).toBeGreaterThanOrEqual(290);
    expect(rtt).toBeLessThan(5_000);
    proxy.heal();
    expect(await nc.rtt()).toBeLessThan(rtt);
    expect(before).toBeLessThan(290);
  });

  it('limits bandwidth', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    await using nc = await client(proxy.url);
    await nc.flush();
    proxy.bandwidth(100_000);
    const started = performance.now();
    const payload = new Uint8Array(50_000);
    for (let i = 0; i < 6; i++) nc.publish('fp.bulk', payload);
    await nc.flush();
    const seconds = (performance.now() - started) / 1000;
    // 300 kB at 100 kB/s: about 3 s (the first slice goes at once).
    expect(seconds).toBeGreaterThan(2.4);
    expect(seconds).toBeLessThan(20);
  });

  it('resets a connection: the client sees the disconnect at once and reconnects through the proxy', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    await using nc = await client(proxy.url);
    await nc.flush();
    const seen: string[] = [];
    void (async () => {
      for await (const s of nc.status()) seen.push(s.type);
    })();
    proxy.reset({ connection: 1 });
    await waitUntil(() => seen.includes('reconnect'), 10_000);
    expect(seen).toContain('disconnect');
    expect(proxy.connections.map((c) => c.open)).toEqual([false, true]);
    await nc.flush();
  });

  it('refuses a target off loopback and an unknown connection', async () => {
    await expect(startFaultProxy({ target: 'nats://10.0.0.1:4222' })).rejects.toSatisfy((e) =>
      NatskitError.is(e, 'INVALID_OPTIONS'),
    );
    await using proxy = await startFaultProxy({ target: server.url });
    expect(() => proxy.blackhole({ connection: 7 })).toThrow(/no connection 7/);
    expect(() => proxy.latency(-1)).toThrow(/>= 0/);
    // An empty list's entry is not "every connection".
    expect(() => proxy.blackhole({ connection: proxy.connections.at(-1) as never })).toThrow(
      /no connection/,
    );
  });
});
