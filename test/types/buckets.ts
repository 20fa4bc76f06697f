// Compile-time tests of bucket handles' value types (see registrations.ts).
import { jsonCodec, type KVStoreService, type StandardSchemaV1, type Tx } from 'natskit';

declare const kv: KVStoreService;
declare const orderSchema: StandardSchemaV1<unknown, { id: string; total: number }>;

export async function buckets(): Promise<void> {
  const text = await kv.bucket('notes', { codec: 'string' });
  const note: string | null = await text.get('k');
  // @ts-expect-error a string bucket's values are strings
  const wrong: number | null = await text.get('k');
  await text.put('k', 'hello');
  // @ts-expect-error a string bucket takes strings
  await text.put('k', 42);

  const blobs = await kv.bucket('blobs', { codec: 'bytes' });
  const blob: Uint8Array | null = await blobs.get('k');

  const orders = await kv.bucket('orders', { schema: orderSchema });
  const order = await orders.get('o-1');
  const total: number | undefined = order?.total;

  const counters = await kv.bucket('counters', { codec: jsonCodec<number>() });
  const n: number | null = await counters.get('c');

  const any = await kv.bucket('misc'); // JSON of unknown shape
  const v: unknown = await any.get('k');
  void [note, wrong, blob, total, n, v];
}

export async function transactions(): Promise<void> {
  // As the KV guide writes it: untyped values, the result type inferred.
  const r = await kv.transaction('bank', async (tx) => {
    const [from, to] = await tx.getMany(['alice', 'bob']);
    if ((from ?? 0) < 10) return false;
    await tx.put('alice', (from ?? 0) - 10);
    await tx.put('bob', (to ?? 0) + 10);
    return true;
  });
  const ok: boolean = r.value;
  // Checked: an annotated handle fixes T and still infers the result.
  const typed = await kv.transaction('bank', async (tx: Tx<number>) => {
    const n = (await tx.get('alice')) ?? 0;
    // @ts-expect-error a number bucket takes numbers
    await tx.put('alice', 'ten');
    return n;
  });
  const n: number = typed.value;
  void [ok, n];
}
