/**
 * The MongoDB adapter of the Store port, through the official `mongodb` driver.
 *
 * Collections (names fixed, database from the URI or `dbName`):
 * - `accounts`              { key, name, passwordHash, created }              unique (key)
 * - `sessions`              { tokenHash, key, name?, created, expires, replacedAt? }
 *                                                                     unique (tokenHash), (key), (expires)
 * - `session_replacements`  { _id: tokenHash, expires }               one per session a sign-in replaced
 * - `queue`                 { to, seq, slot, from, fromKey, id, text, ts, expireAt }
 *                           unique (fromKey, id), unique (to, seq), unique (to, slot), (ts), TTL (expireAt)
 * - `queue_seqs`            { to, seq, by? }                          unique (to, seq): seqs handed out
 * - `skeletons`             { _id: skeleton, key }                    look-alike names: who claimed each
 * - `receipts`              { _id: fromKey NUL id, fromKey, id, to, at }  delivered receipts for absent senders
 * - `meta`                  { _id: step, at }                         one-time layout steps done
 * - `rooms`, `room_members`, `room_cursors`, `room_invites`, `room_log`: rooms (see mongo-rooms.ts)
 *
 * Nothing here relies on a read-modify-write being atomic (FerretDB 1.24 applies `$inc` and conditional
 * updates as read-then-write, losing updates under concurrency), nor on what a duplicate-key error carries
 * beyond code 11000. Every rule that concurrent writers (in this process or others) could break rests on a
 * unique index, which every server checks at write time:
 * - Order: a seq is taken by inserting `{ to, seq: highest + 1 }` into `queue_seqs`; a collision (someone took
 *   it first) is a retry with a fresh read. An enqueue that resolved before another began has the lower seq,
 *   also across processes, because the later one reads the earlier one's claim. Claims below the newest are
 *   pruned now and then, so that read stays one index probe (mongo-seqs.ts). A batch (`enqueueBatch`) claims
 *   a block of seqs in one ordered insert and writes its messages in one ordered insert; after a collision the
 *   rest of the batch goes again under seqs claimed above what it already wrote, so a batch keeps its order.
 * - Cap: each queued message holds a slot in [0, cap), unique per recipient, so the index itself never lets a
 *   queue hold more than `cap` messages (for the cap given at the time). The slot tried first is seq mod cap,
 *   free in the usual first-in first-out life of a queue; on a collision the queue is counted (full when it
 *   holds `cap`) and a free slot is looked up.
 * - Uniqueness of (sender, id): the unique index; the enqueue reads it first to answer resends with their seq.
 * - A message insert that collides is diagnosed by reads, never by the error: (fromKey, id) present means
 *   duplicate; its seq present means the claims were behind the queue (a database from before `queue_seqs`, or
 *   the collection dropped): they are moved past it; otherwise its slot was taken.
 * - Sessions: a session a sign-in replaces is claimed by inserting its token hash into
 *   `session_replacements`, so of several racing sign-ins exactly one reports it.
 * Transactions are not used: the servers this has to run on (standalone MongoDB, FerretDB 1.x) have none, and
 * one path that is right everywhere is one path to test.
 *
 * Known window: seq allocation and the insert are two round trips, so a reader can briefly see seq n+1 before
 * a concurrently allocated seq n is inserted. Nothing is lost (it is read on the next fetch from an earlier
 * `afterSeq`), and once both inserts have returned the queue is in seq order.
 *
 * Errors: driver selection, network, pool and timeout errors (and server "shutting down / not primary" codes)
 * become `StoreUnavailableError`. The driver's own monitoring reconnects when the server returns; nothing
 * here needs reopening.
 */
import { MongoClient, type Db, type MongoClientOptions } from 'mongodb';
import {
  StoreUnavailableError,
  type Account,
  type EnqueueResult,
  type NewQueuedMessage,
  type QueuedMessage,
  type SessionRecord,
  type PendingReceipt,
  type Store,
  isNewerSession,
} from '../core/store.ts';
import type { Logger } from '../core/logger.ts';
import { databaseFromUri, hostsOf, isDuplicateKey, isUnavailable, messageOf, redactUri } from './mongo-errors.ts';
import {
  accounts,
  createLayout,
  queue,
  replacements,
  sessions,
  skeletons,
  toQueuedMessage,
  toSessionRecord,
  type QueueDoc,
  type SessionDoc,
} from './mongo-layout.ts';
import { MAX_ATTEMPTS, SeqClaims } from './mongo-seqs.ts';
import { createRoomLayout, MongoRooms } from './mongo-rooms.ts';

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
  /** Driver server-monitoring period while the server is up (driver `heartbeatFrequencyMS`). Default 10000. */
  heartbeatFrequencyMs?: number;
  /** Extra driver options (pool sizes, TLS files, appName...); the options above take precedence. */
  clientOptions?: MongoClientOptions;
}


