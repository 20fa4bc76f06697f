import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
});
