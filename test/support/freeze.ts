import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Whether every thread of `pid` is stopped (state T or t in /proc). */
function stopped(pid: number): boolean {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may hold spaces.
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    if (state !== 'T' && state !== 't') return false;
  }
  return true;
}

/**
 * SIGSTOPs a process (a server that stops answering) and resolves once every one of its threads
 * has stopped. `kill()` only queues the signal: on a loaded machine a server thread went on to
 * answer a request sent after it (a KV get "resolved on a stopped server" in a suite run).
 */
export async function freeze(pid: number, timeoutMs = 10_000): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const start = performance.now();
  while (!stopped(pid)) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`process ${pid} did not stop within ${timeoutMs} ms of SIGSTOP`);
    await sleep(1);
  }
}

/** Lets a frozen process go on. */
export function thaw(pid: number): void {
  process.kill(pid, 'SIGCONT');
}
