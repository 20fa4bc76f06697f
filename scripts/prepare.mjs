// npm's `prepare` (run by `npm ci` here, `npm pack`, and an install of natskit from git or from a
// checkout): builds dist/ with the checkout's own TypeScript. npm installs a git dependency's
// devDependencies before its prepare, but not a checkout's (`npm install --install-links
// ../natskit`, or `npm pack` where `npm ci` never ran): then the checkout's locked dependencies
// are installed first (`npm ci --ignore-scripts`), so every install path builds the same dist.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(tsc)) {
  console.error(
    'natskit prepare: this checkout has no node_modules (npm ci never ran here); installing its locked dependencies to build dist/',
  );
  // The npm that runs this script, else the one on PATH.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const [cmd, ...pre] = npm;
  execFileSync(cmd, [...pre, 'ci', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
});
