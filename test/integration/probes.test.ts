import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createToken, ServiceManager, StreamService } from '../../src/index.js';
import { freePort, startNatsServer } from '../../src/testing/index.js';

const TOKEN = 'probe-s3cret-token-91';

interface Probe {
  code: number;
  body: {
    status: string;
    output?: string;
    checks?: Record<string, { status: string; observedUnit?: string }[]>;
  };
  type: string | null;
  text: string;
}

async function probe(base: string, path: string): Promise<Probe | 'refused'> {
  try {
    const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(3_000) });
    const text = await res.text();
    return {
      code: res.status,
      body: JSON.parse(text),
      type: res.headers.get('content-type'),
      text,
    };
  } catch {
    return 'refused';
  }
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('HTTP probes', () => {
  it('follow a whole life: starting 503, running 200, warn during a restart within grace, 503 once stop begins, live to the end', async () => {
    await using server = await startNatsServer({ auth: { token: TOKEN } });
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const SLOW = createToken<object>('SlowStart');
    const starting = ServiceManager.start({
      logger: { level: 'silent' },
      health: { port, shutdownDelayMs: 800 },
      nats: {
        servers: server.url,
        token: TOKEN,
        reconnectTimeWaitMs: 100,
        reconnectGraceMs: 20_000,
      },
      services: [{ token: SLOW, useValue: { start: () => sleep(1_500) } }],
    });
    // While the boot runs: not ready, but live.
    const early = await until('the probe server', async () => {
      const r = await probe(base, '/readyz');
      return r === 'refused' ? undefined : r;
    });
    expect(early.code).toBe(503);
    expect(early.body.output).toBe('manager is starting');
    expect((await probe(base, '/livez')) as Probe).toMatchObject({ code: 200 });
    const app = await starting;
    expect(app.probeUrl).toBe(base);

    expect((await probe(base, '/readyz')) as Probe).toMatchObject({
      code: 200,
      body: { status: 'pass' },
    });
    const healthy = (await probe(base, '/healthz')) as Probe;
    expect(healthy.code).toBe(200);
    expect(healthy.type).toBe('application/health+json');
    expect(healthy.body.status).toBe('pass');
    expect(Object.keys(healthy.body.checks ?? {}).sort()).toEqual([
      'ConnectionService',
      'KVStoreService',
      'StateStore',
      'StreamService',
      'StreamService:liveness',
      'process',
    ]);
    expect(healthy.body.checks?.ConnectionService?.[0]?.observedUnit).toBe('ms');
    expect(healthy.text).not.toContain(TOKEN);

    // A server restart within the grace period: warn (200), not fail; not ready meanwhile.
    await server.stop({ signal: 'SIGKILL' });
    const during = await until('a warn from /healthz', async () => {
      const r = await probe(base, '/healthz');
      return r !== 'refused' && r.body.status === 'warn' ? r : undefined;
    });
    expect(during.code).toBe(200);
    expect(during.body.checks?.ConnectionService?.[0]?.status).toBe('warn');
    expect(during.text).not.toContain(TOKEN);
    expect((await probe(base, '/readyz')) as Probe).toMatchObject({ code: 503 });
    await server.restart();
    await until('ready again', async () => {
      const r = await probe(base, '/readyz');
      return r !== 'refused' && r.code === 200 ? r : undefined;
    });
    await until('pass again', async () => {
      const r = await probe(base, '/healthz');
      return r !== 'refused' && r.body.status === 'pass' ? r : undefined;
    });

    // Stop: readiness turns 503 at once; liveness stays 200 through the delay and the stops.
    const stopping = app.stop();
    expect((await probe(base, '/readyz')) as Probe).toMatchObject({
      code: 503,
      body: { output: 'manager is stopping' },
    });
    let livePolls = 0;
    let stopped = false;
    void stopping.then(() => {
      stopped = true;
    });
    while (!stopped) {
      const r = await probe(base, '/livez');
      if (stopped) break;
      expect(r, 'liveness while stopping').not.toBe('refused');
      expect((r as Probe).code).toBe(200);
      livePolls++;
      await sleep(50);
    }
    await stopping;
    expect(livePolls).toBeGreaterThan(3); // it was polled through the shutdown delay
    expect(await probe(base, '/livez')).toBe('refused'); // the process is done serving
  });

  it('/livez fails when a worker fetch loop is stuck, not when the worker is idle', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      health: true,
      nats: { servers: server.url },
    });
    const base = app.probeUrl as string;
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'IDLE', subjects: ['idle.>'] });
    const worker = await streams.createWorker({
      stream: 'IDLE',
      consumer: 'idle',
      fetchExpiresMs: 1_000,
      stuckAfterMs: 2_500,
      handler: () => undefined,
    });
    worker.start();
    await sleep(3_500); // idle for longer than stuckAfterMs: still live
    expect((await probe(base, '/livez')) as Probe).toMatchObject({
      code: 200,
      body: { status: 'pass' },
    });

    (worker as unknown as Record<symbol, () => void>)[
      Symbol.for('natskit.test.blockFetchLoop')
    ]?.();
    const stuck = await until(
      'a failing /livez',
      async () => {
        const r = await probe(base, '/livez');
        return r !== 'refused' && r.code === 503 ? r : undefined;
      },
      10_000,
    );
    expect(stuck.body.checks?.['StreamService:liveness']?.[0]?.status).toBe('fail');
    expect(stuck.text).toContain('IDLE/idle: fetch loop silent');
  });
});
