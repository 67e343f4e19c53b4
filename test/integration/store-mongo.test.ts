/**
 * The MongoDB store: the shared Store contract, then what only this adapter promises — its indexes, clear
 * start-up errors, outages it survives without reopening, the TTL fallback sweep, and correct order and cap
 * when several Parley processes share one database.
 *
 * The contract runs against a real MongoDB when MONGODB_URI is set (each test in its own database, dropped
 * afterwards), otherwise against the in-memory wire-protocol stand-in, which is NOT MongoDB (see its header).
 * Tests that must stop the server or make it refuse TTL indexes always use a stand-in of their own.
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MongoClient, type IndexDescription } from 'mongodb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { skeleton } from '../../server/core/confusables.ts';
import { StoreUnavailableError, type EnqueueResult, type NewQueuedMessage } from '../../server/core/store.ts';
import { MongoStore, type MongoStoreLogger, type MongoStoreOptions } from '../../server/store/mongo.ts';
import { defineAccountChangesContract, defineStoreContract, reopenableStore } from '../contract/store.contract.ts';
import { defineRoomStoreContract } from '../contract/room-store.contract.ts';
import { STANDIN_FAULTS, startMongoStandin, type MongoStandin, type StandinFault } from '../support/mongo-standin.ts';

const REAL_URI = process.env.MONGODB_URI;
console.log(
  `MongoDB contract suite against: ${
    REAL_URI ? `the server at MONGODB_URI, ${REAL_URI.replace(/\/\/[^@/]*@/, '//***@')}` : 'in-memory wire-protocol stand-in (not MongoDB)'
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

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function freshDbName(): string {
  return `parley_test_${process.pid}_${++dbCounter}_${Math.random().toString(36).slice(2, 8)}`;
}

afterAll(async () => {
  await (await adminClient)?.close();
  await (await sharedTarget)?.standin?.close();
});

defineStoreContract(REAL_URI ? 'mongodb (MONGODB_URI)' : 'mongodb on the stand-in', async () => {
  const { uri } = await target();
  const dbName = freshDbName();
  const fixture = await reopenableStore(
    () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
    async () => void (await (await admin()).db(dbName).dropDatabase()),
  );
  return { ...fixture, processStore: processStore({ uri, dbName, retentionMs: CENTURY_MS }) };
});

defineRoomStoreContract(REAL_URI ? 'mongodb (MONGODB_URI)' : 'mongodb on the stand-in', async () => {
  const { uri } = await target();
  const dbName = freshDbName();
  return reopenableStore(
    () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
    async () => void (await (await admin()).db(dbName).dropDatabase()),
  );
});

defineAccountChangesContract('mongodb', async () => {
  const { uri } = await target();
  const dbName = freshDbName();
  return reopenableStore(
    () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
    async () => void (await (await admin()).db(dbName).dropDatabase()),
  );
});

/** How a child process opens a MongoStore on the same database (test/support/store-child.ts). */
function processStore(options: Partial<MongoStoreOptions>) {
  return { module: pathToFileURL(path.join(ROOT, 'server/store/mongo.ts')).href, className: 'MongoStore', options };
}

/**
 * The contract again on stand-ins that behave like FerretDB 1.24 did, one fault mode at a time (see the
 * stand-in's header), also when MONGODB_URI is set: these always run on a stand-in.
 */
