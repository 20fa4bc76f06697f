import { knownKeys, positiveInt } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { interestStep, metaStep, routesStep, streamStep, until } from './cluster-readiness.js';
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
  /**
   * `server_tags` of each node, by index (placement of streams by tag): `[['az:1'], ['az:2']]`
   * tags node 0 and node 1, and leaves the others untagged. @defaultValue no tags
   */
  readonly serverTags?: readonly (readonly string[] | undefined)[];
}

const CLUSTER_KEYS = knownKeys<NatsClusterOptions>({
  version: true,
  jetstream: true,
  jetstreamDomain: true,
  auth: true,
  tls: true,
  extraConfig: true,
  startTimeoutMs: true,
  size: true,
  name: true,
  serverTags: true,
});
/** A running cluster of test servers. Dispose it to stop every node and delete their files. */
export interface NatsClusterHandle extends AsyncDisposable {
  /** Client URLs of every node (stable across restarts). */
  readonly urls: readonly string[];
  readonly nodes: readonly NatsServerHandle[];
  /** Stops node `index` (0-based); `SIGKILL` simulates a crash. */
  stop(index: number, options?: NatsServerStopOptions): Promise<void>;
  /**
   * Starts node `index` again on the same ports and store, and waits until it has rejoined: routes
   * to every running node and (with JetStream) a current peer of the meta group.
   */
  restart(index: number, options?: NatsServerStopOptions): Promise<void>;
  /** The index of the node with this server name (`leader` fields of stream info), or -1. */
  indexOf(serverName: string): number;
  /**
   * Waits until every running node routes to every other, the JetStream meta group has a leader
   * that every running node names, and that leader sees every other running node as current.
   * Resolves with the leader's server name. {@link startNatsCluster} has done this once.
   */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  /**
   * Waits until stream `name` can take a publish through any running node: it has a leader that
   * every node names, its replicas on running nodes are current, and every node has the leader's
   * interest in its subjects. Resolves with the leader's server name. Creating a stream returns
   * before this (a publish right after can find no responders); so does a leader change.
   */
  waitForStream(name: string, timeoutMs?: number): Promise<string>;
  /**
   * Waits until every running node knows of every client subscription to `subject` held on any
   * node, and at least `subscribedNodes` (default 1) nodes hold one. A subscription reaches the
   * other nodes through the routes after its own server has it: an endpoint instance on node 1
   * gets requests sent through node 3 only from then on.
   */
  waitForInterest(
    subject: string,
    options?: { readonly subscribedNodes?: number; readonly timeoutMs?: number },
  ): Promise<void>;
}

class NatsCluster implements NatsClusterHandle {
  readonly #nodes: NatsServerProcess[];
  readonly #size: number;
  readonly #jetstream: boolean;

  constructor(nodes: NatsServerProcess[], jetstream: boolean) {
    this.#nodes = nodes;
    this.#size = nodes.length;
    this.#jetstream = jetstream;
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
    await this.ready(30_000);
  }

  /** Routes up, then (with JetStream) the meta group formed: what "started" promises. Internal. */
  async ready(timeoutMs: number): Promise<string | undefined> {
    const start = performance.now();
    await until('the cluster formed no full route mesh', timeoutMs, () => routesStep(this.#nodes));
    if (!this.#jetstream) return undefined;
    const left = Math.max(1, timeoutMs - (performance.now() - start));
    return this.waitForMetaLeader(left);
  }

  waitForMetaLeader(timeoutMs = 30_000): Promise<string> {
    return until('the cluster formed no JetStream meta group', timeoutMs, async () => {
      const routes = await routesStep(this.#nodes);
      return routes.met ? metaStep(this.#nodes) : routes;
    });
  }

  waitForStream(name: string, timeoutMs = 30_000): Promise<string> {
    return until(`stream ${name} was not ready on every node`, timeoutMs, () =>
      streamStep(this.#nodes, name),
    );
  }

  waitForInterest(
    subject: string,
    options: { readonly subscribedNodes?: number; readonly timeoutMs?: number } = {},
  ): Promise<void> {
    const wanted = options.subscribedNodes ?? 1;
    return until(
      `the cluster did not route ${subject} everywhere`,
      options.timeoutMs ?? 30_000,
      () => interestStep(this.#nodes, subject, wanted),
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
 * route meshes. It resolves once the cluster is formed: every node is healthy and routes to
 * every other, the JetStream meta group has a leader that every node names, and that leader
 * sees every other node as a current peer. A stream created on it still needs a moment to elect
 * its own leader: await {@link NatsClusterHandle.waitForStream} before publishing with a raw
 * client (natskit's publish retries no responders by itself).
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
  const tags = options.serverTags ?? [];
  if (
    !Array.isArray(tags) ||
    tags.length > size ||
    !tags.every(
      (t) =>
        t === undefined ||
        (Array.isArray(t) && t.every((x) => typeof x === 'string' && /^[^\s"]+$/.test(x))),
    )
  ) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `serverTags must list at most ${size} arrays of tags (no spaces or quotes)`,
      { details: { field: 'serverTags' } },
    );
  }
  // Ports are picked free, then bound by the servers a moment later: another process (a test
  // file starting its own servers in parallel) can take one in between, and the node exits
  // with "address already in use". Such a start is tried again on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options, size, name, tags);
    } catch (err) {
      const taken =
        NatskitError.is(err, 'TEST_SERVER_FAILED') && /address already in use/.test(err.message);
      if (!taken || attempt === 3) throw err;
    }
  }
}

async function startOnce(
  options: NatsClusterOptions,
  size: number,
  name: string,
  tags: readonly (readonly string[] | undefined)[],
): Promise<NatsClusterHandle> {
  // Route ports must be known before any node starts, so that every node lists every other.
  const routePorts: number[] = [];
  const clientPorts: number[] = [];
  for (let i = 0; i < size; i++) {
    routePorts.push(await freePort());
    clientPorts.push(await freePort());
  }
  const nodes = routePorts.map((routePort, i) => {
    const routes = routePorts.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p}"`);
    const own = tags[i]?.length ? `server_tags: ${JSON.stringify(tags[i])}` : '';
    return new NatsServerProcess({
      ...options,
      extraConfig: [options.extraConfig, own].filter(Boolean).join('\n'),
      serverName: `${name}-${i + 1}`,
      port: clientPorts[i] ?? -1,
      clusterConfig: `cluster { name: "${name}", listen: "127.0.0.1:${routePort}", routes: [${routes.join(', ')}] }`,
    });
  });
  const cluster = new NatsCluster(nodes, options.jetstream ?? true);
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await cluster.ready(options.startTimeoutMs ?? 30_000);
  } catch (err) {
    await cluster[Symbol.asyncDispose]().catch(() => undefined);
    throw err;
  }
  return cluster;
}
