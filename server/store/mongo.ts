/**
 * The MongoDB adapter of the Store port, through the official `mongodb` driver.
 *
 * Collections (names fixed, database from the URI or `dbName`):
 * - `accounts`        { key, name, passwordHash, created }                 unique (key)
 * - `sessions`        { tokenHash, key, name?, created, expires, replacedAt? }    unique (tokenHash), (key), (expires)
 * - `queue`           { to, seq, from, fromKey, id, text, ts, expireAt }   unique (fromKey, id), unique (to, seq),
 *                                                                          (ts), TTL (expireAt)
 * - `queue_counters`  { _id: to, seq, queued, gen, reservedAt }            one per recipient
 *
 * Order and cap without transactions (standalone servers and FerretDB have none), correct when several Parley
 * processes share the database:
 * - `seq` comes from `findOneAndUpdate({ _id: to, queued: { $lt: cap } }, { $inc: { seq: 1, queued: 1 } })` on
 *   the recipient's counter. One document, one atomic update: it allocates a seq that no other process can get
 *   and takes a slot under the cap in the same step, so concurrent enqueues (from any process) never exceed the
 *   cap and never share a seq. The message is inserted with that seq afterwards.
 * - `queued` counts slots, not documents. Every path that frees slots (ack, retention purge, a duplicate
 *   found after reserving) deletes first and then decrements by what it actually deleted, so a crash or an
 *   outage in between leaves the counter too HIGH, never too low: the cap can be hit early, never exceeded.
 *   Documents removed by the TTL monitor also leave it too high.
 * - A counter that says "full" is checked against the documents before the adapter answers `full`: when its
 *   last reservation is older than `reservationGraceMs` (so no reservation can still be on its way to an
 *   insert), it is recounted and corrected with a compare-and-set that also bumps `gen`. Decrements carry the
 *   `gen` they read before deleting and are dropped when a correction happened meanwhile, so a correction and a
 *   decrement never both remove the same slot.
 *
 * Known window: seq allocation and the insert are two round trips, so a reader can briefly see seq n+1 before
 * a concurrently allocated seq n is inserted. Nothing is lost (it is read on the next fetch from an earlier
 * `afterSeq`), and once both inserts have returned the queue is in seq order.
 *
 * Errors: driver selection, network, pool and timeout errors (and server "shutting down / not primary" codes)
 * become `StoreUnavailableError`. The driver's own monitoring reconnects when the server returns; nothing
 * here needs reopening.
 */
import {
  MongoClient,
  MongoClientClosedError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  ObjectId,
  type Collection,
  type Db,
  type MongoClientOptions,
} from 'mongodb';
import {
  StoreUnavailableError,
  type Account,
  type EnqueueResult,
  type NewQueuedMessage,
  type QueuedMessage,
  type SessionRecord,
  type Store,
} from '../core/store.ts';
import type { Logger } from '../core/logger.ts';

/** What the store logs through: the structured core logger, or anything with the same three methods. */
export type MongoStoreLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** Options for {@link MongoStore}. */
export interface MongoStoreOptions {
  /** `mongodb://` or `mongodb+srv://` connection string. Never logged with its credentials. */
  uri: string;
  /** Database name; default: the one in the URI path, else `parley`. */
  dbName?: string;
  logger?: MongoStoreLogger;
  /**
   * How long `open()` waits for a usable server, and how long any operation waits for one during an outage
   * before rejecting with `StoreUnavailableError` (driver `serverSelectionTimeoutMS` and `connectTimeoutMS`).
   * Default 5000.
   */
  connectTimeoutMs?: number;
  /** Socket inactivity limit for a command in flight (driver `socketTimeoutMS`). Default 30000. */
  socketTimeoutMs?: number;
  /** Retention of queued messages: sets each message's TTL date, and the sweep's horizon. Default 30 days. */
  retentionMs?: number;
  /** Period of the expiry sweep used when the server refuses TTL indexes. Default 60000. */
  sweepIntervalMs?: number;
  /**
   * A full-looking queue counter is recounted only when its last reservation is older than this, so an
   * enqueue that reserved a slot but has not inserted yet is never miscounted. Must exceed the longest time
   * an insert can take (socket timeout) plus clock skew between Parley hosts. Default 60000.
   */
  reservationGraceMs?: number;
  /** Driver server-monitoring period while the server is up (driver `heartbeatFrequencyMS`). Default 10000. */
  heartbeatFrequencyMs?: number;
  /** Extra driver options (pool sizes, TLS files, appName...); the options above take precedence. */
  clientOptions?: MongoClientOptions;
}

