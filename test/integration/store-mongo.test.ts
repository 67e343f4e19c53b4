/**
 * The MongoDB store: the shared Store contract, then what only this adapter promises — its indexes, clear
 * start-up errors, outages it survives without reopening, the TTL fallback sweep, and correct order and cap
 * when several Parley processes share one database.
 *
 * The contract runs against a real MongoDB when MONGODB_URI is set (each test in its own database, dropped
 * afterwards), otherwise against the in-memory wire-protocol stand-in, which is NOT MongoDB (see its header).
 * Tests that must stop the server or make it refuse TTL indexes always use a stand-in of their own.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MongoClient } from 'mongodb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError, type EnqueueResult, type NewQueuedMessage } from '../../server/core/store.ts';
import { MongoStore, type MongoStoreLogger, type MongoStoreOptions } from '../../server/store/mongo.ts';
import { defineStoreContract, reopenableStore } from '../contract/store.contract.ts';
import { startMongoStandin, type MongoStandin } from '../support/mongo-standin.ts';

const REAL_URI = process.env.MONGODB_URI;
console.log(
  `MongoDB contract suite against: ${
    REAL_URI ? `real MongoDB at ${REAL_URI.replace(/\/\/[^@/]*@/, '//***@')}` : 'in-memory wire-protocol stand-in (not MongoDB)'
  }`,
);

/**
 * The contract's messages carry timestamps from 2023; a real server's TTL monitor would delete them within a
 * minute under the default 30-day retention, so contract stores keep messages for a century.
 */
const CENTURY_MS = 100 * 365 * 24 * 60 * 60 * 1000;

let sharedTarget: Promise<{ uri: string; standin: MongoStandin | null }> | null = null;
let adminClient: Promise<MongoClient> | null = null;
let dbCounter = 0;

/** The server the contract and the non-outage tests use: MONGODB_URI, else one stand-in for this file. */
function target(): Promise<{ uri: string; standin: MongoStandin | null }> {
  sharedTarget ??= REAL_URI
    ? Promise.resolve({ uri: REAL_URI, standin: null })
    : startMongoStandin().then((standin) => ({ uri: standin.uri, standin }));
  return sharedTarget;
}

/** One driver client of the test's own, for dropping databases and looking behind the store's back. */
function admin(): Promise<MongoClient> {
  adminClient ??= target().then(({ uri }) => new MongoClient(uri, { serverSelectionTimeoutMS: 5000 }).connect());
  return adminClient;
}

function freshDbName(): string {
  return `parley_test_${process.pid}_${++dbCounter}_${Math.random().toString(36).slice(2, 8)}`;
}

afterAll(async () => {
  await (await adminClient)?.close();
  await (await sharedTarget)?.standin?.close();
});

defineStoreContract('mongodb', async () => {
  const { uri } = await target();
  const dbName = freshDbName();
  return reopenableStore(
    () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
    async () => void (await (await admin()).db(dbName).dropDatabase()),
  );
});

/** Records what a store logged, and lets a test wait for a message without sleeping. */
function recordingLogger(): MongoStoreLogger & {
  lines: Array<{ level: string; obj: object; msg: string }>;
  next(level: string, pattern: RegExp): Promise<object>;
} {
  const lines: Array<{ level: string; obj: object; msg: string }> = [];
  const waiters: Array<{ level: string; pattern: RegExp; resolve: (obj: object) => void }> = [];
  const log = (level: string) => (obj: object, msg: string) => {
    lines.push({ level, obj, msg });
    for (const waiter of waiters.splice(0)) {
      if (waiter.level === level && waiter.pattern.test(msg)) waiter.resolve(obj);
      else waiters.push(waiter);
    }
  };
  return {
    lines,
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    next: (level, pattern) => new Promise((resolve) => waiters.push({ level, pattern, resolve })),
  };
}

let nextId = 0;
function message(over: Partial<NewQueuedMessage> = {}): NewQueuedMessage {
  return { to: 'bob', from: 'Alice', fromKey: 'alice', id: `x${++nextId}`, text: 'hi', ts: Date.now(), ...over };
}

function seqOf(result: EnqueueResult): number {
  if (result.status !== 'queued') throw new Error(`expected queued, got ${JSON.stringify(result)}`);
  return result.seq;
}

/**
 * Server behaviours the adapter relies on, checked through the driver. Against a real MongoDB
 * (MONGODB_URI) these same tests show the stand-in answers as the real server does.
 */
