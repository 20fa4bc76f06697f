import { setTimeout as sleep } from 'node:timers/promises';
import { knownKeys, positiveInt } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { type NatsServerHandle, NatsServerProcess } from './nats-server.js';
import { freePort } from './ports.js';
import {
  checkHarnessOptions,
  type NatsServerOptions,
  type NatsServerStopOptions,
} from './server-options.js';

/** Options of {@link startNatsCluster}: those of a single server, plus the size. */
export interface NatsClusterOptions extends Omit<NatsServerOptions, 'serverName' | 'binary'> {
  /** How many nodes. @defaultValue 3 */
  readonly size?: number;
  /** The cluster's name; nodes are named `<name>-1` ... @defaultValue 'natskit' */
  readonly name?: string;
}

const CLUSTER_KEYS = knownKeys<NatsClusterOptions>({
  version: true,
  jetstream: true,
  auth: true,
  tls: true,
  extraConfig: true,
  startTimeoutMs: true,
  size: true,
  name: true,
});
/** A running cluster of test servers. Dispose it to stop every node and delete their files. */
export interface NatsClusterHandle extends AsyncDisposable {
  /** Client URLs of every node (stable across restarts). */
  readonly urls: readonly string[];
  readonly nodes: readonly NatsServerHandle[];
  /** Stops node `index` (0-based); `SIGKILL` simulates a crash. */
  stop(index: number, options?: NatsServerStopOptions): Promise<void>;
  /** Starts node `index` again on the same ports and store, and waits until it is healthy. */
  restart(index: number, options?: NatsServerStopOptions): Promise<void>;
  /** The index of the node with this server name (`leader` fields of stream info), or -1. */
  indexOf(serverName: string): number;
  /** Waits until the JetStream meta group has a leader that every running node agrees on. */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
}

interface JszMeta {
  meta_cluster?: { leader?: string; cluster_size?: number };
}

class NatsCluster implements NatsClusterHandle {
  readonly #nodes: NatsServerProcess[];
  readonly #size: number;

  constructor(nodes: NatsServerProcess[]) {
    this.#nodes = nodes;
    this.#size = nodes.length;
  }

  get urls(): readonly string[] {
    return this.#nodes.map((n) => n.url);
  }
  get nodes(): readonly NatsServerHandle[] {
    return this.#nodes;
  }

  #node(index: number): NatsServerProcess {
    const node = this.#nodes[index];
    if (!node)
      throw new NatskitError('INVALID_OPTIONS', `no cluster node ${index} (size ${this.#size})`);
    return node;
  }

  indexOf(serverName: string): number {
    return this.#nodes.findIndex((n) => n.serverName === serverName);
  }

  async stop(index: number, options?: NatsServerStopOptions): Promise<void> {
    await this.#node(index).stop(options);
  }

  async restart(index: number, options?: NatsServerStopOptions): Promise<void> {
    await this.#node(index).restart(options);
  }

  async waitForMetaLeader(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no node answered';
    while (Date.now() < deadline) {
      const running = this.#nodes.filter((n) => n.running);
      const leaders = await Promise.all(
        running.map(async (n) => {
          try {
            return (await n.monitor<JszMeta>('/jsz')).meta_cluster?.leader ?? '';
          } catch {
            return '';
          }
        }),
      );
      const leader = leaders[0];
      if (leader && leaders.every((l) => l === leader)) return leader;
      last = `nodes report leaders ${JSON.stringify(leaders)}`;
      await sleep(100);
    }
    throw new NatskitError(
      'TEST_SERVER_FAILED',
      `the cluster elected no JetStream meta leader within ${timeoutMs} ms (${last})`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const results = await Promise.allSettled(this.#nodes.map((n) => n[Symbol.asyncDispose]()));
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (failed.length > 0) {
      throw new AggregateError(failed, 'stopping the test cluster failed');
    }
  }
}

/**
 * Starts a cluster of nats-servers with JetStream (3 nodes by default) on loopback, with full
 * route meshes, and waits until every node is healthy and the JetStream meta group has a leader.
 *
 * @example
 * ```ts
 * await using cluster = await startNatsCluster({ size: 3 });
 * const nc = await connect({ servers: [...cluster.urls] });
 * await cluster.stop(1); // a real process kill of node 1
 * ```
 */
export async function startNatsCluster(
  options: NatsClusterOptions = {},
): Promise<NatsClusterHandle> {
  checkHarnessOptions('startNatsCluster', options, CLUSTER_KEYS);
  const size = positiveInt('startNatsCluster options.size', options.size, 3);
  const name = options.name ?? 'natskit';
  // Route ports must be known before any node starts, so that every node lists every other.
  const routePorts: number[] = [];
  const clientPorts: number[] = [];
  for (let i = 0; i < size; i++) {
    routePorts.push(await freePort());
    clientPorts.push(await freePort());
  }
  const nodes = routePorts.map((routePort, i) => {
    const routes = routePorts.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p}"`);
    return new NatsServerProcess({
      ...options,
      serverName: `${name}-${i + 1}`,
      port: clientPorts[i] ?? -1,
      clusterConfig: `cluster { name: "${name}", listen: "127.0.0.1:${routePort}", routes: [${routes.join(', ')}] }`,
    });
  });
  const cluster = new NatsCluster(nodes);
  try {
    await Promise.all(nodes.map((n) => n.start()));
    if (options.jetstream ?? true)
      await cluster.waitForMetaLeader(options.startTimeoutMs ?? 30_000);
  } catch (err) {
    await cluster[Symbol.asyncDispose]().catch(() => undefined);
    throw err;
  }
  return cluster;
}
