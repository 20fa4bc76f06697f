import { performance } from 'node:perf_hooks';
import { type Metrics, outcomeOf } from '../metrics/metrics.js';
import { validateBucket } from './names.js';

/**
 * Opens the handle of a bucket-first call (`kv.get(bucket, key)`). A bucket that fails to open
 * (`KV_BUCKET_NOT_FOUND`, a closed connection, a stopped service) counts as that call, with the
 * error's code as its outcome, as a call on an open handle does: `natskit_kv_operation_*` then
 * counts every call. An invalid bucket name fails first, uncounted, so it never becomes a label.
 */
export async function openMeasured<H>(
  metrics: Metrics,
  bucket: string,
  op: string,
  open: () => Promise<H>,
): Promise<H> {
  validateBucket(bucket);
  if (!metrics.enabled) return await open();
  const t0 = performance.now();
  try {
    return await open();
  } catch (err) {
    metrics.kv(bucket).operation(op, (performance.now() - t0) / 1_000, outcomeOf(err));
    throw err;
  }
}
