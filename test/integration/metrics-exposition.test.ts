import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

/**
 * promtool from PROMTOOL_BIN, PATH or the project cache, fetched from Debian into .promtool/ when
 * none is there (scripts/provision-promtool.sh, which .ci/run runs too). Undefined, with the
 * script's reason, only where none can be had (no apt and no Debian mirror).
 */
function provisionPromtool(): { bin?: string; why?: string } {
  try {
    const out = execFileSync('bash', ['scripts/provision-promtool.sh'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const bin = out.trim().split(' ')[1];
    return bin ? { bin } : { why: `no path in its output: ${out}` };
  } catch (err) {
    return { why: String((err as { stderr?: unknown } | null)?.stderr ?? err).trim() };
  }
}

/** Every sample value of an exposition, by the line it is on. */
function sampleValues(text: string): { line: string; value: number }[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((line) => ({ line, value: Number(line.slice(line.lastIndexOf(' ') + 1)) }));
}

describe('the default /metrics exposition', () => {
  const promtool = provisionPromtool();
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    // The defaults: process metrics on.
    app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: server.url },
      metrics: true,
    });
    const kv = await app.get(KVStoreService).bucket('exposed', { provision: { history: 2 } });
    await kv.put('a', 1);
    await kv.get('a');
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('passes `promtool check metrics` and holds no NaN or absurd value, scrape after scrape (prom-client named gauges _total, and an event-loop window without samples read NaN and 9223372036.85)', async (ctx) => {
    if (!promtool.bin) ctx.skip(`no promtool could be provisioned: ${promtool.why}`);
    const bin = promtool.bin as string;
    // Back to back: nothing runs between two scrapes, so the event-loop monitor may take no
    // sample in between.
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${app.probeUrl}/metrics`, { signal: AbortSignal.timeout(3_000) });
      expect(res.status).toBe(200);
      const text = await res.text();
      const check = spawnSync(bin, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${check.stdout}${check.stderr}`, `scrape ${i}`).toBe('');
      expect(check.status, `scrape ${i}`).toBe(0);
      for (const { line, value } of sampleValues(text)) {
        expect(Number.isFinite(value), `scrape ${i}: ${line}`).toBe(true);
        // Nothing natskit or Node reports here is anywhere near 1e9 in its unit but byte
        // counts and start times (the int64-max nanoseconds of an empty window is 9.2e9 s).
        if (!/bytes|start_time_seconds/.test(line))
          expect(Math.abs(value), `scrape ${i}: ${line}`).toBeLessThan(1e9);
      }
      expect(text).toContain('nodejs_eventloop_lag_seconds');
      expect(text).toContain('natskit_kv_operation_duration_seconds_count');
    }
  });
});
