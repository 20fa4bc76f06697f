import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { NatskitError } from '../errors/natskit-error.js';

/**
 * Which nats-server the harness runs: `'modern'` is 2.12 or newer (atomic batches, per-key TTL);
 * `'2.9'` is a 2.9.x server for compatibility tests.
 */
export type NatsServerVersion = 'modern' | '2.9';

/** A nats-server binary and the version it reports. */
export interface NatsServerBinary {
  readonly path: string;
  /** `major.minor.patch`, e.g. `2.15.1`. */
  readonly version: string;
}

const found = new Map<NatsServerVersion, NatsServerBinary>();

function runs(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK);
    const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 5_000 });
    return /v(\d+\.\d+\.\d+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** True when `version` (`2.15.1`) is what the `wanted` kind of server needs. */
export function versionFits(version: string, wanted: NatsServerVersion): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return wanted === '2.9' ? major === 2 && minor === 9 : major > 2 || (major === 2 && minor >= 12);
}

/** Compares `a.b.c` versions numerically. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The folders where the provisioning script caches binaries (`<cache>/<version>/nats-server`):
 * `NATSKIT_SERVER_CACHE` when set; else `.nats-server/` in the current folder (natskit's own
 * checkout) and the user cache `~/.cache/natskit/nats-server` (`XDG_CACHE_HOME`), where
 * `npx natskit-provision` puts them in a project that depends on natskit.
 */
export function serverCacheDirs(): string[] {
  if (process.env.NATSKIT_SERVER_CACHE) return [process.env.NATSKIT_SERVER_CACHE];
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return [join(process.cwd(), '.nats-server'), join(xdg, 'natskit', 'nats-server')];
}

function cached(): string[] {
  return serverCacheDirs().flatMap((dir) => {
    try {
      return readdirSync(dir)
        .filter((name) => /^\d+\.\d+\.\d+$/.test(name))
        .sort((a, b) => compareVersions(b, a))
        .map((name) => join(dir, name, 'nats-server'));
    } catch {
      return [];
    }
  });
}

function onPath(): string[] {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, 'nats-server'));
}

/**
 * Finds a nats-server binary of the wanted kind: the `NATS_SERVER_BIN` variable
 * (`NATS_SERVER_COMPAT_BIN` for `'2.9'`), then `PATH`, then the project cache filled by
 * `scripts/provision-nats-server.sh` (`npm run provision`). The answer is remembered per process.
 *
 * @throws NatskitError `TEST_SERVER_FAILED` naming what to install when none fits.
 */
export function findNatsServerBinary(wanted: NatsServerVersion = 'modern'): NatsServerBinary {
  const known = found.get(wanted);
  if (known) return known;
  const fromEnv =
    wanted === '2.9' ? process.env.NATS_SERVER_COMPAT_BIN : process.env.NATS_SERVER_BIN;
  const candidates = [...(fromEnv ? [fromEnv] : []), ...onPath(), ...cached()];
  const tried: string[] = [];
  for (const path of candidates) {
    const version = runs(path);
    if (version === undefined) continue;
    tried.push(`${path} (${version})`);
    if (versionFits(version, wanted)) {
      const binary = { path, version };
      found.set(wanted, binary);
      return binary;
    }
  }
  const need = wanted === '2.9' ? 'a 2.9.x nats-server' : 'nats-server 2.12 or newer';
  throw new NatskitError(
    'TEST_SERVER_FAILED',
    `no ${need} found (looked at ${wanted === '2.9' ? 'NATS_SERVER_COMPAT_BIN' : 'NATS_SERVER_BIN'}, PATH and ${serverCacheDirs().join(', ')}` +
      `${tried.length > 0 ? `; found only ${tried.join(', ')}` : ''}). ` +
      `Run \`npx natskit-provision ${wanted === '2.9' ? 'compat' : 'modern'}\` in your project (it fetches Debian's nats-server package into your user cache, on machines with apt), ` +
      `or install ${need} and set ${wanted === '2.9' ? 'NATS_SERVER_COMPAT_BIN' : 'NATS_SERVER_BIN'} to its path.`,
  );
}
