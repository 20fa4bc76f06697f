// The README's three ways to install natskit, each from a fresh copy of this checkout (its files
// as git lists them, tracked and untracked but not ignored: no node_modules, no dist, as after a
// clone) into a scratch project in a temporary folder (outside the checkout: npm puts the
// node_modules/.bin of every parent folder on a script's PATH, so a copy inside would find this
// checkout's tsc):
//   checkout  npm install --install-links <copy>, with install-links=true in the project's .npmrc;
//             a later plain `npm install` must keep the packed copy (not turn it into a symlink)
//   tarball   npm pack in the copy, then npm install <copy>/natskit-<version>.tgz
//   git       npm install git+file://<copy> (the copy committed in a repository of its own)
// Each project must then import natskit and natskit/testing. Exit 1 naming the path that failed.
// Usage: node scripts/check-install.mjs
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'natskit-install-'));
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const npmrc = readFileSync(join(root, '.npmrc'), 'utf8');
const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A copy of the checkout's files as a fresh clone has them. */
function freshCopy(name) {
  const dir = join(work, name);
  const files = run('git', ['ls-files', '-co', '--exclude-standard', '-z'], root)
    .split('\0')
    .filter(Boolean);
  for (const f of files) {
    try {
      // A symlink to a folder (a worktree's node_modules or .nats-server linked to another
      // checkout's) is what a clone would not have.
      if (statSync(join(root, f)).isDirectory()) continue;
      cpSync(join(root, f), join(dir, f), { recursive: false, verbatimSymlinks: true });
    } catch (err) {
      if (err?.code !== 'ENOENT') throw err; // a file deleted but not yet committed
    }
  }
  return dir;
}

function consumer(name, extraNpmrc = '') {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name, private: true, type: 'module' }, null, 2)}\n`,
  );
  writeFileSync(join(dir, '.npmrc'), `${npmrc}${extraNpmrc}`);
  return dir;
}

/** natskit and natskit/testing load in the project, from a packed copy (not a symlink). */
function imports(dir) {
  const installed = join(dir, 'node_modules', 'natskit');
  if (lstatSync(installed).isSymbolicLink()) throw new Error('node_modules/natskit is a symlink');
  const out = run(
    'node',
    [
      '--input-type=module',
      '-e',
      "const a = await import('natskit'); const b = await import('natskit/testing');" +
        'console.log(typeof a.ServiceManager, typeof b.startNatsServer);',
    ],
    dir,
  ).trim();
  if (out !== 'function function') throw new Error(`imports gave '${out}'`);
}

const paths = {
  checkout() {
    const copy = freshCopy('checkout-src');
    const dir = consumer('checkout-consumer', 'install-links=true\n');
    run('npm', ['install', '--install-links', copy], dir);
    imports(dir);
    // What the consumer does next: a plain install (package.json says file:<copy>).
    rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
    run('npm', ['install'], dir);
    imports(dir);
  },
  tarball() {
    const copy = freshCopy('tarball-src');
    run('npm', ['pack'], copy);
    const dir = consumer('tarball-consumer');
    run('npm', ['install', join(copy, `natskit-${version}.tgz`)], dir);
    imports(dir);
  },
  git() {
    const copy = freshCopy('git-src');
    run('git', ['init', '-q'], copy);
    run('git', ['add', '-A'], copy);
    run(
      'git',
      ['-c', 'user.name=check', '-c', 'user.email=check@localhost', 'commit', '-qm', 'copy'],
      copy,
    );
    const dir = consumer('git-consumer');
    run('npm', ['install', `git+file://${copy}`], dir);
    imports(dir);
  },
};

let failed = false;
for (const [name, check] of Object.entries(paths)) {
  const t0 = performance.now();
  try {
    check();
    console.log(`install from ${name}: ok (${Math.round(performance.now() - t0)} ms)`);
  } catch (err) {
    failed = true;
    const out = `${err?.stdout ?? ''}${err?.stderr ?? ''}`.trim() || String(err?.message ?? err);
    console.error(`install from ${name}: failed`);
    for (const l of out.split('\n').slice(-15)) console.error(`  ${l}`);
  }
}
rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
