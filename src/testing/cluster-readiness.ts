import { setTimeout as sleep } from 'node:timers/promises';
import { NatskitError } from '../errors/natskit-error.js';
import type { NatsServerHandle } from './nats-server.js';

// What a test cluster promises, read off the nodes' monitoring endpoints. Each condition here
// was a flake before it was awaited: a stream created right after the meta leader was elected
// had no leader of its own yet (its first publish: no responders), and an endpoint instance on
// one node was not yet known to the node a client used (every request went to the other one).

interface RoutezRoute {
  readonly remote_name?: string;
  readonly subscriptions_list?: readonly string[];
}
interface Routez {
  readonly routes?: readonly RoutezRoute[];
}
interface Replica {
  readonly name?: string;
  readonly current?: boolean;
}
interface Jsz {
  readonly meta_cluster?: { readonly leader?: string; readonly replicas?: readonly Replica[] };
  readonly account_details?: readonly {
    readonly stream_detail?: readonly {
      readonly name?: string;
      readonly config?: { readonly subjects?: readonly string[] };
      readonly cluster?: { readonly leader?: string; readonly replicas?: readonly Replica[] };
    }[];
  }[];
}
interface Subsz {
  readonly total?: number;
}

/** A node of the cluster as these checks see it. */
export type ClusterNode = Pick<NatsServerHandle, 'serverName' | 'running' | 'monitor'>;

/** Where a condition stands: met (with a value), or not yet and why. */
type Step<T> =
  | { readonly met: true; readonly value: T }
  | { readonly met: false; readonly why: string };

/**
 * Polls `step` every 50 ms until it is met; a node that does not answer counts as not met.
 * @throws NatskitError `TEST_SERVER_FAILED` with the last reason after `timeoutMs`.
 */
export async function until<T>(
  what: string,
  timeoutMs: number,
  step: () => Promise<Step<T>>,
): Promise<T> {
  const start = performance.now();
  let why = 'not checked yet';
  while (performance.now() - start < timeoutMs) {
    try {
      const s = await step();
      if (s.met) return s.value;
      why = s.why;
    } catch (err) {
      why = `a node did not answer: ${err instanceof Error ? err.message : String(err)}`;
    }
    await sleep(50);
  }
  throw new NatskitError('TEST_SERVER_FAILED', `${what} within ${timeoutMs} ms: ${why}`);
}

/** Whether a subscription subject (with `*` and `>` wildcards) matches a literal subject. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

const names = (replicas: readonly Replica[] | undefined, current?: boolean) =>
  (replicas ?? []).filter((r) => current === undefined || r.current === current).map((r) => r.name);

/** Route subscriptions a node holds from the node named `from` (all pooled routes together). */
async function routeSubs(node: ClusterNode, from: string): Promise<string[] | undefined> {
  const rz = await node.monitor<Routez>('/routez?subs=1');
  const routes = (rz.routes ?? []).filter((r) => r.remote_name === from);
  if (routes.length === 0) return undefined;
  return routes.flatMap((r) => r.subscriptions_list ?? []);
}

/** Every running node has a route to every other running node. */
export async function routesStep(nodes: readonly ClusterNode[]): Promise<Step<void>> {
  const running = nodes.filter((n) => n.running);
  for (const node of running) {
    const rz = await node.monitor<Routez>('/routez');
    const peers = new Set((rz.routes ?? []).map((r) => r.remote_name));
    const missing = running.filter((n) => n !== node && !peers.has(n.serverName));
    if (missing.length > 0) {
      const list = missing.map((n) => n.serverName).join(', ');
      return { met: false, why: `${node.serverName} has no route to ${list}` };
    }
  }
  return { met: true, value: undefined };
}

/**
 * The JetStream meta group has one leader that every running node names, and the leader sees
 * every other running node as a current peer (a new stream can then be placed on any of them).
 */
