/**
 * The room part of the MongoDB adapter (server/core/room-store.ts). Collections:
 *
 * - `rooms`         { key, name, ownerKey, owner, private, created }         unique (key)
 * - `room_members`  { room, key, name, cursor, joined }                      unique (room, key), (key)
 * - `room_cursors`  { room, key, seq }                                       unique (room, key, seq)
 * - `room_invites`  { _id: room NUL key, room, key, at, by? }                 (key, at)   (`by` absent on older ones)
 * - `room_log`      { room, seq, from, fromKey, id, text, ts, line? }        unique (room, seq),
 *                                                                             unique (room, fromKey, id), (ts)
 *
 * As in the rest of the adapter (mongo.ts's header), no read-modify-write is relied on to be atomic and no
 * error is read beyond code 11000:
 * - a room's seqs are claimed like a recipient's, by inserting into `queue_seqs` under its unique (to, seq)
 *   index, with `to` = `#` + room key (`#` is never in a name, so the two namespaces cannot meet); a log insert
 *   that collides is diagnosed by reading (room, fromKey, id): present means duplicate, else its seq was taken
 *   (by another process) and a new one is claimed;
 * - a member's cursor is never updated in place: each advance inserts `{ room, key, seq }` (a second insert of
 *   the same seq collides harmlessly) and deletes the lower ones; the cursor is the highest stored, or the
 *   member document's starting cursor. Two racing advances both land and the higher one wins;
 * - the cap (log length) and the member limit are checked before the insert (the log is counted only when its
 *   seq span reaches the cap): within one process the core serialises membership changes, so the member limit
 *   holds, while appends in flight together (the core issues them in order without waiting for each) can pass
 *   the cap by their number, as can processes sharing a database. What is stored is never lost for it.
 * Retention: entries older than the retention period are deleted by `purgeExpiredRoomEntries` on the core's
 * retention timer (no TTL index, so it works the same on servers that refuse TTL indexes).
 */
import type { Collection, Db } from 'mongodb';
import type {
  AddMemberResult, AppendResult, NewRoomEntry, RoomEntry, RoomInvite, RoomLine, RoomMember, RoomRecord, RoomStore,
} from '../core/room-store.ts';
import { isDuplicateKey } from './mongo-errors.ts';
import { ensureIndexes } from './mongo-indexes.ts';
import { MAX_ATTEMPTS, type SeqClaims } from './mongo-seqs.ts';

interface MemberDoc { room: string; key: string; name: string; cursor: number; joined: number }
interface CursorDoc { room: string; key: string; seq: number }
interface InviteDoc { _id: string; room: string; key: string; at: number; by?: string }
interface LogDoc { room: string; seq: number; from: string; fromKey: string; id: string; text: string; ts: number; line?: RoomLine }

const rooms = (db: Db): Collection<RoomRecord> => db.collection<RoomRecord>('rooms');
const members = (db: Db): Collection<MemberDoc> => db.collection<MemberDoc>('room_members');
const cursors = (db: Db): Collection<CursorDoc> => db.collection<CursorDoc>('room_cursors');
const invites = (db: Db): Collection<InviteDoc> => db.collection<InviteDoc>('room_invites');
const log = (db: Db): Collection<LogDoc> => db.collection<LogDoc>('room_log');

/** Creates the room collections' indexes (one per call, existing ones skipped; see mongo-indexes.ts). */
export async function createRoomLayout(db: Db): Promise<void> {
  await ensureIndexes(rooms(db), [{ key: { key: 1 }, name: 'room_key_unique', unique: true }]);
  await ensureIndexes(members(db), [
    { key: { room: 1, key: 1 }, name: 'room_member_unique', unique: true },
    { key: { key: 1 }, name: 'room_member_key' },
  ]);
  await ensureIndexes(cursors(db), [{ key: { room: 1, key: 1, seq: 1 }, name: 'room_cursor_unique', unique: true }]);
  await ensureIndexes(invites(db), [{ key: { key: 1, at: 1 }, name: 'room_invite_key_at' }]);
  await ensureIndexes(log(db), [
    { key: { room: 1, seq: 1 }, name: 'room_log_seq_unique', unique: true },
    { key: { room: 1, fromKey: 1, id: 1 }, name: 'room_log_sender_id_unique', unique: true },
    { key: { ts: 1 }, name: 'room_log_ts' },
  ]);
}

/** The seq namespace of a room in `queue_seqs`. */
const seqKey = (room: string): string => `#${room}`;

/** What the adapter lends the room part: its database (or a StoreUnavailableError) and its seq claims. */
export interface MongoAccess {
  run<T>(op: string, body: (db: Db) => Promise<T>): Promise<T>;
  seqs: SeqClaims;
}

export class MongoRooms implements RoomStore {
  constructor(private readonly io: MongoAccess) {}

