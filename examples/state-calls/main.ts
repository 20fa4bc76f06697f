// State calls: set, get, watch and delete application state on the default state bucket.
//   npm run demo -- state-calls
import { KVStoreService, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';

interface Deployment {
  version: string;
  replicas: number;
}

async function main(): Promise<void> {
  await using server = process.env.NATS_URL ? undefined : await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'error' },
    handleSignals: true, // Ctrl-C stops gracefully, then exits
    nats: { servers: process.env.NATS_URL ?? server?.url ?? '' },
    kv: { stateBucket: `example_state_${Date.now().toString(36)}` },
  });
  const kv = app.get(KVStoreService);

  const seen: string[] = [];
  await kv.setState<Deployment>('deploy.api', { version: '1.0.0', replicas: 2 });
  const watcher = await kv.watchState<Deployment>('deploy.*', (change) => {
    const line =
      change.type === 'put'
        ? `${change.initial ? 'initial' : 'update '} ${change.key} = ${change.value.version} x${change.value.replicas} (revision ${change.revision})`
        : `${change.type} ${change.key} (revision ${change.revision})`;
    seen.push(line);
    console.log(`watch: ${line}`);
  });
  await kv.setState<Deployment>('deploy.api', { version: '1.1.0', replicas: 3 });
  await kv.setState<Deployment>('deploy.web', { version: '2.0.0', replicas: 1 });
  console.log('get:', JSON.stringify(await kv.getState<Deployment>('deploy.api')));
  await kv.deleteState('deploy.web');
  console.log('after delete:', await kv.getState('deploy.web'));
  const deadline = Date.now() + 5_000;
  while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await watcher.stop();
  if (seen.length !== 4) throw new Error(`expected 4 changes, saw ${seen.length}`);
  console.log('state calls: done');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
