import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import {
  ConnectionService,
  KVStoreService,
  NatskitError,
  type Service,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { startNatsCluster, startNatsServer } from '../../src/testing/index.js';
import { freeze, thaw } from '../support/freeze.js';
import { captureLogs } from '../support/log-capture.js';

const quiet = { logger: { level: 'silent' as const } };

async function connections(monitorPort: number | undefined, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/connz`);
  const body = (await res.json()) as { connections?: { name?: string }[] };
  return (body.connections ?? []).filter((c) => c.name === name).length;
}

describe('faults', () => {
  it('after a SIGKILL restart, writes resume as soon as the connection is back, not after the request timeout; no acked write is lost, no CAS write stored twice', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      // A long request timeout: waiting for it would show as a 10 s stall.
      nats: { servers: server.url, requestTimeoutMs: 10_000 },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('resume', { history: 64 });
    const b = await kv.bucket<number>('resume');
    let revision = await b.put('counter', 0);
    const casAcks: [number, number][] = []; // [time, value]
    const putAcks: number[] = [];
    let running = true;
    const cas = (async () => {
      for (let n = 1; running; n++) {
        revision = await b.update('counter', n, revision);
        casAcks.push([performance.now(), n]);
      }
    })();
    const plain = (async () => {
      for (let n = 0; running; n++) {
        await b.put(`p${n}`, n);
        putAcks.push(n);
      }
    })();
    await sleep(300);
    await server.stop({ signal: 'SIGKILL' });
    await server.restart();
    const back = performance.now();
    while (!casAcks.some(([t]) => t > back) && performance.now() - back < 15_000) await sleep(5);
    await sleep(300);
    running = false;
    await Promise.all([cas, plain]);

    const resumedMs = (casAcks.find(([t]) => t > back)?.[0] ?? Number.POSITIVE_INFINITY) - back;
    console.log(`writes resumed ${Math.round(resumedMs)} ms after the server was back`);
    expect(resumedMs).toBeLessThan(3_000); // the request timeout is 10 s
    // Every acknowledged CAS write is there once: consecutive values, none twice, none missing.
    const last = casAcks.at(-1)?.[1] as number;
    expect(await b.get('counter')).toBe(last);
    const values = (await b.history('counter')).flatMap((c) => (c.type === 'put' ? [c.value] : []));
    expect(values).toEqual(
      Array.from({ length: values.length }, (_, i) => last - values.length + 1 + i),
    );
    // Every acknowledged plain put is readable.
    const got = await b.bulkGet(putAcks.map((n) => `p${n}`));
    expect(got).toEqual(putAcks);
  });

  it('a compare-and-set stored by the server whose acknowledgement was lost succeeds on its retry, not a false conflict', async () => {
    // The server checks Nats-Expected-Last-Subject-Sequence before its duplicate window, so the
    // retry's message id alone does not turn the retry into the first write's ack.
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, requestTimeoutMs: 200 },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('lostack', { history: 10 });
    const b = await kv.bucket<number>('lostack');
    const first = await b.put('k', 1);
    const pid = server.pid as number;
    await freeze(pid); // the update waits in the socket; its attempts time out
    const update = b.update('k', 2, first, {
      retry: { retries: 8, minDelayMs: 100, maxDelayMs: 300 },
    });
    await sleep(700);
    thaw(pid); // the first attempt is stored; a later one finds it
    expect(await update).toBe(first + 1);
    expect(await b.getEntry('k')).toMatchObject({ value: 2, revision: first + 1 });
    const values = (await b.history('k')).flatMap((c) => (c.type === 'put' ? [c.value] : []));
    expect(values).toEqual([1, 2]); // stored once
    // A real conflict stays one, retried or not.
    const err = await b.update('k', 3, first).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'KV_REVISION_CONFLICT')).toBe(true);
  });

  it('a publish with an expectation whose first attempt was stored but not acknowledged returns that attempt, not EXPECTATION_FAILED', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'LOSTACK', subjects: ['lostack.>'] }); // no direct get
    const pid = server.pid as number;
    const retry = { retries: 8, minDelayMs: 100, maxDelayMs: 300 };
    let last = (await streams.publish('lostack.a', '0')).seq;
    for (const expectation of [
      (seq: number) => ({ lastSubjectSequence: seq }),
      (seq: number) => ({ lastSequence: seq }),
    ]) {
      await freeze(pid); // the publish waits in the socket; its attempts time out
      const publishing = streams.publish('lostack.a', String(last), {
        expect: expectation(last),
        timeoutMs: 200,
        retry,
      });
      await sleep(700);
      thaw(pid);
      const ack = await publishing;
      expect(ack.seq).toBe(last + 1);
      last = ack.seq;
    }
    expect((await streams.jsm.streams.info('LOSTACK')).state.messages).toBe(3); // none twice
    // A real failed expectation stays one.
    const err = await streams
      .publish('lostack.a', 'late', { expect: { lastSubjectSequence: 1 } })
      .catch((e: unknown) => e);
    expect(NatskitError.is(err, 'EXPECTATION_FAILED')).toBe(true);
  });

  it('a start that fails after connecting closes its connection (capability detection aborted by a failing sibling)', async () => {
    // One node of three alone: no JetStream meta leader, so capability detection keeps retrying.
    await using cluster = await startNatsCluster({ size: 3 });
    await cluster.stop(1);
    await cluster.stop(2);
    const node = cluster.nodes[0] as (typeof cluster.nodes)[number];
    class FailsSoon implements Service {
      async start() {
        await sleep(500);
        throw new Error('sibling failed');
      }
    }
    const err = await ServiceManager.start({
      ...quiet,
      services: [{ token: FailsSoon, useClass: FailsSoon }],
      nats: { servers: node.url, name: 'leak-check' },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err)).toBe(true);
    let open = await connections(node.monitorPort, 'leak-check');
    for (let i = 0; open > 0 && i < 40; i++) {
      await sleep(50);
      open = await connections(node.monitorPort, 'leak-check');
    }
    expect(open).toBe(0);
  });

  it('a handed-in connection is neither closed nor watched after stop', async () => {
    await using server = await startNatsServer();
    const nc = await connect({
      servers: server.url,
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    try {
      const logs = captureLogs();
      const app = await ServiceManager.start({
        logger: { level: 'info', destination: logs.stream },
        nats: { connection: nc },
      });
      const seen: string[] = [];
      app.get(ConnectionService).onStatus((s) => seen.push(s.state));
      await app.stop();
      const linesAtStop = logs.lines().length;
      const reconnected = (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') return;
      })();
      await server.restart({ signal: 'SIGKILL' });
      await reconnected; // the connection lived on, and came back
      await sleep(200);
      expect(nc.isClosed()).toBe(false);
      expect(seen).toEqual([]);
      const after = logs.lines().slice(linesAtStop);
      expect(after.map((l) => l.msg)).toEqual([]);
      expect(await nc.request('$JS.API.INFO').then(() => 'answered')).toBe('answered');
    } finally {
      await nc.close();
    }
  });
});
