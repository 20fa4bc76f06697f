// Every `ts` code block of README.md and docs/*.md compiles in a user's project, with TypeScript
// 5.9 and 7: natskit is packed (`npm pack`), installed from the tarball into a scratch project
// under .build/snippets/, and each block becomes a module of its own there (so a new snippet is
// checked by default). The compile-time tests of test/types/ run there too, against the packed
// declarations. Blocks that are complete programs say so in their info string, ```ts run, and are
// then also run, each against a fresh nats-server of natskit/testing (its URL in NATS_URL, which
// those snippets read) in an empty working folder, within RUN_TIMEOUT_MS: a non-zero exit, a
// signal or the time limit fails the check. `ts run` runs the file as a user would, `node app.ts`
// (Node's type stripping); `ts run tsc` compiles it with TypeScript first (decorators). A heading
// that states its block's length ("in 23 lines") is checked too. Exit 1 on any error, naming the
// document and the block's line.
// Usage: node scripts/check-snippets.mjs
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const work = join(root, '.build', 'snippets');
const project = join(work, 'consumer');
const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

rmSync(work, { recursive: true, force: true });
mkdirSync(join(project, 'snippets'), { recursive: true });

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const tarball = run('npm', ['pack', '--silent', '--pack-destination', work], root)
  .trim()
  .split('\n')
  .at(-1);
console.log(`packed ${tarball}`);
const typescript7 = pkg.devDependencies.typescript;
writeFileSync(
  join(project, 'package.json'),
  `${JSON.stringify(
    {
      name: 'natskit-snippets',
      private: true,
      type: 'module',
      dependencies: { natskit: `file:../${tarball}` },
      devDependencies: {
        typescript: '5.9.3',
        typescript7: `npm:typescript@${typescript7}`,
        '@types/node': pkg.devDependencies['@types/node'],
      },
    },
    null,
    2,
  )}\n`,
);
// The project's own npm settings (the machine's registry and CA stay those of the user config).
writeFileSync(join(project, '.npmrc'), readFileSync(join(root, '.npmrc')));
run('npm', ['install', '--no-audit', '--no-fund'], project);

// What a user's tsconfig needs for natskit: ESM resolution and, for @inject, legacy decorators.
writeFileSync(
  join(project, 'tsconfig.json'),
  `${JSON.stringify(
    {
      compilerOptions: {
        target: 'es2022',
        lib: ['es2023', 'esnext.disposable'],
        module: 'nodenext',
        moduleResolution: 'nodenext',
        types: ['node'],
        strict: true,
        experimentalDecorators: true,
        noEmit: true,
        skipLibCheck: false,
      },
      include: ['snippets'],
    },
    null,
    2,
  )}\n`,
);

/**
 * `ts` blocks of a markdown file, with the line each starts on, and how to run it: `node` for
 * ```ts run, `tsc` for ```ts run tsc, undefined for a fragment. Any other word fails (a typo must
 * not turn a program into an unrun fragment).
 */
function blocks(file) {
  const out = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const info = /^```ts(?:\s+(.*))?$/.exec(lines[i]?.trim() ?? '');
    if (!info) continue;
    const words = (info[1] ?? '').split(/\s+/).filter(Boolean);
    const known = words.length === 0 || (words[0] === 'run' && words.length <= 2);
    if (!known || (words[1] !== undefined && words[1] !== 'tsc')) {
      throw new Error(
        `${file}:${i + 1}: unknown info string '${lines[i]?.trim()}' (ts, ts run, ts run tsc)`,
      );
    }
    const start = i + 1;
    const body = [];
    for (i++; i < lines.length && lines[i]?.trim() !== '```'; i++) body.push(lines[i]);
    const run = words[0] === 'run' ? (words[1] ?? 'node') : undefined;
    out.push({ line: start + 1, code: `${body.join('\n')}\n`, run });
  }
  return out;
}

const docs = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
// A heading that gives its block's length ("## A service in 23 lines") must be right, and so must
// the index's "N-line service" that points at the quickstart's.
let lengthsWrong = false;
const sized = new Map();
for (const doc of docs) {
  const lines = readFileSync(join(root, doc), 'utf8').split('\n');
  lines.forEach((l, i) => {
    const m = /^#+ .* in (\d+) lines$/.exec(l);
    if (!m) return;
    const start = lines.findIndex((x, j) => j > i && x.startsWith('```ts'));
    const end = lines.findIndex((x, j) => j > start && x.trim() === '```');
    const n = end - start - 1;
    sized.set(doc, n);
    if (start < 0 || n !== Number(m[1])) {
      lengthsWrong = true;
      console.error(`${doc}:${i + 1}: the heading says ${m[1]} lines, its block has ${n}`);
    }
  });
}
const indexClaim = /(\d+)-line service/.exec(readFileSync(join(root, 'docs', 'README.md'), 'utf8'));
if (indexClaim && Number(indexClaim[1]) !== sized.get('docs/quickstart.md')) {
  lengthsWrong = true;
  console.error(
    `docs/README.md: says a ${indexClaim[1]}-line service, the quickstart's has ${sized.get('docs/quickstart.md')}`,
  );
}

