import { connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { startNatsServer } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

/** Resolves once a TCP connection to `port` succeeds (the server accepts clients again). */
async function portAnswers(port: number, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (performance.now() > end) throw new Error(`port ${port} did not answer in ${timeoutMs} ms`);
    await sleep(2);
  }
}

describe('writes issued right after a server restart', () => {
  it('a put and a compare-and-set issued the moment a SIGKILLed server accepts connections again resume with the load, not after a request timeout, and are stored once', async () => {
    // The client drops what is published while its connection is down (each reconnect attempt
    // resets its outbound buffer): a request sent then waited for its whole timeout (5.1 s).
    await using server = await startNatsServer();
    const requestTimeoutMs = 5_000;
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, requestTimeoutMs },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('stall', { history: 10 });
    const b = await kv.bucket<number>('stall');
    let running = true;
    let back = Number.POSITIVE_INFINITY;
    let resumedAt = Number.POSITIVE_INFINITY;
    const writers = Array.from({ length: 16 }, async (_, w) => {
      for (let n = 0; running; n++) {
        await b.put(`w${w}`, n);
        const now = performance.now();
        if (now > back && now < resumedAt) resumedAt = now;
      }
    });
    try {
      for (let round = 1; round <= 3; round++) {
        const casFrom = await b.put(`cas${round}`, 0);
        await sleep(200); // the load runs
        await server.stop({ signal: 'SIGKILL' });
        const restarting = server.restart();
        await portAnswers(server.port, 20_000);
        back = performance.now();
        resumedAt = Number.POSITIVE_INFINITY;
        const since = (p: Promise<unknown>) => p.then(() => performance.now() - back);
        const [putMs, casMs] = await Promise.all([
          since(b.put(`one${round}`, round)),
          since(b.update(`cas${round}`, round, casFrom)),
        ]);
        await restarting;
        await waitUntil(() => resumedAt < Number.POSITIVE_INFINITY, 10_000);
        const loadMs = resumedAt - back;
        console.log(
          `round ${round}, after the port answered: load resumed ${Math.round(loadMs)} ms, one put ${Math.round(putMs)} ms, one compare-and-set ${Math.round(casMs)} ms`,
        );
        // The load resumes once the client's reconnect wait is over (250-500 ms); a write
        // issued at the same moment must not wait for the request timeout on top.
        for (const ms of [putMs, casMs]) {
          expect(ms).toBeLessThan(loadMs + 1_000);
          expect(ms).toBeLessThan(requestTimeoutMs / 2);
        }
        const values = async (key: string) =>
          (await b.history(key)).flatMap((c) => (c.type === 'put' ? [c.value] : []));
        expect(await values(`one${round}`)).toEqual([round]); // stored once
        expect(await values(`cas${round}`)).toEqual([0, round]);
      }
    } finally {
      running = false;
      await Promise.allSettled(writers);
    }
  });
});
