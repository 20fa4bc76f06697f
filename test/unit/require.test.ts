import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('packaging', () => {
  it('require() of the built library works (no top-level await anywhere in it)', () => {
    const script = `
      const natskit = require('./dist/index.js');
      const testing = require('./dist/testing/index.js');
      console.log([typeof natskit.ServiceManager, typeof natskit.STATE_STORE, typeof testing.startNatsServer].join(' '));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('function symbol function');
  });
});
