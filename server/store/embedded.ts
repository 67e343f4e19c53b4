/**
 * The embedded durable Store: LMDB (through lmdb-js) in a directory on local disk, used when no MongoDB is
 * configured. One LMDB environment holds several named sub-databases:
 *
 *   accounts          name key -> Account
 *   sessions          token hash -> SessionRecord
 *   sessionsByKey     name key -> token hash (dupSort: one entry per session of that name)
 *   sessionsByExpiry  [expires, token hash] -> null
 *   queue             [to, seq] -> the message without `to` and `seq` (those are the key)
 *   queueById         [fromKey, id] -> { to, seq }: the global (sender, id) uniqueness index
 *   queueByTime       [ts, to, seq] -> null: lets retention purge without scanning every queue
 *   recipients        to -> { last, count }: the last seq handed out and the queue length
 *
 * Every write that must be atomic runs as one lmdb-js transaction callback. LMDB has a single writer across
 * threads *and* processes, so the read-check-write inside a callback (dedup, cap, seq) is atomic even when
 * several Parley processes share the directory. The index databases are only written in the same callbacks
 * as the records they point at, so they never disagree with them.
 *
 * Keys use lmdb-js's default ordered-binary encoding, where an array key is its elements joined by a 0 byte.
 * That is unambiguous only because names and message ids never contain control characters (both are
 * validated in shared/ before they get here).
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { Logger } from '../core/logger.ts';
import {
  StoreUnavailableError,
  type Account,
  type EnqueueResult,
  type NewQueuedMessage,
  type QueuedMessage,
  type SessionRecord,
  type Store,
} from '../core/store.ts';

/** Options for {@link EmbeddedStore}. */
export interface EmbeddedStoreOptions {
  /** Directory holding the LMDB files (`data.mdb`, `lock.mdb`); created if missing. The server uses `./data`. */
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
type ExpiryKey = [expires: number, tokenHash: string];

interface Databases {
  root: RootDatabase;
  accounts: Database<Account, string>;
  sessions: Database<SessionRecord, string>;
  sessionsByKey: Database<string, string>;
  sessionsByExpiry: Database<null, ExpiryKey>;
  queue: Database<StoredMessage, QueueKey>;
  queueById: Database<MessageRef, IdKey>;
  queueByTime: Database<null, TimeKey>;
  recipients: Database<RecipientMeta, string>;
}

/**
 * Deletions (retention, expired sessions) run in transactions of at most this many records: each transaction
 * callback runs on the main thread and holds LMDB's writer lock, so one huge purge would stall every enqueue.
 */
const PURGE_BATCH = 500;

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