const faultStandins = new Map<StandinFault, Promise<MongoStandin>>();
afterAll(async () => {
  for (const standin of faultStandins.values()) await (await standin).close();
});
for (const fault of STANDIN_FAULTS) {
  defineStoreContract(`mongodb on the stand-in, fault mode ${fault}`, async () => {
    let standin = faultStandins.get(fault);
    if (standin === undefined) faultStandins.set(fault, (standin = startMongoStandin({ faults: [fault] })));
    const { uri } = await standin;
    const dbName = freshDbName();
    const fixture = await reopenableStore(
      () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
      async () => {
        const client = await new MongoClient(uri).connect();
        await client.db(dbName).dropDatabase();
        await client.close();
      },
    );
    return { ...fixture, processStore: processStore({ uri, dbName, retentionMs: CENTURY_MS }) };
  });
  defineRoomStoreContract(`mongodb on the stand-in, fault mode ${fault}`, async () => {
    let standin = faultStandins.get(fault);
    if (standin === undefined) faultStandins.set(fault, (standin = startMongoStandin({ faults: [fault] })));
    const { uri } = await standin;
    const dbName = freshDbName();
    return reopenableStore(
      () => new MongoStore({ uri, dbName, retentionMs: CENTURY_MS }),
      async () => {
        const client = await new MongoClient(uri).connect();
        await client.db(dbName).dropDatabase();
        await client.close();
      },
    );
  });
}

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

  it('compound unique index: duplicate key error 11000 (nothing else about it is relied on); unordered inserts go on', async () => {
    const c = (await db()).collection('q');
    await c.createIndexes([{ key: { fromKey: 1, id: 1 }, name: 'u', unique: true }]);
    await c.insertOne({ fromKey: 'a', id: '1' });
    await expect(c.insertOne({ fromKey: 'a', id: '1', other: true })).rejects.toMatchObject({ code: 11000 });
    await c.insertOne({ fromKey: 'b', id: '1' });
    const bulk = c.insertMany([{ fromKey: 'c', id: '1' }, { fromKey: 'a', id: '1' }, { fromKey: 'd', id: '1' }], {
      ordered: false,
    });
    await expect(bulk).rejects.toMatchObject({ code: 11000, result: { insertedCount: 2 } });
    expect(await c.countDocuments({})).toBe(4);
    await expect(c.updateOne({ fromKey: 'd' }, { $set: { fromKey: 'a' } })).rejects.toMatchObject({ code: 11000 });
  });

  it('a unique index lets exactly one of 40 concurrent inserts of one key through (the arbiter of every race)', async () => {
    const c = (await db()).collection('seqs');
    await c.createIndexes([{ key: { to: 1, seq: 1 }, name: 'u', unique: true }]);
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => c.insertOne({ to: 'bob', seq: 7 })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 11000 });
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

  it('limited reads bound on a compound index first field, ranged and sorted on its second, in both directions', async () => {
    const c = (await db()).collection<{ to: string; seq: number; n?: number }>('q');
    await c.createIndexes([{ key: { to: 1, seq: 1 }, name: 'to_seq', unique: true }]);
    const seqs = Array.from({ length: 300 }, (_, i) => (i * 7919) % 300); // every seq once, shuffled
    await c.insertMany(seqs.map((seq) => ({ to: seq % 3 ? 'a' : 'b', seq })));
    await c.deleteMany({ to: 'a', seq: { $in: [11, 13, 14] } });
    await c.updateOne({ to: 'a', seq: 16 }, { $set: { seq: 1000 } });
    const a = seqs.filter((seq) => seq % 3 && ![11, 13, 14, 16].includes(seq)).concat(1000).sort((x, y) => x - y);
    const up = await c.find({ to: 'a', seq: { $gt: 10 } }).sort({ seq: 1 }).limit(6).toArray();
    expect(up.map((d) => d.seq)).toEqual(a.filter((seq) => seq > 10).slice(0, 6));
    const down = await c.find({ to: 'a', seq: { $lte: 200 } }).sort({ seq: -1 }).limit(4).toArray();
    expect(down.map((d) => d.seq)).toEqual(a.filter((seq) => seq <= 200).reverse().slice(0, 4));
    const last = await c.find({ to: 'a' }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(1).toArray();
    expect(last).toEqual([{ seq: 1000 }]);
    expect(await c.find({ to: 'a', seq: { $gt: 10 }, n: 5 }).sort({ seq: 1 }).limit(3).toArray()).toEqual([]);
  });

  it('answers an unknown command with ok: 0 and CommandNotFound', async () => {
    await expect((await db()).command({ parleyNoSuchCommand: 1 })).rejects.toMatchObject({
      code: 59,
      codeName: 'CommandNotFound',
    });
  });
});