  createRoom(room: RoomRecord, at: number): Promise<boolean> {
    return this.io.run('createRoom', async (db) => {
      try {
        await rooms(db).insertOne({ key: room.key, name: room.name, ownerKey: room.ownerKey, owner: room.owner, private: room.private, created: room.created });
      } catch (error) {
        if (isDuplicateKey(error)) return false;
        throw error;
      }
      await this.insertMember(db, room.key, { key: room.ownerKey, name: room.owner }, 0, at);
      return true;
    });
  }

  getRoom(key: string): Promise<RoomRecord | null> {
    return this.io.run('getRoom', async (db) => {
      const doc = await rooms(db).findOne({ key }, { projection: { _id: 0 } });
      return doc === null ? null : toRoom(doc);
    });
  }

  listPublicRooms(limit: number): Promise<RoomRecord[]> {
    return this.io.run('listPublicRooms', async (db) =>
      (await rooms(db).find({ private: false }, { projection: { _id: 0 } }).sort({ key: 1 }).limit(limit).toArray()).map(toRoom));
  }

  setRoomOwner(key: string, ownerKey: string, owner: string): Promise<boolean> {
    return this.io.run('setRoomOwner', async (db) => (await rooms(db).updateOne({ key }, { $set: { ownerKey, owner } })).matchedCount > 0);
  }

  addMember(room: string, member: { key: string; name: string }, cursor: number, at: number, limit: number): Promise<AddMemberResult> {
    return this.io.run('addMember', async (db) => {
      if ((await members(db).findOne({ room, key: member.key }, { projection: { _id: 1 } })) !== null) return 'member';
      if ((await members(db).countDocuments({ room })) >= limit) return 'full';
      // Cursors a crash left behind from an earlier membership would skip the newcomer's history.
      await cursors(db).deleteMany({ room, key: member.key });
      if (!(await this.insertMember(db, room, member, cursor, at))) return 'member';
      await invites(db).deleteOne({ _id: inviteId(room, member.key) });
      return 'added';
    });
  }

  private async insertMember(db: Db, room: string, member: { key: string; name: string }, cursor: number, at: number): Promise<boolean> {
    try {
      await members(db).insertOne({ room, key: member.key, name: member.name, cursor, joined: at });
      return true;
    } catch (error) {
      if (isDuplicateKey(error)) return false;
      throw error;
    }
  }

  removeMember(room: string, key: string): Promise<boolean> {
    return this.io.run('removeMember', async (db) => {
      // The membership goes first: a crash before the cursors go leaves cursors that addMember clears.
      const removed = (await members(db).deleteOne({ room, key })).deletedCount > 0;
      await cursors(db).deleteMany({ room, key });
      return removed;
    });
  }

  members(room: string): Promise<RoomMember[]> {
    return this.io.run('members', (db) => this.readMembers(db, room));
  }

  private async readMembers(db: Db, room: string): Promise<RoomMember[]> {
    const [docs, marks] = await Promise.all([
      members(db).find({ room }, { projection: { _id: 0 } }).sort({ key: 1 }).toArray(),
      cursors(db).find({ room }, { projection: { _id: 0, key: 1, seq: 1 } }).toArray(),
    ]);
    const highest = new Map<string, number>();
    for (const m of marks) highest.set(m.key, Math.max(highest.get(m.key) ?? 0, m.seq));
    return docs.map((d) => ({ key: d.key, name: d.name, cursor: Math.max(d.cursor, highest.get(d.key) ?? 0), joined: d.joined }));
  }

  roomsOf(key: string): Promise<string[]> {
    return this.io.run('roomsOf', async (db) =>
      (await members(db).find({ key }, { projection: { _id: 0, room: 1 } }).toArray()).map((d) => d.room).sort());
  }