  constructor(options: EmbeddedStoreOptions) {
    this.#dir = path.resolve(options.dir);
    this.#logger = options.logger;
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
    let root: RootDatabase | undefined;
    try {
      root = open({
        path: dir,
        // `dir` may legitimately contain a dot (`./data.v1`): without this lmdb-js would treat it as a file name.
        noSubdir: false,
        maxDbs: 16,
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
      this.#dbs = {
        root,
        accounts: root.openDB<Account, string>({ name: 'accounts' }),
        sessions: root.openDB<SessionRecord, string>({ name: 'sessions' }),
        // ordered-binary values keep a dupSort index's values sorted and comparable for removal.
        sessionsByKey: root.openDB<string, string>({ name: 'sessionsByKey', dupSort: true, encoding: 'ordered-binary' }),
        sessionsByExpiry: root.openDB<null, ExpiryKey>({ name: 'sessionsByExpiry' }),
        queue: root.openDB<StoredMessage, QueueKey>({ name: 'queue' }),
        queueById: root.openDB<MessageRef, IdKey>({ name: 'queueById' }),
        queueByTime: root.openDB<null, TimeKey>({ name: 'queueByTime' }),
        recipients: root.openDB<RecipientMeta, string>({ name: 'recipients' }),
      };
    } catch (error) {
      await root?.close().catch(() => undefined);
      throw new StoreUnavailableError(
        `embedded store: cannot open the LMDB database in ${JSON.stringify(dir)} (${describe(error)})`,
        { cause: error },
      );
    }
    this.#logger?.info({ store: this.kind, dir }, 'store opened');
  }

  async close(): Promise<void> {
    await this.#opening?.catch(() => undefined);
    const dbs = this.#dbs;
    if (!dbs) return;
    // Refuse new work first, so nothing slips in between the last flush and the close.
    this.#dbs = null;
    try {
      await dbs.root.flushed;
      await dbs.root.close();
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
      return true;
    } catch {
      return false;
    }
  }

  // accounts

  async createAccount(account: Account): Promise<boolean> {
    const { accounts } = this.#databases();
    const record: Account = {
      key: account.key,
      name: account.name,
      passwordHash: account.passwordHash,
      created: account.created,
    };
    return this.#write('createAccount', () => {
      if (accounts.doesExist(record.key)) return false;
      accounts.putSync(record.key, record);
      return true;
    });
  }

  async getAccount(key: string): Promise<Account | null> {
    const { accounts } = this.#databases();
    return this.#read('getAccount', () => accounts.get(key) ?? null);
  }

  // sessions

  async putSession(session: SessionRecord): Promise<void> {
    const dbs = this.#databases();
    const record = sessionRecord(session);
    await this.#write('putSession', () => {
      const old = dbs.sessions.get(record.tokenHash);
      if (old) unindexSession(dbs, old);
      dbs.sessions.putSync(record.tokenHash, record);
      dbs.sessionsByKey.putSync(record.key, record.tokenHash);
      dbs.sessionsByExpiry.putSync([record.expires, record.tokenHash], null);
    });
  }

  async getSession(tokenHash: string): Promise<SessionRecord | null> {
    const { sessions } = this.#databases();
    return this.#read('getSession', () => sessions.get(tokenHash) ?? null);
  }

  async deleteSession(tokenHash: string): Promise<void> {
    const dbs = this.#databases();
    await this.#write('deleteSession', () => {
      const old = dbs.sessions.get(tokenHash);
      if (!old) return;
      unindexSession(dbs, old);
      dbs.sessions.removeSync(tokenHash);
    });
  }

  async replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]> {
    const dbs = this.#databases();
    return this.#write('replaceSessions', () => {
      const replaced: string[] = [];
      for (const tokenHash of Array.from(dbs.sessionsByKey.getValues(key))) {
        if (tokenHash === keepTokenHash) continue;
        const session = dbs.sessions.get(tokenHash);
        if (!session || session.replacedAt !== undefined) continue;
        dbs.sessions.putSync(tokenHash, { ...session, replacedAt: at });
        replaced.push(tokenHash);
      }
      return replaced;
    });
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    const dbs = this.#databases();
    let total = 0;
    for (;;) {
      const purged = await this.#write('purgeExpiredSessions', () => {
        // The end bound [now] sorts before every [now, hash], so exactly `expires < now` is taken.
        const keys = Array.from(dbs.sessionsByExpiry.getKeys({ end: [now], limit: PURGE_BATCH }));
        for (const [expires, tokenHash] of keys) {
          const session = dbs.sessions.get(tokenHash);
          // The expiry index only points at current records, but a stale entry must not block the purge.
          if (session) {
            dbs.sessionsByKey.removeSync(session.key, tokenHash);
            dbs.sessions.removeSync(tokenHash);
          }
          dbs.sessionsByExpiry.removeSync([expires, tokenHash]);
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
    return this.#write('enqueue', (): EnqueueResult => {
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
    return this.#write('ackQueue', () => {
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
      const purged = await this.#write('purgeExpiredMessages', () => {
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
   * Runs `work` inside an lmdb-js asynchronous transaction and resolves once that transaction is durable.
   *
   * lmdb-js runs every transaction callback queued in one event turn inside one LMDB write transaction, in call
   * order, on the main thread, then commits on its write thread: concurrent enqueues cost one commit and one
   * fsync between them. The callback sees the writes of the callbacks before it, which is what makes the
   * dedup / cap / seq checks atomic.
   *
   * Documented lmdb-js semantics: with overlappingSync the transaction promise means *committed* (visible),
   * and `root.flushed` means *fsync'ed*. `root.flushed` is a thenable read when `.then` is called, so it is
   * called synchronously right after queuing the transaction: it then belongs to the batch holding our
   * callback (or a later one, whose fsync covers ours).
   */
  async #write<T>(op: string, work: () => T): Promise<T> {
    const { root } = this.#databases();
    let committed: Promise<T>;
    let flushed: Promise<unknown>;
    try {
      committed = root.transaction(work);
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
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** A copy holding only the record's own fields, so no `undefined` is ever encoded. */
function sessionRecord(session: SessionRecord): SessionRecord {
  const record: SessionRecord = {
    tokenHash: session.tokenHash,
    key: session.key,
    created: session.created,
    expires: session.expires,
  };
  if (session.replacedAt !== undefined) record.replacedAt = session.replacedAt;
  return record;
}

function unindexSession(dbs: Databases, session: SessionRecord): void {
  dbs.sessionsByKey.removeSync(session.key, session.tokenHash);
  dbs.sessionsByExpiry.removeSync([session.expires, session.tokenHash]);
}

function removeMessage(dbs: Databases, to: string, seq: number, value: StoredMessage): void {
  dbs.queue.removeSync([to, seq]);
  dbs.queueById.removeSync([value.fromKey, value.id]);
  dbs.queueByTime.removeSync([value.ts, to, seq]);
}

function queuedMessage(to: string, seq: number, value: StoredMessage): QueuedMessage {
  return { to, from: value.from, fromKey: value.fromKey, id: value.id, text: value.text, ts: value.ts, seq };
}
