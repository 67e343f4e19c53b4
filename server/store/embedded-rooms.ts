/**
 * The room part of the embedded store (server/core/room-store.ts), in the main LMDB environment beside the
 * queue. Databases:
 *
 *   rooms            room key -> RoomRecord
 *   roomMembers      [room, member key] -> { name, cursor, joined }
 *   memberRooms      [member key, room] -> null: the rooms of a member
 *   roomInvites      [room, member key] -> { at, by }: invited when, by whom (a bare `at` in older directories)
 *   memberInvites    [member key, at, room] -> null: an invitee's invitations, oldest first
 *   roomLog          [room, seq] -> the entry without `room` and `seq`
 *   roomLogById      [room, fromKey, id] -> seq: (room, sender, id) uniqueness
 *   roomLogByTime    [ts, room, seq] -> null: retention without scanning every log
 *   roomMeta         room -> { last, count }: last seq handed out and the log's length
 *
 * As for the queue, every check-then-write (dedup, cap, seq, member limit) runs inside one lmdb-js transaction
 * callback, which LMDB serialises across threads and processes, and reads come before the first write of a
 * callback (a throw half-way does not roll back in lmdb-js's shared batch). Durable once `write` resolves.
 */
import type { Database, RootDatabase } from 'lmdb';
import type {
  AddMemberResult, AppendResult, NewRoomEntry, RoomEntry, RoomInvite, RoomLine, RoomMember, RoomRecord, RoomStore,
} from '../core/room-store.ts';

interface StoredMember { name: string; cursor: number; joined: number }
/** Directories written before the inviter was kept hold the time alone. */
type StoredInvite = { at: number; by: string } | number;
interface StoredEntry { from: string; fromKey: string; id: string; text: string; ts: number; line?: RoomLine }
interface RoomMeta { last: number; count: number }

export interface RoomDatabases {
  rooms: Database<RoomRecord, string>;
  roomMembers: Database<StoredMember, [string, string]>;
  memberRooms: Database<null, [string, string]>;
  roomInvites: Database<StoredInvite, [string, string]>;
  memberInvites: Database<null, [string, number, string]>;
  roomLog: Database<StoredEntry, [string, number]>;
  roomLogById: Database<number, [string, string, string]>;
  roomLogByTime: Database<null, [number, string, number]>;
  roomMeta: Database<RoomMeta, string>;
}

/** Databases the room part adds to the main environment. */
export const ROOM_DATABASES = 9;

export function openRoomDatabases(root: RootDatabase): RoomDatabases {
  return {
    rooms: root.openDB({ name: 'rooms' }),
    roomMembers: root.openDB({ name: 'roomMembers' }),
    memberRooms: root.openDB({ name: 'memberRooms' }),
    roomInvites: root.openDB({ name: 'roomInvites' }),
    memberInvites: root.openDB({ name: 'memberInvites' }),
    roomLog: root.openDB({ name: 'roomLog' }),
    roomLogById: root.openDB({ name: 'roomLogById' }),
    roomLogByTime: root.openDB({ name: 'roomLogByTime' }),
    roomMeta: root.openDB({ name: 'roomMeta' }),
  };
}

/** How the store runs a durable write transaction and a read (errors become StoreUnavailableError there). */
export interface EmbeddedAccess {
  dbs(): RoomDatabases;
  write<T>(op: string, work: () => T): Promise<T>;
  read<T>(op: string, work: () => T): Promise<T>;
}

/** Retention deletes at most this many entries per transaction (each holds LMDB's writer lock). */
const PURGE_BATCH = 500;

export class EmbeddedRooms implements RoomStore {
  constructor(private readonly io: EmbeddedAccess) {}

  async createRoom(room: RoomRecord, at: number): Promise<boolean> {
    const d = this.io.dbs();
    const record: RoomRecord = { ...room };
    return this.io.write('createRoom', () => {
      if (d.rooms.doesExist(room.key)) return false;
      d.rooms.putSync(room.key, record);
      d.roomMembers.putSync([room.key, room.ownerKey], { name: room.owner, cursor: 0, joined: at });
      d.memberRooms.putSync([room.ownerKey, room.key], null);
      return true;
    });
  }

  async getRoom(key: string): Promise<RoomRecord | null> {
    const d = this.io.dbs();
    return this.io.read('getRoom', () => d.rooms.get(key) ?? null);
  }

  async listPublicRooms(limit: number): Promise<RoomRecord[]> {
    const d = this.io.dbs();
    return this.io.read('listPublicRooms', () => {
      const out: RoomRecord[] = [];
      for (const { value } of d.rooms.getRange()) {
        if (out.length >= limit) break;
        if (!value.private) out.push(value);
      }
      return out;
    });
  }

