/**
 * The embedded durable Store: LMDB (through lmdb-js) in a directory on local disk, used when no MongoDB is
 * configured. Two LMDB environments, each a `data.mdb` + `lock.mdb` pair:
 *
 * `<dir>/` holds accounts and the offline queue:
 *
 *   accounts          name key -> Account
 *   queue             [to, seq] -> the message without `to` and `seq` (those are the key)
 *   queueById         [fromKey, id] -> { to, seq }: the global (sender, id) uniqueness index
 *   queueByTime       [ts, to, seq] -> null: lets retention purge without scanning every queue
 *   skeletons         confusable skeleton -> name key that claimed it (look-alike names)
 *   meta              one-time layout steps done: `skeletonsBackfilled` (see `#backfillSkeletons`),
 *                     `invitesIndexed` (see `#indexInvites`)
 *   receipts          [fromKey, id] -> { to, at }: `delivered` receipts waiting for an absent sender
 *   recipients        to -> { last, count }: the last seq handed out and the queue length
 *   rooms, roomMembers, memberRooms, roomInvites, memberInvites, roomLog, roomLogById, roomLogByTime, roomMeta
 *                     rooms and their logs (see embedded-rooms.ts)
 *
 * `<dir>/sessions/` holds the sessions, and nothing else:
 *
 *   sessions          token hash (32 raw bytes) -> [key, name | null, created, expires, replacedAt?]
 *   sessionsByKey     name key -> token hash (32 raw bytes; dupSort: one entry per session of that name)
 *   sessionsByExpiry  expires (8 bytes, order-preserving) + token hash (32 raw bytes) -> null
 *
 * Why sessions live apart, and so tightly packed: every socket authentication reads one session, and the
 * pages a read touches stay resident in the process for as long as the mapping lives. Linux maps file pages
 * around each fault (fault-around, 64 KiB windows), so a session read also makes its neighbours resident,
 * whatever they hold. With sessions in the big environment, 10,000 authentications made almost the whole
 * file resident (accounts and queue pages included, ~740 bytes per connection); in their own file, a read
 * only ever pulls in session pages, and the smaller each record is the fewer of those pages there are. Hence
 * the binary keys (a hex hash is twice the bytes), and a msgpack array instead of a map, without the hash
 * (it is the key). The Store port still speaks hex: conversion happens only in this file.
 *
 * Every write that must be atomic runs as one lmdb-js transaction callback on one environment. LMDB has a
 * single writer per environment across threads *and* processes, so the read-check-write inside a callback
 * (dedup, cap, seq) is atomic even when several Parley processes share the directory. The index databases
 * are only written in the same callbacks as the records they point at, so they never disagree with them;
 * no write needs both environments, because sessions and the rest never point at each other. That holds only
 * while no process opens an environment as another commits to it: the bundled LMDB can then forget the commit,
 * so every open and every write goes through an open gate (embedded-open-gate.ts).
 *
 * Keys of the main environment use lmdb-js's default ordered-binary encoding, where an array key is its
 * elements joined by a 0 byte. That is unambiguous only because names and message ids never contain control
 * characters (both are validated in shared/ before they get here). Session keys are fixed-size binary, so
 * the expiry key needs no separator: its first 8 bytes are the expiry, the rest the hash.
 *
 * Data directories written before the sessions environment existed keep their sessions (hex keys, map
 * values) in the main environment; `open()` moves them over once (see `#migrateSessions`).
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { open, type Database, type DatabaseOptions, type Key, type RootDatabase } from 'lmdb';
import { skeleton } from '../core/confusables.ts';
import { OpenGate } from './embedded-open-gate.ts';
import { EmbeddedRooms, indexInvites, openRoomDatabases, ROOM_DATABASES, type RoomDatabases } from './embedded-rooms.ts';
import type { Logger } from '../core/logger.ts';
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

/** Options for {@link EmbeddedStore}. */
export interface EmbeddedStoreOptions {
  /**
   * Directory holding the LMDB files (`data.mdb`, `lock.mdb`, and the same pair in `sessions/`); created if
   * missing. The server uses `./data`.
   */
  dir: string;
  /** Receives open/close events and write failures. Never given message text or secrets. */
  logger?: Logger;
}

/** What a queued message looks like on disk: `to` and `seq` live in the key, so they are not repeated. */
interface StoredMessage {
  from: string;
  fromKey: string;
  id: string;
  text: string;
  ts: number;
}

interface MessageRef {
  to: string;
  seq: number;
}

interface RecipientMeta {
  /** Last seq handed out; kept after the queue empties so seqs never go back. */
  last: number;
  /** Messages currently queued. Kept here because counting an LMDB range is linear in its size. */
  count: number;
}

type QueueKey = [to: string, seq: number];
type IdKey = [fromKey: string, id: string];
type TimeKey = [ts: number, to: string, seq: number];