interface AccountDoc {
  key: string;
  name: string;
  passwordHash: string;
  created: number;
}

interface SessionDoc {
  tokenHash: string;
  key: string;
  name?: string;
  created: number;
  expires: number;
  replacedAt?: number | null;
  /** Marker of the replaceSessions call that replaced it, so each concurrent call learns what it marked. */
  replacedBy?: ObjectId;
}

interface QueueDoc {
  to: string;
  seq: number;
  from: string;
  fromKey: string;
  id: string;
  text: string;
  ts: number;
  /** TTL field: a Date (TTL indexes ignore numbers), per document so retention can change without collMod. */
  expireAt: Date;
}

interface CounterDoc {
  _id: string;
  /** Last seq handed out for this recipient. */
  seq: number;
  /** Slots taken under the cap (an upper bound of the messages queued). */
  queued: number;
  /** Bumped by every correction of `queued`. */
  gen: number;
  /** When the last slot was reserved (ms, the reserving host's clock). */
  reservedAt: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const PURGE_BATCH = 1000;
const MAX_RESERVE_ATTEMPTS = 16;
const MAX_FETCH_BATCH = 10_000;

/** Server error codes that mean "this server cannot serve right now", not "your request is wrong". */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

const noopLogger: MongoStoreLogger = { info() {}, warn() {}, error() {} };

/** The Store on MongoDB (or a wire-compatible server such as FerretDB). */
export class MongoStore implements Store {
  readonly kind = 'mongodb';

  private readonly uri: string;
  private readonly dbName: string;
  private readonly log: MongoStoreLogger;
  private readonly connectTimeoutMs: number;
  private readonly socketTimeoutMs: number;
  private readonly retentionMs: number;
  private readonly sweepIntervalMs: number;
  private readonly reservationGraceMs: number;
  private readonly heartbeatFrequencyMs: number | undefined;
  private readonly clientOptions: MongoClientOptions;

  private client: MongoClient | null = null;
  private db: Db | null = null;
  private opening: Promise<void> | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private expiry: 'ttl-index' | 'sweep' | 'none' = 'none';

  constructor(options: MongoStoreOptions) {
    this.uri = options.uri;
    this.dbName = options.dbName ?? databaseFromUri(options.uri) ?? 'parley';
    this.log = options.logger ?? noopLogger;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.socketTimeoutMs = options.socketTimeoutMs ?? 30_000;
    this.retentionMs = options.retentionMs ?? 30 * DAY_MS;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.reservationGraceMs = options.reservationGraceMs ?? 60_000;
    this.heartbeatFrequencyMs = options.heartbeatFrequencyMs;
    this.clientOptions = options.clientOptions ?? {};
  }

  /** How queued messages expire: by the server's TTL index, or by this process's periodic sweep. */
  get expiryMode(): 'ttl-index' | 'sweep' | 'none' {
    return this.expiry;
  }

  /** The database in use (for operators' logs and tests). */
  get databaseName(): string {
    return this.dbName;
  }

