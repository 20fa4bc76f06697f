// Every `ts` code block of README.md and docs/*.md compiles in a user's project, with TypeScript
// 5.9 and 7: natskit is packed (`npm pack`), installed from the tarball into a scratch project
// under .build/snippets/, and each block becomes a module of its own there (so a new snippet is
// checked by default). The compile-time tests of test/types/ run there too, against the packed
// declarations. Exit 1 on any error, naming the document and the block's line.
// Usage: node scripts/check-snippets.mjs
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

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

/** `ts` blocks of a markdown file, with the line each starts on. */
function blocks(file) {
  const out = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```ts') continue;
    const start = i + 1;
    const body = [];
    for (i++; i < lines.length && lines[i]?.trim() !== '```'; i++) body.push(lines[i]);
    out.push({ line: start + 1, code: `${body.join('\n')}\n` });
  }
  return out;
}

const docs = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const origin = new Map();
let count = 0;
for (const doc of docs) {
  for (const b of blocks(join(root, doc))) {
    const name = `${doc.replace(/[/.]/g, '_')}_L${b.line}.ts`;
    // A module of its own, even a snippet without import or export.
    writeFileSync(join(project, 'snippets', name), `${b.code}export {};\n`);
    origin.set(name, `${doc}:${b.line}`);
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
process.exit(failed ? 1 : 0);
