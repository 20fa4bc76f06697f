// Checks the shape of src/: no import cycle between files (type-only imports included) nor
// between folders, no file over 400 lines. Prints the layers (folder -> folders it imports). Exit 1 on a violation.
// Usage: node scripts/check-architecture.mjs [--graph]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..', 'src');
const MAX_LINES = 400;
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
};
walk(root);

const graph = new Map();
const problems = [];
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').length;
  if (lines > MAX_LINES)
    problems.push(`${relative(root, file)} has ${lines} lines (max ${MAX_LINES})`);
  const deps = new Set();
  for (const m of text.matchAll(/(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gs)) {
    deps.add(normalize(join(dirname(file), m[1].replace(/\.js$/, '.ts'))));
  }
  graph.set(file, deps);
}

// Cycles: depth-first search, reporting each cycle once by its smallest rotation.
const seen = new Set();
const cycles = new Set();
const stack = [];
const onStack = new Set();
const visit = (f) => {
  if (onStack.has(f)) {
    const cycle = stack.slice(stack.indexOf(f)).map((p) => relative(root, p));
    const i = cycle.indexOf([...cycle].sort()[0]);
    cycles.add([...cycle.slice(i), ...cycle.slice(0, i)].join(' -> '));
    return;
  }
  if (seen.has(f)) return;
  seen.add(f);
  stack.push(f);
  onStack.add(f);
  for (const d of graph.get(f) ?? []) visit(d);
  stack.pop();
  onStack.delete(f);
};
for (const f of files) visit(f);
for (const c of cycles) problems.push(`import cycle: ${c}`);

// Layers: the capability folders (the first level under src/, subfolders included) must form no
// cycle either.
const capability = (file) => {
  const rel = relative(root, file).split('/');
  return rel.length > 1 ? rel[0] : '.';
};
const folders = new Map();
for (const [f, deps] of graph) {
  const from = capability(f);
  if (!folders.has(from)) folders.set(from, new Set());
  for (const d of deps) {
    const to = capability(d);
    if (to !== from) folders.get(from).add(to);
  }
}
const reaches = (from, to, visited = new Set()) => {
  if (visited.has(from)) return false;
  visited.add(from);
  for (const next of folders.get(from) ?? [])
    if (next === to || reaches(next, to, visited)) return true;
  return false;
};
for (const [from, tos] of folders) {
  for (const to of tos)
    if (reaches(to, from)) problems.push(`folder cycle: ${from} -> ${to} -> ... -> ${from}`);
}
if (process.argv.includes('--graph')) {
  for (const [from, tos] of [...folders].sort()) {
    if (tos.size > 0) console.log(`${from} -> ${[...tos].sort().join(', ')}`);
  }
}
if (problems.length > 0) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(
  `architecture: ${files.length} files in ${folders.size} folders, no import cycle between files or folders, none over ${MAX_LINES} lines`,
);
