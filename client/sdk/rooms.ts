/**
 * Rooms over a ParleyClient: create, join, leave, invite, remove, hand over, list, members; room messages in
 * each room's one order; delivery counts (k of n) and who has a message; room presence. Runs in Node (a bot)
 * as in the browser.
 *
 * Room frames carry no request id: an answer is matched to the oldest request waiting on the same room
 * (`roomInfo`, `roomGone`), message id (`roomWhoIs`) or kind (`roomListed`), and a refusal by its `ref`, which
 * the server sets to the room as given or the message id (docs/protocol.md, "Rooms"). A `roomInfo` that arrives
 * unasked (at sign-in, for each room) answers a request waiting on that room just as well: it is the room now.
 *
 * Messages: the server hands each member its rooms' logs in `rseq` order and, after a reconnect, again from
 * what it last acknowledged, so the layer keeps per room the `rseq`s it passed on (the highest, and those within
 * SEEN_WINDOW below it) and drops what it already passed on: what the app sees is each entry once. An entry can
 * come after a higher one (the room's owner node places an earlier owner's late append, see docs/architecture.md
 * "Rooms across nodes"): it is passed on too, and the app shows a room in `rseq` order.
 */
import type { ErrorCodeName } from '../../shared/codes.ts';
import { newMessageId } from '../../shared/ids.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import { Op, type MessageFrame, type RoomInfoFrame, type RoomLineName, type ServerFrame } from '../../shared/protocol.ts';
import type { ParleyClient } from './client.ts';
import { Emitter } from './emitter.ts';

/** One entry of a room's log: a text, or a line of the room's own (`line`: what happened to `from`). */
export interface RoomMessage {
  /** The room's display name. */
  room: string;
  rseq: number;
  id: string;
  from: string;
  /** Empty on lines. */
  text: string;
  ts: number;
  /** It was in the log before this connection opened the room (recent history, or missed while away). */
  queued: boolean;
  line?: RoomLineName;
}

export interface RoomMember { name: string; online: boolean }

/** What this client knows of one of its rooms. */
export interface Room {
  name: string;
  owner: string;
  private: boolean;
  /** By name key. */
  members: Map<string, RoomMember>;
}

/** A room request the server refused (its code), or one that could not be sent (`NOT_CONNECTED`). */
export class RoomError extends Error {
  constructor(readonly code: ErrorCodeName | 'NOT_CONNECTED', message: string) {
    super(message);
    this.name = 'RoomError';
  }
}

export interface RoomsEvents extends Record<string, unknown> {
  /** A room was added or changed: owner, privacy, members or their presence. */
  room: Room;
  /** A new entry of a room's log, once, in `rseq` order per room. */
  message: RoomMessage;
  /** `delivered` of the `of` other members have your message `id`; the first one also means it is stored. */
  receipt: { id: string; room: string; delivered: number; of: number };
  /** Your room message was refused for good (not a member, no such room, log full, bad text). */
  failed: { id: string; room: string; code: ErrorCodeName; message: string };
  /** You are no longer a member: you left, or the owner removed you. */
  gone: { room: string; reason: 'left' | 'removed' };
  /** `by` invited you to the private room `room`: `join` it to enter. */
  invited: { room: string; by: string };
}

export interface RoomsOptions {
  /**
   * Called for each new room message after the `message` event; it is acknowledged only once the returned
   * promise resolves (e.g. after the app stored it). If it rejects, the message comes again after a reconnect.
   */
  beforeAck?: (m: RoomMessage) => Promise<void> | void;
}

interface Waiting<T> {
  key: string;
  resolve(v: T): void;
  reject(e: RoomError): void;
}

export interface WhoHasIt { delivered: string[]; pending: string[] }

/** The key of a room name as the server compares them; null when the name cannot be a room's. */
export function roomKey(name: string): string | null {
  const n = normalizeName(name);
  return n === null ? null : nameKey(n);
}

/** Attaches rooms to a client. One per client. */
export class Rooms extends Emitter<RoomsEvents> {
  /** Rooms this client is a member of, by room key, as last heard. */
  readonly rooms = new Map<string, Room>();
  /** Per room key: the `rseq`s passed on (see `Seen`). */
  private readonly seen = new Map<string, Seen>();
  private readonly infoWaits: Waiting<Room>[] = [];
  private readonly goneWaits: Waiting<void>[] = [];
  private readonly whoWaits: Waiting<WhoHasIt>[] = [];
  private readonly listWaits: Waiting<Array<{ room: string; owner: string }>>[] = [];
  /** Error events that answered a request here (see `handled`). */
  private readonly answered = new WeakSet<object>();

