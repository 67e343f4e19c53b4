/**
 * Store rates under load shaped like the server's: the hub enqueues for one recipient at a time (under that
 * recipient's lock), many recipients at once, and a signing-in recipient drains its queue in batches of 100
 * with one bulk ack each.
 *
 * Rows per adapter:
 * - `spread`: N messages over R recipients; each recipient's messages enqueued one after another, all
 *   recipients side by side; then every recipient drains at once.
 * - `one long queue`: L messages to one recipient, one at a time, then drained; beside it the time of one
 *   100-message read at the head of that queue and of a 100-message queue, to show whether a read's cost grows
 *   with the queue's length.
 *
 * Adapters: the embedded store; the MongoDB adapter on the in-memory wire-protocol STAND-IN (labelled: it
 * measures the adapter and driver, not a database), plain and in its `racy-updates` fault mode; and a real
 * server when MONGODB_URI is set. Every database made is dropped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';

/** Title and columns of the table `runStore` fills. */
export const STORE_TABLE = {
  title:
    'store: one enqueue at a time per recipient, many recipients side by side; drain in batches of 100 with bulk acks',
  columns: ['adapter', 'load', 'enqueue msg/s', 'drain msg/s', 'read of 100 at head: long / short queue', 'note'],
};

export interface StoreBenchSizes {
  /** Messages in the spread load. */
  n: number;
  /** Recipients in the spread load. */
  recipients: number;
  /** Length of the one long queue. */
  long: number;
}

const CAP = 1_000_000;

async function enqueueSerially(store: Store, to: string, count: number, tag: string): Promise<void> {
  for (let j = 0; j < count; j++) {
    const fromKey = `sender${j % 10}`;
    const result = await store.enqueue(
      { to, from: fromKey, fromKey, id: `${tag}-${to}-${j}`, text: `message ${j} for ${to}`, ts: Date.now() },
      CAP,
    );
    if (result.status !== 'queued') throw new Error(`enqueue answered ${result.status}`);
  }
}

async function drain(store: Store, to: string): Promise<number> {
  let cursor = -1;
  let drained = 0;
  for (;;) {
    const batch = await store.fetchQueue(to, cursor, 100, 0);
    if (batch.length === 0) return drained;
    cursor = batch[batch.length - 1]!.seq;
    drained += await store.ackQueue(to, batch.map((m) => m.seq));
  }
}

function rate(count: number, since: number): string {
  return (count / ((performance.now() - since) / 1000)).toFixed(0);
}

/** Median of `runs` timings of one 100-message read at the head of `to`'s queue, in ms. */
async function headRead(store: Store, to: string, runs = 15): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await store.fetchQueue(to, -1, 100, 0);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function measure(label: string, store: Store, sizes: StoreBenchSizes, note: string): Promise<Array<Array<string | number>>> {
  const perRecipient = Math.ceil(sizes.n / sizes.recipients);
  const names = Array.from({ length: sizes.recipients }, (_, r) => `r${r}`);
  let t = performance.now();
  await Promise.all(names.map((to) => enqueueSerially(store, to, perRecipient, 'spread')));
  const enqueueSpread = rate(perRecipient * names.length, t);
  t = performance.now();
  const drained = (await Promise.all(names.map((to) => drain(store, to)))).reduce((a, b) => a + b, 0);
  if (drained !== perRecipient * names.length) throw new Error(`drained ${drained} of ${perRecipient * names.length}`);
  const drainSpread = rate(drained, t);

  t = performance.now();
  await enqueueSerially(store, 'long', sizes.long, 'long');
  const enqueueLong = rate(sizes.long, t);
  await enqueueSerially(store, 'short', 100, 'short');
  const [longRead, shortRead] = [await headRead(store, 'long'), await headRead(store, 'short')];
  t = performance.now();
  const drainedLong = await drain(store, 'long');
  if (drainedLong !== sizes.long) throw new Error(`drained ${drainedLong} of ${sizes.long}`);
  const drainLong = rate(drainedLong, t);
  return [
    [label, `spread: ${perRecipient * names.length} over ${names.length} recipients`, enqueueSpread, drainSpread, '', note],
    [label, `one long queue: ${sizes.long}`, enqueueLong, drainLong, `${longRead.toFixed(2)} / ${shortRead.toFixed(2)} ms`, note],
  ];
}

export async function runStore(sizes: StoreBenchSizes): Promise<Array<Array<string | number>>> {
  const rows: Array<Array<string | number>> = [];
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-store-'));
  try {
    const embedded = new EmbeddedStore({ dir });
    await embedded.open();
    rows.push(...(await measure('embedded (LMDB)', embedded, sizes, 'fsync per commit, commits batched')));
    await embedded.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const { MongoStore } = await import('../../server/store/mongo.ts');
  const { MongoClient } = await import('mongodb');
  const { startMongoStandin } = await import('../../test/support/mongo-standin.ts');
  const targets: Array<{ label: string; uri: () => Promise<{ uri: string; stop: () => Promise<void> }>; note: string }> = [
    {
      label: 'mongodb on the stand-in',
      uri: async () => {
        const s = await startMongoStandin();
        return { uri: s.uri, stop: () => s.close() };
      },
      note: 'in-memory wire-protocol STAND-IN, not MongoDB: measures the adapter and driver, not a database',
    },
    {
      label: 'mongodb on the stand-in, racy-updates',
      uri: async () => {
        const s = await startMongoStandin({ faults: ['racy-updates'] });
        return { uri: s.uri, stop: () => s.close() };
      },
      note: 'STAND-IN applying updates as read-then-write (as FerretDB 1.24 did)',
    },
  ];
  if (process.env.MONGODB_URI) {
    const uri = process.env.MONGODB_URI;
    targets.push({ label: 'mongodb (MONGODB_URI)', uri: async () => ({ uri, stop: async () => undefined }), note: 'the server at MONGODB_URI' });
  }
  for (const target of targets) {
    const dbName = `parley_bench_${process.pid}_${Date.now()}`;
    let server: { uri: string; stop: () => Promise<void> } | undefined;
    try {
      server = await target.uri();
      const store = new MongoStore({ uri: server.uri, dbName });
      await store.open();
      try {
        rows.push(...(await measure(target.label, store, sizes, target.note)));
      } finally {
        await store.close();
        const admin = await new MongoClient(server.uri).connect();
        await admin.db(dbName).dropDatabase();
        await admin.close();
      }
    } catch (err) {
      rows.push([target.label, '-', '-', '-', '-', `not run: ${(err as Error).message}`]);
    } finally {
      await server?.stop();
    }
  }
  return rows;
}