describe('server behaviour the adapter relies on', () => {
  let client: MongoClient;
  let dbName: string;

  afterEach(async () => {
    await client.db(dbName).dropDatabase();
  });

  async function db() {
    client = await admin();
    dbName = freshDbName();
    return client.db(dbName);
  }

  it('compound unique index: duplicate key error 11000 with keyValue; unordered inserts go on', async () => {
    const c = (await db()).collection('q');
    await c.createIndexes([{ key: { fromKey: 1, id: 1 }, name: 'u', unique: true }]);
    await c.insertOne({ fromKey: 'a', id: '1' });
    await expect(c.insertOne({ fromKey: 'a', id: '1', other: true })).rejects.toMatchObject({
      code: 11000,
      keyValue: { fromKey: 'a', id: '1' },
    });
    await c.insertOne({ fromKey: 'b', id: '1' });
    const bulk = c.insertMany([{ fromKey: 'c', id: '1' }, { fromKey: 'a', id: '1' }, { fromKey: 'd', id: '1' }], {
      ordered: false,
    });
    await expect(bulk).rejects.toMatchObject({ code: 11000, result: { insertedCount: 2 } });
    expect(await c.countDocuments({})).toBe(4);
    await expect(c.updateOne({ fromKey: 'd' }, { $set: { fromKey: 'a' } })).rejects.toMatchObject({ code: 11000 });
  });

  it('findOneAndUpdate: conditional $inc, upsert, returnDocument before and after', async () => {
    const c = (await db()).collection<{ _id: string; n: number; tag?: string }>('counters');
    expect(await c.findOneAndUpdate({ _id: 'x' }, { $inc: { n: 1 } }, { upsert: true, returnDocument: 'before' })).toBeNull();
    expect(await c.findOneAndUpdate({ _id: 'x' }, { $inc: { n: 1 } }, { returnDocument: 'after' })).toEqual({ _id: 'x', n: 2 });
    expect(await c.findOneAndUpdate({ _id: 'x', n: { $lt: 2 } }, { $inc: { n: 1 } })).toBeNull();
    await expect(
      c.findOneAndUpdate({ _id: 'x', n: { $lt: 2 } }, { $inc: { n: 1 } }, { upsert: true }),
    ).rejects.toMatchObject({ code: 11000 });
    await c.updateOne({ _id: 'y' }, { $setOnInsert: { n: 5 }, $set: { tag: 'a' } }, { upsert: true });
    await c.updateOne({ _id: 'y' }, { $setOnInsert: { n: 9 }, $set: { tag: 'b' } }, { upsert: true });
    expect(await c.findOne({ _id: 'y' })).toEqual({ _id: 'y', n: 5, tag: 'b' });
  });

  it('cursors: batches through getMore in sort order; deleteMany with $in counts', async () => {
    const c = (await db()).collection<{ to: string; seq: number }>('q');
    await c.insertMany(Array.from({ length: 250 }, (_, i) => ({ to: i % 2 ? 'a' : 'b', seq: 250 - i })));
    const found = await c.find({ to: 'a', seq: { $gt: 10 } }, { projection: { _id: 0 } }).sort({ seq: 1 }).batchSize(7).toArray();
    expect(found.map((d) => d.seq)).toEqual(
      Array.from({ length: 250 }, (_, i) => 250 - i).filter((seq, i) => i % 2 && seq > 10).sort((x, y) => x - y),
    );
    const early = c.find({}).batchSize(5);
    await early.next();
    await early.close();
    expect((await c.deleteMany({ to: 'a', seq: { $in: [1, 2, 3, 4, 999] } })).deletedCount).toBe(2);
  });

  it('answers an unknown command with ok: 0 and CommandNotFound', async () => {
    await expect((await db()).command({ parleyNoSuchCommand: 1 })).rejects.toMatchObject({
      code: 59,
      codeName: 'CommandNotFound',
    });
  });
});

