/**
 * The room part of the Store port (`Store.rooms`): rooms, their members, invitations, and one log per room.
 *
 * A message to a room is stored once, in the room's log under a per-room seq; each member has a cursor (the
 * highest seq it acknowledged), not a copy. What a member is owed is the log above its cursor. Entries are
 * deleted by `trimRoom` once every member's cursor has passed them and they are not among the room's recent
 * history (the last ROOM_HISTORY entries kept for newcomers), or by retention (`purgeExpiredRoomEntries`).
 *
 * The cap: a room's log holds at most `cap` entries (the same QUEUE_CAP as a one-to-one queue). Since the log
 * holds the history plus what its slowest member has not acknowledged, this bounds how far any member can fall
 * behind; an append past it is refused (`full`), never stored and later dropped.
 *
 * Keys are name keys (`nameKey()`) for rooms and members alike; rooms are a namespace of their own. Every method
 * may reject with StoreUnavailableError, as the rest of the port.
 */

export interface RoomRecord {
  /** Room name key (identity). */
  key: string;
  /** Display form, as created (NFKC-normalised). */
  name: string;
  /** Name key and display name of the owner. */
  ownerKey: string;
  owner: string;
  /** Private rooms admit invited names only; public ones anyone who asks to join. */
  private: boolean;
  created: number;
}

export interface RoomMember {
  key: string;
  name: string;
  /** Highest seq of the room's log this member acknowledged (or was given as history start when joining). */
  cursor: number;
  /** When it joined, ms since epoch. */
  joined: number;
}

/** What a room log entry is besides a text: lines the server writes itself. */
export type RoomLine = 'created' | 'joined' | 'left' | 'removed' | 'owner';

export interface NewRoomEntry {
  /** Room name key. */
  room: string;
  /** Sender display name and key; for a system line, the member it is about. */
  from: string;
  fromKey: string;
  /** Client-made message id (server-made for system lines): (room, fromKey, id) is unique in the log. */
  id: string;
  text: string;
  /** Acceptance time, ms since epoch. */
  ts: number;
  /** Set on system lines only. */
  line?: RoomLine;
}

export interface RoomEntry extends NewRoomEntry {
  /** Position in the room's log: strictly increasing in acceptance order per room. Not necessarily dense. */
  seq: number;
}

export type AppendResult =
  | { status: 'stored'; seq: number }
  /** (room, fromKey, id) was already in the log; nothing written. */
  | { status: 'duplicate'; seq: number }
  /** The room's log holds `cap` entries already; nothing written. */
  | { status: 'full' };

export type AddMemberResult = 'added' | 'member' | 'full';

/** A pending invitation, as `invitesOf` reads it for the invitee. */
export interface RoomInvite {
  /** Room name key. */
  room: string;
  /** When it was (last) made, ms since epoch. */
  at: number;
  /** Display name of who invited; absent on invitations recorded before the inviter was kept. */
  by?: string;
}

export interface RoomStore {
  /** Creates the room with its owner as first member (cursor 0); false (nothing written) when the key exists. */
  createRoom(room: RoomRecord, at: number): Promise<boolean>;
  getRoom(key: string): Promise<RoomRecord | null>;
  /** Public rooms, by key, at most `limit`. */
  listPublicRooms(limit: number): Promise<RoomRecord[]>;
  /** Makes `ownerKey` (display `owner`) the owner; false when there is no such room. */
  setRoomOwner(key: string, ownerKey: string, owner: string): Promise<boolean>;

  /**
   * Adds a member with the given cursor unless it is one already (`member`) or the room has `limit` members
   * (`full`). Deletes its invitation, if any. Resolves once durable.
   */
  addMember(room: string, member: { key: string; name: string }, cursor: number, at: number, limit: number): Promise<AddMemberResult>;
  /** Removes the member and its cursor; false when it was not one. */
  removeMember(room: string, key: string): Promise<boolean>;
  /** Every member with its cursor, by key. */
  members(room: string): Promise<RoomMember[]>;
  /** Keys of the rooms `key` is a member of. */
  roomsOf(key: string): Promise<string[]>;
  /** Moves the member's cursor up to `seq` (never down). Nothing when it is not a member. */
  advanceCursor(room: string, key: string, seq: number): Promise<void>;

  /**
   * Records an invitation of `key` to `room` by the display name `by`; inviting again replaces the time and the
   * inviter. It lasts until `addMember` of `key` to `room`.
   */
  invite(room: string, key: string, at: number, by: string): Promise<void>;
  isInvited(room: string, key: string): Promise<boolean>;
  /** The pending invitations of `key`, most recent first, at most `limit`. */
  invitesOf(key: string, limit: number): Promise<RoomInvite[]>;

  /**
   * Appends to the room's log unless (room, fromKey, id) is there or the log holds `cap` entries. Resolves only
   * once the entry survives a crash of this process. Appends to one room must not run concurrently within a
   * process (the core serialises them); across processes order still holds (see the adapters).
   */
  append(entry: NewRoomEntry, cap: number): Promise<AppendResult>;
  /** Up to `limit` entries with seq > afterSeq and ts >= notBefore, in seq order. */
  fetchRoom(room: string, afterSeq: number, limit: number, notBefore: number): Promise<RoomEntry[]>;
  /**
   * The cursor that gives a newcomer the last `count` entries with ts >= notBefore (one below the first of
   * them); the last seq when `count` is 0; 0 when the log is empty.
   */
  historyStart(room: string, count: number, notBefore: number): Promise<number>;
  /** Entries in the room's log. */
  roomLogLength(room: string): Promise<number>;
  /**
   * Deletes the entries every member's cursor has passed, except the last `keep` of the log. Returns how many.
   */
  trimRoom(room: string, keep: number): Promise<number>;
  /** Deletes log entries with ts < before (retention); returns how many. */
  purgeExpiredRoomEntries(before: number): Promise<number>;
}
