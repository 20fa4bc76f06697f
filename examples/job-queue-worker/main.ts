// The main job, minimal for now: boot a ServiceManager with one service that connects to NATS,
// round-trips a message through JetStream, and stop. Uses $NATS_URL, or a private nats-server
// started through natskit/testing when it is not set.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createToken, type Service, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';

class JetStreamCheck implements Service {
  #nc: NatsConnection | undefined;
  constructor(readonly servers: string) {}

  async start(signal: AbortSignal): Promise<void> {
    this.#nc = await connect({ servers: this.servers, name: 'natskit-demo' });
    signal.throwIfAborted();
    const jsm = await jetstreamManager(this.#nc);
    await jsm.streams.add({ name: 'DEMO', subjects: ['demo.>'] });
    const ack = await jetstream(this.#nc).publish('demo.hello', 'hello from natskit');
    const msg = await jsm.streams.getMessage('DEMO', { seq: ack.seq });
    console.log(`jetstream round trip: stream ${ack.stream} seq ${ack.seq} -> "${msg?.string()}"`);
  }

  async stop(): Promise<void> {
    await this.#nc?.drain();
  }
}

const CHECK = createToken<JetStreamCheck>('JetStreamCheck');

async function main(): Promise<void> {
  await using server = process.env.NATS_URL ? undefined : await startNatsServer();
  const servers = process.env.NATS_URL ?? server?.url ?? '';
  console.log(
    server ? `started a private nats-server ${server.version} at ${servers}` : `using ${servers}`,
  );
  await using manager = await ServiceManager.start({
    logger: { level: 'warn' },
    services: [{ token: CHECK, useFactory: () => new JetStreamCheck(servers) }],
  });
  console.log(`manager ${manager.state}; stopping`);
}

main().then(
  () => console.log('demo finished'),
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
