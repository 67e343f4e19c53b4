/**
 * The MongoDB adapter's data layout: its collections, their documents, their indexes, and the one-time steps
 * for older data (slots for an older layout's queue, skeletons for accounts made before they were claimed). Why the layout is this shape is explained in mongo.ts's header.
 */
import { type Collection, type Db } from 'mongodb';
import { skeleton } from '../core/confusables.ts';
import type { QueuedMessage, SessionRecord } from '../core/store.ts';
import { isDuplicateKey, isUnavailable, messageOf } from './mongo-errors.ts';
import { ensureIndexes } from './mongo-indexes.ts';

/** What the layout code logs through. */
export interface LayoutLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface AccountDoc {
  key: string;
  name: string;
  passwordHash: string;
  created: number;
}

export interface SessionDoc {
  tokenHash: string;
  key: string;
  name?: string;
  created: number;
  expires: number;
  replacedAt?: number | null;
}

/** Claim on a replaced session: whoever inserted it reports the session as replaced. */
export interface ReplacementDoc {
  _id: string;
  /** The session's expiry, so purging expired sessions purges their claims too. */
  expires: number;
}

export interface QueueDoc {
  to: string;
  seq: number;
  /** Place under the cap, unique per recipient; negative for messages stored before slots existed. */
  slot: number;
  from: string;
  fromKey: string;
  id: string;
  text: string;
  ts: number;
  /** TTL field: a Date (TTL indexes ignore numbers), per document so retention can change without collMod. */
  expireAt: Date;
}

/** A confusable skeleton (look-alike names) and the name key of the account that claimed it. */
export interface SkeletonDoc {
  _id: string;
  key: string;
}

/** A one-time layout step done on this database (`_id` names it), and when. */
export interface MetaDoc {
  _id: string;
  at: number;
}

/** A seq handed out to `to`: the unique (to, seq) index makes each one go to exactly one enqueue. */
export interface SeqDoc {
  to: string;
  seq: number;
  /** Random token of the block claim that wrote it (see mongo-seqs.ts); absent on single claims. */
  by?: string;
}

/**
 * Creates every index (one per call, existing ones skipped) and gives older queued messages their slots.
 * Resolves with null when the TTL index is in place, or with the server's refusal (FerretDB 1.x refuses TTL
 * indexes), in which case the caller expires messages by sweeping.
 */
export async function createLayout(db: Db, log: LayoutLogger): Promise<string | null> {
  await ensureIndexes(accounts(db), [{ key: { key: 1 }, name: 'account_key_unique', unique: true }]);
  await ensureIndexes(sessions(db), [
    { key: { tokenHash: 1 }, name: 'session_token_unique', unique: true },
    { key: { key: 1 }, name: 'session_key' },
    { key: { expires: 1 }, name: 'session_expires' },
  ]);
  await ensureIndexes(replacements(db), [{ key: { expires: 1 }, name: 'replacement_expires' }]);
  await ensureIndexes(seqs(db), [{ key: { to: 1, seq: 1 }, name: 'seq_recipient_seq_unique', unique: true }]);
  await ensureIndexes(queue(db), [
    { key: { fromKey: 1, id: 1 }, name: 'queue_sender_id_unique', unique: true },
    { key: { to: 1, seq: 1 }, name: 'queue_recipient_seq_unique', unique: true },
    { key: { ts: 1 }, name: 'queue_ts' },
  ]);
  await giveLegacyMessagesSlots(db, log);
  await backfillSkeletons(db, log);
  await ensureIndexes(queue(db), [{ key: { to: 1, slot: 1 }, name: 'queue_recipient_slot_unique', unique: true }]);
  try {
    await ensureIndexes(queue(db), [{ key: { expireAt: 1 }, name: 'queue_ttl', expireAfterSeconds: 0 }]);
    return null;
  } catch (error) {
    if (isUnavailable(error)) throw error;
    return messageOf(error);
  }
}