  async open(): Promise<void> {
    if (this.client !== null) return;
    // Concurrent callers share one connection attempt instead of each creating (and leaking) a client.
    this.opening ??= this.connect().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async connect(): Promise<void> {
    const where = `${hostsOf(this.uri)}/${this.dbName}`;
    let client: MongoClient;
    try {
      client = new MongoClient(this.uri, {
        ...this.clientOptions,
        serverSelectionTimeoutMS: this.connectTimeoutMs,
        connectTimeoutMS: this.connectTimeoutMs,
        socketTimeoutMS: this.socketTimeoutMs,
        ...(this.heartbeatFrequencyMs !== undefined ? { heartbeatFrequencyMS: this.heartbeatFrequencyMs } : {}),
        // Optional fields (replacedAt) must stay absent rather than come back as null.
        ignoreUndefined: true,
      });
    } catch (error) {
      throw new Error(`MongoDB connection string is not valid (${redactUri(this.uri)}): ${messageOf(error)}`, {
        cause: error,
      });
    }
    try {
      await client.connect();
    } catch (error) {
      await client.close().catch(() => undefined);
      if (isUnavailable(error)) {
        throw new StoreUnavailableError(
          `Cannot reach MongoDB at ${where} within ${this.connectTimeoutMs} ms: ${messageOf(error)}`,
          { cause: error },
        );
      }
      // Reached but refused (authentication, TLS, SRV lookup, incompatible server): retrying will not help.
      throw new Error(`MongoDB at ${where} refused the connection: ${messageOf(error)}`, { cause: error });
    }
    const db = client.db(this.dbName);
    try {
      await this.createIndexes(db);
    } catch (error) {
      await client.close().catch(() => undefined);
      const message = `MongoDB at ${where}: could not create indexes: ${messageOf(error)}`;
      throw isUnavailable(error) ? new StoreUnavailableError(message, { cause: error }) : new Error(message, { cause: error });
    }
    this.client = client;
    this.db = db;
    if (this.expiry === 'sweep') this.startSweep();
    this.log.info({ store: this.kind, where, expiry: this.expiry }, 'store opened');
  }

  async close(): Promise<void> {
    await this.opening?.catch(() => undefined);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const client = this.client;
    this.client = null;
    this.db = null;
    if (client !== null) await client.close();
  }

  /**
   * Liveness probe, also the store's recovery path. After an outage the driver normally reconnects by itself;
   * but under heavy load we have seen its topology stay wedged (every selection timing out) while a fresh
   * client connected at once. So when pings have failed for `rebuildAfterMs`, the client is replaced.
   */
  async ping(): Promise<boolean> {
    const db = this.db;
    if (db === null) return false;
    try {
      await db.command({ ping: 1 });
      this.failingSince = null;
      return true;
    } catch (error) {
      if (!isUnavailable(error)) this.log.warn({ err: messageOf(error) }, 'store ping failed');
      const now = Date.now();
      this.failingSince ??= now;
      if (now - this.failingSince >= MongoStore.rebuildAfterMs && now - this.lastRebuild >= MongoStore.rebuildAfterMs) {
        this.lastRebuild = now;
        return this.rebuildClient();
      }
      return false;
    }
  }

  /** How long pings must fail before the driver client is replaced. */
  static rebuildAfterMs = 10_000;
  private failingSince: number | null = null;
  private lastRebuild = 0;

  /** Swaps in a freshly connected client; the old one is closed in the background. True when it connected. */
  private async rebuildClient(): Promise<boolean> {
    const old = this.client;
    if (old === null || this.opening !== null) return false;
    this.client = null;
    this.db = null;
    try {
      await this.open();
    } catch (error) {
      // Keep using the old client: its own reconnection may still come through.
      this.client ??= old;
      this.db ??= old.db(this.dbName);
      this.log.warn({ err: messageOf(error) }, 'store client rebuild failed; will retry');
      return false;
    }
    void old.close().catch(() => undefined);
    this.failingSince = null;
    this.log.info({ store: this.kind }, 'store client rebuilt after a long outage');
    return true;
  }

  // --- accounts ---------------------------------------------------------------------------------------

  async createAccount(account: Account): Promise<boolean> {
    return this.run('createAccount', async (db) => {
      try {
        // A fresh object: the driver writes `_id` into what it is given.
        await accounts(db).insertOne({
          key: account.key,
          name: account.name,
          passwordHash: account.passwordHash,
          created: account.created,
        });
        return true;
      } catch (error) {
        if (isDuplicateKey(error)) return false;
        throw error;
      }
    });
  }

  async getAccount(key: string): Promise<Account | null> {
    return this.run('getAccount', async (db) => {
      const doc = await accounts(db).findOne({ key });
      return doc === null ? null : { key: doc.key, name: doc.name, passwordHash: doc.passwordHash, created: doc.created };
    });
  }

  // --- sessions ---------------------------------------------------------------------------------------

  async putSession(session: SessionRecord): Promise<void> {
    await this.run('putSession', async (db) => {
      const doc: SessionDoc = {
        tokenHash: session.tokenHash,
        key: session.key,
        ...(session.name !== undefined ? { name: session.name } : {}),
        created: session.created,
        expires: session.expires,
        ...(session.replacedAt !== undefined ? { replacedAt: session.replacedAt } : {}),
      };
      await sessions(db).replaceOne({ tokenHash: session.tokenHash }, doc, { upsert: true });
    });
  }

  async getSession(tokenHash: string): Promise<SessionRecord | null> {
    return this.run('getSession', async (db) => {
      const doc = await sessions(db).findOne({ tokenHash });
      return doc === null ? null : toSessionRecord(doc);
    });
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await this.run('deleteSession', async (db) => {
      await sessions(db).deleteOne({ tokenHash });
    });
  }

  async replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]> {
    return this.run('replaceSessions', async (db) => {
      // Concurrent sign-ins each mark with their own id; `replacedAt: null` makes every session be marked by
      // exactly one of them, and the marker tells each which ones it was.
      const marker = new ObjectId();
      await sessions(db).updateMany(
        { key, tokenHash: { $ne: keepTokenHash }, replacedAt: null },
        { $set: { replacedAt: at, replacedBy: marker } },
      );
      const marked = await sessions(db)
        .find({ key, replacedBy: marker }, { projection: { _id: 0, tokenHash: 1 } })
        .toArray();
      return marked.map((doc) => doc.tokenHash);
    });
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    return this.run('purgeExpiredSessions', async (db) => {
      const result = await sessions(db).deleteMany({ expires: { $lt: now } });
      return result.deletedCount;
    });
  }

