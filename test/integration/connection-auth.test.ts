import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nkeys } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  KVStoreService,
  NatskitError,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { startNatsServer } from '../../src/testing/index.js';
import { makeTestCertificates } from '../support/certs.js';
import { waitUntil } from '../support/wait.js';

// Each way natskit authenticates, against a server that demands it: an nkey seed (given, or in a
// file), a .creds file (operator mode, JWTs signed here with nkeys), mutual TLS; and a handed-in
// connection whose inbox prefix is the only one its user may subscribe to.

const quiet = { logger: { level: 'silent' as const } };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'natskit-auth-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Starts an app, checks JetStream answers through it, stops it. */
async function startsAndWorks(nats: Record<string, unknown>): Promise<void> {
  await using app = await ServiceManager.start({ ...quiet, nats });
  expect(app.get(ConnectionService).status.state).toBe('connected');
  const streams = app.get(StreamService);
  await streams.ensureStream({ name: 'AUTH', subjects: ['auth.>'] });
  expect((await streams.publish('auth.x', 'hello')).stream).toBe('AUTH');
}

async function startError(nats: Record<string, unknown>): Promise<unknown> {
  return await ServiceManager.start({ ...quiet, nats }).then(
    async (app) => {
      await app.stop();
      return new Error('started');
    },
    (e: unknown) => e,
  );
}

describe('nkey authentication', () => {
  it('a seed, given or in a file, signs the server nonce; another seed is refused as AUTH_FAILED', async () => {
    const user = nkeys.createUser();
    await using server = await startNatsServer({
      extraConfig: `authorization { users: [ { nkey: "${user.getPublicKey()}" } ] }`,
    });
    const seed = decoder.decode(user.getSeed());
    await startsAndWorks({ servers: server.url, nkeySeed: seed });
    const seedFile = join(dir, 'user.nk');
    writeFileSync(seedFile, `${seed}\n`);
    await startsAndWorks({ servers: server.url, nkeySeedFile: seedFile });
    const stranger = decoder.decode(nkeys.createUser().getSeed());
    const err = await startError({ servers: server.url, nkeySeed: stranger });
    expect(NatskitError.is(err, 'AUTH_FAILED')).toBe(true);
    // Without a seed the server refuses too: the seed is what let the first app in.
    expect(NatskitError.is(await startError({ servers: server.url }), 'AUTH_FAILED')).toBe(true);
  });
});

/** A JWT signed by `issuer` (the nats-server JWT v2 format: ed25519-nkey over header.claims). */
function jwt(
  issuer: ReturnType<typeof nkeys.createAccount>,
  subject: string,
  name: string,
  nats: object,
): string {
  const b64 = (v: object | Uint8Array) =>
    Buffer.from(v instanceof Uint8Array ? v : JSON.stringify(v)).toString('base64url');
  const header = b64({ typ: 'JWT', alg: 'ed25519-nkey' });
  const claims = b64({
    jti: `${name}-${Date.now()}`,
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    sub: subject,
    name,
    nats: { ...nats, version: 2 },
  });
  const signature = b64(issuer.sign(encoder.encode(`${header}.${claims}`)));
  return `${header}.${claims}.${signature}`;
}

describe('creds authentication (operator mode)', () => {
  it('a .creds file (user JWT and seed) is accepted; the same JWT with another seed is refused', async () => {
    const operator = nkeys.createOperator();
    const account = nkeys.createAccount();
    const user = nkeys.createUser();
    const unlimited = { subs: -1, data: -1, payload: -1 };
    const operatorJwt = jwt(operator, operator.getPublicKey(), 'op', { type: 'operator' });
    const accountJwt = jwt(operator, account.getPublicKey(), 'acc', {
      type: 'account',
      limits: {
        ...unlimited,
        imports: -1,
        exports: -1,
        wildcards: true,
        conn: -1,
        leaf: -1,
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
      },
    });
    // JetStream in operator mode needs a system account.
    const system = nkeys.createAccount();
    const systemJwt = jwt(operator, system.getPublicKey(), 'sys', { type: 'account' });
    const userJwt = jwt(account, user.getPublicKey(), 'user', {
      type: 'user',
      pub: {},
      sub: {},
      ...unlimited,
    });
    await using server = await startNatsServer({
      extraConfig: [
        `operator: ${operatorJwt}`,
        `system_account: ${system.getPublicKey()}`,
        'resolver: MEMORY',
        `resolver_preload: { ${account.getPublicKey()}: ${accountJwt}, ${system.getPublicKey()}: ${systemJwt} }`,
      ].join('\n'),
    });
    const creds = (seed: Uint8Array) =>
      [
        '-----BEGIN NATS USER JWT-----',
        userJwt,
        '------END NATS USER JWT------',
        '',
        '-----BEGIN USER NKEY SEED-----',
        decoder.decode(seed),
        '------END USER NKEY SEED------',
        '',
      ].join('\n');
    const credsFile = join(dir, 'user.creds');
    writeFileSync(credsFile, creds(user.getSeed()));
    await startsAndWorks({ servers: server.url, credsFile });
    const forged = join(dir, 'forged.creds');
    writeFileSync(forged, creds(nkeys.createUser().getSeed()));
    expect(
      NatskitError.is(await startError({ servers: server.url, credsFile: forged }), 'AUTH_FAILED'),
    ).toBe(true);
  });
});

