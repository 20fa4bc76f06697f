// Compile-time tests of knownKeys: the list of an options type's fields cannot drift from the
// interface. Each @ts-expect-error must be an error, and the rest must compile (npm run typecheck;
// kept out of test/types, whose files the snippet check compiles against the packed package).
import { knownKeys } from '../../src/config/validate.js';

interface Example {
  readonly a?: number;
  readonly b: string;
}

export const complete = knownKeys<Example>({ a: true, b: true });

// @ts-expect-error a field of the interface is missing from the list
export const missing = knownKeys<Example>({ a: true });

// @ts-expect-error the list names a field the interface does not have
export const extra = knownKeys<Example>({ a: true, b: true, c: true });