  advanceCursor(room: string, key: string, seq: number): Promise<void> {
    return this.io.run('advanceCursor', async (db) => {
      const member = await members(db).findOne({ room, key }, { projection: { _id: 0, cursor: 1 } });
      if (member === null || member.cursor >= seq) return;
      try {
        await cursors(db).insertOne({ room, key, seq });
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      await cursors(db).deleteMany({ room, key, seq: { $lt: seq } });
    });
  }

  invite(room: string, key: string, at: number, by: string): Promise<void> {
    return this.io.run('invite', async (db) => {
      try {
        await invites(db).updateOne({ _id: inviteId(room, key) }, { $set: { room, key, at, by } }, { upsert: true });
      } catch (error) {
        if (!isDuplicateKey(error)) throw error; // two upserts of one invitation raced: the other one stands
      }
    });
  }

  invitesOf(key: string, limit: number): Promise<RoomInvite[]> {
    if (!(limit > 0)) return Promise.resolve([]);
    return this.io.run('invitesOf', async (db) =>
      (await invites(db).find({ key }, { projection: { _id: 0, room: 1, at: 1, by: 1 } }).sort({ at: -1 }).limit(limit).toArray())
        .map((d) => (d.by === undefined ? { room: d.room, at: d.at } : { room: d.room, at: d.at, by: d.by })));
  }

  isInvited(room: string, key: string): Promise<boolean> {
    return this.io.run('isInvited', async (db) => (await invites(db).findOne({ _id: inviteId(room, key) })) !== null);
  }

  append(entry: NewRoomEntry, cap: number): Promise<AppendResult> {
    return this.io.run('append', async (db) => {
      // Claimed before any await, so appends in flight together get seqs in call order (see mongo.ts enqueue).
      let claim = cap > 0 ? this.io.seqs.next(db, seqKey(entry.room)) : null;
      claim?.catch(() => undefined);
      const existing = await log(db).findOne({ room: entry.room, fromKey: entry.fromKey, id: entry.id }, { projection: { _id: 0, seq: 1 } });
      if (existing !== null) return { status: 'duplicate', seq: existing.seq };
      if (claim === null || (await this.atCap(db, entry.room, cap))) return { status: 'full' };
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const seq = await claim!;
        const doc: LogDoc = { room: entry.room, seq, from: entry.from, fromKey: entry.fromKey, id: entry.id, text: entry.text, ts: entry.ts };
        if (entry.line !== undefined) doc.line = entry.line;
        try {
          await log(db).insertOne(doc);
          return { status: 'stored', seq };
        } catch (error) {
          if (!isDuplicateKey(error)) throw error;
        }
        const dup = await log(db).findOne({ room: entry.room, fromKey: entry.fromKey, id: entry.id }, { projection: { _id: 0, seq: 1 } });
        if (dup !== null) return { status: 'duplicate', seq: dup.seq };
        claim = this.io.seqs.next(db, seqKey(entry.room)); // its seq was stored by another process
      }
      throw new Error(`room log ${entry.room}: gave up after ${MAX_ATTEMPTS} contended attempts`);
    });
  }

  /**
   * Whether the room's log holds `cap` entries. Seqs only grow, so the log holds at most (highest - lowest + 1)
   * entries: only when that span reaches the cap is the log counted (two index probes instead of a count).
   */
  private async atCap(db: Db, room: string, cap: number): Promise<boolean> {
    const [low, high] = await Promise.all([
      log(db).find({ room }, { projection: { _id: 0, seq: 1 } }).sort({ seq: 1 }).limit(1).next(),
      log(db).find({ room }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(1).next(),
    ]);
    if (low === null || high === null || high.seq - low.seq + 1 < cap) return false;
    return (await log(db).countDocuments({ room })) >= cap;
  }

  fetchRoom(room: string, afterSeq: number, limit: number, notBefore: number): Promise<RoomEntry[]> {
    if (!(limit > 0)) return Promise.resolve([]);
    return this.io.run('fetchRoom', async (db) =>
      (await log(db).find({ room, seq: { $gt: afterSeq }, ts: { $gte: notBefore } }, { projection: { _id: 0 } })
        .sort({ seq: 1 }).limit(limit).toArray()).map(toEntry));
  }

  historyStart(room: string, count: number, notBefore: number): Promise<number> {
    return this.io.run('historyStart', async (db) => {
      const last = await log(db).find({ room }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(1).next();
      if (last === null) return 0;
      if (count <= 0) return last.seq;
      const recent = await log(db).find({ room, ts: { $gte: notBefore } }, { projection: { _id: 0, seq: 1 } })
        .sort({ seq: -1 }).limit(count).toArray();
      return recent.length === 0 ? last.seq : recent[recent.length - 1]!.seq - 1;
    });
  }

  roomLogLength(room: string): Promise<number> {
    return this.io.run('roomLogLength', (db) => log(db).countDocuments({ room }));
  }

  trimRoom(room: string, keep: number): Promise<number> {
    return this.io.run('trimRoom', async (db) => {
      const all = await this.readMembers(db, room);
      if (all.length === 0) return 0;
      const floor = Math.min(...all.map((m) => m.cursor));
      let below = floor + 1;
      if (keep > 0) {
        const kept = await log(db).find({ room }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(keep).toArray();
        if (kept.length < keep) return 0;
        below = Math.min(below, kept[kept.length - 1]!.seq);
      }
      return (await log(db).deleteMany({ room, seq: { $lt: below } })).deletedCount;
    });
  }

  purgeExpiredRoomEntries(before: number): Promise<number> {
    return this.io.run('purgeExpiredRoomEntries', async (db) => (await log(db).deleteMany({ ts: { $lt: before } })).deletedCount);
  }
}

const inviteId = (room: string, key: string): string => `${room}\u0000${key}`;

function toRoom(d: RoomRecord): RoomRecord {
  return { key: d.key, name: d.name, ownerKey: d.ownerKey, owner: d.owner, private: d.private, created: d.created };
}

function toEntry(d: LogDoc): RoomEntry {
  const e: RoomEntry = { room: d.room, seq: d.seq, from: d.from, fromKey: d.fromKey, id: d.id, text: d.text, ts: d.ts };
  if (d.line !== undefined) e.line = d.line;
  return e;
}
