import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionService, KVStoreService, ServiceManager } from '../../src/index.js';
import {
  type FaultProxyHandle,
  type NatsServerHandle,
  startFaultProxy,
  startNatsServer,
} from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

// Links that are slow, or silent for a while, but alive: none of them may be taken for dead.

const quiet = { logger: { level: 'silent' as const } };

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
});

async function metric(probeUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${probeUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function appThrough(proxy: FaultProxyHandle, nats: Record<string, unknown> = {}) {
  const app = await ServiceManager.start({
    ...quiet,
    health: { port: 0 },
    metrics: { processMetrics: false },
    nats: { servers: proxy.url, ...nats },
  });
  const states: string[] = [];
  app.get(ConnectionService).onStatus((s) => states.push(s.state));
  return { app, states, probeUrl: app.probeUrl as string };
}

/** Samples /readyz every 100 ms until stopped; returns the statuses seen. */
function sampleReadiness(probeUrl: string) {
  const seen = new Set<number>();
  let on = true;
  const done = (async () => {
    while (on) {
      const res = await fetch(`${probeUrl}/readyz`);
      await res.arrayBuffer();
      seen.add(res.status);
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await done;
      return seen;
    },
  };
}

/** Runs `n` writers on `bucket` until `stop()`; returns the acknowledged keys and values. */
function writers(bucket: { put(k: string, v: number): Promise<number> }, n: number) {
  const acks: { key: string; value: number; at: number }[] = [];
  let running = true;
  const loops = Array.from({ length: n }, async (_, w) => {
    for (let i = 0; running; i++) {
      const key = `w${w}.${i}`;
      const ok = await bucket.put(key, i).then(
        () => true,
        () => false,
      );
      if (ok) acks.push({ key, value: i, at: performance.now() });
      else await sleep(10); // a closed connection fails at once: no busy loop
    }
  });
  const stop = async () => {
    running = false;
    await Promise.all(loops);
  };
  // `await using`: a failed assertion must not leave the writers running.
  return { acks, stop, [Symbol.asyncDispose]: stop };
}

describe('live links are not taken for dead', () => {
  it('200 ms of latency each way, under load and then idle past the bound: no dead link, no reconnect, readiness stays up', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    const { app, states, probeUrl } = await appThrough(proxy);
    await using _app = app;
    const bucket = await app.get(KVStoreService).bucket<number>('slow', {
      provision: { history: 1 },
    });
    proxy.latency(200);
    const ready = sampleReadiness(probeUrl);
    await using load = writers(bucket, 4);
    await waitUntil(() => load.acks.length >= 40, 20_000);
    await load.stop();
    // Idle for more than the bound (6 s): the watch pings a quiet link, twice, over 400 ms RTT.
    const idleUntil = performance.now() + 8_000;
    await waitUntil(() => performance.now() > idleUntil, 10_000);
    const seen = await ready.stop();
    expect(states).toEqual([]);
    expect(seen).toEqual(new Set([200]));
    expect(await metric(probeUrl, 'natskit_nats_forced_reconnects_total')).toBe(0);
    expect(await metric(probeUrl, 'natskit_nats_stale_links_total')).toBe(0);
    expect(proxy.connections).toHaveLength(1);
    expect(await bucket.bulkGet(load.acks.map((a) => a.key))).toEqual(
      load.acks.map((a) => a.value),
    );
  });

  it('a link that heals by itself before the bound (black hole of 3.5 s, past the ping): no reconnect, writes go on, nothing lost', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    const { app, states, probeUrl } = await appThrough(proxy);
    await using _app = app;
    const bucket = await app.get(KVStoreService).bucket<number>('heal', {
      provision: { history: 1 },
    });
    await using load = writers(bucket, 4);
    await waitUntil(() => load.acks.length >= 100, 20_000);
    proxy.blackhole();
    const cut = performance.now();
    // The fault's length is what is tested: the watch pings at 3 s, gives up at 6 s.
    await sleep(3_500);
    proxy.heal();
    await waitUntil(() => load.acks.some((a) => a.at > cut + 3_500), 10_000);
    await load.stop();
    expect(states).toEqual([]);
    expect(await metric(probeUrl, 'natskit_nats_forced_reconnects_total')).toBe(0);
    expect(proxy.connections).toHaveLength(1);
    expect(await bucket.bulkGet(load.acks.map((a) => a.key))).toEqual(
      load.acks.map((a) => a.value),
    );
  });

  it('a server that answers nothing for 4 s (SIGSTOP: a long pause, an overloaded host) and then resumes is not replaced', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    const { app, states, probeUrl } = await appThrough(proxy);
    await using _app = app;
    const bucket = await app.get(KVStoreService).bucket<number>('paused', {
      provision: { history: 1 },
    });
    await using load = writers(bucket, 2);
    await waitUntil(() => load.acks.length >= 50, 20_000);
    const pid = server.pid as number;
    process.kill(pid, 'SIGSTOP');
    const paused = performance.now();
    try {
      await sleep(4_000); // the pause's length is what is tested
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitUntil(() => load.acks.some((a) => a.at > paused + 4_000), 10_000);
    await load.stop();
    expect(states).toEqual([]);
    expect(await metric(probeUrl, 'natskit_nats_forced_reconnects_total')).toBe(0);
  });

  it('a slow link (64 kB/s, 50 ms each way) under transactions: every transaction commits, no reconnect', async () => {
    await using proxy = await startFaultProxy({ target: server.url });
    const { app, states, probeUrl } = await appThrough(proxy);
    await using _app = app;
    const bucket = await app.get(KVStoreService).bucket<string>('slowtx', {
      provision: { history: 1 },
    });
    proxy.bandwidth(64 * 1024);
    proxy.latency(50);
    const value = 'x'.repeat(2_000);
    let committed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; performance.now() - started < 8_000; i++) {
          await bucket.transaction(async (tx) => {
            for (const k of ['a', 'b', 'c']) {
              await tx.get(`${w}.${k}`);
              tx.put(`${w}.${k}`, `${value}${i}`);
            }
          });
          committed++;
        }
      }),
    );
    expect(committed).toBeGreaterThan(10);
    expect(states).toEqual([]);
    expect(await metric(probeUrl, 'natskit_nats_forced_reconnects_total')).toBe(0);
    console.log(`slow link: ${committed} transactions in 8 s`);
  });
});
