import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NatskitError } from '../errors/natskit-error.js';
import { findNatsServerBinary } from './server-binary.js';
import {
  checkHarnessOptions,
  checkStopOptions,
  type NatsServerOptions,
  type NatsServerStopOptions,
} from './server-options.js';

export type {
  NatsServerAuth,
  NatsServerOptions,
  NatsServerStopOptions,
  NatsServerTls,
} from './server-options.js';

/** A running nats-server started by the harness. Dispose it to stop it and delete its files. */
export interface NatsServerHandle extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>`: the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** The monitoring port (HTTP), or undefined while stopped. */
  readonly monitorPort: number | undefined;
  /** The version the binary reports, e.g. `2.15.1`. */
  readonly version: string;
  readonly serverName: string;
  /** The process id, or undefined while stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** The JetStream store directory: kept across restarts, deleted on dispose. */
  readonly storeDir: string;
  /** Stops the process (and waits for it to exit); the files stay for {@link restart}. */
  stop(options?: NatsServerStopOptions): Promise<void>;
  /** Starts the server again (after stopping it if running) on the same port and store. */
  restart(options?: NatsServerStopOptions): Promise<void>;
  /** The last lines the server printed. */
  logTail(lines?: number): string;
  /** GETs a monitoring endpoint (`/jsz`, `/varz`, `/routez?subs=1`...) and parses its JSON. */
  monitor<T = unknown>(path: string): Promise<T>;
}

/** Internal knobs the cluster helper sets on top of {@link NatsServerOptions}. */
export interface ServerProcessConfig extends NatsServerOptions {
  /** Fixed client port; -1 lets the server choose (then it is kept for restarts). */
  readonly port?: number;
  /** Configuration block for clustering, already rendered. */
  readonly clusterConfig?: string;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooksInstalled = false;

/** Kills every server this process started and removes their files; synchronous (exit-safe). */
function cleanUpAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

const EXIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function onSignal(signal: NodeJS.Signals): void {
  // The app handles the signal itself (handleSignals, a test runner): it exits when it is done,
  // and the exit hook cleans up then, after a graceful stop against a server still running.
  if (process.listenerCount(signal) > 1) return;
  // Nobody else: do what the signal would have done, without leaving servers or files behind.
  cleanUpAll();
  for (const s of EXIT_SIGNALS) process.off(s, onSignal);
  process.kill(process.pid, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // A process that exits (or is ended by a signal) without disposing its servers must leave
  // neither servers nor temp directories behind.
  process.once('exit', cleanUpAll);
  for (const s of EXIT_SIGNALS) process.on(s, onSignal);
}

function quote(value: string): string {
  return JSON.stringify(value);
}

/** One nats-server process with its config, temp directory and log ring. */
export class NatsServerProcess implements NatsServerHandle {
  readonly version: string;
  readonly serverName: string;
  readonly storeDir: string;
  readonly #binary: string;
  readonly #dir: string;
  readonly #options: ServerProcessConfig;
  #port: number;
  #monitorPort: number | undefined;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log: string[] = [];
  #disposed = false;

  constructor(options: ServerProcessConfig = {}) {
    const binary = options.binary
      ? { path: options.binary, version: 'unknown' }
      : findNatsServerBinary(options.version ?? 'modern');
    this.#binary = binary.path;
    this.version = binary.version;
    this.#options = options;
    this.serverName = options.serverName ?? 'natskit-test';
    this.#port = options.port ?? -1;
    this.#dir = mkdtempSync(join(tmpdir(), 'natskit-nats-'));
    dirs.add(this.#dir);
    this.storeDir = join(this.#dir, 'store');
  }

  get url(): string {
    return `nats://127.0.0.1:${this.#port}`;
  }
  get port(): number {
    return this.#port;
  }
  get monitorPort(): number | undefined {
    return this.#monitorPort;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  get running(): boolean {
    return this.#child !== undefined;
  }

  logTail(lines = 40): string {
    return this.#log.slice(-lines).join('\n');
  }

  #config(): string {
    const o = this.#options;
    const lines = [
      `server_name: ${quote(this.serverName)}`,
      'host: "127.0.0.1"',
      `port: ${this.#port}`,
      'http: "127.0.0.1:-1"',
      `ports_file_dir: ${quote(this.#dir)}`,
    ];
    if (o.jetstream ?? true) {
      const domain = o.jetstreamDomain === undefined ? '' : `, domain: ${quote(o.jetstreamDomain)}`;
      lines.push(`jetstream { store_dir: ${quote(this.storeDir)}${domain} }`);
    }
    if (o.auth && 'token' in o.auth) lines.push(`authorization { token: ${quote(o.auth.token)} }`);
    if (o.auth && 'user' in o.auth) {
      lines.push(
        `authorization { user: ${quote(o.auth.user)}, password: ${quote(o.auth.password)} }`,
      );
    }
    if (o.tls) {
      const t = o.tls;
      lines.push(
        `tls { cert_file: ${quote(t.certFile)}, key_file: ${quote(t.keyFile)}` +
          `${t.caFile ? `, ca_file: ${quote(t.caFile)}` : ''}${t.verify ? ', verify: true' : ''} }`,
      );
    }
    if (o.clusterConfig) lines.push(o.clusterConfig);
    if (o.extraConfig) lines.push(o.extraConfig);
    return `${lines.join('\n')}\n`;
  }

  /** Starts the process and waits until it is ready (ports file written, /healthz ok). */
  async start(): Promise<void> {
    if (this.#disposed) throw new NatskitError('INVALID_STATE', 'the test server was disposed');
    if (this.#child) return;
    installHooks();
    const confFile = join(this.#dir, 'server.conf');
    writeFileSync(confFile, this.#config());
    // Its own process group: a terminal's Ctrl-C reaches the app, which may then stop gracefully
    // against a server still running; the server ends with the app (the hooks above).
    const child = spawn(this.#binary, ['-c', confFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.#child = child;
    live.add(child);
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line) this.#log.push(line);
      if (this.#log.length > 400) this.#log.splice(0, this.#log.length - 200);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    let exitInfo: string | undefined;
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        exitInfo = `exited with ${signal ?? `code ${code}`}`;
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
      child.once('error', (err) => {
        exitInfo = `could not run ${this.#binary}: ${err.message}`;
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    try {
      await this.#waitReady(child, () => exitInfo);
    } catch (err) {
      await this.stop({ signal: 'SIGKILL' });
      throw err;
    }
  }

  async #waitReady(child: ChildProcess, exitInfo: () => string | undefined): Promise<void> {
    const timeoutMs = this.#options.startTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    const fail = (why: string) =>
      new NatskitError(
        'TEST_SERVER_FAILED',
        `nats-server ${this.serverName} ${why}; its log ends with:\n${this.logTail(30)}`,
        { details: { binary: this.#binary, version: this.version } },
      );
    const portsFile = join(this.#dir, `nats-server_${child.pid}.ports`);
    while (Date.now() < deadline) {
      const exit = exitInfo();
      if (exit) throw fail(exit);
      const ports = this.#readPorts(portsFile);
      if (ports && (await this.#healthy())) return;
      await sleep(25);
    }
    throw fail(`was not ready within ${timeoutMs} ms`);
  }

  #readPorts(file: string): boolean {
    if (this.#monitorPort !== undefined && this.#port > 0) return true;
    let parsed: { nats?: string[]; monitoring?: string[] };
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return false; // not written yet, or half written
    }
    const port = (urls: string[] | undefined) => Number(urls?.[0]?.split(':').pop());
    const nats = port(parsed.nats);
    const monitoring = port(parsed.monitoring);
    if (!(nats > 0 && monitoring > 0)) return false;
    this.#port = nats;
    this.#monitorPort = monitoring;
    return true;
  }

  async #healthy(): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.#monitorPort}/healthz`, {
        signal: AbortSignal.timeout(1_000),
      });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** GETs a monitoring endpoint (`/jsz`, `/varz`...) and parses its JSON. */
  async monitor<T = unknown>(path: string): Promise<T> {
    if (this.#monitorPort === undefined) {
      throw new NatskitError('INVALID_STATE', `nats-server ${this.serverName} is not running`);
    }
    const res = await fetch(`http://127.0.0.1:${this.#monitorPort}${path}`, {
      signal: AbortSignal.timeout(5_000),
    });
    return (await res.json()) as T;
  }

  async stop(options: NatsServerStopOptions = {}): Promise<void> {
    checkStopOptions(options);
    const child = this.#child;
    if (!child) return;
    const pid = child.pid;
    child.kill(options.signal ?? 'SIGTERM');
    const escalate = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(escalate);
    this.#monitorPort = undefined;
    try {
      unlinkSync(join(this.#dir, `nats-server_${pid}.ports`));
    } catch {
      // the server removes its ports file itself on a clean exit
    }
  }

  async restart(options: NatsServerStopOptions = {}): Promise<void> {
    await this.stop(options);
    await this.start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    try {
      await this.stop();
    } finally {
      this.#disposed = true;
      rmSync(this.#dir, { recursive: true, force: true });
      dirs.delete(this.#dir);
    }
  }
}

/**
 * Starts a nats-server on a random loopback port with JetStream in a temp directory, and waits
 * until it is ready. One server per test file lets test files run in parallel.
 *
 * @example
 * ```ts
 * await using server = await startNatsServer();
 * const nc = await connect({ servers: server.url });
 * ```
 * @throws NatskitError `TEST_SERVER_FAILED` with the server's log tail when it does not come up.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  checkHarnessOptions('startNatsServer', options);
  const server = new NatsServerProcess(options);
  try {
    await server.start();
  } catch (err) {
    await server[Symbol.asyncDispose]();
    throw err;
  }
  return server;
}