const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_FETCH_BATCH = 10_000;
/** Slots of messages put back by `enqueueBatch` are this plus their seq: above any cap (see enqueueBatch). */
const REQUEUE_SLOT_BASE = 2 ** 50;
const PROBED_LIMIT = 100_000;

const noopLogger: MongoStoreLogger = { info() {}, warn() {}, error() {} };

/** The Store on MongoDB (or a wire-compatible server such as FerretDB). */
export class MongoStore implements Store {
  readonly kind = 'mongodb';
  /** Rooms, members and room logs (see mongo-rooms.ts). */
  readonly rooms: MongoRooms;

  private readonly uri: string;
  private readonly dbName: string;
  private readonly log: MongoStoreLogger;
  private readonly connectTimeoutMs: number;
  private readonly socketTimeoutMs: number;
  private readonly retentionMs: number;
  private readonly sweepIntervalMs: number;
  private readonly heartbeatFrequencyMs: number | undefined;
  private readonly clientOptions: MongoClientOptions;

  private client: MongoClient | null = null;
  private db: Db | null = null;
  private opening: Promise<void> | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private expiry: 'ttl-index' | 'sweep' | 'none' = 'none';
  private readonly seqClaims: SeqClaims;
  /**
   * Recipients known to hold no slot outside [0, cap) for the cap recorded here, so the probe for such slots
   * (a query whose cost grows with the queue on servers that scan) runs once per recipient and cap, not per
   * enqueue. Only a process with a larger cap, or `enqueueBatch`, writes such slots: every Parley process
   * sharing a database is meant to run with one cap, and this process's own batches clear the recipient's
   * entry. A batch written by another process is not seen until then: meanwhile this one bounds that queue by
   * the slot index alone (the cap plus what was put back). Bounded: cleared when it grows past PROBED_LIMIT.
   */
  private readonly slotsInRange = new Map<string, number>();
  /**
   * Bumped as each `enqueueBatch` starts and ends (its slots lie outside every cap's range): a probe that ran
   * across a batch does not cache its answer.
   */
  private batchWrites = 0;

  constructor(options: MongoStoreOptions) {
    this.uri = options.uri;
    this.dbName = options.dbName ?? databaseFromUri(options.uri) ?? 'parley';
    this.log = options.logger ?? noopLogger;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.socketTimeoutMs = options.socketTimeoutMs ?? 30_000;
    this.retentionMs = options.retentionMs ?? 30 * DAY_MS;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.heartbeatFrequencyMs = options.heartbeatFrequencyMs;
    this.clientOptions = options.clientOptions ?? {};
    this.seqClaims = new SeqClaims(this.log);
    this.rooms = new MongoRooms({ run: (op, body) => this.run(op, body), seqs: this.seqClaims });
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

  /** Self-contained (see the Store port): its own collection, `_id` = fromKey + NUL + id keeps each once. */
  async putReceipts(fromKey: string, receipts: PendingReceipt[]): Promise<void> {
    if (receipts.length === 0) return;
    await this.run('putReceipts', async (db) => {
      await db.collection<ReceiptDoc>('receipts').bulkWrite(receipts.map((r) => ({
        replaceOne: { filter: { _id: `${fromKey}\u0000${r.id}` }, replacement: { fromKey, id: r.id, to: r.to, at: r.at }, upsert: true },
      })), { ordered: false });
    });
  }

  async takeReceipts(fromKey: string, limit: number): Promise<PendingReceipt[]> {
    return this.run('takeReceipts', async (db) => {
      const coll = db.collection<ReceiptDoc>('receipts');
      const docs = await coll.find({ fromKey }).sort({ at: 1 }).limit(limit).toArray();
      if (docs.length > 0) await coll.deleteMany({ _id: { $in: docs.map((d) => d._id) } });
      return docs.map((d) => ({ id: d.id, to: d.to, at: d.at }));
    });
  }

  /** Keyed by the skeleton through `_id`: the unique `_id` decides between racing claims. */
  async claimSkeleton(skeleton: string, key: string): Promise<string> {
    return this.run('claimSkeleton', async (db) => {
      try {
        await skeletons(db).insertOne({ _id: skeleton, key });
        return key;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        const doc = await skeletons(db).findOne({ _id: skeleton });
        return doc?.key ?? key;
      }
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
      for (let attempt = 0; ; attempt++) {
        try {
          await sessions(db).replaceOne({ tokenHash: session.tokenHash }, doc, { upsert: true });
          return;
        } catch (error) {
          // Two upserts of one token hash can both find nothing and both insert; the second then replaces.
          if (!isDuplicateKey(error) || attempt >= 2) throw error;
        }
      }
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
      await replacements(db).deleteOne({ _id: tokenHash });
    });
  }

  async replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]> {
    return this.run('replaceSessions', async (db) => {
      const found = await sessions(db)
        .find({ key, replacedAt: null }, { projection: { _id: 0, tokenHash: 1, expires: 1, created: 1 } })
        .toArray();
      // No transaction: a sign-in racing on another process may see this one's session live as this one sees
      // its. Each marks only sessions older than its own, and its own when a newer one is live, so the newest
      // is marked by nobody and every other by someone.
      const keep = found.find((doc) => doc.tokenHash === keepTokenHash);
      const others = found.filter((doc) => doc !== keep);
      const live = keep && others.some((doc) => isNewerSession(doc, keep))
        ? [...others.filter((doc) => !isNewerSession(doc, keep)), keep]
        : others;
      if (live.length === 0) return [];
      // Marked before claimed: a crash in between leaves a session replaced but unreported, never live but
      // claimed (which no later sign-in could replace).
      await sessions(db).updateMany(
        { tokenHash: { $in: live.map((doc) => doc.tokenHash) }, replacedAt: null },
        { $set: { replacedAt: at } },
      );
      const mine: string[] = [];
      for (const doc of live) {
        try {
          await replacements(db).insertOne({ _id: doc.tokenHash, expires: doc.expires });
          mine.push(doc.tokenHash);
        } catch (error) {
          // Another sign-in claimed it first and reports it.
          if (!isDuplicateKey(error)) throw error;
        }
      }
      return mine;
    });
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    return this.run('purgeExpiredSessions', async (db) => {
      const result = await sessions(db).deleteMany({ expires: { $lt: now } });
      await replacements(db).deleteMany({ expires: { $lt: now } });
      return result.deletedCount;
    });
  }

