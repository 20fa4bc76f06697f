import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Provisions the nats-server binaries once before the suite (fetching them into .nats-server/
 * when the machine has none), marks every process the suite starts with a run id, and after the
 * suite fails the run if any nats-server it started is still alive.
 */
export default function setup(): () => void {
  const kinds = process.env.NATSKIT_SKIP_COMPAT === '1' ? ['modern'] : ['modern', 'compat'];
  const out = execFileSync('bash', ['scripts/provision-nats-server.sh', ...kinds], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stderr.write(`nats-server binaries:\n${out}`);
  const runId = randomUUID();
  // Workers are forked after this, so every harness server inherits the marker.
  process.env.NATSKIT_TEST_RUN = runId;

  return () => {
    const strays = suiteServers(runId);
    if (strays.length > 0) {
      for (const pid of strays) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      throw new Error(
        `the suite left ${strays.length} nats-server process(es) running: ${strays.join(', ')}`,
      );
    }
    process.stderr.write('nats-server processes left by the suite: 0\n');
  };
}

/** Pids of live nats-server processes whose environment carries this run's marker. */
export function suiteServers(runId: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmd.split('\0')[0]?.endsWith('nats-server')) continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').includes(`NATSKIT_TEST_RUN=${runId}`)) {
        pids.push(Number(entry));
      }
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}
