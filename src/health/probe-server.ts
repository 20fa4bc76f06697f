import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown, thrownProperty } from '../errors/thrown.js';
import type { HealthRegistry, HealthReport } from './health-registry.js';

/** Options of the HTTP probe server (`options.health` of the ServiceManager). */
export interface ProbeServerOptions {
  /** @defaultValue '127.0.0.1' */
  readonly host?: string;
  /** 0 picks a free port (see `manager.probeUrl`). @defaultValue 0 */
  readonly port?: number;
  /** After readiness turns 503 on stop, wait this long before stopping services (load balancers). @defaultValue 0 */
  readonly shutdownDelayMs?: number;
}

/** What the probe server asks the app. */
export interface ProbeSource {
  readonly registry: HealthRegistry;
  /** Started, connected, and not shutting down. */
  ready(): boolean;
  /** Why not ready, for the body. */
  readyReason(): string;
  /** The Prometheus exposition for `/metrics`, when metrics are on. */
  readonly metrics?: (() => Promise<{ contentType: string; body: string }>) | undefined;
}

const JSON_TYPE = 'application/health+json';

const WHY: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address is in use',
  EACCES: 'no permission to listen there',
  EADDRNOTAVAIL: 'the address is not local',
};

/** A failed listen as the natskit error that names the address (Node's names only the port). */
function listenError(err: unknown, host: string, port: number): NatskitError {
  const code = thrownProperty(err, 'code');
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = typeof code === 'string' ? (WHY[code] ?? code) : describeThrown(err);
  return new NatskitError(
    'SERVICE_START_FAILED',
    `the probe server cannot listen on ${address} (options.health): ${why}${typeof code === 'string' ? ` (${code})` : ''}`,
    {
      cause: err,
      service: 'probes',
      details: { host, port, ...(typeof code === 'string' ? { code } : {}) },
    },
  );
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'content-type': JSON_TYPE,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * `/livez` (process alive and worker fetch loops progressing), `/readyz` (started, connected, not
 * shutting down) and `/healthz` (every check) over node:http: no framework, so it starts before
 * and stops after every service without a lifecycle of its own to reconcile.
 */
export class ProbeServer {
  readonly #server: Server;
  readonly #source: ProbeSource;
  readonly #log: Logger;

  constructor(source: ProbeSource, logger: Logger) {
    this.#source = source;
    this.#log = logger.child({ service: 'probes' });
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err }, 'probe failed');
        if (!res.headersSent) send(res, 500, { status: 'fail', output: 'probe error' });
      });
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, { status: 'fail', output: 'GET only' });
    if (path === '/livez') {
      const report = await this.#source.registry.report(['liveness']);
      return send(res, report.status === 'fail' ? 503 : 200, report);
    }
    if (path === '/readyz') {
      const ready = this.#source.ready();
      return send(res, ready ? 200 : 503, {
        status: ready ? 'pass' : 'fail',
        ...(ready ? {} : { output: this.#source.readyReason() }),
      });
    }
    if (path === '/healthz') {
      const report: HealthReport = await this.#source.registry.report();
      return send(res, report.status === 'fail' ? 503 : 200, report);
    }
    if (path === '/metrics' && this.#source.metrics) {
      const { contentType, body } = await this.#source.metrics();
      res.writeHead(200, {
        'content-type': contentType,
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    send(res, 404, { status: 'fail', output: 'not found: /livez, /readyz, /healthz, /metrics' });
  }

  /**
   * Listens; resolves with the base URL.
   * @throws NatskitError `SERVICE_START_FAILED` (`service: 'probes'`) when the address cannot be
   * taken: in use (`EADDRINUSE`), not allowed (`EACCES`), not local (`EADDRNOTAVAIL`);
   * `details` has host, port and the system's code.
   */
  async listen(options: ProbeServerOptions): Promise<string> {
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(port, host, () => {
          this.#server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      throw listenError(err, host, port);
    }
    const { port: bound } = this.#server.address() as AddressInfo;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
    this.#log.info({ url }, 'probes listening');
    return url;
  }

  /** Stops listening and closes open connections. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