/**
 * What a session looks like on disk, keyed by its token hash. `name` is null for sessions written without
 * one; `replacedAt` is only there once the session was replaced.
 */
type StoredSession =
  | [key: string, name: string | null, created: number, expires: number]
  | [key: string, name: string | null, created: number, expires: number, replacedAt: number];

/** A session as the layout before the sessions environment stored it (hex key, map value). */
interface LegacySession {
  key: string;
  name?: string;
  created: number;
  expires: number;
  replacedAt?: number;
}

interface Databases extends RoomDatabases {
  root: RootDatabase;
  accounts: Database<Account, string>;
  queue: Database<StoredMessage, QueueKey>;
  queueById: Database<MessageRef, IdKey>;
  queueByTime: Database<null, TimeKey>;
  recipients: Database<RecipientMeta, string>;
  /** Confusable skeleton -> name key of the account that claimed it. */
  skeletons: Database<string, string>;
  /** [fromKey, id] -> receipt waiting for an offline sender (see Store.putReceipts). */
  receipts: Database<{ to: string; at: number }, [string, string]>;
  /** Layout steps done once per data directory -> when (ms since epoch). */
  meta: Database<number, string>;
  /** The sessions environment (`<dir>/sessions`). */
  sessionsRoot: RootDatabase;
  sessions: Database<StoredSession, Buffer>;
  sessionsByKey: Database<Buffer, string>;
  sessionsByExpiry: Database<null, Buffer>;
}

/** The session databases of the old layout, in the main environment; opened only to migrate them. */
interface LegacyDatabases {
  sessions: Database<LegacySession, string>;
  sessionsByKey: Database<string, string>;
  sessionsByExpiry: Database<null, [expires: number, tokenHash: string]>;
}

/**
 * Deletions (retention, expired sessions) run in transactions of at most this many records: each transaction
 * callback runs on the main thread and holds LMDB's writer lock, so one huge purge would stall every enqueue.
 */
const PURGE_BATCH = 500;

/** `meta` key: skeletons have been claimed for the accounts made before registration claimed them. */
const SKELETONS_BACKFILLED = 'skeletonsBackfilled';
/** `meta` key: room invitations made before `memberInvites` existed are in it. */
const INVITES_INDEXED = 'invitesIndexed';

/** Legacy sessions copied per transaction by the migration; each batch is one commit and one fsync. */
const MIGRATE_BATCH = 1_000;

/** What the port's token hashes are: hashToken()'s output. */
const TOKEN_HASH = /^[0-9a-f]{64}$/;
const HASH_BYTES = 32;
const EXPIRY_BYTES = 8;

/**
 * The embedded durable adapter of the {@link Store} port.
 *
 * Durability: a write resolves only after its transaction is committed *and* fsync'ed (see `write()`), so
 * anything `enqueue` reported as queued survives `kill -9` of the process and also a machine crash.
 */
export class EmbeddedStore implements Store {
  readonly kind = 'embedded';
  readonly #dir: string;
  readonly #logger: Logger | undefined;
  #dbs: Databases | null = null;
  #opening: Promise<void> | null = null;
  /** Per environment, what keeps other processes' commits out of our open (see embedded-open-gate.ts). */
  readonly #gates: { main: OpenGate; sessions: OpenGate };
  /** The gate of each open environment, for `#write`. */
  readonly #gateOf = new WeakMap<RootDatabase, OpenGate>();
  /** Rooms, members and room logs, in the main environment (see embedded-rooms.ts). */
  readonly rooms = new EmbeddedRooms({
    dbs: () => this.#databases(),
    write: (op, work) => this.#write(op, this.#databases().root, work),
    read: async (op, work) => this.#read(op, work),
  });

  constructor(options: EmbeddedStoreOptions) {
    this.#dir = path.resolve(options.dir);
    this.#logger = options.logger;
    this.#gates = { main: new OpenGate(this.#dir), sessions: new OpenGate(path.join(this.#dir, 'sessions')) };
  }

