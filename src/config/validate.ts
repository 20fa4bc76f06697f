import { NatskitError } from '../errors/natskit-error.js';

/**
 * The known field names of an options type, from a record with exactly one entry per field of
 * `T`: the compiler rejects a record that misses a field or names one `T` does not have, so the
 * list cannot drift from the interface.
 *
 * @example `const KNOWN = knownKeys<WorkerOptions<unknown>>({ stream: true, ... })`
 */
export function knownKeys<T>(fields: Record<keyof T, true>): readonly string[] {
  return Object.freeze(Object.keys(fields));
}

/**
 * Edit distance (insertions, deletions, substitutions and swaps of two neighbours: `prot` is one
 * edit from `port`), case-insensitive: a field's case is a typo too.
 */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) =>
    Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= x.length; i++) {
    const row = d[i] as number[];
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(x.length, y.length);
}

/** The known name closest to `name`, when one is close enough to be the one meant. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  // A third of the name's length: 'server' finds 'servers', 'concurency' 'concurrency', but
  // 'foo' does not become 'name'.
  const limit = Math.max(1, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  if (bestDistance <= limit) return best;
  // A shortened name: `ttl` for `ttlMs`, `lastSubjectSeq` for `lastSubjectSequence`.
  const lower = name.toLowerCase();
  return lower.length >= 3 ? known.find((k) => k.toLowerCase().startsWith(lower)) : undefined;
}

/**
 * Throws `INVALID_OPTIONS` when `obj` has a field that is not in `known`, naming the closest known
 * field and listing all of them. A typo (`server` for `servers`) must never fall back to a default.
 * `where` is the path of the object in messages (`nats`, `options.health`...), joined to the
 * field with a dot; a `where` ending in a space is a phrase (`bucket config `, `put options `).
 */
export function checkKnownKeys(
  where: string,
  obj: object,
  known: readonly string[],
  /** Names known elsewhere (another library's name of the field) -> the field to use. */
  aliases: Readonly<Record<string, string>> = {},
): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = Object.hasOwn(aliases, key) ? aliases[key] : closestName(key, known);
    const phrase = where === '' || where.endsWith(' ');
    const field = phrase ? key : `${where}.${key}`;
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${phrase ? where : `${where}.`}${key} is not a known option${near === undefined ? '' : ` (did you mean '${near}'?)`}; known: ${known.join(', ')}`,
      { details: { field, known, ...(near === undefined ? {} : { suggestion: near }) } },
    );
  }
}

/**
 * Checks that `value` is an object (or absent) with only `known` fields.
 * @throws NatskitError `INVALID_OPTIONS` naming the field.
 */
export function checkOptionsObject(where: string, value: unknown, known: readonly string[]): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${where.trim()} must be an object, got ${describeValue(value)}`,
      { details: { field: where.trim() } },
    );
  }
  checkKnownKeys(where, value, known);
}

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

/** The type of a value, as messages name it: `a string`, `a number`, `null`, `an array`. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value !== 'object') return `${article(typeof value)} ${typeof value}`;
  let name: unknown;
  try {
    // A Proxy or a getter can throw: the description must not.
    name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)
      ?.constructor?.name;
  } catch {
    name = undefined;
  }
  return typeof name === 'string' && name !== '' && name !== 'Object'
    ? `${article(name)} ${name}`
    : 'an object';
}

/**
 * A value as an error message shows it, with its type: `the string '4'`, `the number -1`,
 * `null`, `an array`, `an object`. Never for secrets: use {@link describeType} there.
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string': {
      const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
      const quoted = JSON.stringify(shown)
        .slice(1, -1)
        .replaceAll('\\"', '"')
        .replaceAll("'", "\\'");
      return `the string '${quoted}'`;
    }
    case 'number':
    case 'boolean':
      return `the ${typeof value} ${String(value)}`;
    case 'bigint':
      return `the bigint ${String(value)}n`;
    default:
      return describeType(value);
  }
}

/** Checks a duration: a positive finite number of milliseconds, or absent. */
export function checkMs(field: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `options.${field} must be a positive number of milliseconds, got ${describeValue(value)}`,
      {
        details: { field },
      },
    );
  }
}

/**
 * Returns `value`, or `fallback` when absent, after checking it is a positive integer.
 * @throws NatskitError `INVALID_OPTIONS` naming the field.
 */
export function positiveInt(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `${field} must be a positive integer, got ${describeValue(value)}`,
      { details: { field } },
    );
  }
  return value;
}
