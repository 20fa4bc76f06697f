import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ServiceManager } from '../../../src/index.js';

const child = fileURLToPath(new URL('../../fixtures/signal-child.mjs', import.meta.url));

/** Runs the fixture, waits for "ready", sends the signals, and resolves with its exit and output. */
async function run(args: string[], signals: NodeJS.Signals[]) {
  const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) => {
    let t0 = 0;
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (t0 === 0 && out.includes('ready\n')) {
        t0 = performance.now();
        for (const [i, s] of signals.entries()) setTimeout(() => proc.kill(s), i * 200);
      }
    });
    proc.once('exit', (code) => resolve({ code, ms: performance.now() - t0 }));
  });
  const { code, ms } = await exited;
  return { code, ms, lines: out.trim().split('\n') };
}

describe('signal handling (child process, built package)', () => {
  it('SIGTERM stops the services in reverse order and exits 0', async () => {
    const { code, lines } = await run([], ['SIGTERM']);
    expect(lines).toEqual(['start A', 'start B', 'start C', 'ready', 'stop C', 'stop B', 'stop A']);
    expect(code).toBe(0);
  });

  it('SIGINT works the same way', async () => {
    const { code, lines } = await run([], ['SIGINT']);
    expect(lines.slice(-3)).toEqual(['stop C', 'stop B', 'stop A']);
    expect(code).toBe(0);
  });

  it('a second signal exits at once with 1 while a stop hangs', async () => {
    const { code, lines, ms } = await run(['hang'], ['SIGTERM', 'SIGTERM']);
    expect(lines.slice(-2)).toEqual(['stop C', 'stop B']);
    expect(code).toBe(1);
    expect(ms).toBeLessThan(5_000);
  });

  it('installs no listener unless asked', async () => {
    const before = [process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')];
    await using manager = await ServiceManager.start({ logger: { level: 'silent' } });
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual(before);
    expect(manager.state).toBe('running');
  });
});