  async open(): Promise<void> {
    if (this.#dbs) return;
    this.#opening ??= this.#open().finally(() => {
      this.#opening = null;
    });
    return this.#opening;
  }

  async #open(): Promise<void> {
    const dir = this.#dir;
    try {
      await mkdir(dir, { recursive: true });
      if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
      await access(dir, fsConstants.R_OK | fsConstants.W_OK);
    } catch (error) {
      throw new StoreUnavailableError(
        `embedded store: data directory ${JSON.stringify(dir)} is not a writable directory (${describe(error)}); ` +
          'point the data directory setting at a directory this process may write to',
        { cause: error },
      );
    }
    const sessionsDir = path.join(dir, 'sessions');
    let root: RootDatabase | undefined;
    let sessionsRoot: RootDatabase | undefined;
    let dbs: Databases;
    let where = dir;
    try {
      root = await this.#gates.main.opening(() => openEnvironment(dir, 16 + ROOM_DATABASES));
      this.#gateOf.set(root, this.#gates.main);
      const mainRoot = root;
      // Creating a database is a commit, so it waits while another process opens.
      const main = await this.#gates.main.writing(() => ({
        root: mainRoot,
        ...openRoomDatabases(mainRoot),
        accounts: mainRoot.openDB<Account, string>({ name: 'accounts' }),
        queue: mainRoot.openDB<StoredMessage, QueueKey>({ name: 'queue' }),
        queueById: mainRoot.openDB<MessageRef, IdKey>({ name: 'queueById' }),
        queueByTime: mainRoot.openDB<null, TimeKey>({ name: 'queueByTime' }),
        recipients: mainRoot.openDB<RecipientMeta, string>({ name: 'recipients' }),
        skeletons: mainRoot.openDB<string, string>({ name: 'skeletons' }),
        receipts: mainRoot.openDB<{ to: string; at: number }, [string, string]>({ name: 'receipts' }),
        meta: mainRoot.openDB<number, string>({ name: 'meta' }),
      }));
      where = sessionsDir;
      sessionsRoot = await this.#gates.sessions.opening(() => openEnvironment(sessionsDir, 4));
      this.#gateOf.set(sessionsRoot, this.#gates.sessions);
      const sessionsEnv = sessionsRoot;
      dbs = await this.#gates.sessions.writing(() => ({
        ...main,
        sessionsRoot: sessionsEnv,
        sessions: sessionsEnv.openDB<StoredSession, Buffer>({ name: 'sessions', keyEncoding: 'binary' }),
        // Binary values keep the dupSort index's values sorted (bytewise) and comparable for removal.
        sessionsByKey: sessionsEnv.openDB<Buffer, string>({ name: 'sessionsByKey', dupSort: true, encoding: 'binary' }),
        sessionsByExpiry: sessionsEnv.openDB<null, Buffer>({ name: 'sessionsByExpiry', keyEncoding: 'binary' }),
      }));
    } catch (error) {
      await sessionsRoot?.close().catch(() => undefined);
      await root?.close().catch(() => undefined);
      throw new StoreUnavailableError(
        `embedded store: cannot open the LMDB database in ${JSON.stringify(where)} (${describe(error)})`,
        { cause: error },
      );
    }
    try {
      const moved = await this.#migrateSessions(dbs);
      if (moved > 0) this.#logger?.info({ store: this.kind, dir, sessions: moved }, 'sessions moved to their own environment');
      const claimed = await this.#backfillSkeletons(dbs);
      if (claimed > 0) this.#logger?.info({ store: this.kind, dir, accounts: claimed }, 'look-alike skeletons claimed for older accounts');
      const indexed = await this.#indexInvites(dbs);
      if (indexed > 0) this.#logger?.info({ store: this.kind, dir, invitations: indexed }, 'older room invitations indexed by invitee');
    } catch (error) {
      await Promise.all([sessionsRoot.close(), root.close()]).catch(() => undefined);
      throw error instanceof StoreUnavailableError
        ? error
        : new StoreUnavailableError(`embedded store: moving the sessions of ${JSON.stringify(dir)} failed (${describe(error)})`, {
            cause: error,
          });
    }
    this.#dbs = dbs;
    this.#logger?.info({ store: this.kind, dir }, 'store opened');
  }

  async close(): Promise<void> {
    await this.#opening?.catch(() => undefined);
    const dbs = this.#dbs;
    if (!dbs) return;
    // Refuse new work first, so nothing slips in between the last flush and the close.
    this.#dbs = null;
    try {
      await Promise.all([dbs.root.flushed, dbs.sessionsRoot.flushed]);
      await Promise.all([dbs.root.close(), dbs.sessionsRoot.close()]);
    } catch (error) {
      throw new StoreUnavailableError(`embedded store: closing failed (${describe(error)})`, { cause: error });
    }
    this.#logger?.info({ store: this.kind, dir: this.#dir }, 'store closed');
  }

  async ping(): Promise<boolean> {
    const dbs = this.#dbs;
    if (!dbs) return false;
    try {
      dbs.root.getStats();
      dbs.sessionsRoot.getStats();
      return true;
    } catch {
      return false;
    }
  }

  // accounts

  async createAccount(account: Account): Promise<boolean> {
    const { root, accounts } = this.#databases();
    const record: Account = {
      key: account.key,
      name: account.name,
      passwordHash: account.passwordHash,
      created: account.created,
    };
    return this.#write('createAccount', root, () => {
      if (accounts.doesExist(record.key)) return false;
      accounts.putSync(record.key, record);
      return true;
    });
  }

  async getAccount(key: string): Promise<Account | null> {
    const { accounts } = this.#databases();
    return this.#read('getAccount', () => accounts.get(key) ?? null);
  }

  async claimSkeleton(skeleton: string, key: string): Promise<string> {
    const { root, skeletons } = this.#databases();
    return this.#write('claimSkeleton', root, () => {
      const holder = skeletons.get(skeleton);
      if (holder !== undefined) return holder;
      skeletons.putSync(skeleton, key);
      return key;
    });
  }

  // sessions

  async putSession(session: SessionRecord): Promise<void> {
    const dbs = this.#databases();
    const hash = hashBytes(session.tokenHash);
    const value = storedSession(session);
    await this.#write('putSession', dbs.sessionsRoot, () => writeSession(dbs, hash, value));
  }

  async getSession(tokenHash: string): Promise<SessionRecord | null> {
    const { sessions } = this.#databases();
    const hash = hashBytes(tokenHash);
    return this.#read('getSession', () => {
      const value = sessions.get(hash);
      return value ? sessionRecord(tokenHash, value) : null;
    });
  }

  async deleteSession(tokenHash: string): Promise<void> {
    const dbs = this.#databases();
    const hash = hashBytes(tokenHash);
    await this.#write('deleteSession', dbs.sessionsRoot, () => {
      const old = dbs.sessions.get(hash);
      if (!old) return;
      unindexSession(dbs, hash, old);
      dbs.sessions.removeSync(hash);
    });
  }

  async replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]> {
    const dbs = this.#databases();
    const keep = hashBytes(keepTokenHash);
    return this.#write('replaceSessions', dbs.sessionsRoot, () => {
      const live: Array<{ hash: Buffer; tokenHash: string; created: number; session: StoredSession }> = [];
      for (const hash of Array.from(dbs.sessionsByKey.getValues(key))) {
        const session = dbs.sessions.get(hash);
        if (!session || session[4] !== undefined) continue;
        live.push({ hash, tokenHash: hash.toString('hex'), created: session[2], session });
      }
      // The port's rule (isNewerSession): a session newer than the one kept stays live and the kept one goes.
      const kept = live.find((s) => keep.equals(s.hash));
      const others = live.filter((s) => s !== kept);
      const marked = kept && others.some((s) => isNewerSession(s, kept))
        ? [...others.filter((s) => !isNewerSession(s, kept)), kept]
        : others;
      for (const { hash, session } of marked) {
        const [k, name, created, expires] = session;
        dbs.sessions.putSync(hash, [k, name, created, expires, at]);
      }
      return marked.map((s) => s.tokenHash);
    });
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    const dbs = this.#databases();
    let total = 0;
    for (;;) {
      const purged = await this.#write('purgeExpiredSessions', dbs.sessionsRoot, () => {
        // The bare 8-byte expiry sorts before every key that starts with it, so exactly `expires < now` is taken.
        const keys = Array.from(dbs.sessionsByExpiry.getKeys({ end: expiryPrefix(now), limit: PURGE_BATCH }));
        for (const entry of keys) {
          const hash = entry.subarray(EXPIRY_BYTES);
          const session = dbs.sessions.get(hash);
          // The expiry index only points at current records, but a stale entry must not block the purge.
          if (session) {
            dbs.sessionsByKey.removeSync(session[0], hash);
            dbs.sessions.removeSync(hash);
          }
          dbs.sessionsByExpiry.removeSync(entry);
        }
        return keys.length;
      });
      total += purged;
      if (purged < PURGE_BATCH) return total;
    }
  }

  // the offline queue

  async enqueue(message: NewQueuedMessage, cap: number): Promise<EnqueueResult> {
    const dbs = this.#databases();
    const { to, fromKey, id, ts } = message;
    const stored: StoredMessage = { from: message.from, fromKey, id, text: message.text, ts };
    return this.#write('enqueue', dbs.root, (): EnqueueResult => {
      // Everything that can throw (a read, an oversized key) happens before the first write: a callback
      // that throws half-way does not roll back its own writes in lmdb-js's shared batch transaction.
      const existing = dbs.queueById.get([fromKey, id]);
      if (existing) return { status: 'duplicate', seq: existing.seq };
      const meta = dbs.recipients.get(to) ?? { last: 0, count: 0 };
      if (meta.count >= cap) return { status: 'full' };
      const seq = meta.last + 1;
      dbs.queue.putSync([to, seq], stored);
      dbs.queueById.putSync([fromKey, id], { to, seq });
      dbs.queueByTime.putSync([ts, to, seq], null);
      dbs.recipients.putSync(to, { last: seq, count: meta.count + 1 });
      return { status: 'queued', seq };
    });
  }

  async putReceipts(fromKey: string, receipts: PendingReceipt[]): Promise<void> {
    if (receipts.length === 0) return;
    const { root, receipts: db } = this.#databases();
    await this.#write('putReceipts', root, () => {
      for (const r of receipts) db.putSync([fromKey, r.id], { to: r.to, at: r.at });
    });
  }

  async takeReceipts(fromKey: string, limit: number): Promise<PendingReceipt[]> {
    const { root, receipts: db } = this.#databases();
    return this.#write('takeReceipts', root, () => {
      const out: PendingReceipt[] = [];
      const keys: Array<[string, string]> = [];
      for (const { key, value } of db.getRange({ start: [fromKey], end: [fromKey, '\uffff'] })) {
        if (out.length >= limit) break;
        out.push({ id: key[1], to: value.to, at: value.at });
        keys.push(key);
      }
      for (const k of keys) db.removeSync(k);
      return out.sort((a, b) => a.at - b.at);
    });
  }

  async enqueueBatch(to: string, messages: NewQueuedMessage[]): Promise<EnqueueResult[]> {
    if (messages.length === 0) return [];
    const dbs = this.#databases();
    if (messages.some((m) => m.to !== to)) throw new Error('enqueueBatch: every message must be for the same recipient');
    return this.#write('enqueueBatch', dbs.root, (): EnqueueResult[] => {
      // As in `enqueue`: every read first, then the writes (a throw half-way would not roll back).
      const existing = messages.map((m) => dbs.queueById.get([m.fromKey, m.id]));
      const meta = dbs.recipients.get(to) ?? { last: 0, count: 0 };
      const results: EnqueueResult[] = [];
      const inBatch = new Map<string, number>();
      let { last, count } = meta;
      for (const [i, m] of messages.entries()) {
        const dupKey = `${m.fromKey}\u0000${m.id}`;
        const prior = existing[i] ?? (inBatch.has(dupKey) ? { seq: inBatch.get(dupKey)! } : undefined);
        if (prior) {
          results.push({ status: 'duplicate', seq: prior.seq });
          continue;
        }
        const seq = ++last;
        count++;
        inBatch.set(dupKey, seq);
        dbs.queue.putSync([to, seq], { from: m.from, fromKey: m.fromKey, id: m.id, text: m.text, ts: m.ts });
        dbs.queueById.putSync([m.fromKey, m.id], { to, seq });
        dbs.queueByTime.putSync([m.ts, to, seq], null);
        results.push({ status: 'queued', seq });
      }
      if (last !== meta.last) dbs.recipients.putSync(to, { last, count });
      return results;
    });
  }

  async fetchQueue(to: string, afterSeq: number, limit: number, notBefore: number): Promise<QueuedMessage[]> {
    const { queue } = this.#databases();
    return this.#read('fetchQueue', () => {
      const out: QueuedMessage[] = [];
      if (!(limit > 0)) return out;
      const range = queue.getRange({ start: [to, afterSeq], exclusiveStart: true, end: [to, Infinity] });
      for (const { key, value } of range) {
        if (value.ts < notBefore) continue;
        out.push(queuedMessage(to, key[1], value));
        if (out.length >= limit) break;
      }
      return out;
    });
  }

  async ackQueue(to: string, seqs: number[]): Promise<number> {
    const dbs = this.#databases();
    const unique = [...new Set(seqs)];
    if (unique.length === 0) return 0;
    return this.#write('ackQueue', dbs.root, () => {
      const found: Array<[number, StoredMessage]> = [];
      for (const seq of unique) {
        const value = dbs.queue.get([to, seq]);
        if (value) found.push([seq, value]);
      }
      if (found.length === 0) return 0;
      const meta = dbs.recipients.get(to);
      for (const [seq, value] of found) removeMessage(dbs, to, seq, value);
      if (meta) dbs.recipients.putSync(to, { last: meta.last, count: Math.max(0, meta.count - found.length) });
      return found.length;
    });
  }

  async queueLength(to: string): Promise<number> {
    const { recipients } = this.#databases();
    return this.#read('queueLength', () => recipients.get(to)?.count ?? 0);
  }

  async findQueued(fromKey: string, id: string): Promise<QueuedMessage | null> {
    const { queue, queueById } = this.#databases();
    return this.#read('findQueued', () => {
      const ref = queueById.get([fromKey, id]);
      if (!ref) return null;
      const value = queue.get([ref.to, ref.seq]);
      return value ? queuedMessage(ref.to, ref.seq, value) : null;
    });
  }

  async purgeExpiredMessages(before: number): Promise<number> {
    const dbs = this.#databases();
    let total = 0;
    for (;;) {
      const purged = await this.#write('purgeExpiredMessages', dbs.root, () => {
        // [before] sorts before every [before, to, seq]: exactly `ts < before` is taken.
        const keys = Array.from(dbs.queueByTime.getKeys({ end: [before], limit: PURGE_BATCH }));
        const removedPer = new Map<string, number>();
        for (const key of keys) {
          const [ts, to, seq] = key;
          const value = dbs.queue.get([to, seq]);
          if (value) {
            removeMessage(dbs, to, seq, value);
            removedPer.set(to, (removedPer.get(to) ?? 0) + 1);
          } else {
            dbs.queueByTime.removeSync([ts, to, seq]);
          }
        }
        for (const [to, removed] of removedPer) {
          const meta = dbs.recipients.get(to);
          if (meta) dbs.recipients.putSync(to, { last: meta.last, count: Math.max(0, meta.count - removed) });
        }
        return keys.length;
      });
      total += purged;
      if (purged < PURGE_BATCH) return total;
    }
  }

  // migration

  /**
   * Moves the sessions of the old layout (in the main environment) into the sessions environment, then
   * empties the old databases; returns how many records were copied. Once the old `sessions` database is
   * empty or absent (a new directory never has one) this writes nothing.
   *
   * Crash safety: the copy is durable before the old databases are emptied, and copying a record again just
   * rewrites it, so a crash anywhere means the next open redoes the copy. The old databases are cleared, not
   * dropped: another process may hold handles to them, and a dropped database behind a handle is an error
   * where an empty one is simply empty.
   *
   * Several processes may open an old directory at once. Each batch reads the old databases in a fresh read
   * transaction taken *inside* the sessions environment's write transaction: a process serves (and so changes
   * sessions) only after it emptied the old databases, so a batch either sees them emptied and copies nothing,
   * or copies values nobody has changed yet. Without the fresh snapshot, a slow process could copy a stale
   * record over a session that another one has since replaced or deleted.
   */
  async #migrateSessions(dbs: Databases): Promise<number> {
    const legacy = await this.#gates.main.writing(() => openLegacySessions(dbs.root));
    if (!legacy || legacy.sessions.getKeysCount({ limit: 1 }) === 0) return 0;
    let copied = 0;
    let skipped = 0;
    let after: string | undefined;
    for (;;) {
      const batch = await this.#write('migrateSessions', dbs.sessionsRoot, () => {
        dbs.root.resetReadTxn();
        const range = legacy.sessions.getRange({ start: after, exclusiveStart: after !== undefined, limit: MIGRATE_BATCH });
        let count = 0;
        let last: string | undefined;
        for (const { key, value } of range) {
          count++;
          last = key;
          // Written by hashToken() like every other token hash; a record that is not cannot be looked up anyway.
          if (!TOKEN_HASH.test(key)) {
            skipped++;
            continue;
          }
          writeSession(dbs, Buffer.from(key, 'hex'), storedSession(value));
          copied++;
        }
        return { count, last };
      });
      after = batch.last;
      if (batch.count < MIGRATE_BATCH) break;
    }
    await this.#write('migrateSessions', dbs.root, () => {
      legacy.sessions.clearSync();
      legacy.sessionsByKey.clearSync();
      legacy.sessionsByExpiry.clearSync();
    });
    if (skipped > 0) {
      this.#logger?.warn({ store: this.kind, dir: this.#dir, skipped }, 'old sessions with a malformed token hash dropped');
    }
    return copied;
  }

  /**
   * Accounts made before registration claimed skeletons (look-alike names) get theirs, once per directory, in
   * one transaction: the oldest account of a skeleton holds it, as if each had registered with the check.
   * Returns how many were claimed.
   */
  async #backfillSkeletons(dbs: Databases): Promise<number> {
    if (dbs.meta.get(SKELETONS_BACKFILLED) !== undefined) return 0;
    return this.#write('backfillSkeletons', dbs.root, () => {
      if (dbs.meta.get(SKELETONS_BACKFILLED) !== undefined) return 0;
      const all = [...dbs.accounts.getRange()].map(({ value }) => value).sort((a, b) => a.created - b.created);
      let claimed = 0;
      for (const account of all) {
        const sk = skeleton(account.key);
        if (dbs.skeletons.get(sk) !== undefined) continue;
        dbs.skeletons.putSync(sk, account.key);
        claimed++;
      }
      dbs.meta.putSync(SKELETONS_BACKFILLED, Date.now());
      return claimed;
    });
  }

  /** Room invitations made before `memberInvites` existed get their entries there, once per directory. */
  async #indexInvites(dbs: Databases): Promise<number> {
    if (dbs.meta.get(INVITES_INDEXED) !== undefined) return 0;
    return this.#write('indexInvites', dbs.root, () => {
      if (dbs.meta.get(INVITES_INDEXED) !== undefined) return 0;
      const indexed = indexInvites(dbs);
      dbs.meta.putSync(INVITES_INDEXED, Date.now());
      return indexed;
    });
  }

  // plumbing

  /** The open databases, or a StoreUnavailableError: the core must never mistake a closed store for an empty one. */
  #databases(): Databases {
    if (!this.#dbs) throw new StoreUnavailableError(`embedded store is not open (${this.#dir})`);
    return this.#dbs;
  }

  #read<T>(op: string, work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw this.#unavailable(op, error);
    }
  }

  /**
   * Runs `work` inside an lmdb-js asynchronous transaction on the environment `root` and resolves once that
   * transaction is durable. `work` may only write to databases of that environment.
   *
   * lmdb-js runs every transaction callback queued in one event turn inside one LMDB write transaction, in call
   * order, on the main thread, then commits on its write thread: concurrent enqueues cost one commit and one
   * fsync between them. The callback sees the writes of the callbacks before it, which is what makes the
   * dedup / cap / seq checks atomic.
   *
   * Documented lmdb-js semantics: with overlappingSync the transaction promise means *committed* (visible),
   * and `root.flushed` means *fsync'ed*. `root.flushed` is a thenable read when `.then` is called, so it is
   * called synchronously right after queuing the transaction: it then belongs to the batch holding our
   * callback (or a later one, whose fsync covers ours). Batches, commits and `flushed` are per environment:
   * the two environments never wait for each other.
   */
  async #write<T>(op: string, root: RootDatabase, work: () => T): Promise<T> {
    const gate = this.#gateOf.get(root);
    let committed: Promise<T> | undefined;
    let flushed: Promise<unknown>;
    try {
      if (!gate) throw new Error('the environment is not open');
      // Usually returns nothing, so the transaction is queued in this very call: call order is commit order.
      const entered = gate.enter();
      if (entered) await entered;
      try {
        committed = root.transaction(work);
      } finally {
        // Counted in flight until its commit is visible to every process (or it failed).
        if (committed) committed.then(() => gate.leave(), () => gate.leave());
        else gate.leave();
      }
      flushed = new Promise((resolve, reject) => {
        root.flushed.then(resolve, reject);
      });
    } catch (error) {
      throw this.#unavailable(op, error);
    }
    try {
      const [result] = await Promise.all([committed, flushed]);
      return result;
    } catch (error) {
      throw this.#unavailable(op, error);
    }
  }

  #unavailable(op: string, error: unknown): StoreUnavailableError {
    if (error instanceof StoreUnavailableError) return error;
    this.#logger?.warn({ store: this.kind, op, err: describe(error) }, 'store operation failed');
    return new StoreUnavailableError(`embedded store: ${op} failed (${describe(error)})`, { cause: error });
  }

  // account changes

  async setPassword(key: string, passwordHash: string): Promise<boolean> {
    const dbs = this.#databases();
    return this.#write('setPassword', dbs.root, () => {
      const account = dbs.accounts.get(key);
      if (!account) return false;
      dbs.accounts.putSync(key, { ...account, passwordHash });
      return true;
    });
  }

  async deleteSessionsOf(key: string, keepTokenHash?: string): Promise<string[]> {
    const dbs = this.#databases();
    const keep = keepTokenHash === undefined ? undefined : hashBytes(keepTokenHash);
    return this.#write('deleteSessionsOf', dbs.sessionsRoot, () => {
      const found = Array.from(dbs.sessionsByKey.getValues(key)).filter((hash) => !keep?.equals(hash))
        .map((hash) => [hash, dbs.sessions.get(hash)] as const);
      for (const [hash, session] of found) {
        if (session) {
          unindexSession(dbs, hash, session);
          dbs.sessions.removeSync(hash);
        } else dbs.sessionsByKey.removeSync(key, hash);
      }
      return found.map(([hash]) => hash.toString('hex'));
    });
  }

  async deleteAccount(key: string): Promise<boolean> {
    await this.deleteSessionsOf(key);
    const dbs = this.#databases();
    return this.#write('deleteAccount', dbs.root, () => {
      if (!dbs.accounts.doesExist(key)) return false;
      const queued = Array.from(dbs.queue.getRange({ start: [key, 0], end: [key, Infinity] }));
      const meta = dbs.recipients.get(key);
      for (const { key: k, value } of queued) removeMessage(dbs, key, k[1], value);
      // The seq counter stays: a new account of the same name carries on past the old seqs.
      if (meta) dbs.recipients.putSync(key, { last: meta.last, count: 0 });
      dbs.accounts.removeSync(key);
      return true;
    });
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/**
 * Opens one LMDB environment with the durability settings `write()` relies on; both environments use them.
 */