describe('mutual TLS', () => {
  it('a client certificate signed by the CA is accepted; without one the server refuses the connection', async () => {
    using certs = makeTestCertificates();
    await using server = await startNatsServer({
      tls: {
        certFile: certs.certFile,
        keyFile: certs.keyFile,
        caFile: certs.caFile,
        verify: true,
      },
    });
    const servers = `tls://127.0.0.1:${server.port}`;
    await startsAndWorks({
      servers,
      tls: { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile },
    });
    const err = await startError({ servers, reconnect: false, tls: { caFile: certs.caFile } });
    // The TLS handshake fails ("certificate required" alert): a connection failure, not a
    // refusal of credentials.
    expect(NatskitError.is(err, 'CONNECTION_FAILED')).toBe(true);
  });
});

describe('a handed-in connection with its own inbox prefix', () => {
  it('workers and watches subscribe under that prefix: a user allowed only those inboxes works', async () => {
    await using server = await startNatsServer({
      extraConfig: `authorization { users: [ {
        user: "scoped", password: "pw",
        permissions: { publish: ">", subscribe: { allow: ["_SCOPED.>"] } }
      } ] }`,
    });
    const nc = await connect({
      servers: server.url,
      user: 'scoped',
      pass: 'pw',
      inboxPrefix: '_SCOPED',
    });
    const denied: string[] = [];
    const errors = (async () => {
      for await (const s of nc.status()) if (s.type === 'error') denied.push(String(s.error));
    })();
    try {
      await using app = await ServiceManager.start({ ...quiet, nats: { connection: nc } });
      const streams = app.get(StreamService);
      const kv = app.get(KVStoreService);
      await streams.ensureStream({ name: 'SCOPED', subjects: ['scoped.>'] });
      await streams.publish('scoped.job', JSON.stringify(1));
      const done: number[] = [];
      await using worker = await streams.createWorker<number>({
        stream: 'SCOPED',
        consumer: 'scoped',
        fetchExpiresMs: 1_000,
        handler: (job) => {
          done.push(job.data);
        },
      });
      worker.start();
      await kv.createBucket('scoped');
      const seen: unknown[] = [];
      const watch = await kv.watch('scoped', 'k', {
        include: 'updates',
        onChange: (c) => {
          if (c.type === 'put') seen.push(c.value);
        },
      });
      await kv.put('scoped', 'k', 'v1');
      try {
        await waitUntil(() => done.length === 1, 10_000, 'the worker took the job');
        await waitUntil(() => seen.length === 1, 10_000, 'the watch saw the put');
      } finally {
        await watch.stop();
      }
      expect(done).toEqual([1]);
      expect(seen).toEqual(['v1']);
      expect(denied).toEqual([]); // nothing subscribed outside the allowed prefix
    } finally {
      await nc.close();
      await errors;
    }
  });

  it('transaction commits and fast bulk writes get their replies under that prefix: both finish promptly', async () => {
    await using server = await startNatsServer({
      extraConfig: `authorization { users: [ {
        user: "scoped", password: "pw",
        permissions: { publish: ">", subscribe: { allow: ["_SCOPED.>"] } }
      } ] }`,
    });
    const nc = await connect({
      servers: server.url,
      user: 'scoped',
      pass: 'pw',
      inboxPrefix: '_SCOPED',
    });
    const denied: string[] = [];
    const errors = (async () => {
      for await (const s of nc.status()) if (s.type === 'error') denied.push(String(s.error));
    })();
    try {
      await using app = await ServiceManager.start({ ...quiet, nats: { connection: nc } });
      const kv = app.get(KVStoreService);
      await kv.createBucket('scopedtx');
      const t0 = performance.now();
      const tx = await kv.transaction<number>('scopedtx', async (t) => {
        await t.put('a', 1);
        await t.put('b', 2);
      });
      const txMs = performance.now() - t0;
      expect(tx.attempts).toBe(1);
      expect(await kv.bulkGet('scopedtx', ['a', 'b'])).toEqual([1, 2]);
      const entries = Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: i }));
      const t1 = performance.now();
      const results = await kv.bulkPut('scopedtx', entries);
      const bulkMs = performance.now() - t1;
      expect(results.map((r) => r.ok)).toEqual(entries.map(() => true));
      // A reply the user may not subscribe to never comes: the commit's outcome is then unknown
      // (seconds of waiting), and the fast batch falls back to one put per key.
      expect(denied).toEqual([]);
      expect(txMs).toBeLessThan(3_000);
      expect(bulkMs).toBeLessThan(3_000);
    } finally {
      await nc.close();
      await errors;
    }
  }, 60_000);
});