  constructor(readonly client: ParleyClient, private readonly opts: RoomsOptions = {}) {
    super();
    client.setRoomSink((f) => this.incoming(f));
    client.on('frame', (f) => this.frame(f));
    client.on('error', (e) => {
      if (typeof e.ref !== 'string') {
        // A refusal about no room in particular (the store is down): it can only be the list's.
        if (e.code === 'STORE_UNAVAILABLE' && e.ref === undefined && this.settle(this.listWaits, undefined, new RoomError(e.code, e.message))) this.answered.add(e);
        return;
      }
      const err = new RoomError(e.code, e.message);
      const key = roomKey(e.ref);
      if (this.settle(this.whoWaits, e.ref, err)
        || (key !== null && (this.settle(this.infoWaits, key, err) || this.settle(this.goneWaits, key, err)))) this.answered.add(e);
    });
    client.on('failed', (f) => {
      if (f.room !== undefined) this.emit('failed', { id: f.id, room: f.room, code: f.code, message: f.message });
    });
    client.on('state', ({ to }) => {
      if (to === 'open') return;
      const err = new RoomError('NOT_CONNECTED', 'the connection was lost before the server answered');
      for (const q of [this.infoWaits, this.goneWaits, this.whoWaits, this.listWaits] as Waiting<never>[][]) for (const w of q.splice(0)) w.reject(err);
      // Presence is known only while connected; the server sends it afresh (roomInfo) after the next welcome.
      for (const r of this.rooms.values()) {
        let changed = false;
        for (const m of r.members.values()) if (m.online) [m.online, changed] = [false, true];
        if (changed) this.emit('room', r);
      }
    });
  }