function openEnvironment(envPath: string, maxDbs: number): RootDatabase {
  return open({
    path: envPath,
    // The path may legitimately contain a dot (`./data.v1`): without this lmdb-js would treat it as a file name.
    noSubdir: false,
    maxDbs,
    // Durability. Surviving `kill -9` needs the commit written into the file (the OS page cache outlives
    // the process); surviving a machine crash also needs the fsync. write() waits for both. With
    // overlappingSync (lmdb-js's default on Linux and macOS, stated so nobody turns it off by accident)
    // the writer thread releases LMDB's write lock *before* it fsyncs, so the next batch is built while
    // this one syncs. lmdb-js 3.5 reports a commit only after that fsync, but its README promises
    // durability only for `flushed`, and after an unclean stop it keeps unsynced commits only when the boot
    // id proves the machine did not restart (never with LMDB_RESTORE=safe). So write() waits on `flushed`
    // too; measured here that adds microseconds, not an extra fsync. noSync, noMetaSync, useWritemap and
    // mapAsync stay off: each trades exactly this guarantee for speed.
    overlappingSync: true,
  });
}

/** The old layout's session databases, when the main environment has them (never creates them). */
function openLegacySessions(root: RootDatabase): LegacyDatabases | null {
  // `create: false` is honoured by lmdb-js (openDB then returns undefined) but missing from its types.
  const existing = <V, K extends Key>(options: DatabaseOptions & { name: string }): Database<V, K> | undefined =>
    root.openDB<V, K>({ ...options, create: false } as DatabaseOptions & { name: string });
  const sessions = existing<LegacySession, string>({ name: 'sessions' });
  if (!sessions) return null;
  const sessionsByKey = existing<string, string>({ name: 'sessionsByKey', dupSort: true, encoding: 'ordered-binary' });
  const sessionsByExpiry = existing<null, [number, string]>({ name: 'sessionsByExpiry' });
  // The old layout always created all three together.
  if (!sessionsByKey || !sessionsByExpiry) throw new Error('the old session databases are incomplete');
  return { sessions, sessionsByKey, sessionsByExpiry };
}

