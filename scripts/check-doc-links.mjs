// Every link from README.md or docs/*.md to a Markdown file of the repository, with or without an
// `#anchor`, points at a file that exists and, with an anchor, at one of its headings (the anchor
// GitHub derives from the heading: lower case, punctuation dropped, spaces to hyphens, `-1`,
// `-2`... for repeats). Links to other sites are not checked. Exit 1 naming each broken link.
// Usage: node scripts/check-doc-links.mjs
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const docs = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** The text of a Markdown file without its fenced code blocks (a `#` there is no heading). */
function prose(text) {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

/** The anchors GitHub gives the headings of a Markdown file. */
function anchors(file) {
  const seen = new Map();
  const out = new Set();
  for (const [, title] of prose(readFileSync(join(root, file), 'utf8')).matchAll(
    /^#{1,6}\s+(.+?)\s*#*\s*$/gm,
  )) {
    const text = title.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

const errors = [];
let checked = 0;
for (const doc of docs) {
  const lines = prose(readFileSync(join(root, doc), 'utf8')).split('\n');
  lines.forEach((line, i) => {
    for (const [, target] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // another site, mailto:...
      const [path, anchor] = target.split('#');
      if (path !== '' && !path.endsWith('.md')) continue; // a source file, an image
      const file = path === '' ? doc : normalize(join(dirname(doc), path));
      checked++;
      const where = `${doc}:${i + 1}: ${target}`;
      if (!existsSync(join(root, file))) errors.push(`${where}: no file ${relative('.', file)}`);
      else if (anchor !== undefined && !anchors(file).has(anchor))
        errors.push(`${where}: no heading with anchor #${anchor} in ${file}`);
    }
  });
}
for (const e of errors) console.error(e);
console.log(`doc links: ${checked} checked, ${errors.length} broken`);
process.exit(errors.length > 0 ? 1 : 0);