describe('MongoStore', () => {
  const stores: MongoStore[] = [];
  const standins: MongoStandin[] = [];
  const databases: string[] = [];

  /** A store on the shared target, in a database of its own. */
  async function storeOnTarget(options: Partial<MongoStoreOptions> = {}): Promise<MongoStore> {
    const dbName = options.dbName ?? freshDbName();
    if (!databases.includes(dbName)) databases.push(dbName);
    const store = new MongoStore({ uri: (await target()).uri, dbName, retentionMs: CENTURY_MS, ...options });
    stores.push(store);
    return store;
  }

  async function ownStandin(options: Parameters<typeof startMongoStandin>[0] = {}): Promise<MongoStandin> {
    const standin = await startMongoStandin(options);
    standins.push(standin);
    return standin;
  }

  function storeOn(standin: MongoStandin, options: Partial<MongoStoreOptions> = {}): MongoStore {
    const store = new MongoStore({ uri: standin.uri, dbName: 'parley', ...options });
    stores.push(store);
    return store;
  }

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const standin of standins.splice(0)) await standin.close();
    for (const dbName of databases.splice(0)) await (await admin()).db(dbName).dropDatabase();
  });

  describe('opening', () => {
    it('creates the indexes it relies on, and creating them again is harmless', async () => {
      const store = await storeOnTarget();
      await store.open();
      expect(store.expiryMode).toBe('ttl-index');
      const db = (await admin()).db(store.databaseName);
      const indexes = async (collection: string) =>
        Object.fromEntries((await db.collection(collection).listIndexes().toArray()).map((ix) => [ix['name'], ix]));

      const accountIx = await indexes('accounts');
      expect(accountIx['account_key_unique']).toMatchObject({ key: { key: 1 }, unique: true });
      const sessionIx = await indexes('sessions');
      expect(sessionIx['session_token_unique']).toMatchObject({ key: { tokenHash: 1 }, unique: true });
      expect(sessionIx['session_key']).toMatchObject({ key: { key: 1 } });
      const queueIx = await indexes('queue');
      expect(queueIx['queue_sender_id_unique']).toMatchObject({ key: { fromKey: 1, id: 1 }, unique: true });
      expect(queueIx['queue_recipient_seq_unique']).toMatchObject({ key: { to: 1, seq: 1 }, unique: true });
      expect(queueIx['queue_ttl']).toMatchObject({ key: { expireAt: 1 }, expireAfterSeconds: 0 });

      await store.close();
      const again = await storeOnTarget({ dbName: store.databaseName });
      await again.open();
      expect(await again.ping()).toBe(true);
    });

    it('takes the database name from the URI when none is given', async () => {
      const standin = await ownStandin();
      const store = new MongoStore({ uri: `${standin.uri}/from_uri?appName=t` });
      stores.push(store);
      await store.open();
      expect(store.databaseName).toBe('from_uri');
      expect(new MongoStore({ uri: standin.uri }).databaseName).toBe('parley');
    });

    it('rejects clearly, within its timeout, when nothing listens', async () => {
      // A port that was just free: a stand-in bound it (port 0) and let it go.
      const standin = await ownStandin();
      await standin.stop();
      const store = storeOn(standin, { connectTimeoutMs: 400 });
      const started = Date.now();
      const failure = store.open();
      await expect(failure).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(failure).rejects.toThrow(`Cannot reach MongoDB at 127.0.0.1:${standin.port}/parley within 400 ms`);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await store.ping()).toBe(false);
    });

    it('rejects a malformed connection string with a clear message that hides credentials', async () => {
      await expect(new MongoStore({ uri: 'http://localhost:27017' }).open()).rejects.toThrow(
        /MongoDB connection string is not valid \(http:\/\/localhost:27017\)/,
      );
      const failure = new MongoStore({ uri: 'mongodb://parley:s3cret@localhost:notaport/x' }).open();
      await expect(failure).rejects.toThrow(/MongoDB connection string is not valid \(mongodb:\/\/\*\*\*@localhost/);
      await expect(failure).rejects.not.toThrow(/s3cret/);
    });

    it('opens once when open is called concurrently or again, and can reopen after close', async () => {
      const store = await storeOnTarget();
      await Promise.all([store.open(), store.open()]);
      await store.open();
      expect(await store.ping()).toBe(true);
      await store.close();
      await store.open();
      expect(await store.ping()).toBe(true);
    });

    it('refuses work with StoreUnavailableError once closed', async () => {
      const store = await storeOnTarget();
      await store.open();
      await store.close();
      expect(await store.ping()).toBe(false);
      await expect(store.enqueue(message(), 10)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.getAccount('bob')).rejects.toBeInstanceOf(StoreUnavailableError);
    });
  });

  describe('outages', () => {
    /** Options that make an outage show up, and recovery happen, quickly. */
    const fast: Partial<MongoStoreOptions> = {
      connectTimeoutMs: 1000,
      heartbeatFrequencyMs: 200,
      clientOptions: { minHeartbeatFrequencyMS: 50 },
    };

    it('rejects with StoreUnavailableError while the server is down and recovers by itself', async () => {
      const standin = await ownStandin();
      const store = storeOn(standin, fast);
      await store.open();
      const before = seqOf(await store.enqueue(message(), 100));

      standin.kill();
      await expect(store.enqueue(message(), 100)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.fetchQueue('bob', -1, 10, 0)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.createAccount({ key: 'a', name: 'a', passwordHash: 'h', created: 1 })).rejects.toThrow(
        /MongoDB unavailable during createAccount/,
      );
      expect(await store.ping()).toBe(false);

      // Same port, same data: the driver's monitor finds it again; the store is never reopened.
      await standin.start();
      const after = seqOf(await store.enqueue(message(), 100));
      expect(after).toBeGreaterThan(before);
      expect(await store.ping()).toBe(true);
      expect((await store.fetchQueue('bob', -1, 10, 0)).map((m) => m.seq)).toEqual([before, after]);
    });

    it('loses nothing it reported as queued when the server dies mid-traffic', async () => {
      const standin = await ownStandin();
      const store = storeOn(standin, fast);
      await store.open();

      const sent = Array.from({ length: 200 }, () => message());
      let settled = 0;
      const outcomes = sent.map((m) =>
        store.enqueue(m, 1_000_000).then(
          (result) => ({ m, result }),
          (error: unknown) => ({ m, error }),
        ).finally(() => {
          // Kill the server once a quarter of the traffic has been answered, with the rest in flight.
          if (++settled === 50) standin.kill();
        }),
      );
      const results = await Promise.all(outcomes);
      const queued = results.filter((r) => 'result' in r && r.result.status === 'queued');
      const failed = results.filter((r) => 'error' in r);
      expect(queued.length).toBeGreaterThanOrEqual(50);
      expect(failed.length).toBeGreaterThan(0);
      for (const r of failed) expect((r as { error: unknown }).error).toBeInstanceOf(StoreUnavailableError);

      await standin.start();
      const fetched = await store.fetchQueue('bob', -1, 1_000_000, 0);
      const stored = new Map(fetched.map((m) => [m.id, m.seq]));
      for (const r of queued) expect(stored.get(r.m.id)).toBe((r as { result: { seq: number } }).result.seq);
      for (let i = 1; i < fetched.length; i++) expect(fetched[i]!.seq).toBeGreaterThan(fetched[i - 1]!.seq);

      // Senders resend what failed: each message ends up stored exactly once.
      for (const r of failed) expect(['queued', 'duplicate']).toContain((await store.enqueue(r.m, 1_000_000)).status);
      const final = await store.fetchQueue('bob', -1, 1_000_000, 0);
      expect(final.map((m) => m.id).sort()).toEqual(sent.map((m) => m.id).sort());
    });

  });

  describe('expiry', () => {
    it('falls back to a periodic sweep, with a warning, when the server refuses TTL indexes', async () => {
      const standin = await ownStandin({ rejectTtlIndexes: true });
      const logger = recordingLogger();
      const store = storeOn(standin, { logger, retentionMs: 60_000, sweepIntervalMs: 25 });
      await store.open();
      expect(store.expiryMode).toBe('sweep');
      expect(logger.lines.find((l) => l.level === 'warn')?.msg).toMatch(/refused the TTL index.*periodic sweep/);

      const now = Date.now();
      const old = message({ ts: now - 120_000 });
      const fresh = message({ ts: now });
      await store.enqueue(old, 10);
      await store.enqueue(fresh, 10);
      expect(await logger.next('info', /expired queued messages swept/)).toEqual({ removed: 1 });
      expect((await store.fetchQueue('bob', -1, 10, 0)).map((m) => m.id)).toEqual([fresh.id]);
      // The sweep gave the slot back: the cap counts only what is left.
      expect((await store.enqueue(message(), 2)).status).toBe('queued');
      expect(await store.enqueue(message(), 2)).toEqual({ status: 'full' });
    });

    it('uses the TTL index, and no sweep, when the server accepts it', async () => {
      const standin = await ownStandin();
      const logger = recordingLogger();
      const store = storeOn(standin, { logger, sweepIntervalMs: 25 });
      await store.open();
      expect(store.expiryMode).toBe('ttl-index');
      expect(logger.lines.filter((l) => l.level === 'warn')).toEqual([]);
      await store.enqueue(message({ ts: 1_000 }), 10);
      expect(standin.documents('parley', 'queue')[0]?.['expireAt']).toEqual(new Date(1_000 + 30 * 24 * 60 * 60 * 1000));
    });
  });

  describe('queue counter', () => {
    it('corrects a counter left too high (crash between reserve and insert, TTL expiry) once it is stale', async () => {
      const standin = await ownStandin();
      const logger = recordingLogger();
      const raw = new MongoClient(standin.uri);
      await raw.connect();
      try {
        const counters = raw.db('parley').collection<{ _id: string; queued: number; reservedAt: number }>(
          'queue_counters',
        );
        const recent = storeOn(standin, { logger });
        await recent.open();
        seqOf(await recent.enqueue(message(), 3));
        // Two phantom slots, as if two enqueues had reserved and then died before inserting.
        await counters.updateOne({ _id: 'bob' }, { $inc: { queued: 2 } });
        // Within the grace period the store cannot tell a phantom from an insert still on its way: full.
        expect(await recent.enqueue(message(), 3)).toEqual({ status: 'full' });

        const stale = storeOn(standin, { logger, reservationGraceMs: 0 });
        await stale.open();
        expect((await stale.enqueue(message(), 3)).status).toBe('queued');
        expect(logger.lines.some((l) => l.level === 'warn' && /queue counter was higher/.test(l.msg))).toBe(true);
        expect((await stale.enqueue(message(), 3)).status).toBe('queued');
        expect(await stale.enqueue(message(), 3)).toEqual({ status: 'full' });
        expect(await stale.queueLength('bob')).toBe(3);
      } finally {
        await raw.close();
      }
    });

    it('rebuilds a lost counter from the stored messages: no reused seq, cap still counted', async () => {
      const standin = await ownStandin();
      const raw = new MongoClient(standin.uri);
      await raw.connect();
      try {
        const store = storeOn(standin);
        await store.open();
        const first = seqOf(await store.enqueue(message(), 100));
        seqOf(await store.enqueue(message(), 100));
        await raw.db('parley').collection('queue_counters').deleteMany({});
        const next = seqOf(await store.enqueue(message(), 3));
        expect(next).toBeGreaterThan(first + 1);
        expect(await store.enqueue(message(), 3)).toEqual({ status: 'full' });
        expect(await store.queueLength('bob')).toBe(3);
      } finally {
        await raw.close();
      }
    });
  });

  describe('batching', () => {
    it('reads a sign-in batch with one find and acks it with one delete', async () => {
      const standin = await ownStandin();
      const store = storeOn(standin);
      await store.open();
      const seqs: number[] = [];
      for (let i = 0; i < 300; i++) seqs.push(seqOf(await store.enqueue(message(), 1000)));

      const count = (name: string) => standin.commandCounts().get(name) ?? 0;
      const [finds, getMores, deletes] = [count('find'), count('getMore'), count('delete')];
      const batch = await store.fetchQueue('bob', -1, 250, 0);
      expect(batch.map((m) => m.seq)).toEqual(seqs.slice(0, 250));
      expect(count('find') - finds).toBe(1);
      expect(count('getMore') - getMores).toBe(0);
      expect(await store.ackQueue('bob', batch.map((m) => m.seq))).toBe(250);
      expect(count('delete') - deletes).toBe(1);
      expect(await store.queueLength('bob')).toBe(50);
    });
  });

  describe('two processes on one database', () => {
    it('two OS processes queue to one recipient: distinct seqs, acceptance order, nothing lost', async () => {
      const dbName = freshDbName();
      databases.push(dbName);
      const { uri } = await target();
      const [p1, p2] = await Promise.all([
        runEnqueueChild({ uri, dbName, to: 'carol', fromKey: 'p1', count: 60 }),
        runEnqueueChild({ uri, dbName, to: 'carol', fromKey: 'p2', count: 60 }),
      ]);
      const all = [...p1, ...p2];
      expect(all).toHaveLength(120);
      expect(new Set(all.map((r) => r.seq)).size).toBe(120);
      for (const run of [p1, p2]) for (let i = 1; i < run.length; i++) expect(run[i]!.seq).toBeGreaterThan(run[i - 1]!.seq);
      // Across processes, by the machine's clock: an enqueue that resolved (with a millisecond to spare for
      // clock reads) before another began has the lower seq.
      for (const x of p1) {
        for (const y of p2) {
          if (x.end + 1 < y.start) expect(x.seq).toBeLessThan(y.seq);
          if (y.end + 1 < x.start) expect(y.seq).toBeLessThan(x.seq);
        }
      }
      const reader = await storeOnTarget({ dbName });
      await reader.open();
      const fetched = await reader.fetchQueue('carol', -1, 1_000, 0);
      expect(fetched.map((m) => m.id)).toEqual([...all].sort((a, b) => a.seq - b.seq).map((r) => r.id));
    });

    it('hand out distinct seqs in acceptance order to one recipient (two clients in this process)', async () => {
      const dbName = freshDbName();
      const p1 = await storeOnTarget({ dbName });
      const p2 = await storeOnTarget({ dbName });
      await Promise.all([p1.open(), p2.open()]);

      // A logical clock: an enqueue that resolved before another started must get the lower seq.
      let tick = 0;
      const log: Array<{ id: string; seq: number; start: number; end: number }> = [];
      const sender = async (store: MongoStore, fromKey: string) => {
        for (let i = 0; i < 40; i++) {
          const m = message({ to: 'carol', fromKey, from: fromKey });
          const start = ++tick;
          const seq = seqOf(await store.enqueue(m, 1_000_000));
          log.push({ id: m.id, seq, start, end: ++tick });
        }
      };
      await Promise.all([sender(p1, 'alice'), sender(p2, 'dave'), sender(p1, 'erin'), sender(p2, 'frank')]);

      expect(new Set(log.map((e) => e.seq)).size).toBe(160);
      for (const x of log) {
        for (const y of log) if (x.end < y.start) expect(x.seq).toBeLessThan(y.seq);
      }
      const fetched = await p2.fetchQueue('carol', -1, 1_000, 0);
      expect(fetched.map((m) => m.id)).toEqual([...log].sort((a, b) => a.seq - b.seq).map((e) => e.id));
      expect(await p1.queueLength('carol')).toBe(160);
    });

    it('never exceed the cap together', async () => {
      const dbName = freshDbName();
      const p1 = await storeOnTarget({ dbName });
      const p2 = await storeOnTarget({ dbName });
      await Promise.all([p1.open(), p2.open()]);
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? p1 : p2).enqueue(message({ to: 'carol' }), 15)),
      );
      expect(results.filter((r) => r.status === 'queued')).toHaveLength(15);
      expect(results.filter((r) => r.status === 'full')).toHaveLength(45);
      expect(await p2.queueLength('carol')).toBe(15);
    });
  });
});

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * A second Parley-like process: opens its own MongoStore and enqueues `count` messages one after another,
 * printing each result with wall-clock start and end times. Inline so the test needs no extra file.
 */