  /** Creates a room you own: public (anyone may join by name) unless `private` (by invitation only). */
  create(name: string, opts: { private?: boolean } = {}): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(name), { t: Op.RoomCreate, room: name, ...(opts.private ? { private: true } : {}) });
  }

  /** Joins a public room, or a private one you were invited to; its recent history follows as messages. */
  join(name: string): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(name), { t: Op.RoomJoin, room: name });
  }

  /** Leaves a room (the owner hands it over first). */
  leave(name: string): Promise<void> {
    return this.ask(this.goneWaits, roomKey(name), { t: Op.RoomLeave, room: name });
  }

  /** Owner: lets `member` join the private room. */
  invite(room: string, member: string): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(room), { t: Op.RoomInvite, room, name: member });
  }

  /** Owner: `member` is no longer a member and gets nothing of the room from then on. */
  remove(room: string, member: string): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(room), { t: Op.RoomRemove, room, name: member });
  }

  /** Owner: hands the room over to the member `member`. */
  handOver(room: string, member: string): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(room), { t: Op.RoomOwner, room, name: member });
  }

  /** The room's members with their presence, fresh from the server. */
  members(room: string): Promise<Room> {
    return this.ask(this.infoWaits, roomKey(room), { t: Op.RoomMembers, room });
  }

  /** Public rooms to browse. */
  list(): Promise<Array<{ room: string; owner: string }>> {
    return this.ask(this.listWaits, '', { t: Op.RoomList });
  }

  /** Who of the other members has your recent message `id` in `room`, and who not yet. */
  who(room: string, id: string): Promise<WhoHasIt> {
    return this.ask(this.whoWaits, id, { t: Op.RoomWho, room, id });
  }

  /**
   * Sends text to a room you are a member of. Returns the message id at once; it waits in the client's outbox
   * while disconnected and is resent with the same id until stored. `receipt` and `failed` events follow.
   */
  send(room: string, text: string, id: string = newMessageId()): string {
    return this.client.sendToRoom(room, text, id);
  }

  /** True for a client `error` event that was the answer to one of the requests here (its promise rejected). */
  handled(e: object): boolean {
    return this.answered.has(e);
  }

  // ------------------------------------------------------------------------------------------------------

  /** Sends `frame` and waits in `queue` under `key` (a room key, a message id, or '' for the list). */
  private ask<T>(queue: Waiting<T>[], key: string | null, frame: Parameters<ParleyClient['write']>[0]): Promise<T> {
    if (key === null) return Promise.reject(new RoomError('BAD_NAME', 'room names are 1 to 32 letters, digits and ._-'));
    return new Promise<T>((resolve, reject) => {
      if (!this.client.write(frame)) {
        reject(new RoomError('NOT_CONNECTED', 'not connected'));
        return;
      }
      queue.push({ key, resolve, reject });
    });
  }

  /** Settles the oldest request of `queue` waiting on `key` (any, when undefined); false when none waits. */
  private settle<T>(queue: Waiting<T>[], key: string | undefined, err: RoomError | undefined, value?: T): boolean {
    const i = key === undefined ? (queue.length > 0 ? 0 : -1) : queue.findIndex((w) => w.key === key);
    if (i < 0) return false;
    const [w] = queue.splice(i, 1);
    if (err) w!.reject(err);
    else w!.resolve(value as T);
    return true;
  }

  private frame(f: ServerFrame): void {
    switch (f.t) {
      case Op.RoomInfo: {
        const r = this.info(f);
        this.settle(this.infoWaits, nameKey(f.room), undefined, r);
        break;
      }
      case Op.RoomGone: {
        const key = nameKey(f.room);
        this.rooms.delete(key);
        this.emit('gone', { room: f.room, reason: f.reason });
        if (f.reason === 'left') this.settle(this.goneWaits, key, undefined);
        break;
      }
      case Op.RoomListed:
        this.settle(this.listWaits, undefined, undefined, f.rooms);
        break;
      case Op.RoomWhoIs:
        this.settle(this.whoWaits, f.id, undefined, { delivered: f.delivered, pending: f.pending });
        break;
      case Op.RoomReceipt:
        for (const [id, room, delivered, of] of f.items) this.emit('receipt', { id, room, delivered, of });
        break;
      case Op.RoomPresence: {
        const r = this.rooms.get(nameKey(f.room));
        const m = r?.members.get(nameKey(f.name));
        if (r && m && m.online !== f.online) {
          m.online = f.online;
          this.emit('room', r);
        }
        break;
      }
      case Op.RoomInvited:
        this.emit('invited', { room: f.room, by: f.by });
        break;
      default:
        break;
    }
  }

  private info(f: RoomInfoFrame): Room {
    const key = nameKey(f.room);
    const r: Room = {
      name: f.room, owner: f.owner, private: f.private,
      members: new Map(f.members.map(([name, online]) => [nameKey(name), { name, online }])),
    };
    this.rooms.set(key, r);
    this.emit('room', r);
    return r;
  }

  /** A room message from the client: false for one already passed on. */
  private incoming(f: MessageFrame): Promise<void> | boolean {
    const key = nameKey(f.room!);
    const rseq = f.rseq ?? 0;
    let seen = this.seen.get(key);
    if (!seen) this.seen.set(key, (seen = new Seen()));
    if (!seen.add(rseq)) return false;
    const m: RoomMessage = { room: f.room!, rseq, id: f.id, from: f.from, text: f.text, ts: f.ts, queued: f.queued === true };
    if (f.line !== undefined) m.line = f.line;
    if (m.line) this.applyLine(key, m);
    this.emit('message', m);
    if (!this.opts.beforeAck) return true;
    return Promise.resolve(this.opts.beforeAck(m)).catch((err: unknown) => {
      // Not kept: let the copy that comes after the next reconnect through.
      seen!.forget(rseq);
      throw err;
    });
  }

  /** The room's own lines keep the member list current between two `roomInfo`s. */
  private applyLine(key: string, m: RoomMessage): void {
    const r = this.rooms.get(key);
    if (!r) return;
    const who = nameKey(m.from);
    switch (m.line) {
      case 'created':
      case 'owner':
        r.owner = m.from;
        break;
      case 'joined':
        if (!r.members.has(who) || !m.queued) r.members.set(who, { name: m.from, online: !m.queued || r.members.get(who)?.online === true });
        break;
      case 'left':
      case 'removed':
        r.members.delete(who);
        break;
      default:
        break;
    }
    this.emit('room', r);
  }
}

/**
 * Entries below the highest `rseq` passed on that may still come for the first time: an owner node places a late
 * append within a moment of the entries after it, so a few thousand cover it many times over.
 */
const SEEN_WINDOW = 4096;

/** The `rseq`s of one room passed on: the highest, and each one within SEEN_WINDOW below it. */
export class Seen {
  private top = 0;
  private readonly recent = new Set<number>();

  /** Records `rseq`; false when it was passed on already (or is too far below the highest to tell). */
  add(rseq: number): boolean {
    if (rseq <= this.top - SEEN_WINDOW || this.recent.has(rseq)) return false;
    this.recent.add(rseq);
    if (rseq > this.top) this.top = rseq;
    if (this.recent.size > 2 * SEEN_WINDOW) {
      for (const r of this.recent) if (r <= this.top - SEEN_WINDOW) this.recent.delete(r);
    }
    return true;
  }

  /** `rseq` was not kept by the app: let the copy that comes after the next reconnect through. */
  forget(rseq: number): void {
    this.recent.delete(rseq);
    if (rseq === this.top) {
      this.top = 0;
      for (const r of this.recent) if (r > this.top) this.top = r;
    }
  }
}
