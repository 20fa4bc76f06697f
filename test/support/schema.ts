import type { StandardSchemaV1 } from '../../src/index.js';

/** A minimal Standard Schema (what zod, valibot and arktype implement), for tests. */
export function testSchema<T>(
  check: (value: unknown) => string | undefined,
): StandardSchemaV1<unknown, T> {
  return {
    '~standard': {
      version: 1,
      vendor: 'natskit-test',
      validate: (value) => {
        const problem = check(value);
        return problem ? { issues: [{ message: problem, path: ['n'] }] } : { value: value as T };
      },
    },
  };
}
