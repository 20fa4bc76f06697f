import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { NatskitError } from '../errors/natskit-error.js';

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Where to forward: `nats://127.0.0.1:4222`, `127.0.0.1:4222`, or a harness server's `url`. */
  readonly target: string;
  /** The port to listen on (127.0.0.1 only). @defaultValue 0 (a free port) */
  readonly port?: number;
}

/** Which connections a fault applies to. */
export interface FaultProxyScope {
  /**
   * One connection (its `id`, or the entry from `connections`). When not given: every open
   * connection and every one accepted after the call.
   */
  readonly connection?: number | FaultProxyConnection;
}

/** One proxied connection (app side to target side), as seen now. */
export interface FaultProxyConnection {
  /** 1 for the first connection accepted, then 2, 3... */
  readonly id: number;
  /** Both sockets still open. */
  readonly open: boolean;
  /** Forwarding nothing (see {@link FaultProxyHandle.blackhole}). */
  readonly blackholed: boolean;
  /** Bytes forwarded from the app to the target, and back. */
  readonly bytesUp: number;
  readonly bytesDown: number;
}

/**
 * A running fault proxy. Faults apply until {@link FaultProxyHandle.heal}; dispose the handle to
 * close the listener and every connection.
 */
export interface FaultProxyHandle extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>`: give it to the app instead of the target's URL. */
  readonly url: string;
  readonly port: number;
  /** Every connection accepted so far, oldest first (closed ones included, `open: false`). */
  readonly connections: readonly FaultProxyConnection[];
  /**
   * Keeps the sockets open and forwards nothing, either way: what a NAT entry that expired or a
   * load balancer that dropped the flow looks like to both ends (no FIN, no RST). The proxy stops
   * reading, so the sender's socket buffers fill as over a dead path; bytes already read are held,
   * and delivered in order on {@link FaultProxyHandle.heal} (TCP retransmits them once a path
   * is back). A close from one end does not cross either (the proxy reads nothing, so it does
   * not see the FIN): the other end learns it on heal. Without `connection`, connections
   * accepted later are black-holed as well (their TCP connect succeeds, then nothing passes).
   */
  blackhole(scope?: FaultProxyScope): void;
  /** Delays every byte by `ms` in each direction (so a round trip takes `2 * ms` longer). */
  latency(ms: number, scope?: FaultProxyScope): void;
  /** Limits each direction to `bytesPerSecond` (0 removes the limit). */
  bandwidth(bytesPerSecond: number, scope?: FaultProxyScope): void;
  /** Resets the connections (TCP RST to both ends), like a firewall that rejects the flow. */
  reset(scope?: FaultProxyScope): void;
  /** Removes black hole, latency and bandwidth limits; held bytes are delivered. */
  heal(scope?: FaultProxyScope): void;
  /** Closes the listener and every connection. Idempotent. */
  close(): Promise<void>;
}

interface Faults {
  blackholed: boolean;
  latencyMs: number;
  bytesPerSecond: number;
}

/** Held bytes above which the proxy stops reading from the sender (back-pressure). */
const HIGH_WATER = 1 << 20;
/** The most bytes one write takes under a bandwidth limit, so the rate stays smooth. */
const SLICE = 16 * 1024;

/**
 * One direction of a connection: reads `from`, holds each chunk until its faults let it pass,
 * writes to `to` in order.
 */
class Pipe {
  readonly #from: Socket;
  readonly #to: Socket;
  readonly #faults: Faults;
  readonly #queue: { chunk: Buffer; due: number }[] = [];
  #held = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Bandwidth budget: when the bytes sent so far are allowed to have gone out. */
  #nextFree = 0;
  #waitingDrain = false;
  bytes = 0;

  constructor(from: Socket, to: Socket, faults: Faults) {
    this.#from = from;
    this.#to = to;
    this.#faults = faults;
    from.on('data', (chunk: Buffer) => {
      this.#queue.push({ chunk, due: performance.now() + this.#faults.latencyMs });
      this.#held += chunk.length;
      if (this.#held > HIGH_WATER) from.pause();
      this.pump();
    });
  }

  /** Sends what may be sent now; schedules itself for the rest. */
  pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#faults.blackholed) {
      this.#from.pause();
      return;
    }
    while (this.#queue.length > 0 && !this.#waitingDrain && !this.#to.destroyed) {
      const now = performance.now();
      const head = this.#queue[0] as { chunk: Buffer; due: number };
      let wait = head.due - now;
      const rate = this.#faults.bytesPerSecond;
      if (rate > 0) wait = Math.max(wait, this.#nextFree - now);
      if (wait > 0) {
        this.#timer = setTimeout(() => this.pump(), Math.ceil(wait));
        return;
      }
      let piece = head.chunk;
      if (rate > 0 && piece.length > SLICE) {
        head.chunk = piece.subarray(SLICE);
        piece = piece.subarray(0, SLICE);
      } else {
        this.#queue.shift();
      }
      if (rate > 0) this.#nextFree = Math.max(this.#nextFree, now) + (piece.length * 1000) / rate;
      this.#held -= piece.length;
      this.bytes += piece.length;
      if (!this.#to.write(piece)) {
        this.#waitingDrain = true;
        this.#to.once('drain', () => {
          this.#waitingDrain = false;
          this.pump();
        });
      }
    }
    if (this.#held <= HIGH_WATER && !this.#from.destroyed) this.#from.resume();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

class ProxiedConnection {
  readonly id: number;
  readonly faults: Faults;
  readonly #app: Socket;
  readonly #target: Socket;
  readonly #up: Pipe;
  readonly #down: Pipe;
  open = true;

  constructor(id: number, app: Socket, target: Socket, faults: Faults) {
    this.id = id;
    this.faults = faults;
    this.#app = app;
    this.#target = target;
    this.#up = new Pipe(app, target, faults);
    this.#down = new Pipe(target, app, faults);
    const closeBoth = () => this.destroy();
    for (const s of [app, target]) {
      s.setNoDelay(true);
      s.on('error', closeBoth);
      s.on('close', closeBoth);
      // A FIN from one end is passed on as a FIN to the other, once the held bytes are out.
      s.on('end', () => (s === app ? target : app).end());
    }
  }

  get info(): FaultProxyConnection {
    return {
      id: this.id,
      open: this.open,
      blackholed: this.faults.blackholed,
      bytesUp: this.#up.bytes,
      bytesDown: this.#down.bytes,
    };
  }

  changed(): void {
    this.#up.pump();
    this.#down.pump();
  }

  reset(): void {
    this.open = false;
    this.#up.stop();
    this.#down.stop();
    this.#app.resetAndDestroy();
    this.#target.resetAndDestroy();
  }

  destroy(): void {
    if (!this.open) return;
    this.open = false;
    this.#up.stop();
    this.#down.stop();
    this.#app.destroy();
    this.#target.destroy();
  }
}

function parseTarget(target: string): { host: string; port: number } {
  const m = /^(?:nats:\/\/)?(?:[^@/]*@)?(127\.0\.0\.1|localhost|\[::1\]):(\d+)\/?$/.exec(target);
  const port = Number(m?.[2]);
  if (!m || !(port > 0 && port < 65536)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `startFaultProxy: target must be a loopback host:port (nats://127.0.0.1:4222), got ${JSON.stringify(target)}`,
      { details: { field: 'target' } },
    );
  }
  return { host: m[1] === '[::1]' ? '::1' : (m[1] as string), port };
}

