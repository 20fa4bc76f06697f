// Installs the other NATS clients the interop tests run against (test/interop/: the superseded
// `nats` 2.x package) into that folder, once: they stay out of natskit's own dependencies. Uses
// the machine's npm configuration, as the project's own install does.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../test/interop/', import.meta.url));
if (!existsSync(`${dir}node_modules/nats/package.json`)) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      `install-interop: npm ci in ${dir} failed (${r.error?.message ?? `exit ${r.status}`})`,
    );
    process.exit(1);
  }
}
