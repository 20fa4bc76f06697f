// State calls: set, get, watch and delete application state through the state store.
//   npm run demo -- state-calls                         (NATS KV; a private server unless NATS_URL)
//   STATE_BACKEND=sqlite npm run demo -- state-calls    (an embedded SQLite file: no server)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVStoreService, ServiceManager, STATE_STORE, type StateOptions } from 'natskit';
import { startNatsServer } from 'natskit/testing';

interface Deployment {
  version: string;
  replicas: number;
}

async function main(): Promise<void> {
  const sqlite = process.env.STATE_BACKEND === 'sqlite';
  const dir = sqlite ? await mkdtemp(join(tmpdir(), 'natskit-example-')) : undefined;
  await using server = sqlite || process.env.NATS_URL ? undefined : await startNatsServer();
  const bucket = `example_state_${Date.now().toString(36)}`;
  const state: StateOptions = dir
    ? { backend: 'sqlite', path: join(dir, 'state.db') }
    : { backend: 'nats', bucket };
  await using app = await ServiceManager.start({
    logger: { level: 'error' },
    handleSignals: true, // Ctrl-C stops gracefully, then exits
    ...(sqlite ? {} : { nats: { servers: process.env.NATS_URL ?? server?.url ?? '' } }),
    state,
  });
  const store = app.get(STATE_STORE);
  console.log(`state store: ${store.backend}`);

  const seen: string[] = [];
  const first = await store.setState<Deployment>('deploy.api', { version: '1.0.0', replicas: 2 });
  const watcher = await store.watchState<Deployment>('deploy.*', (change) => {
    const line =
      change.type === 'put'
        ? `${change.initial ? 'initial' : 'update '} ${change.key} = ${change.value.version} x${change.value.replicas} (revision ${change.revision})`
        : `${change.type} ${change.key} (revision ${change.revision})`;
    seen.push(line);
    console.log(`watch: ${line}`);
  });
  // Compare-and-set: only if nobody changed it since `first`.
  await store.setState<Deployment>(
    'deploy.api',
    { version: '1.1.0', replicas: 3 },
    { revision: first },
  );
  const stale = await store
    .setState<Deployment>('deploy.api', { version: '0.9.0', replicas: 1 }, { revision: first })
    .catch((err: { code?: string }) => err.code);
  console.log('stale write:', stale);
  await store.setState<Deployment>('deploy.web', { version: '2.0.0', replicas: 1 });
  console.log('get:', JSON.stringify(await store.getState<Deployment>('deploy.api')));
  await store.deleteState('deploy.web');
  console.log('after delete:', await store.getState('deploy.web'));
  const deadline = Date.now() + 5_000;
  while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await watcher.stop();
  if (seen.length !== 4) throw new Error(`expected 4 changes, saw ${seen.length}`);
  if (stale !== 'KV_REVISION_CONFLICT') throw new Error(`a stale write was not refused: ${stale}`);
  if (!sqlite) {
    // The NATS backend's bucket is a KV bucket like any other.
    const kv = app.get(KVStoreService);
    console.log(
      'kv keys:',
      (await kv.keys(state.backend === 'nats' ? (state.bucket ?? '') : '')).join(', '),
    );
  }
  await app.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  console.log('state calls: done');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