  // --- queue --------------------------------------------------------------------------------------------

  async enqueue(message: NewQueuedMessage, cap: number): Promise<EnqueueResult> {
    return this.run('enqueue', async (db) => {
      for (let attempt = 0; attempt < MAX_RESERVE_ATTEMPTS; attempt++) {
        const existing = await queue(db).findOne({ fromKey: message.fromKey, id: message.id }, { projection: { seq: 1 } });
        if (existing !== null) return { status: 'duplicate', seq: existing.seq };
        if (cap <= 0) return { status: 'full' };

        const slot = await this.reserve(db, message.to, cap);
        if (slot === null) return { status: 'full' };
        try {
          await queue(db).insertOne({
            to: message.to,
            seq: slot.seq,
            from: message.from,
            fromKey: message.fromKey,
            id: message.id,
            text: message.text,
            ts: message.ts,
            expireAt: new Date(message.ts + this.retentionMs),
          });
          return { status: 'queued', seq: slot.seq };
        } catch (error) {
          // Any other failure keeps the slot: the counter stays high, which is the safe direction.
          if (!isDuplicateKey(error)) throw error;
          await this.releaseSlots(db, message.to, 1, slot.gen);
          if (duplicateOn(error, 'seq')) await this.repairSeq(db, message.to);
          // (fromKey, id) raced in from another enqueue: loop to report it as a duplicate with its seq.
        }
      }
      throw new Error(`enqueue for ${message.to}: gave up after ${MAX_RESERVE_ATTEMPTS} contended attempts`);
    });
  }