  // --- queue --------------------------------------------------------------------------------------------

  async enqueue(message: NewQueuedMessage, cap: number): Promise<EnqueueResult> {
    return this.run('enqueue', async (db) => {
      // The seq is claimed before anything is awaited, so calls in flight together get seqs in call order (the
      // order the core accepted them). A duplicate or a full queue leaves a gap, which the port allows.
      const claim = cap > 0 ? this.seqClaims.next(db, message.to) : null;
      claim?.catch(() => undefined); // awaited below unless an earlier answer returns first
      const [existing, outOfRange] = await Promise.all([
        queue(db).findOne({ fromKey: message.fromKey, id: message.id }, { projection: { seq: 1 } }),
        cap > 0 ? this.hasSlotsOutside(db, message.to, cap) : Promise.resolve(false),
      ]);
      if (existing !== null) return { status: 'duplicate', seq: existing.seq };
      if (claim === null) return { status: 'full' };
      // Messages outside [0, cap) (the cap was lowered, or an older layout) are not held back by the slot
      // index: count them in. Concurrent enqueues can then pass the cap by their number until those drain.
      if (outOfRange && (await queue(db).countDocuments({ to: message.to })) >= cap) return { status: 'full' };
      return this.insertQueued(db, message, cap, await claim);
    });
  }

  /**
   * One pass for the whole batch: one read for what is already queued, one block of seqs claimed in order
   * (`SeqClaims.block`), one ordered insert. After a collision the rest of the batch goes again under seqs
   * claimed after it, so no message ever takes a seq below an earlier one of the batch; what the insert did
   * write is found out by reading, never from the error. Slots are REQUEUE_SLOT_BASE + seq: outside every
   * cap's range and unique with the seq, so a batch never collides on a slot; they count under the cap through
   * the same path as slots left by a lowered cap (`hasSlotsOutside`).
   */
  async enqueueBatch(to: string, messages: NewQueuedMessage[]): Promise<EnqueueResult[]> {
    if (messages.some((m) => m.to !== to)) throw new Error('enqueueBatch: every message must be for the same recipient');
    if (messages.length === 0) return [];
    return this.run('enqueueBatch', (db) => {
      this.batchWrites++;
      return this.writeBatch(db, to, messages).finally(() => {
        this.batchWrites++;
        this.slotsInRange.delete(to);
      });
    });
  }

