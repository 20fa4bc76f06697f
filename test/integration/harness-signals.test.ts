import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Runs the fixture, ends it with `signal` (to its process group with `group`), reports what is left. */
async function endBySignal(mode: 'plain' | 'app', signal: NodeJS.Signals, group: boolean) {
  const child = spawn(process.execPath, ['test/fixtures/harness-signal-child.mjs', mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group, // its own process group, like a terminal's foreground job
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, sig) => resolve({ code, signal: sig })),
  );
  const deadline = Date.now() + 20_000;
  while (!out.includes('"serverPid"') && Date.now() < deadline) await sleep(20);
  const line = out.split('\n').find((l) => l.includes('"serverPid"')) ?? '{}';
  const started = JSON.parse(line) as { serverPid: number; dir: string };
  expect(alive(started.serverPid)).toBe(true);
  if (group) process.kill(-(child.pid as number), signal);
  else child.kill(signal);
  const exit = await exited;
  for (let i = 0; i < 100 && alive(started.serverPid); i++) await sleep(20);
  return { exit, serverAlive: alive(started.serverPid), dirLeft: existsSync(started.dir), out };
}

describe('natskit/testing when the process ends by a signal', () => {
  it('Ctrl-C to the process: the server is killed and its directory removed, then the process ends by SIGINT', async () => {
    const r = await endBySignal('plain', 'SIGINT', false);
    expect(r.exit).toEqual({ code: null, signal: 'SIGINT' });
    expect(r.serverAlive).toBe(false);
    expect(r.dirLeft).toBe(false);
  });

  it("Ctrl-C to the terminal's process group, and SIGTERM: the same", async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const r = await endBySignal('plain', signal, true);
      expect(r.exit.signal).toBe(signal);
      expect([r.serverAlive, r.dirLeft]).toEqual([false, false]);
    }
  });

  it('with an app that handles signals: it stops gracefully against a live server, exits 0, and nothing is left', async () => {
    const r = await endBySignal('app', 'SIGINT', true);
    expect(r.exit).toEqual({ code: 0, signal: null });
    expect([r.serverAlive, r.dirLeft]).toEqual([false, false]);
    // The connection drained (the server was not hit by the group's Ctrl-C).
    expect(r.out).toContain('"result":"drained"');
  });
});
