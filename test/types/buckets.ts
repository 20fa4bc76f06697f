// Compile-time tests of bucket handles' value types (see registrations.ts).
import { jsonCodec, type KVStoreService, type StandardSchemaV1 } from 'natskit';

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