/**
 * Messages queued before slots existed get slot -seq: unique per recipient, outside every cap's range, so
 * the slot index can be built over them. They still count when a queue is checked for "full". Idempotent,
 * so two processes starting at once on an old database do the same thing.
 */
async function giveLegacyMessagesSlots(db: Db, log: LayoutLogger): Promise<void> {
  const legacy = await queue(db).find({ slot: { $exists: false } }, { projection: { _id: 1, seq: 1 } }).toArray();
  if (legacy.length === 0) return;
  await queue(db).bulkWrite(
    legacy.map((doc) => ({ updateOne: { filter: { _id: doc._id }, update: { $set: { slot: -doc.seq } } } })),
    { ordered: false },
  );
  log.warn({ messages: legacy.length }, 'queued messages from an older layout given slots under the cap');
}

/** Accounts read per step of the skeleton backfill. */
const BACKFILL_BATCH = 1000;

/**
 * Accounts made before registration claimed skeletons get theirs, once per database (recorded in `meta`).
 * Oldest account first (by `_id`, which orders by creation), so the oldest of two look-alikes holds the
 * skeleton, as if each had registered with the check. A skeleton already claimed (by a registration running
 * meanwhile, or another process doing the same backfill) is left to its holder: only the unique `_id`
 * decides, and a collision is not read beyond its code.
 */
async function backfillSkeletons(db: Db, log: LayoutLogger): Promise<void> {
  if ((await meta(db).findOne({ _id: 'skeletonsBackfilled' })) !== null) return;
  const cursor = accounts(db).find({}, { projection: { key: 1 } }).sort({ _id: 1 }).batchSize(BACKFILL_BATCH);
  let claimed = 0;
  let batch: string[] = [];
  const flush = async (): Promise<void> => {
    const wanted = new Map<string, string>();
    for (const key of batch) {
      const sk = skeleton(key);
      if (!wanted.has(sk)) wanted.set(sk, key);
    }
    batch = [];
    const held = await skeletons(db).find({ _id: { $in: [...wanted.keys()] } }, { projection: { _id: 1 } }).toArray();
    for (const doc of held) wanted.delete(doc._id);
    if (wanted.size === 0) return;
    try {
      await skeletons(db).insertMany([...wanted].map(([_id, key]) => ({ _id, key })), { ordered: false });
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    claimed += wanted.size;
  };
  for await (const doc of cursor) {
    batch.push(doc.key);
    if (batch.length >= BACKFILL_BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  try {
    await meta(db).insertOne({ _id: 'skeletonsBackfilled', at: Date.now() });
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
  }
  if (claimed > 0) log.info({ accounts: claimed }, 'look-alike skeletons claimed for older accounts');
}

export function accounts(db: Db): Collection<AccountDoc> {
  return db.collection<AccountDoc>('accounts');
}

export function sessions(db: Db): Collection<SessionDoc> {
  return db.collection<SessionDoc>('sessions');
}

export function replacements(db: Db): Collection<ReplacementDoc> {
  return db.collection<ReplacementDoc>('session_replacements');
}

export function queue(db: Db): Collection<QueueDoc> {
  return db.collection<QueueDoc>('queue');
}

export function skeletons(db: Db): Collection<SkeletonDoc> {
  return db.collection<SkeletonDoc>('skeletons');
}

export function meta(db: Db): Collection<MetaDoc> {
  return db.collection<MetaDoc>('meta');
}

export function seqs(db: Db): Collection<SeqDoc> {
  return db.collection<SeqDoc>('queue_seqs');
}

export function toSessionRecord(doc: SessionDoc): SessionRecord {
  return {
    tokenHash: doc.tokenHash,
    key: doc.key,
    ...(typeof doc.name === 'string' ? { name: doc.name } : {}),
    created: doc.created,
    expires: doc.expires,
    ...(typeof doc.replacedAt === 'number' ? { replacedAt: doc.replacedAt } : {}),
  };
}

export function toQueuedMessage(doc: QueueDoc): QueuedMessage {
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
