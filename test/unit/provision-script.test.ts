import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const cache = join(tmpdir(), `natskit-provision-test-${process.pid}`);

/** Runs the provisioning script (what `npx natskit-provision` runs) with an empty cache. */
function provision(...args: string[]) {
  return spawnSync('bash', ['scripts/provision-nats-server.sh', ...args], {
    encoding: 'utf8',
    env: { ...process.env, NATSKIT_SERVER_CACHE: cache },
  });
}

describe('natskit-provision', () => {
  it.each(['--help', '-h'])('%s prints the usage and exits 0 (it said "unknown kind")', (flag) => {
    const r = provision(flag);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: natskit-provision [modern] [compat]');
    // What a plain call fetches, and where.
    expect(r.stdout).toContain('a plain call fetches the modern server and the 2.9 compat server');
    expect(r.stdout).toContain(`Cache: ${cache}`);
    expect(r.stderr).toBe('');
    expect(existsSync(cache)).toBe(false);
  });

  it('an unknown argument fails with exit 2 and the usage, and fetches nothing', () => {
    const r = provision('modern', '--bogus');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown argument '--bogus'");
    expect(r.stderr).toContain('Usage: natskit-provision');
    expect(r.stdout).toBe('');
    expect(existsSync(cache)).toBe(false);
  });

  it('finds a binary in a cache folder that is a symlink (a worktree links .nats-server/; it fetched again)', (ctx) => {
    const path = '/usr/bin:/bin';
    if (spawnSync('bash', ['-c', 'command -v nats-server'], { env: { PATH: path } }).status === 0)
      ctx.skip(`a nats-server on ${path} would be found first`);
    const dir = mkdtempSync(join(tmpdir(), 'natskit-provision-link-'));
    try {
      const bin = join(dir, 'real', '2.15.1', 'nats-server');
      mkdirSync(dirname(bin), { recursive: true });
      // Stands in for the binary: the script only asks it for its version.
      writeFileSync(bin, '#!/bin/sh\necho "nats-server: v2.15.1"\n');
      chmodSync(bin, 0o755);
      symlinkSync(join(dir, 'real'), join(dir, 'link'));
      const r = spawnSync('bash', ['scripts/provision-nats-server.sh', 'modern'], {
        encoding: 'utf8',
        env: {
          PATH: path,
          HOME: dir,
          NATSKIT_SERVER_CACHE: join(dir, 'link'),
          // Were it not found, fetching fails at once instead of downloading.
          NATSKIT_MODERN_SUITES: 'no-such-suite',
        },
      });
      expect(r.stdout.trim()).toBe(`modern 2.15.1 ${join(dir, 'link')}/2.15.1/nats-server`);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