/**
 * The 32 bytes a token hash is stored as. The port's token hashes all come from hashToken(), so anything else
 * is a caller's bug: a plain Error, not a StoreUnavailableError.
 */
function hashBytes(tokenHash: string): Buffer {
  if (!TOKEN_HASH.test(tokenHash)) throw new Error('embedded store: a token hash must be 64 lower-case hex digits');
  return Buffer.from(tokenHash, 'hex');
}

/**
 * The first 8 bytes of a sessionsByExpiry key: the IEEE 754 double, big-endian, with the sign bit flipped
 * for positive numbers and every bit flipped for negative ones, so that bytewise order is numeric order
 * for every number (an expiry is an integer, but the port does not promise it).
 */
function expiryPrefix(expires: number): Buffer {
  const bytes = Buffer.allocUnsafe(EXPIRY_BYTES);
  bytes.writeDoubleBE(expires);
  if (bytes[0]! & 0x80) for (let i = 0; i < EXPIRY_BYTES; i++) bytes[i] = ~bytes[i]! & 0xff;
  else bytes[0] = bytes[0]! | 0x80;
  return bytes;
}

function expiryKey(expires: number, hash: Buffer): Buffer {
  return Buffer.concat([expiryPrefix(expires), hash], EXPIRY_BYTES + HASH_BYTES);
}