const origin = new Map();
/** The complete programs: file name and how to run it. */
const programs = [];
let count = 0;
for (const doc of docs) {
  for (const b of blocks(join(root, doc))) {
    const name = `${doc.replace(/[/.]/g, '_')}_L${b.line}.ts`;
    // A module of its own, even a snippet without import or export.
    writeFileSync(join(project, 'snippets', name), `${b.code}export {};\n`);
    origin.set(name, `${doc}:${b.line}`);
    if (b.run) programs.push({ name, run: b.run });
    count++;
  }
}
for (const f of readdirSync(join(root, 'test', 'types'))) {
  writeFileSync(
    join(project, 'snippets', `types_${f}`),
    readFileSync(join(root, 'test', 'types', f)),
  );
  origin.set(`types_${f}`, `test/types/${f}`);
}
console.log(
  `${count} snippets from ${docs.length} documents, and ${origin.size - count} type tests`,
);

let failed = false;
for (const [label, tsc] of [
  ['TypeScript 5.9', 'node_modules/typescript/bin/tsc'],
  [`TypeScript ${typescript7}`, 'node_modules/typescript7/bin/tsc'],
]) {
  try {
    run('node', [tsc, '-p', '.'], project);
    console.log(`${label}: every snippet compiles`);
  } catch (err) {
    failed = true;
    const out = String(err.stdout ?? '') + String(err.stderr ?? '');
    console.error(`${label}: errors`);
    for (const line of out.split('\n').filter(Boolean)) {
      const m = /^snippets\/([^(]+)\((\d+),(\d+)\)(.*)$/.exec(line);
      console.error(
        m
          ? `  ${origin.get(m[1]) ?? m[1]} (+${Number(m[2]) - 1} lines, col ${m[3]})${m[4]}`
          : `  ${line}`,
      );
    }
  }
}
if (lengthsWrong) failed = true;
if (!(await runPrograms())) failed = true;
process.exit(failed ? 1 : 0);

/**
 * Runs every complete program against a fresh nats-server; true when each exited 0 in time.
 * The server comes from the packed natskit/testing, the binaries from the provisioning script.
 */
async function runPrograms() {
  const timeoutMs = Number(process.env.RUN_TIMEOUT_MS ?? 60_000);
  const env = { ...process.env };
  for (const line of run('bash', [join(root, 'scripts', 'provision-nats-server.sh')], root)
    .trim()
    .split('\n')) {
    const [kind, , path] = line.split(' ');
    if (kind === 'modern') env.NATS_SERVER_BIN = path;
    if (kind === 'compat') env.NATS_SERVER_COMPAT_BIN = path;
  }
  Object.assign(process.env, env);
  const compiled = programs.filter((p) => p.run === 'tsc');
  if (compiled.length > 0) {
    writeFileSync(
      join(project, 'tsconfig.run.json'),
      `${JSON.stringify(
        {
          extends: './tsconfig.json',
          compilerOptions: { noEmit: false, outDir: 'compiled', rootDir: 'snippets' },
          include: [],
          files: compiled.map((p) => `snippets/${p.name}`),
        },
        null,
        2,
      )}\n`,
    );
    run('node', ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.run.json'], project);
  }
  const { startNatsServer } = await import(
    pathToFileURL(join(project, 'node_modules', 'natskit', 'dist', 'testing', 'index.js')).href
  );
  let ok = true;
  for (const p of programs) {
    const file =
      p.run === 'tsc'
        ? join(project, 'compiled', p.name.replace(/\.ts$/, '.js'))
        : join(project, 'snippets', p.name);
    const cwd = mkdtempSync(join(tmpdir(), 'natskit-snippet-'));
    const server = await startNatsServer();
    const t0 = performance.now();
    try {
      const r = await runProgram(file, cwd, { ...env, NATS_URL: server.url }, timeoutMs);
      const ms = Math.round(performance.now() - t0);
      if (r.code === 0 && !r.signal && !r.timedOut) {
        console.log(`ran ${origin.get(p.name)} (${p.run}): exit 0 in ${ms} ms`);
        continue;
      }
      ok = false;
      const why = r.timedOut
        ? `did not end within ${timeoutMs} ms`
        : r.signal
          ? `was killed by ${r.signal}`
          : `exited ${r.code}`;
      console.error(`ran ${origin.get(p.name)} (${p.run}): ${why}`);
      for (const l of r.output.trim().split('\n').slice(-25)) console.error(`  ${l}`);
    } finally {
      await server[Symbol.asyncDispose]();
      rmSync(cwd, { recursive: true, force: true });
    }
  }
  console.log(`${programs.length} complete programs run${ok ? ', each exited 0' : ''}`);
  return ok;
}

/** Runs one program; at the time limit SIGTERM (its own cleanup runs), SIGKILL 5 s later. */
function runProgram(file, cwd, env, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    let timedOut = false;
    let kill;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(kill);
      resolve({ code, signal, timedOut, output });
    });
  });
}