const CHILD_SCRIPT = `
const { MongoStore } = await import(process.env.PARLEY_MONGO_MODULE);
const { uri, dbName, to, fromKey, count } = JSON.parse(process.env.PARLEY_CHILD);
const store = new MongoStore({ uri, dbName, retentionMs: ${CENTURY_MS} });
await store.open();
const now = () => performance.timeOrigin + performance.now();
for (let i = 0; i < count; i++) {
  const id = fromKey + '-' + i;
  const start = now();
  const result = await store.enqueue({ to, from: fromKey, fromKey, id, text: 'm' + i, ts: Date.now() }, 1e6);
  process.stdout.write(JSON.stringify({ id, start, end: now(), ...result }) + '\\n');
}
await store.close();
`;

interface ChildEnqueue {
  id: string;
  seq: number;
  start: number;
  end: number;
}

function runEnqueueChild(args: { uri: string; dbName: string; to: string; fromKey: string; count: number }): Promise<ChildEnqueue[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD_SCRIPT], {
      cwd: ROOT,
      env: {
        ...process.env,
        PARLEY_MONGO_MODULE: pathToFileURL(path.join(ROOT, 'server/store/mongo.ts')).href,
        PARLEY_CHILD: JSON.stringify(args),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const results: ChildEnqueue[] = [];
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line) as ChildEnqueue & { status: string };
      if (parsed.status === 'queued') results.push(parsed);
      else stderr += `unexpected result: ${line}\n`;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 && results.length === args.count) resolve(results);
      else reject(new Error(`enqueue child exited with ${code}: ${stderr}`));
    });
  });
}