  private async writeBatch(db: Db, to: string, messages: NewQueuedMessage[]): Promise<EnqueueResult[]> {
    const results: Array<EnqueueResult | undefined> = new Array(messages.length);
    const queuedAt = await this.queuedSeqs(db, messages);
    /** Index of the first occurrence of each (fromKey, id) in the batch. */
    const first = new Map<string, number>();
    let todo: number[] = [];
    for (const [i, m] of messages.entries()) {
      const k = idKey(m);
      const seq = queuedAt.get(k);
      if (seq !== undefined) results[i] = { status: 'duplicate', seq };
      else if (!first.has(k)) {
        first.set(k, i);
        todo.push(i);
      }
    }
    // Seqs above every message of this batch written so far: what keeps the batch in order across retries.
    let floor = 0;
    for (let attempt = 0; todo.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`enqueueBatch for ${to}: gave up after ${MAX_ATTEMPTS} contended attempts`);
      const claimed = await this.seqClaims.block(db, to, todo.length, floor);
      const round = todo.slice(0, claimed.length);
      const docs = round.map((i, j) => this.queueDoc(messages[i]!, claimed[j]!, REQUEUE_SLOT_BASE + claimed[j]!));
      try {
        await queue(db).insertMany(docs, { ordered: true });
        round.forEach((i, j) => (results[i] = { status: 'queued', seq: claimed[j]! }));
        floor = claimed[claimed.length - 1]!;
        todo = todo.slice(claimed.length);
        continue;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      // An ordered insert wrote a prefix. Each message of the round is now ours (our seq), queued by someone
      // else (a concurrent enqueue of the same id), or not written: from the first of those on, go again.
      const now = await this.queuedSeqs(db, round.map((i) => messages[i]!));
      let stop = round.length;
      for (const [j, i] of round.entries()) {
        const seq = now.get(idKey(messages[i]!));
        if (seq !== undefined && seq === claimed[j]) {
          results[i] = { status: 'queued', seq };
          floor = seq;
        } else if (seq !== undefined) {
          results[i] = { status: 'duplicate', seq };
        } else {
          stop = j;
          break;
        }
      }
      if (stop < round.length && (await queue(db).findOne({ to, seq: claimed[stop]! }, { projection: { _id: 1 } })) !== null) {
        // The claims were behind the stored messages; everything written above stays below what comes next.
        await this.seqClaims.pastQueue(db, to);
      }
      todo = todo.filter((i) => results[i] === undefined);
    }
    // Repeats within the batch answer as the first occurrence was stored.
    return messages.map((m, i) => {
      const r = results[i] ?? results[first.get(idKey(m))!]!;
      return r.status === 'queued' && results[i] === undefined ? { status: 'duplicate', seq: r.seq } : r;
    });
  }

  /** (fromKey, id) -> seq of those of `messages` already queued, in one read (grouped by sender). */
  private async queuedSeqs(db: Db, messages: NewQueuedMessage[]): Promise<Map<string, number>> {
    const bySender = new Map<string, string[]>();
    for (const m of messages) {
      const ids = bySender.get(m.fromKey);
      if (ids) ids.push(m.id);
      else bySender.set(m.fromKey, [m.id]);
    }
    const clauses = [...bySender].map(([fromKey, ids]) => ({ fromKey, id: { $in: ids } }));
    const docs = await queue(db)
      .find(clauses.length === 1 ? clauses[0]! : { $or: clauses }, { projection: { _id: 0, fromKey: 1, id: 1, seq: 1 } })
      .batchSize(messages.length)
      .toArray();
    return new Map(docs.map((d) => [idKey(d), d.seq]));
  }

  private queueDoc(message: NewQueuedMessage, seq: number, slot: number): QueueDoc {
    return {
      to: message.to,
      seq,
      slot,
      from: message.from,
      fromKey: message.fromKey,
      id: message.id,
      text: message.text,
      ts: message.ts,
      expireAt: new Date(message.ts + this.retentionMs),
    };
  }

