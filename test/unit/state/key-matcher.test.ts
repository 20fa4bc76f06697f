import { describe, expect, it } from 'vitest';
import { keyMatcher } from '../../../src/state/sqlite-watch.js';

describe('keyMatcher (SQLite watch filters, NATS subject rules)', () => {
  const cases: [filter: string, matches: string[], not: string[]][] = [
    ['job.1', ['job.1'], ['job.10', 'job', 'job.1.a']],
    ['job.>', ['job.1', 'job.1.a'], ['job', 'jobs.1', 'jo.1', 'other.job.1']],
    ['>', ['a', 'a.b.c'], []],
    ['job.*', ['job.1'], ['job', 'job.1.a']],
    ['job.*.>', ['job.1.a', 'job.1.a.b'], ['job.1', 'job']],
  ];
  for (const [filter, yes, no] of cases) {
    it(`${filter}`, () => {
      const m = keyMatcher(filter);
      for (const k of yes) expect(m(k), `${filter} ~ ${k}`).toBe(true);
      for (const k of no) expect(m(k), `${filter} !~ ${k}`).toBe(false);
    });
  }
});