/** Each fault mode of the stand-in does what its header says, so the contract runs above are what they claim. */
describe('stand-in fault modes (what each imitates, checked through the driver)', () => {
  const open: Array<{ standin: MongoStandin; client: MongoClient }> = [];
  afterEach(async () => {
    for (const { standin, client } of open.splice(0)) {
      await client.close();
      await standin.close();
    }
  });
  async function on(fault: StandinFault) {
    const standin = await startMongoStandin({ faults: [fault] });
    const client = await new MongoClient(standin.uri, { serverSelectionTimeoutMS: 2000 }).connect();
    open.push({ standin, client });
    return client.db('faults');
  }

  it('racy-updates: concurrent $inc on one document lose increments', async () => {
    const c = (await on('racy-updates')).collection<{ _id: string; n: number }>('c');
    await c.insertOne({ _id: 'x', n: 0 });
    await Promise.all(Array.from({ length: 40 }, () => c.updateOne({ _id: 'x' }, { $inc: { n: 1 } })));
    await Promise.all(Array.from({ length: 40 }, () => c.findOneAndUpdate({ _id: 'x' }, { $inc: { n: 1 } })));
    expect((await c.findOne({ _id: 'x' }))!.n).toBeLessThan(80);
  });

  it('bare-duplicate-key: code 11000 without keyPattern or keyValue', async () => {
    const c = (await on('bare-duplicate-key')).collection('c');
    await c.createIndex({ k: 1 }, { unique: true, name: 'k' });
    await c.insertOne({ k: 1 });
    const error = await c.insertOne({ k: 1 }).catch((e: unknown) => e as Record<string, unknown>);
    expect(error).toMatchObject({ code: 11000 });
    expect(error).not.toHaveProperty('keyPattern');
    expect(error).not.toHaveProperty('keyValue');
  });

  it('no-ttl-indexes: expireAfterSeconds refused with code 238', async () => {
    const c = (await on('no-ttl-indexes')).collection('c');
    await expect(c.createIndex({ at: 1 }, { expireAfterSeconds: 0, name: 'ttl' })).rejects.toMatchObject({ code: 238 });
  });

  it('close-on-existing-indexes: several specs, one existing, close the connection; one at a time is fine', async () => {
    const c = (await on('close-on-existing-indexes')).collection('c');
    const specs: IndexDescription[] = [{ key: { a: 1 }, name: 'a' }, { key: { b: 1 }, name: 'b' }];
    await c.createIndexes(specs);
    await expect(c.createIndexes(specs)).rejects.toThrow(/closed|connection/i);
    await c.createIndexes([specs[0]!]);
    await c.createIndexes([specs[1]!]);
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
      // Real servers differ here (FerretDB 1.x refuses TTL indexes); the stand-in accepts them unless told not to.
      if (!REAL_URI) expect(store.expiryMode).toBe('ttl-index');
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
      expect(queueIx['queue_recipient_slot_unique']).toMatchObject({ key: { to: 1, slot: 1 }, unique: true });
      if (store.expiryMode === 'ttl-index') {
        expect(queueIx['queue_ttl']).toMatchObject({ key: { expireAt: 1 }, expireAfterSeconds: 0 });
      } else {
        expect(queueIx['queue_ttl']).toBeUndefined();
      }
      const seqIx = await indexes('queue_seqs');
      expect(seqIx['seq_recipient_seq_unique']).toMatchObject({ key: { to: 1, seq: 1 }, unique: true });
      const inviteIx = await indexes('room_invites');
      expect(inviteIx['room_invite_key_at']).toMatchObject({ key: { key: 1, at: 1 } });

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

    it('reads room invitations stored before the inviter was kept, without one', async () => {
      const T0 = 1_700_000_000_000;
      const store = await storeOnTarget();
      await store.open();
      const db = (await admin()).db(store.databaseName);
      await db.collection<{ _id: string; room: string; key: string; at: number }>('room_invites').insertOne({ _id: 'lobby\u0000bob', room: 'lobby', key: 'bob', at: T0 });
      await store.rooms.invite('attic', 'bob', T0 + 1, 'Alice');
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([{ room: 'attic', at: T0 + 1, by: 'Alice' }, { room: 'lobby', at: T0 }]);
      expect(await store.rooms.isInvited('lobby', 'bob')).toBe(true);
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
      const standin = await ownStandin({ faults: ['no-ttl-indexes'] });
      const logger = recordingLogger();
      const store = storeOn(standin, { logger, retentionMs: 60_000, sweepIntervalMs: 25 });
      await store.open();
      expect(store.expiryMode).toBe('sweep');
      expect(logger.lines.find((l) => l.level === 'warn')?.msg).toMatch(/refused the TTL index.*periodic sweep/);

      const now = Date.now();
      const old = message({ ts: now - 120_000 });
      const fresh = message({ ts: now });
      // Waiting from before the old message exists: the sweep may remove it before the second enqueue returns.
      const swept = logger.next('info', /expired queued messages swept/);
      await store.enqueue(old, 10);
      await store.enqueue(fresh, 10);
      expect(await swept).toEqual({ removed: 1 });
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

  describe('seqs and slots', () => {
    it.each([[[] as StandinFault[]], [['bare-duplicate-key'] as StandinFault[]]])(
      'moves past stored messages when its seq claims are lost: no reused seq, cap still counted (stand-in faults: %j)',
      async (faults) => {
      const standin = await ownStandin({ faults });
      const raw = new MongoClient(standin.uri);
      await raw.connect();
      try {
        const logger = recordingLogger();
        const store = storeOn(standin, { logger });
        await store.open();
        const first = seqOf(await store.enqueue(message(), 100));
        seqOf(await store.enqueue(message(), 100));
        await raw.db('parley').collection('queue_seqs').deleteMany({});
        const next = seqOf(await store.enqueue(message(), 3));
        expect(next).toBeGreaterThan(first + 1);
        expect(logger.lines.some((l) => l.level === 'warn' && /seqs were behind/.test(l.msg))).toBe(true);
        expect(await store.enqueue(message(), 3)).toEqual({ status: 'full' });
        expect(await store.queueLength('bob')).toBe(3);
      } finally {
        await raw.close();
      }
    },
    );

    it('opens a database written before slots and seq claims existed, and keeps its queue in order', async () => {
      const standin = await ownStandin();
      const raw = new MongoClient(standin.uri);
      await raw.connect();
      try {
        // The layout of the previous version: a counter per recipient, messages without a slot.
        const db = raw.db('parley');
        await db.collection('queue').createIndexes([
          { key: { fromKey: 1, id: 1 }, name: 'queue_sender_id_unique', unique: true },
          { key: { to: 1, seq: 1 }, name: 'queue_recipient_seq_unique', unique: true },
        ]);
        const old = [1, 2, 3].map((seq) => ({
          to: 'bob', seq, from: 'Alice', fromKey: 'alice', id: `old${seq}`, text: `old ${seq}`, ts: Date.now(),
          expireAt: new Date(Date.now() + 60_000),
        }));
        await db.collection('queue').insertMany(old);
        await db.collection('queue_counters').insertOne({ _id: 'bob' as never, seq: 3, queued: 3, gen: 0, reservedAt: 0 });

        const store = storeOn(standin);
        await store.open();
        const next = seqOf(await store.enqueue(message(), 5));
        expect(next).toBeGreaterThan(3);
        expect((await store.fetchQueue('bob', -1, 10, 0)).map((m) => m.seq)).toEqual([1, 2, 3, next]);
        // The old messages count under the cap.
        seqOf(await store.enqueue(message(), 5));
        expect(await store.enqueue(message(), 5)).toEqual({ status: 'full' });
        expect(await store.enqueue({ ...old[0]!, ts: Date.now() }, 5)).toEqual({ status: 'duplicate', seq: 1 });
      } finally {
        await raw.close();
      }
    });

    it('claims the skeletons of accounts made before registration claimed them, once, the oldest holding each', async () => {
      const standin = await ownStandin();
      const raw = new MongoClient(standin.uri);
      await raw.connect();
      try {
        const made = (key: string) => ({ key, name: key, passwordHash: 'scrypt$x', created: 1 });
        // Inserted in this order: the Cyrillic-о look-alike first, so it keeps the skeleton it shares with bob.
        await raw.db('parley').collection('accounts').insertMany([made('b\u043eb'), made('bob'), made('alice')]);
        const logger = recordingLogger();
        const store = storeOn(standin, { logger });
        await store.open();
        expect(await store.claimSkeleton(skeleton('bob'), 'newcomer')).toBe('b\u043eb');
        expect(await store.claimSkeleton(skeleton('alice'), 'al\u0456ce')).toBe('alice');
        expect(logger.lines.some((l) => l.level === 'info' && /skeletons claimed for older accounts/.test(l.msg))).toBe(true);
        await store.close();
        // Once per database: a later open does not scan the accounts again.
        await raw.db('parley').collection('accounts').insertOne(made('dave'));
        const again = storeOn(standin);
        await again.open();
        expect(await again.claimSkeleton(skeleton('dave'), 'someone')).toBe('someone');
      } finally {
        await raw.close();
      }
    });

    it('keeps the seq claims of a busy recipient few (pruned), whatever the queue length', async () => {
      const standin = await ownStandin();
      const store = storeOn(standin);
      await store.open();
      for (let i = 0; i < 300; i++) seqOf(await store.enqueue(message(), 1000));
      expect(standin.documents('parley', 'queue')).toHaveLength(300);
      expect(standin.documents('parley', 'queue_seqs').length).toBeLessThanOrEqual(64);
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

  describe('enqueueBatch (requeue)', () => {
    it('writes a batch with one queue insert and one block of seq claims', async () => {
      const standin = await ownStandin();
      const store = storeOn(standin);
      await store.open();
      seqOf(await store.enqueue(message(), 1000));
      const count = (name: string) => standin.commandCounts().get(name) ?? 0;
      const [inserts, finds] = [count('insert'), count('find')];
      const batch = Array.from({ length: 1000 }, () => message());
      const results = await store.enqueueBatch('bob', batch);
      expect(results.every((r) => r.status === 'queued')).toBe(true);
      // One insert of the claims, one of the messages; one read of what is queued, one of the highest claim.
      expect(count('insert') - inserts).toBe(2);
      expect(count('find') - finds).toBe(2);
      expect((await store.fetchQueue('bob', -1, 2000, 0)).slice(1).map((m) => m.id)).toEqual(batch.map((m) => m.id));
    });

    it.each([[[] as StandinFault[]], [['bare-duplicate-key'] as StandinFault[]]])(
      'a batch that collides on a seq half-way goes again above what it wrote, keeping its order (stand-in faults: %j)',
      async (faults) => {
        const standin = await ownStandin({ faults });
        const raw = new MongoClient(standin.uri);
        await raw.connect();
        try {
          const logger = recordingLogger();
          const store = storeOn(standin, { logger });
          await store.open();
          const last = seqOf(await store.enqueue(message(), 100));
          // A message stored under seq last + 3 without a claim (as a database from before the claims had):
          // the batch's third message collides with it.
          const stray = { ...message({ fromKey: 'old', from: 'Old' }), seq: last + 3, slot: -(last + 3), expireAt: new Date(Date.now() + 60_000) };
          await raw.db('parley').collection('queue').insertOne({ ...stray });
          const batch = Array.from({ length: 5 }, () => message());
          const results = await store.enqueueBatch('bob', batch);
          const seqs = results.map(seqOf);
          expect(seqs.slice(0, 2)).toEqual([last + 1, last + 2]);
          for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
          expect(seqs[2]).toBeGreaterThan(last + 3);
          expect(logger.lines.some((l) => l.level === 'warn' && /seqs were behind/.test(l.msg))).toBe(true);
          const queue = await store.fetchQueue('bob', last, 100, 0);
          expect(queue.map((m) => m.id)).toEqual([batch[0]!.id, batch[1]!.id, stray.id, ...batch.slice(2).map((m) => m.id)]);
          expect(await store.queueLength('bob')).toBe(7);
        } finally {
          await raw.close();
        }
      },
    );

    it('put-back messages count toward the cap of an enqueue that probed before them', async () => {
      const store = await storeOnTarget();
      await store.open();
      seqOf(await store.enqueue(message(), 3)); // probed: no slots outside [0, 3)
      await store.enqueueBatch('bob', [message(), message()]);
      expect(await store.enqueue(message(), 3)).toEqual({ status: 'full' });
      expect(await store.queueLength('bob')).toBe(3);
    });

    it.each([[[] as StandinFault[]], [['racy-updates', 'bare-duplicate-key'] as StandinFault[]]])(
      'two clients putting back batches to one recipient at once: each batch in order, each message once (stand-in faults: %j)',
      async (faults) => {
        const standin = await ownStandin({ faults });
        const p1 = storeOn(standin);
        const p2 = storeOn(standin);
        await Promise.all([p1.open(), p2.open()]);
        const batches = Array.from({ length: 8 }, (_, b) => Array.from({ length: 60 }, () => message({ to: 'carol', fromKey: `s${b}` })));
        // Half of one batch is put back by both clients at once.
        batches[7]!.splice(20, 0, ...batches[0]!.slice(0, 30));
        const singles = Array.from({ length: 30 }, () => message({ to: 'carol', fromKey: 'single' }));
        const [results] = await Promise.all([
          Promise.all(batches.map((b, i) => (i % 2 === 0 ? p1 : p2).enqueueBatch('carol', b))),
          Promise.all(singles.map((m, i) => (i % 2 === 0 ? p2 : p1).enqueue(m, 1_000_000).then(seqOf))),
        ]);
        const queue = await p1.fetchQueue('carol', -1, 10_000, 0);
        const seqById = new Map(queue.map((m) => [m.id, m.seq]));
        expect(seqById.size).toBe(queue.length);
        expect(queue).toHaveLength(8 * 60 + 30);
        for (const [b, batch] of batches.entries()) {
          const own: number[] = [];
          for (const [i, r] of results[b]!.entries()) {
            expect((r as { seq: number }).seq).toBe(seqById.get(batch[i]!.id));
            if (r.status === 'queued') own.push(r.seq);
          }
          for (let i = 1; i < own.length; i++) expect(own[i]).toBeGreaterThan(own[i - 1]!);
        }
        expect(results.flat().filter((r) => r.status === 'queued')).toHaveLength(8 * 60);
      },
    );
  });

  describe('two processes on one database', () => {
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

