import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ConnectionService, KVStoreService, ServiceManager } from '../../src/index.js';
import { startFaultProxy, startNatsCluster } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

describe('dead links on a cluster', () => {
  it('a node cut off from the app but not from its peers: the app moves to another path within the bound, R3 writes go on, nothing acknowledged is lost', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    const first = cluster.nodes[0];
    await using proxy = await startFaultProxy({ target: first?.url as string });
    // The app knows the cluster only through the proxy; it learns the nodes' own URLs from the
    // server (INFO), as apps behind a load balancer do.
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: proxy.url, connectTimeoutMs: 1_000 },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('cdl', { replicas: 3, history: 1 });
    await cluster.waitForStream('KV_cdl');
    const bucket = await kv.bucket<number>('cdl');
    const acks: { key: string; value: number; at: number }[] = [];
    let running = true;
    const writers = Array.from({ length: 3 }, async (_, w) => {
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
    // Disposed first (declared last): a failed assertion must not leave the writers running.
    await using _writers = {
      [Symbol.asyncDispose]: async () => {
        running = false;
        await Promise.all(writers);
      },
    };
    await waitUntil(() => acks.length >= 100, 20_000);
    const conn = app.get(ConnectionService);
    let back: number | undefined;
    const off = conn.onStatus((s) => {
      if (s.state === 'connected') back ??= performance.now();
    });
    const cut = performance.now();
    proxy.blackhole(); // this path and every new connection through it
    await waitUntil(() => back !== undefined, 25_000);
    off();
    await waitUntil(() => acks.some((a) => a.at > (back as number)), 10_000);
    await _writers[Symbol.asyncDispose]();
    const movedMs = (back as number) - cut;
    console.log(`cluster: moved to ${conn.status.server} after ${Math.round(movedMs)} ms`);
    expect(movedMs).toBeLessThan(20_000);
    expect(conn.status.server?.endsWith(`:${proxy.port}`)).toBe(false);
    expect(await bucket.bulkGet(acks.map((a) => a.key))).toEqual(acks.map((a) => a.value));
  });
});