  async setRoomOwner(key: string, ownerKey: string, owner: string): Promise<boolean> {
    const d = this.io.dbs();
    return this.io.write('setRoomOwner', () => {
      const room = d.rooms.get(key);
      if (!room) return false;
      d.rooms.putSync(key, { ...room, ownerKey, owner });
      return true;
    });
  }

  async addMember(room: string, member: { key: string; name: string }, cursor: number, at: number, limit: number): Promise<AddMemberResult> {
    const d = this.io.dbs();
    return this.io.write('addMember', (): AddMemberResult => {
      if (d.roomMembers.doesExist([room, member.key])) return 'member';
      let count = 0;
      for (const _ of d.roomMembers.getKeys({ start: [room], end: [room, '\uffff'] })) if (++count >= limit) return 'full';
      const invited = d.roomInvites.get([room, member.key]);
      d.roomMembers.putSync([room, member.key], { name: member.name, cursor, joined: at });
      d.memberRooms.putSync([member.key, room], null);
      if (invited !== undefined) {
        d.roomInvites.removeSync([room, member.key]);
        d.memberInvites.removeSync([member.key, inviteTime(invited), room]);
      }
      return 'added';
    });
  }

  async removeMember(room: string, key: string): Promise<boolean> {
    const d = this.io.dbs();
    return this.io.write('removeMember', () => {
      if (!d.roomMembers.doesExist([room, key])) return false;
      d.roomMembers.removeSync([room, key]);
      d.memberRooms.removeSync([key, room]);
      return true;
    });
  }

  async members(room: string): Promise<RoomMember[]> {
    const d = this.io.dbs();
    return this.io.read('members', () =>
      Array.from(d.roomMembers.getRange({ start: [room], end: [room, '\uffff'] }), ({ key, value }) => ({
        key: key[1], name: value.name, cursor: value.cursor, joined: value.joined,
      })));
  }

  async roomsOf(key: string): Promise<string[]> {
    const d = this.io.dbs();
    return this.io.read('roomsOf', () => Array.from(d.memberRooms.getKeys({ start: [key], end: [key, '\uffff'] }), (k) => k[1]));
  }

  async advanceCursor(room: string, key: string, seq: number): Promise<void> {
    const d = this.io.dbs();
    await this.io.write('advanceCursor', () => {
      const m = d.roomMembers.get([room, key]);
      if (m && m.cursor < seq) d.roomMembers.putSync([room, key], { ...m, cursor: seq });
    });
  }

  async invite(room: string, key: string, at: number, by: string): Promise<void> {
    const d = this.io.dbs();
    await this.io.write('invite', () => {
      const earlier = d.roomInvites.get([room, key]);
      if (earlier !== undefined) d.memberInvites.removeSync([key, inviteTime(earlier), room]);
      d.roomInvites.putSync([room, key], { at, by });
      d.memberInvites.putSync([key, at, room], null);
    });
  }

  async isInvited(room: string, key: string): Promise<boolean> {
    const d = this.io.dbs();
    return this.io.read('isInvited', () => d.roomInvites.doesExist([room, key]));
  }

  async invitesOf(key: string, limit: number): Promise<RoomInvite[]> {
    const d = this.io.dbs();
    return this.io.read('invitesOf', () => {
      const out: RoomInvite[] = [];
      if (!(limit > 0)) return out;
      // Only `key`'s entries lie between [key] and [key, Infinity]: names hold no 0 byte, the array separator, so
      // another name's entries sort wholly below (bo…) or above (bobby…).
      for (const [, at, room] of d.memberInvites.getKeys({ start: [key, Infinity], end: [key], reverse: true, limit })) {
        const v = d.roomInvites.get([room, key]);
        out.push(typeof v === 'object' ? { room, at, by: v.by } : { room, at });
      }
      return out;
    });
  }

  async append(entry: NewRoomEntry, cap: number): Promise<AppendResult> {
    const d = this.io.dbs();
    const { room, fromKey, id, ts } = entry;
    const stored: StoredEntry = entry.line === undefined
      ? { from: entry.from, fromKey, id, text: entry.text, ts }
      : { from: entry.from, fromKey, id, text: entry.text, ts, line: entry.line };
    return this.io.write('append', (): AppendResult => {
      const existing = d.roomLogById.get([room, fromKey, id]);
      if (existing !== undefined) return { status: 'duplicate', seq: existing };
      const meta = d.roomMeta.get(room) ?? { last: 0, count: 0 };
      if (meta.count >= cap) return { status: 'full' };
      const seq = meta.last + 1;
      d.roomLog.putSync([room, seq], stored);
      d.roomLogById.putSync([room, fromKey, id], seq);
      d.roomLogByTime.putSync([ts, room, seq], null);
      d.roomMeta.putSync(room, { last: seq, count: meta.count + 1 });
      return { status: 'stored', seq };
    });
  }