  async fetchQueue(to: string, afterSeq: number, limit: number, notBefore: number): Promise<QueuedMessage[]> {
    if (limit <= 0) return [];
    return this.run('fetchQueue', async (db) => {
      const batch = Math.min(limit, MAX_FETCH_BATCH);
      // Served by the (to, seq) index in order, so a read costs its batch, not the queue's length.
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
      const result = await queue(db).deleteMany({ to, seq: { $in: seqs } });
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
      const result = await queue(db).deleteMany({ ts: { $lt: before } });
      return result.deletedCount;
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

  /**
   * Inserts `message` (not yet queued) under the seq `claimed` for it and a free slot under `cap`, retrying on collisions.
   * The unique indexes decide every race; a collision is recognised by code 11000 alone and diagnosed by
   * reading.
   */
  private async insertQueued(db: Db, message: NewQueuedMessage, cap: number, claimed: number): Promise<EnqueueResult> {
    let seq = claimed;
    let slot = seq % cap;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      try {
        await queue(db).insertOne(this.queueDoc(message, seq, slot));
        return { status: 'queued', seq };
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      const original = await queue(db).findOne({ fromKey: message.fromKey, id: message.id }, { projection: { seq: 1 } });
      if (original !== null) return { status: 'duplicate', seq: original.seq };
      if ((await queue(db).findOne({ to: message.to, seq }, { projection: { _id: 1 } })) !== null) {
        await this.seqClaims.pastQueue(db, message.to);
        seq = await this.seqClaims.next(db, message.to);
        slot = seq % cap;
        continue;
      }
      const free = await this.freeSlot(db, message.to, cap);
      if (free === null) return { status: 'full' };
      slot = free;
    }
    throw new Error(`enqueue for ${message.to}: gave up after ${MAX_ATTEMPTS} contended attempts`);
  }

  /** True when some message of `to` holds a slot outside [0, cap). An index probe on (to, slot), cached. */
  private async hasSlotsOutside(db: Db, to: string, cap: number): Promise<boolean> {
    if (this.slotsInRange.get(to) === cap) return false;
    const batches = this.batchWrites;
    const doc = await queue(db).findOne(
      { to, $or: [{ slot: { $gte: cap } }, { slot: { $lt: 0 } }] },
      { projection: { _id: 1 } },
    );
    if (doc === null && batches === this.batchWrites) {
      if (this.slotsInRange.size >= PROBED_LIMIT) this.slotsInRange.clear();
      this.slotsInRange.set(to, cap);
    }
    return doc !== null;
  }

  /**
   * A slot in [0, cap) that no message of `to` holds, or null when the queue holds `cap` messages. Reads the
   * queue's slots, so it costs the queue's length; it runs only after the usual slot (seq mod cap) was taken.
   */
  private async freeSlot(db: Db, to: string, cap: number): Promise<number | null> {
    if ((await queue(db).countDocuments({ to })) >= cap) return null;
    const taken = new Set(
      (await queue(db).find({ to, slot: { $gte: 0, $lt: cap } }, { projection: { _id: 0, slot: 1 } }).toArray()).map(
        (doc) => doc.slot,
      ),
    );
    const free: number[] = [];
    for (let slot = 0; slot < cap && free.length < 64; slot++) if (!taken.has(slot)) free.push(slot);
    if (free.length === 0) return null;
    // Racing enqueues that all found the same slot taken spread over different free ones.
    return free[Math.floor(Math.random() * free.length)]!;
  }

  private async createIndexes(db: Db): Promise<void> {
    const refused = await createLayout(db, this.log);
    await createRoomLayout(db);
    this.expiry = refused === null ? 'ttl-index' : 'sweep';
    if (refused !== null) {
      this.log.warn(
        { err: refused, sweepIntervalMs: this.sweepIntervalMs },
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

  // --- account changes ---

  async setPassword(key: string, passwordHash: string): Promise<boolean> {
    return this.run('setPassword', async (db) => {
      const result = await accounts(db).updateOne({ key }, { $set: { passwordHash } });
      return result.matchedCount > 0;
    });
  }

  async deleteSessionsOf(key: string, keepTokenHash?: string): Promise<string[]> {
    return this.run('deleteSessionsOf', async (db) => {
      const filter = keepTokenHash === undefined ? { key } : { key, tokenHash: { $ne: keepTokenHash } };
      const docs = await sessions(db).find(filter, { projection: { _id: 0, tokenHash: 1 } }).toArray();
      if (docs.length === 0) return [];
      const hashes = docs.map((d) => d.tokenHash);
      await sessions(db).deleteMany({ key, tokenHash: { $in: hashes } });
      return hashes;
    });
  }

  async deleteAccount(key: string): Promise<boolean> {
    await this.deleteSessionsOf(key);
    return this.run('deleteAccount', async (db) => {
      if ((await accounts(db).countDocuments({ key }, { limit: 1 })) === 0) return false;
      await queue(db).deleteMany({ to: key });
      const result = await accounts(db).deleteOne({ key });
      return result.deletedCount > 0;
    });
  }
}

/** A `delivered` receipt kept for an offline sender (see Store.putReceipts). */
interface ReceiptDoc { _id: string; fromKey: string; id: string; to: string; at: number }

/** (fromKey, id) as one map key; NUL cannot occur in a name key. */
function idKey(m: { fromKey: string; id: string }): string {
  return `${m.fromKey}\u0000${m.id}`;
}