/** The on-disk form; a missing name is null (1 byte) so that replacedAt keeps its position. */
function storedSession(session: SessionRecord | LegacySession): StoredSession {
  const name = typeof session.name === 'string' ? session.name : null;
  return session.replacedAt === undefined
    ? [session.key, name, session.created, session.expires]
    : [session.key, name, session.created, session.expires, session.replacedAt];
}

/** The port's form; `name` and `replacedAt` are left out when absent, never set to undefined. */
function sessionRecord(tokenHash: string, value: StoredSession): SessionRecord {
  const [key, name, created, expires, replacedAt] = value;
  const record: SessionRecord = { tokenHash, key, created, expires };
  if (name !== null) record.name = name;
  if (replacedAt !== undefined) record.replacedAt = replacedAt;
  return record;
}

/** Puts a session and its index entries, first removing those of the record it replaces. */
function writeSession(dbs: Databases, hash: Buffer, value: StoredSession): void {
  const old = dbs.sessions.get(hash);
  if (old) unindexSession(dbs, hash, old);
  dbs.sessions.putSync(hash, value);
  dbs.sessionsByKey.putSync(value[0], hash);
  dbs.sessionsByExpiry.putSync(expiryKey(value[3], hash), null);
}

function unindexSession(dbs: Databases, hash: Buffer, session: StoredSession): void {
  dbs.sessionsByKey.removeSync(session[0], hash);
  dbs.sessionsByExpiry.removeSync(expiryKey(session[3], hash));
}

function removeMessage(dbs: Databases, to: string, seq: number, value: StoredMessage): void {
  dbs.queue.removeSync([to, seq]);
  dbs.queueById.removeSync([value.fromKey, value.id]);
  dbs.queueByTime.removeSync([value.ts, to, seq]);
}

function queuedMessage(to: string, seq: number, value: StoredMessage): QueuedMessage {
  return { to, from: value.from, fromKey: value.fromKey, id: value.id, text: value.text, ts: value.ts, seq };
}
