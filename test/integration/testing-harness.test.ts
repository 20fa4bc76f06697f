import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { NatskitError } from '../../src/index.js';
import {
  findNatsServerBinary,
  startNatsCluster,
  startNatsServer,
} from '../../src/testing/index.js';

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startNatsServer', () => {
  const pids: (number | undefined)[] = [];
  afterAll(() => {
    expect(pids.filter(alive)).toEqual([]);
  });

  it('starts a modern server, and a restart keeps the port and the JetStream data', async () => {
    await using server = await startNatsServer();
    pids.push(server.pid);
    expect(server.version).toMatch(/^2\.(1[2-9]|[2-9]\d)\./);
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);

    const nc = await connect({
      servers: server.url,
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'KEEP', subjects: ['keep.>'] });
      const js = jetstream(nc);
      await js.publish('keep.a', 'one');
      await js.publish('keep.b', 'two');

      const oldPid = server.pid;
      const reconnected = (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') return s.server;
      })();
      await server.restart({ signal: 'SIGKILL' });
      // A request sent before the client has reconnected can be lost (nats.js 3.4): wait for it.
      await reconnected;
      pids.push(server.pid);
      expect(server.pid).not.toBe(oldPid);
      expect(alive(oldPid)).toBe(false);
      expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);

      const info = await jsm.streams.info('KEEP');
      expect(info.state.messages).toBe(2);
      const msg = await jsm.streams.getMessage('KEEP', { last_by_subj: 'keep.b' });
      expect(msg?.string()).toBe('two');
    } finally {
      await nc.close();
    }
  });

  it('runs the 2.9 compatibility server', async () => {
    await using server = await startNatsServer({ version: '2.9' });
    pids.push(server.pid);
    expect(server.version).toMatch(/^2\.9\./);
    const nc = await connect({ servers: server.url });
    expect(nc.info?.version).toBe(server.version);
    await nc.close();
  });

  it('reports the server log when the server cannot start', async () => {
    const err = await startNatsServer({ extraConfig: 'no_such_option_for_natskit: {{{' }).catch(
      (e: unknown) => e,
    );
    expect(NatskitError.is(err, 'TEST_SERVER_FAILED')).toBe(true);
    const message = (err as Error).message;
    expect(message).toMatch(/exited with code 1/);
    // The tail of the server's own output is part of the message.
    expect(message).toMatch(/log ends with:\n.*\S/);
  });

  it('requires the configured token', async () => {
    await using server = await startNatsServer({ auth: { token: 's3cret-token' } });
    pids.push(server.pid);
    await expect(connect({ servers: server.url, reconnect: false })).rejects.toThrow();
    const nc = await connect({ servers: server.url, token: 's3cret-token' });
    await nc.flush();
    await nc.close();
  });

  it('finds binaries by version kind', () => {
    expect(findNatsServerBinary('modern').version).toMatch(/^2\.(1[2-9]|[2-9]\d)\./);
    expect(findNatsServerBinary('2.9').version).toMatch(/^2\.9\./);
  });

  it('deletes the store directory on dispose', async () => {
    const { existsSync } = await import('node:fs');
    const server = await startNatsServer();
    const { storeDir, pid } = server;
    pids.push(pid);
    await server[Symbol.asyncDispose]();
    expect(alive(pid)).toBe(false);
    expect(existsSync(storeDir)).toBe(false);
  });
});

describe('startNatsCluster', () => {
  it('resolves once the cluster is formed: full route mesh, one meta leader, every peer current', async () => {
    // Before, start resolved at the first node naming a leader: the leader then listed one peer
    // of two, not current, and a stream created at once had no leader for its first publish.
    await using cluster = await startNatsCluster({ size: 3 });
    type Jsz = {
      meta_cluster?: { leader?: string; replicas?: { name: string; current: boolean }[] };
    };
    const views = await Promise.all(cluster.nodes.map((n) => n.monitor<Jsz>('/jsz')));
    const leader = views[0]?.meta_cluster?.leader ?? '';
    expect(views.map((v) => v.meta_cluster?.leader)).toEqual([leader, leader, leader]);
    const own = views[cluster.indexOf(leader)]?.meta_cluster?.replicas ?? [];
    const peers = cluster.nodes.map((n) => n.serverName).filter((n) => n !== leader);
    expect(
      own
        .filter((r) => r.current)
        .map((r) => r.name)
        .sort(),
    ).toEqual(peers.sort());
    for (const node of cluster.nodes) {
      const rz = await node.monitor<{ routes?: { remote_name?: string }[] }>('/routez');
      const remote = new Set(rz.routes?.map((r) => r.remote_name));
      for (const other of cluster.nodes)
        if (other !== node) expect(remote.has(other.serverName)).toBe(true);
    }
  });

  it('forms a 3-node cluster whose R3 stream survives killing its leader', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    expect(cluster.urls).toHaveLength(3);
    const nc = await connect({ servers: [...cluster.urls], reconnectTimeWait: 100 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
      // Created is not ready: the stream elects its leader, which then subscribes to r3.> and
      // its interest crosses the routes. A raw publish before that finds no responders.
      const elected = await cluster.waitForStream('R3');
      const js = jetstream(nc);
      for (let i = 0; i < 10; i++) await js.publish('r3.x', `m${i}`);

      const before = await jsm.streams.info('R3');
      const leader = before.cluster?.leader ?? '';
      expect(leader).toBe(elected);
      const index = cluster.indexOf(leader);
      expect(index).toBeGreaterThanOrEqual(0);
      const leaderPid = cluster.nodes[index]?.pid;
      await cluster.stop(index, { signal: 'SIGKILL' });
      expect(alive(leaderPid)).toBe(false);

      // A new stream leader takes over; publishing and reading keep working on 2 of 3 nodes.
      const successor = await cluster.waitForStream('R3');
      expect(successor).not.toBe(leader);
      expect((await jsm.streams.info('R3')).cluster?.leader).toBe(successor);
      await js.publish('r3.x', 'after-failover', { timeout: 10_000 });
      const info = await jsm.streams.info('R3');
      expect(info.state.messages).toBe(11);

      // A restarted node has rejoined when restart resolves: the meta leader sees it current.
      await cluster.restart(index);
      expect(cluster.nodes[index]?.running).toBe(true);
      const meta = await cluster.nodes[(index + 1) % 3]?.monitor<{
        meta_cluster?: { leader?: string; replicas?: { name: string; current: boolean }[] };
      }>('/jsz');
      const leaderNode = cluster.nodes[cluster.indexOf(meta?.meta_cluster?.leader ?? '')];
      const view = await leaderNode?.monitor<{
        meta_cluster?: { replicas?: { name: string; current: boolean }[] };
      }>('/jsz');
      const restartedName = cluster.nodes[index]?.serverName;
      if (restartedName !== leaderNode?.serverName) {
        expect(view?.meta_cluster?.replicas).toContainEqual(
          expect.objectContaining({ name: restartedName, current: true }),
        );
      }
    } finally {
      await nc.close();
    }
  });
});
