/**
 * Store rates: N messages enqueued to one recipient from 10 senders (all in flight at once, as a busy server
 * would issue them), then drained the way the hub does it: fetch 100, ack them in bulk, repeat.
 * Runs every adapter this machine can run: the embedded store always; MongoDB when MONGODB_URI is set, else
 * the in-memory wire-protocol stand-in from test/support (labelled as such: it is not MongoDB).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';

async function measure(store: Store, n: number): Promise<[number, number]> {
  const t0 = performance.now();
  const batch = 1000;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, k) => {
      const j = i + k;
      return store.enqueue({ to: 'recipient', from: `sender${j % 10}`, fromKey: `sender${j % 10}`, id: `bench-msg-${j}`, text: `message ${j}`, ts: Date.now() }, n + 1);
    }));
  }
  const enqueueRate = n / ((performance.now() - t0) / 1000);
  const t1 = performance.now();
  let cursor = 0;
  let drained = 0;
  for (;;) {
    const b = await store.fetchQueue('recipient', cursor, 100, 0);
    if (b.length === 0) break;
    cursor = b[b.length - 1]!.seq;
    drained += await store.ackQueue('recipient', b.map((m) => m.seq));
  }
  if (drained !== n) throw new Error(`drained ${drained} of ${n}`);
  return [enqueueRate, n / ((performance.now() - t1) / 1000)];
}

export async function runStore(n: number): Promise<Array<Array<string | number>>> {
  const rows: Array<Array<string | number>> = [];
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-store-'));
  try {
    const embedded = new EmbeddedStore({ dir });
    await embedded.open();
    const [e, d] = await measure(embedded, n);
    await embedded.close();
    rows.push(['embedded (LMDB)', n, e.toFixed(0), d.toFixed(0), 'fsync per commit, commits batched']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  try {
    const { MongoStore } = await import('../../server/store/mongo.ts');
    let uri = process.env.MONGODB_URI;
    let note = 'real MongoDB (MONGODB_URI)';
    let stop: (() => Promise<void>) | undefined;
    if (!uri) {
      const { startMongoStandin } = await import('../../test/support/mongo-standin.ts');
      const standin = await startMongoStandin();
      uri = standin.uri;
      stop = () => standin.stop();
      note = 'in-memory wire-protocol STAND-IN, not MongoDB: measures the adapter and driver, not a database';
    }
    const mongo = new MongoStore({ uri, dbName: `parley_bench_${Date.now()}` });
    await mongo.open();
    const [e, d] = await measure(mongo, n);
    await mongo.close();
    await stop?.();
    rows.push(['mongodb', n, e.toFixed(0), d.toFixed(0), note]);
  } catch (err) {
    rows.push(['mongodb', n, '-', '-', `not run: ${(err as Error).message}`]);
  }
  return rows;
}