  async fetchRoom(room: string, afterSeq: number, limit: number, notBefore: number): Promise<RoomEntry[]> {
    const d = this.io.dbs();
    return this.io.read('fetchRoom', () => {
      const out: RoomEntry[] = [];
      if (!(limit > 0)) return out;
      for (const { key, value } of d.roomLog.getRange({ start: [room, afterSeq], exclusiveStart: true, end: [room, Infinity] })) {
        if (value.ts < notBefore) continue;
        out.push(toEntry(room, key[1], value));
        if (out.length >= limit) break;
      }
      return out;
    });
  }

  async historyStart(room: string, count: number, notBefore: number): Promise<number> {
    const d = this.io.dbs();
    return this.io.read('historyStart', () => {
      let n = 0;
      let start = 0;
      let last: number | undefined;
      for (const { key, value } of d.roomLog.getRange({ start: [room, Infinity], end: [room, 0], reverse: true })) {
        last ??= key[1];
        if (n >= count || value.ts < notBefore) break;
        n++;
        start = key[1] - 1;
      }
      return last === undefined ? 0 : count === 0 || n === 0 ? last : start;
    });
  }

  async roomLogLength(room: string): Promise<number> {
    const d = this.io.dbs();
    return this.io.read('roomLogLength', () => d.roomMeta.get(room)?.count ?? 0);
  }

  async trimRoom(room: string, keep: number): Promise<number> {
    const d = this.io.dbs();
    return this.io.write('trimRoom', () => {
      const meta = d.roomMeta.get(room);
      if (!meta) return 0;
      let floor = Infinity;
      for (const { value } of d.roomMembers.getRange({ start: [room], end: [room, '\uffff'] })) floor = Math.min(floor, value.cursor);
      if (floor === Infinity) return 0; // no members: nobody to have passed anything
      // The last `keep` entries stay: find the seq below which entries may go.
      let kept = 0;
      let keepFrom = Infinity;
      if (keep > 0) {
        for (const key of d.roomLog.getKeys({ start: [room, Infinity], end: [room, 0], reverse: true })) {
          keepFrom = key[1];
          if (++kept >= keep) break;
        }
      }
      const doomed: Array<[number, StoredEntry]> = [];
      for (const { key, value } of d.roomLog.getRange({ start: [room, 0], end: [room, Infinity] })) {
        if (key[1] > floor || key[1] >= keepFrom) break;
        doomed.push([key[1], value]);
      }
      for (const [seq, value] of doomed) removeEntry(d, room, seq, value);
      if (doomed.length > 0) d.roomMeta.putSync(room, { last: meta.last, count: Math.max(0, meta.count - doomed.length) });
      return doomed.length;
    });
  }

  async purgeExpiredRoomEntries(before: number): Promise<number> {
    const d = this.io.dbs();
    let total = 0;
    for (;;) {
      const purged = await this.io.write('purgeExpiredRoomEntries', () => {
        const keys = Array.from(d.roomLogByTime.getKeys({ end: [before], limit: PURGE_BATCH }));
        const removedPer = new Map<string, number>();
        for (const key of keys) {
          const [ts, room, seq] = key;
          const value = d.roomLog.get([room, seq]);
          if (value) {
            removeEntry(d, room, seq, value);
            removedPer.set(room, (removedPer.get(room) ?? 0) + 1);
          } else d.roomLogByTime.removeSync([ts, room, seq]);
        }
        for (const [room, removed] of removedPer) {
          const meta = d.roomMeta.get(room);
          if (meta) d.roomMeta.putSync(room, { last: meta.last, count: Math.max(0, meta.count - removed) });
        }
        return keys.length;
      });
      total += purged;
      if (purged < PURGE_BATCH) return total;
    }
  }
}

/**
 * Fills `memberInvites` from `roomInvites`, for directories written before the index existed (run once, in one
 * write transaction: reads first, then writes). Returns how many invitations it indexed.
 */
export function indexInvites(d: RoomDatabases): number {
  const all = Array.from(d.roomInvites.getRange(), ({ key, value }) => [key[1], inviteTime(value), key[0]] as [string, number, string]);
  for (const k of all) d.memberInvites.putSync(k, null);
  return all.length;
}

function inviteTime(v: StoredInvite): number {
  return typeof v === 'number' ? v : v.at;
}

function removeEntry(d: RoomDatabases, room: string, seq: number, value: StoredEntry): void {
  d.roomLog.removeSync([room, seq]);
  d.roomLogById.removeSync([room, value.fromKey, value.id]);
  d.roomLogByTime.removeSync([value.ts, room, seq]);
}

function toEntry(room: string, seq: number, v: StoredEntry): RoomEntry {
  const e: RoomEntry = { room, seq, from: v.from, fromKey: v.fromKey, id: v.id, text: v.text, ts: v.ts };
  if (v.line !== undefined) e.line = v.line;
  return e;
}