  async fetchQueue(to: string, afterSeq: number, limit: number, notBefore: number): Promise<QueuedMessage[]> {
    if (limit <= 0) return [];
    return this.run('fetchQueue', async (db) => {
      const batch = Math.min(limit, MAX_FETCH_BATCH);
      // batchSize = limit so a sign-in's batch is one round trip rather than 101 documents plus getMores.
      const docs = await queue(db)
        .find({ to, seq: { $gt: afterSeq }, ts: { $gte: notBefore } })
        .sort({ seq: 1 })
        .limit(limit)
        .batchSize(batch)
        .toArray();
      return docs.map(toQueuedMessage);
    });
  }

  async ackQueue(to: string, seqs: number[]): Promise<number> {
    if (seqs.length === 0) return 0;
    return this.run('ackQueue', async (db) => {
      const counter = await counters(db).findOne({ _id: to }, { projection: { gen: 1 } });
      const result = await queue(db).deleteMany({ to, seq: { $in: seqs } });
      if (counter !== null) await this.releaseSlots(db, to, result.deletedCount, counter.gen);
      return result.deletedCount;
    });
  }

  async queueLength(to: string): Promise<number> {
    return this.run('queueLength', (db) => queue(db).countDocuments({ to }));
  }

  async findQueued(fromKey: string, id: string): Promise<QueuedMessage | null> {
    return this.run('findQueued', async (db) => {
      const doc = await queue(db).findOne({ fromKey, id });
      return doc === null ? null : toQueuedMessage(doc);
    });
  }

  async purgeExpiredMessages(before: number): Promise<number> {
    return this.run('purgeExpiredMessages', async (db) => {
      let total = 0;
      for (;;) {
        const expired = await queue(db)
          .find({ ts: { $lt: before } }, { projection: { _id: 1, to: 1 } })
          .limit(PURGE_BATCH)
          .batchSize(PURGE_BATCH)
          .toArray();
        const byRecipient = new Map<string, ObjectId[]>();
        for (const doc of expired) {
          const ids = byRecipient.get(doc.to) ?? [];
          ids.push(doc._id);
          byRecipient.set(doc.to, ids);
        }
        for (const [to, ids] of byRecipient) {
          const counter = await counters(db).findOne({ _id: to }, { projection: { gen: 1 } });
          const result = await queue(db).deleteMany({ _id: { $in: ids }, ts: { $lt: before } });
          if (counter !== null) await this.releaseSlots(db, to, result.deletedCount, counter.gen);
          total += result.deletedCount;
        }
        if (expired.length < PURGE_BATCH) return total;
      }
    });
  }

  // --- internals ----------------------------------------------------------------------------------------

  /** Runs one Store operation, turning "cannot reach the server" into StoreUnavailableError. */
  private async run<T>(operation: string, body: (db: Db) => Promise<T>): Promise<T> {
    const db = this.db;
    if (db === null) throw new StoreUnavailableError(`MongoDB store is not open (${operation})`);
    try {
      return await body(db);
    } catch (error) {
      if (error instanceof StoreUnavailableError || !isUnavailable(error)) throw error;
      throw new StoreUnavailableError(`MongoDB unavailable during ${operation}: ${messageOf(error)}`, { cause: error });
    }
  }

  /** Takes a slot under the cap and a fresh seq for `to`, or returns null when the queue is really full. */
  private async reserve(db: Db, to: string, cap: number): Promise<{ seq: number; gen: number } | null> {
    for (let attempt = 0; attempt < MAX_RESERVE_ATTEMPTS; attempt++) {
      const now = Date.now();
      const taken = await counters(db).findOneAndUpdate(
        { _id: to, queued: { $lt: cap } },
        { $inc: { seq: 1, queued: 1 }, $set: { reservedAt: now } },
        { returnDocument: 'after' },
      );
      if (taken !== null) return { seq: taken.seq, gen: taken.gen };

      const counter = await counters(db).findOne({ _id: to });
      if (counter === null) {
        await this.createCounter(db, to);
        continue;
      }
      if (counter.queued < cap) continue; // slots were freed between the two reads
      if (!(await this.correctCounter(db, counter, now))) return null;
    }
    throw new Error(`queue counter for ${to}: gave up after ${MAX_RESERVE_ATTEMPTS} contended attempts`);
  }

