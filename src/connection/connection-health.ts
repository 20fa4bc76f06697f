import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeThrown } from '../errors/thrown.js';
import type { HealthCheckResult } from '../lifecycle/service.js';
import type { Capabilities } from './capabilities.js';
import type { LinkStatus } from './link-watch.js';

/** What the connection's health check looks at. */
export interface ConnectionHealthView {
  readonly state: 'connected' | 'reconnecting' | 'disconnected' | 'closed';
  readonly lameDuck: boolean;
  readonly nc: NatsConnection | undefined;
  readonly capabilities: Capabilities | undefined;
  /** `performance.now()` when the connection was lost; undefined while connected. */
  readonly outageSince: number | undefined;
  readonly reconnectGraceMs: number;
  readonly link: LinkStatus;
}

/**
 * The ConnectionService's health check: `pass` when connected (RTT in ms), `warn` while
 * reconnecting within the grace, `fail` otherwise; a connection that says "connected" but looks
 * dead (being replaced) counts as reconnecting, and the output says why.
 */
export async function connectionHealth(v: ConnectionHealthView): Promise<HealthCheckResult> {
  const server = v.capabilities
    ? `${v.capabilities.serverId} (${v.capabilities.serverVersion})`
    : 'none';
  if (v.link.status === 'suspect') {
    // Like a reconnect: a warning while it is replaced, a failure if that takes past the grace.
    const suspectMs = Date.now() - v.link.since;
    return {
      status: suspectMs < v.reconnectGraceMs ? 'warn' : 'fail',
      observedValue: suspectMs,
      observedUnit: 'ms',
      output: `link to ${server} looks dead (${v.link.reason}); reconnecting`,
    };
  }
  if (v.state !== 'connected' || !v.nc) {
    // A short outage while the client reconnects is a warning; past the grace it is a failure.
    const outageMs = Math.round(performance.now() - (v.outageSince ?? performance.now()));
    const inGrace = v.state !== 'closed' && v.nc !== undefined && outageMs < v.reconnectGraceMs;
    return {
      status: inGrace ? 'warn' : 'fail',
      observedValue: outageMs,
      observedUnit: 'ms',
      output: `connection ${v.state} for ${outageMs} ms (grace ${v.reconnectGraceMs} ms); last server ${server}`,
    };
  }
  try {
    const rtt = await v.nc.rtt();
    return {
      status: v.lameDuck ? 'warn' : 'pass',
      observedValue: rtt,
      observedUnit: 'ms',
      output: `${v.lameDuck ? 'server in lame duck mode; ' : ''}server ${server}`,
    };
  } catch (err) {
    return {
      status: 'warn',
      output: `rtt failed: ${describeThrown(err)}`,
    };
  }
}