export async function metaStep(nodes: readonly ClusterNode[]): Promise<Step<string>> {
  const running = nodes.filter((n) => n.running);
  const views = await Promise.all(running.map((n) => n.monitor<Jsz>('/jsz')));
  const leaders = views.map((v) => v.meta_cluster?.leader ?? '');
  const leader = leaders[0];
  if (!leader || !leaders.every((l) => l === leader)) {
    return { met: false, why: `nodes name meta leaders ${JSON.stringify(leaders)}` };
  }
  const own = views[running.findIndex((n) => n.serverName === leader)];
  if (!own) return { met: false, why: `the meta leader ${leader} is not a running node` };
  const current = new Set(names(own.meta_cluster?.replicas, true));
  const behind = running.filter((n) => n.serverName !== leader && !current.has(n.serverName));
  if (behind.length > 0) {
    const list = behind.map((n) => n.serverName).join(', ');
    return { met: false, why: `meta leader ${leader} does not see ${list} as current` };
  }
  return { met: true, value: leader };
}

/**
 * Stream `name` has a leader every running node names, its replicas on running nodes are
 * current, and every other running node has the leader's interest in the stream's subjects (only
 * the leader subscribes to them: before that, a publish through another node finds no
 * responders).
 */
export async function streamStep(
  nodes: readonly ClusterNode[],
  name: string,
): Promise<Step<string>> {
  const running = nodes.filter((n) => n.running);
  const details = await Promise.all(
    running.map(async (n) => {
      const jsz = await n.monitor<Jsz>('/jsz?accounts=true&streams=true&config=true');
      const all = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []);
      return all.find((s) => s.name === name);
    }),
  );
  const leaders = details.map((d) => d?.cluster?.leader ?? '');
  const leader = leaders.find((l) => l !== '');
  if (!leader) return { met: false, why: `stream ${name} has no leader yet` };
  const index = running.findIndex((n) => n.serverName === leader);
  const own = details[index];
  if (!own) return { met: false, why: `stream ${name}'s leader ${leader} is not a running node` };
  const disagree = running.filter((_, i) => details[i] && leaders[i] !== leader);
  if (disagree.length > 0) {
    return { met: false, why: `${disagree[0]?.serverName} does not name ${leader} as leader` };
  }
  const up = new Set(running.map((n) => n.serverName));
  const replicas = (own.cluster?.replicas ?? []).filter((r) => r.name && up.has(r.name));
  const behind = replicas.filter((r) => !r.current).map((r) => r.name);
  if (behind.length > 0) return { met: false, why: `replicas ${behind.join(', ')} not current` };
  const subjects = own.config?.subjects ?? [];
  for (const node of running) {
    if (node.serverName === leader) continue;
    const subs = (await routeSubs(node, leader)) ?? [];
    const missing = subjects.filter((s) => !subs.includes(s));
    if (missing.length > 0) {
      return { met: false, why: `${node.serverName} has no interest yet in ${missing.join(', ')}` };
    }
  }
  return { met: true, value: leader };
}

/**
 * Every running node knows of every subscription to `subject` that any node holds for a client
 * (directly, or through its route from that node), and at least `subscribedNodes` nodes hold one.
 */
export async function interestStep(
  nodes: readonly ClusterNode[],
  subject: string,
  subscribedNodes: number,
): Promise<Step<void>> {
  const running = nodes.filter((n) => n.running);
  const local = await Promise.all(
    running.map(async (n) => {
      const s = await n.monitor<Subsz>(`/subsz?subs=1&test=${encodeURIComponent(subject)}`);
      return (s.total ?? 0) > 0;
    }),
  );
  const holders = running.filter((_, i) => local[i]);
  if (holders.length < subscribedNodes) {
    return {
      met: false,
      why: `${holders.length} node(s) hold a subscription to ${subject}, expected ${subscribedNodes}`,
    };
  }
  for (const node of running) {
    for (const holder of holders) {
      if (holder === node) continue;
      const subs = (await routeSubs(node, holder.serverName)) ?? [];
      if (!subs.some((s) => subjectMatches(s.split(' ')[0] ?? s, subject))) {
        return {
          met: false,
          why: `${node.serverName} does not know yet of ${holder.serverName}'s subscription to ${subject}`,
        };
      }
    }
  }
  return { met: true, value: undefined };
}