  /**
   * First message for a recipient (or its counter was lost): create the counter from what is stored, so a
   * lost counter neither reuses seqs nor forgets the messages under the cap. Creating it apart from the
   * reservation keeps the hot path free of upsert-versus-filter duplicate-key errors; two processes creating
   * it at once is harmless, the first one wins.
   */
  private async createCounter(db: Db, to: string): Promise<void> {
    const last = await queue(db).find({ to }, { projection: { seq: 1 } }).sort({ seq: -1 }).limit(1).next();
    const queued = last === null ? 0 : await queue(db).countDocuments({ to });
    try {
      await counters(db).updateOne(
        { _id: to },
        { $setOnInsert: { seq: last?.seq ?? 0, queued, gen: 0, reservedAt: 0 } },
        { upsert: true },
      );
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    if (last !== null) this.log.warn({ recipient: to, seq: last.seq, queued }, 'queue counter was missing; rebuilt');
  }

  /**
   * The counter says full; recount when that may be stale. Returns true when the caller should try to
   * reserve again (the counter was corrected or moved), false when the queue really is full.
   */
  private async correctCounter(db: Db, counter: CounterDoc, now: number): Promise<boolean> {
    if (now - counter.reservedAt < this.reservationGraceMs) return false;
    const actual = await queue(db).countDocuments({ to: counter._id });
    if (actual >= counter.queued) return false;
    const result = await counters(db).updateOne(
      { _id: counter._id, seq: counter.seq, queued: counter.queued, gen: counter.gen },
      { $set: { queued: actual }, $inc: { gen: 1 } },
    );
    if (result.modifiedCount === 1) {
      this.log.warn(
        { recipient: counter._id, counted: counter.queued, actual },
        'queue counter was higher than the queue (crash, outage or TTL expiry); corrected',
      );
    }
    return true;
  }

  /** Gives back `count` slots, unless a correction (gen bump) has already accounted for them. */
  private async releaseSlots(db: Db, to: string, count: number, gen: number): Promise<void> {
    if (count <= 0) return;
    await counters(db).updateOne({ _id: to, gen, queued: { $gte: count } }, { $inc: { queued: -count } });
  }

  /** A seq collided with a stored message (counter lost or restored from an old backup): move it past them. */
  private async repairSeq(db: Db, to: string): Promise<void> {
    const last = await queue(db).find({ to }, { projection: { seq: 1 } }).sort({ seq: -1 }).limit(1).next();
    if (last === null) return;
    await counters(db).updateOne({ _id: to }, { $max: { seq: last.seq } });
    this.log.warn({ recipient: to, seq: last.seq }, 'queue counter was behind the stored messages; advanced');
  }

  private async createIndexes(db: Db): Promise<void> {
    await accounts(db).createIndexes([{ key: { key: 1 }, name: 'account_key_unique', unique: true }]);
    await sessions(db).createIndexes([
      { key: { tokenHash: 1 }, name: 'session_token_unique', unique: true },
      { key: { key: 1 }, name: 'session_key' },
      { key: { expires: 1 }, name: 'session_expires' },
    ]);
    await queue(db).createIndexes([
      { key: { fromKey: 1, id: 1 }, name: 'queue_sender_id_unique', unique: true },
      { key: { to: 1, seq: 1 }, name: 'queue_recipient_seq_unique', unique: true },
      { key: { ts: 1 }, name: 'queue_ts' },
    ]);
    try {
      await queue(db).createIndexes([{ key: { expireAt: 1 }, name: 'queue_ttl', expireAfterSeconds: 0 }]);
      this.expiry = 'ttl-index';
    } catch (error) {
      if (isUnavailable(error)) throw error;
      // Some wire-compatible servers (FerretDB 1.x) refuse TTL indexes: expire by sweeping instead.
      this.expiry = 'sweep';
      this.log.warn(
        { err: messageOf(error), sweepIntervalMs: this.sweepIntervalMs },
        'server refused the TTL index on queued messages; expiring them with a periodic sweep instead',
      );
    }
  }

  private startSweep(): void {
    this.sweepTimer = setInterval(() => void this.sweep(), this.sweepIntervalMs);
    // The sweep must not keep a shutting-down process alive.
    this.sweepTimer.unref();
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const removed = await this.purgeExpiredMessages(Date.now() - this.retentionMs);
      if (removed > 0) this.log.info({ removed }, 'expired queued messages swept');
    } catch (error) {
      this.log.warn({ err: messageOf(error) }, 'expiry sweep failed; will retry');
    } finally {
      this.sweeping = false;
    }
  }
}

function accounts(db: Db): Collection<AccountDoc> {
  return db.collection<AccountDoc>('accounts');
}

function sessions(db: Db): Collection<SessionDoc> {
  return db.collection<SessionDoc>('sessions');
}

function queue(db: Db): Collection<QueueDoc> {
  return db.collection<QueueDoc>('queue');
}

function counters(db: Db): Collection<CounterDoc> {
  return db.collection<CounterDoc>('queue_counters');
}

function toSessionRecord(doc: SessionDoc): SessionRecord {
  return {
    tokenHash: doc.tokenHash,
    key: doc.key,
    ...(typeof doc.name === 'string' ? { name: doc.name } : {}),
    created: doc.created,
    expires: doc.expires,
    ...(typeof doc.replacedAt === 'number' ? { replacedAt: doc.replacedAt } : {}),
  };
}

function toQueuedMessage(doc: QueueDoc): QueuedMessage {
  return {
    to: doc.to,
    from: doc.from,
    fromKey: doc.fromKey,
    id: doc.id,
    text: doc.text,
    ts: doc.ts,
    seq: doc.seq,
  };
}

/** True for errors that mean the server cannot be reached or cannot serve now (as opposed to a bad request). */
export function isUnavailable(error: unknown): boolean {
  if (
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNetworkError ||
    error instanceof MongoOperationTimeoutError ||
    error instanceof MongoNotConnectedError ||
    error instanceof MongoTopologyClosedError ||
    error instanceof MongoClientClosedError
  ) {
    return true;
  }
  return error instanceof MongoServerError && typeof error.code === 'number' && UNAVAILABLE_CODES.has(error.code);
}

function isDuplicateKey(error: unknown): error is MongoServerError {
  return error instanceof MongoServerError && error.code === 11000;
}

function duplicateOn(error: MongoServerError, field: string): boolean {
  const pattern: unknown = error['keyPattern'];
  return typeof pattern === 'object' && pattern !== null && field in pattern;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The URI without credentials, for messages and logs. */
function redactUri(uri: string): string {
  return uri.replace(/^([a-z+]+:\/\/)[^@/]*@/i, '$1***@');
}

/** The host list of a connection string, without scheme, credentials, database or options. */
function hostsOf(uri: string): string {
  const match = /^[a-z+]+:\/\/(?:[^@/]*@)?([^/?]*)/i.exec(uri);
  return match?.[1] ?? '(unparseable URI)';
}

/** The database named in the URI path (`mongodb://host/db?opts`), if any. */
function databaseFromUri(uri: string): string | undefined {
  const match = /^[a-z+]+:\/\/[^/]*\/([^?]+)/i.exec(uri);
  const name = match?.[1];
  return name === undefined ? undefined : decodeURIComponent(name);
}
