/**
 * The Store port: everything Parley keeps durably. Adapters live in `server/store/` (embedded LMDB, MongoDB)
 * and must pass the one contract suite in `test/contract/store.contract.ts`.
 *
 * Accounts and queued messages are keyed by the *name key* (`nameKey()` from shared: NFKC + lower case);
 * the display form of a name is kept beside it. Every method may reject with `StoreUnavailableError` when the
 * backing store cannot be reached; the core turns that into STORE_UNAVAILABLE for clients and never reports a
 * message as queued unless `enqueue` resolved.
 */
import type { RoomStore } from './room-store.ts';

export interface Account {
  /** Name key (identity). */
  key: string;
  /** Display form, as registered (NFKC-normalised). */
  name: string;
  /** scrypt hash in the self-describing form produced by server/core/passwords.ts. */
  passwordHash: string;
  created: number;
}

export interface SessionRecord {
  /** SHA-256 of the bearer token: 64 lower-case hex characters. The token itself is never stored. */
  tokenHash: string;
  /** Name key of the account. */
  key: string;
  /**
   * Display name of the account, so authenticating a socket needs no account read. Absent in sessions
   * written before it was added; readers then look the account up.
   */
  name?: string;
  created: number;
  /** ms since epoch after which the session is invalid. */
  expires: number;
  /** Set when a newer sign-in of the same name took over: the time it happened. */
  replacedAt?: number;
}

export interface NewQueuedMessage {
  /** Recipient name key. */
  to: string;
  /** Sender display name (as stamped by the server). */
  from: string;
  /** Sender name key: (fromKey, id) is unique across the whole queue. */
  fromKey: string;
  /** Client-made message id. */
  id: string;
  text: string;
  /** Acceptance time, ms since epoch. */
  ts: number;
}

export interface QueuedMessage extends NewQueuedMessage {
  /**
   * Position in the recipient's queue: strictly increasing in acceptance order per recipient, also when several
   * Parley processes share one store. Not necessarily dense.
   */
  seq: number;
}

/** A `delivered` receipt waiting for its sender: message `id` reached `to` (display name) at `at`. */
export interface PendingReceipt {
  id: string;
  to: string;
  at: number;
}

export type EnqueueResult =
  /** Stored now. */
  | { status: 'queued'; seq: number }
  /** (fromKey, id) was already in the queue; nothing written. */
  | { status: 'duplicate'; seq: number }
  /** The recipient's queue holds `cap` messages already; nothing written. */
  | { status: 'full' };

export interface Store {
  /** Human-readable adapter name for logs and health (`embedded`, `mongodb`). */
  readonly kind: string;
  /** Rooms, their members and logs (server/core/room-store.ts). Usable once `open` resolved. */
  readonly rooms: RoomStore;

  /** Connects / opens, creates indexes. Rejects with a clear message when it cannot. */
  open(): Promise<void>;
  /** Flushes and closes. Idempotent. */
  close(): Promise<void>;
  /** Cheap liveness check used by health and by outage recovery. */
  ping(): Promise<boolean>;

  // accounts
  /** Creates the account; returns false (and writes nothing) when the key exists. */
  createAccount(account: Account): Promise<boolean>;
  getAccount(key: string): Promise<Account | null>;
  /**
   * Claims a confusable skeleton (Unicode TS #39, see server/core/confusables.ts) for the account `key`:
   * resolves to the key that holds it, which is `key` when it was free or already this account's. Atomic:
   * of two racing claims of one skeleton for different keys, one wins.
   */
  claimSkeleton(skeleton: string, key: string): Promise<string>;

  // sessions
  putSession(session: SessionRecord): Promise<void>;
  getSession(tokenHash: string): Promise<SessionRecord | null>;
  deleteSession(tokenHash: string): Promise<void>;
  /**
   * Marks every live session of `key` except `keepTokenHash` as replaced at `at` and returns their token
   * hashes. Sessions already replaced are left as they are. When a live session of `key` is newer than
   * `keepTokenHash` (`isNewerSession`: a sign-in that raced this one, on another process), `keepTokenHash` is
   * marked and returned too, and that newer one is left live: so of sign-ins racing on several processes, whose
   * calls can each see the other's session live, exactly the newest session ends live, never none.
   */
  replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]>;
  /** Deletes sessions whose `expires` is before `now`; returns how many. */
  purgeExpiredSessions(now: number): Promise<number>;

  // the offline queue
  /**
   * Appends to `to`'s queue unless (fromKey, id) is already queued (for any recipient) or the queue holds
   * `cap` messages. Atomic: concurrent calls never exceed the cap nor store a duplicate.
   * Resolves only once the message survives a crash of this process.
   */
  enqueue(message: NewQueuedMessage, cap: number): Promise<EnqueueResult>;
  /**
   * Puts messages that were already accepted (in flight to a session that left) back on `to`'s queue, in the
   * given order, as one durable write where the adapter can: a takeover with thousands in flight must not hold
   * the recipient's queue for thousands of round trips. Never refused for the cap (their senders were told
   * `accepted`), but they count toward it from then on. A (fromKey, id) already queued is skipped and reported
   * as `duplicate`. Results are in the order of `messages`; every message must be for `to`.
   */
  enqueueBatch(to: string, messages: NewQueuedMessage[]): Promise<EnqueueResult[]>;
  /**
   * Keeps `delivered` receipts for a sender who was not online when its messages were acknowledged, so they
   * reach it when it is back (see `takeReceipts`). (fromKey, id) is kept once. Resolves once durable.
   */
  putReceipts(fromKey: string, receipts: PendingReceipt[]): Promise<void>;
  /** Returns and deletes every receipt kept for `fromKey`, oldest first (at most `limit`). */
  takeReceipts(fromKey: string, limit: number): Promise<PendingReceipt[]>;
  /** Up to `limit` messages of `to` with seq > afterSeq and ts >= notBefore, in seq order. */
  fetchQueue(to: string, afterSeq: number, limit: number, notBefore: number): Promise<QueuedMessage[]>;
  /** Deletes the given messages of `to` (bulk); unknown seqs are ignored. Returns how many were deleted. */
  ackQueue(to: string, seqs: number[]): Promise<number>;
  /** Number of messages waiting for `to`. */
  queueLength(to: string): Promise<number>;
  /** Looks a queued message up by (fromKey, id); used to answer resends. */
  findQueued(fromKey: string, id: string): Promise<QueuedMessage | null>;
  /** Deletes queued messages with ts < before (retention); returns how many. */
  purgeExpiredMessages(before: number): Promise<number>;

  // account changes
  /** Replaces the account's password hash; false (nothing written) when there is no such account. */
  setPassword(key: string, passwordHash: string): Promise<boolean>;
  /** Deletes every session of `key` except `keepTokenHash` (if given); returns the deleted token hashes. */
  deleteSessionsOf(key: string, keepTokenHash?: string): Promise<string[]>;
  /**
   * Deletes the account, all its sessions and every message queued for it; false when there was no account.
   * Messages it sent that wait in others' queues stay (they were accepted). Sessions go first, so a crash
   * half-way leaves an account nobody is signed in to, never a session without an account.
   */
  deleteAccount(key: string): Promise<boolean>;
}

/** Thrown (rejected) by adapters when the backing store cannot be reached. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The order `replaceSessions` keeps between two sessions of one name: the later `created` is newer, and of two
 * created in the same millisecond the larger token hash (hex, so string order is byte order).
 */
export function isNewerSession(a: { created: number; tokenHash: string }, b: { created: number; tokenHash: string }): boolean {
  return a.created > b.created || (a.created === b.created && a.tokenHash > b.tokenHash);
}