function checkNumber(field: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new NatskitError('INVALID_OPTIONS', `${field} must be a number >= 0`, {
      details: { field },
    });
  }
}

/**
 * Starts a TCP proxy on 127.0.0.1 in front of a NATS server (or any loopback TCP service), to
 * test an app against the network faults that are not process deaths: a black hole (sockets
 * open, nothing passes), latency, a slow link, a reset. Give the app `proxy.url`; a fault
 * applies to one connection or to all of them, until `heal()`.
 *
 * @example
 * ```ts
 * await using server = await startNatsServer();
 * await using proxy = await startFaultProxy({ target: server.url });
 * await using app = await ServiceManager.start({ nats: { servers: proxy.url } });
 * proxy.blackhole({ connection: 1 }); // the app's connection goes silent; new ones pass
 * ```
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxyHandle> {
  if (typeof options !== 'object' || options === null)
    throw new NatskitError('INVALID_OPTIONS', 'startFaultProxy: options must be an object');
  const target = parseTarget(options.target);
  const defaults: Faults = { blackholed: false, latencyMs: 0, bytesPerSecond: 0 };
  const all: ProxiedConnection[] = [];
  const server: Server = createServer({ pauseOnConnect: true }, (app) => {
    const id = all.length + 1;
    const upstream = tcpConnect({ host: target.host, port: target.port });
    const conn = new ProxiedConnection(id, app, upstream, { ...defaults });
    all.push(conn);
    // The app's bytes wait in its socket until the target is there (or the faults let them).
    upstream.once('connect', () => conn.changed());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const select = (scope: FaultProxyScope | undefined): ProxiedConnection[] => {
    const wanted = scope?.connection;
    // An explicit `connection: undefined` (an empty list's `.at(-1)`) must not mean "all".
    if (wanted === undefined && !(scope && 'connection' in scope)) return all.filter((c) => c.open);
    const id = typeof wanted === 'number' ? wanted : wanted?.id;
    const conn = all.find((c) => c.id === id);
    if (!conn) {
      throw new NatskitError('INVALID_OPTIONS', `fault proxy: no connection ${String(id)}`, {
        details: { field: 'connection' },
      });
    }
    return [conn];
  };
  const apply = (scope: FaultProxyScope | undefined, change: Partial<Faults>): void => {
    const selected = select(scope);
    if (scope?.connection === undefined) Object.assign(defaults, change);
    for (const c of selected) {
      Object.assign(c.faults, change);
      c.changed();
    }
  };
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const c of all) c.destroy();
      server.close(() => resolve());
    });
    return closing;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get connections() {
      return all.map((c) => c.info);
    },
    blackhole: (scope) => apply(scope, { blackholed: true }),
    latency(ms, scope) {
      checkNumber('latency ms', ms);
      apply(scope, { latencyMs: ms });
    },
    bandwidth(bytesPerSecond, scope) {
      checkNumber('bandwidth bytesPerSecond', bytesPerSecond);
      apply(scope, { bytesPerSecond });
    },
    reset(scope) {
      for (const c of select(scope)) c.reset();
    },
    heal: (scope) => apply(scope, { blackholed: false, latencyMs: 0, bytesPerSecond: 0 }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
