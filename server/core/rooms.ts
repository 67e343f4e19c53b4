/**
 * Rooms as one node runs them: create, join, leave, invite, remove, hand over, list, members; room messages fanned
 * out to every member through the room's log (Store.rooms); delivery counts for senders; room presence. With
 * several nodes each room is run this way by its owner node only (`RoomPlacement`, server/core/room-nodes.ts),
 * members on other nodes being proxy sessions there.
 *
 * Rules (see docs/architecture.md, "Rooms"):
 * - Every write to a room (append, membership, owner, trim) runs under the room's lock, so the log's seq order
 *   is acceptance order and a newcomer's history start cannot be trimmed away under it; an append is issued under
 *   it and awaited outside it (`appendInOrder`), so appends in flight together commit together.
 * - A message is stored once; each online member's session has a pipe that hands it the log above what it was
 *   sent, in seq order: straight from the in-memory tail (the entries this node appended since it loaded the
 *   room) when it is caught up, else from the store. At most `window` of a room are unacknowledged per session.
 * - A member's cursor moves over the acknowledged prefix of what its session was sent, so a message that was
 *   sent but never acknowledged (disconnect, kill -9) comes again at the next sign-in, and the log above a
 *   cursor is never lost. Removal drops the member from the in-memory room at once: its pipe sends nothing more.
 * - The sender sees `[id, room, delivered, of]`: first when the entry is durable in the log, then as members'
 *   cursors pass it. Counts are kept for the entries in the tail; `roomWho` names who has it (cursor >= seq).
 */
import { nameKey, normalizeName } from '../../shared/names.ts';
import {
  Limits, Op,
  type AckFrame, type RoomCreateFrame, type RoomInfoFrame, type RoomInviteFrame, type RoomJoinFrame, type RoomLeaveFrame,
  type RoomMembersFrame, type RoomOwnerFrame, type RoomReceiptItem, type RoomRemoveFrame, type RoomSendFrame,
  type RoomWhoFrame, type ServerFrame,
} from '../../shared/protocol.ts';
import { storeCall, type Accounts } from './accounts.ts';
import type { Clock, Timer } from './clock.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import { KeyedMutex } from './mutex.ts';
import type { AppendResult, NewRoomEntry, RoomEntry, RoomLine, RoomRecord } from './room-store.ts';
import { RouterError, type OwnedRoomFrame } from './router.ts';
import { tellError, type Session } from './session.ts';
import type { Store } from './store.ts';

export interface RoomOptions {
  /** Log entries a newcomer is given on joining (ROOM_HISTORY). */
  historyCount: number;
  /** Members a room may have (ROOM_MEMBERS). */
  memberLimit: number;
  /** Entries a room's log may hold (QUEUE_CAP, as a one-to-one queue). */
  queueCap: number;
  /** Entries older than this are not delivered and are purged. */
  retentionMs: number;
  /** Entries read from the store per fetch. */
  batch: number;
  /** Unacknowledged room messages per session and room. */
  window: number;
  /**
   * A deployment of several nodes (NATS_URL): each room is served by its owner node (`RoomPlacement`, made by
   * `server/core/room-nodes.ts`; docs/architecture.md, "Rooms across nodes").
   */
  severalNodes?: boolean;
}

/** The sessions rooms deliver to: this node's, and on an owner node its proxies of members elsewhere. */
export interface SessionLookup {
  get(key: string): Session | undefined;
}

/**
 * Where rooms are served when there are several nodes (`server/core/room-nodes.ts`). Absent on one node, where
 * every room is served here. A node serves (owns) only the rooms whose claim it holds; what reaches it for another
 * room goes to that room's owner.
 */
export interface RoomPlacement {
  /** Whether this node owns room `key`; claims it when nobody does. Rejects with a RouterError (bus down). */
  here(key: string): Promise<boolean>;
  /** A room frame of `s` for a room owned elsewhere: run there. */
  forward(s: Session, key: string, frame: OwnedRoomFrame): void;
  /** `s`'s member of room `key`, owned elsewhere, is to be served by the owner (sign-in, or the room moved). */
  attach(s: Session, key: string): void;
  /** This node no longer owns room `key`: `s`, a proxy of a member elsewhere, is to attach to its new owner. */
  moved(s: Session, key: string): void;
  /** Acknowledgements of room messages sent by other nodes' owners. */
  ack(s: Session, f: AckFrame): void;
  /** `s` closed: owners elsewhere drop its proxies. */
  gone(s: Session): void;
  /** A frame for the holder of name `key`, which has no session here (an invitation). Best effort. */
  tell(key: string, frame: ServerFrame): void;
  /** Whether this node owns room `key` as far as it knows now (synchronous: the last answer of `here`). */
  owns(key: string): boolean;
  /** This node gave room `key` up (`unload`) and the appends it had issued are done: tell the new owner. */
  settled(key: string): void;
}

/** Entries of a room kept in memory per room, beyond the history count. */
const TAIL_EXTRA = 2000;
/** Cursor writes of a room between two trims of its log. */
const TRIM_EVERY = 64;
/**
 * A member's cursor is written once it moved this far, or CURSOR_DELAY_MS after it moved, or when its session
 * closes: a cursor that lags in the store only means messages come again after a crash (clients de-duplicate
 * by room and seq), and writing every acknowledgement of every member would cost the store one write per
 * member per message.
 */
const CURSOR_BATCH = 128;
const CURSOR_DELAY_MS = 200;
/**
 * A session's rooms that could not start, or a pipe whose store read failed, are tried again after this, doubling
 * to RETRY_MAX_MS while they keep failing, and at once when the store is back (`storeBack`): nothing waits for a
 * frame that may never come.
 */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/**
 * Several nodes: reads of a gap in the log below an append of this node before it goes in the tail anyway
 * (`fillGap`), GAP_WAIT_MS apart.
 */
const GAP_READS = 4;
const GAP_WAIT_MS = 50;
/** Pending invitations told at sign-in, the most recent first: a flood of invitations cannot flood a sign-in. */
const INVITES_AT_SIGN_IN = 100;

interface Member {
  name: string;
  /** Acknowledged up to here (durable once `written` reaches it). */
  cursor: number;
  written: number;
  writing: boolean;
}

interface RoomState {
  rec: RoomRecord;
  members: Map<string, Member>;
  /** Entries appended by this node, in seq order, every one above `tailBase`, with nothing missing between. */
  tail: RoomEntry[];
  tailBase: number;
  movesSinceTrim: number;
  /** Set while cursor writes of the room wait to be batched (see `cursorDue`). */
  flush: Timer | undefined;
  /** The last append issued: each waits for the one before it to reach the tail (see `appendInOrder`). */
  appended: Promise<unknown>;
}

/** One session's delivery of one room. */
interface Pipe {
  room: string;
  /** Highest seq sent to the session. */
  sent: number;
  /** Seqs sent and not yet acknowledged, ascending. */
  unacked: number[];
  /** The room's last seq when the pipe opened: what is at or below it waited (history, or missed while away). */
  backlogTo: number;
  running: boolean;
  dirty: boolean;
}

interface SessionRooms {
  pipes: Map<string, Pipe>;
  /** Delivery tags of room messages -> where they came from. */
  tags: Map<number, { room: string; seq: number }>;
}

export class Rooms {
  private readonly lock = new KeyedMutex();
  private readonly states = new Map<string, Promise<RoomState | null>>();
  /** The same states once loaded, for synchronous reads (acks, fan-out). */
  private readonly resolved = new Map<string, RoomState>();
  private readonly bySession = new WeakMap<Session, SessionRooms>();
  /** Senders' entries whose counts changed this turn: room key -> seqs. */
  private readonly countsDue = new Map<string, Set<number>>();
  /** Work a store failure stopped, tried again after `retryDelay` (see `retryLater`). */
  private readonly unstarted = new Set<Session>();
  private readonly stalled = new Map<Pipe, Session>();
  private retryTimer: Timer | undefined;
  private retryDelay = RETRY_MIN_MS;

  constructor(
    private readonly store: Store,
    private readonly accounts: Accounts,
    private readonly opts: RoomOptions,
    private readonly online: SessionLookup,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly storeDown: () => void,
  ) {}

  /** Set by the hub when there are several nodes (see `RoomPlacement`). */
  placement: RoomPlacement | undefined;

  // ------------------------------------------------------------------------------------------------------
  // Session lifecycle

  /**
   * Once the session's queue is drained (after `hello`): it gets its rooms (with presence) and what their logs
   * hold above its cursors, then a `roomInvited` per pending invitation (see `openRooms`).
   */
  start(s: Session): void {
    void this.guard(s, undefined, undefined, () => this.openRooms(s).catch((err: unknown) => {
      this.unstarted.add(s);
      this.retryLater();
      throw err; // told once; the retries are silent
    }));
  }

  private async openRooms(s: Session): Promise<void> {
    const keys = await storeCall(() => this.store.rooms.roomsOf(s.key));
    for (const key of keys) {
      if (this.placement && !(await this.placement.here(key))) {
        if (s.phase !== 'closed') this.placement.attach(s, key);
        continue;
      }
      await this.openRoom(s, key);
    }
    // Invitations made while it was away. All are read before any is sent, so a retry after a store failure
    // does not tell one twice; one for a room that is gone or that it joined since is skipped.
    const invites = await storeCall(() => this.store.rooms.invitesOf(s.key, INVITES_AT_SIGN_IN));
    const told = await Promise.all(invites.map(async (i) => ({ i, st: await this.peek(i.room) })));
    for (const { i, st } of told) {
      if (!st || st.members.has(s.key) || s.phase === 'closed') continue;
      s.send({ t: Op.RoomInvited, room: st.rec.name, by: i.by ?? st.rec.owner });
    }
  }

  /**
   * `s` gets room `key` (with presence) and what its log holds above its cursor, unless it has it already. Called
   * at sign-in, and on an owner node for a member elsewhere whose node attached it.
   */
  async openRoom(s: Session, key: string): Promise<void> {
    const st = await this.state(key);
    const m = st?.members.get(s.key);
    if (!st || !m || s.phase === 'closed' || this.bySession.get(s)?.pipes.has(key)) return;
    s.send(this.info(st)); // before the pipe, which may hand it entries at once
    this.openPipe(s, key, m.cursor);
    this.announce(st, s, true);
  }

  /**
   * A room read for what an invitation needs (name, owner, members): this node's state when it serves the room,
   * else the store, uncached (another node orders it, so a copy here would go stale).
   */
  private async peek(key: string): Promise<{ rec: RoomRecord; members: ReadonlyMap<string, unknown> } | null> {
    if (!this.placement || (await this.placement.here(key))) return this.state(key);
    const rec = await storeCall(() => this.store.rooms.getRoom(key));
    if (!rec) return null;
    const list = await storeCall(() => this.store.rooms.members(key));
    return { rec, members: new Map(list.map((m) => [m.key, m])) };
  }

  /**
   * This node no longer owns room `key` (its claim moved to another node): the room is forgotten here and every
   * member it served attaches to the new owner. Cursors acknowledged here and not yet written are written first;
   * what was sent and not acknowledged comes again from the new owner (clients de-duplicate by room and rseq).
   */
  unload(key: string): void {
    const st = this.resolved.get(key);
    this.states.delete(key);
    this.resolved.delete(key);
    if (!st) return;
    this.clock.clearTimeout(st.flush);
    // Appends issued here before the claim moved may land after the new owner loaded the room.
    void st.appended.then(() => this.placement?.settled(key));
    for (const [mk, m] of st.members) {
      const s = this.online.get(mk);
      const sr = s && this.bySession.get(s);
      if (m.cursor > m.written) void this.writeCursor(st, mk, m);
      if (!s || !sr?.pipes.has(key)) continue;
      sr.pipes.delete(key);
      for (const [tag, t] of sr.tags) if (t.room === key) sr.tags.delete(tag);
      if (s.phase !== 'closed') this.placement?.moved(s, key);
    }
  }

  /** The store answers again: what it stopped goes on now. */
  storeBack(): void {
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryDelay = RETRY_MIN_MS;
    this.retry();
  }

  private retryLater(): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
      this.retry();
    }, this.retryDelay);
    this.retryTimer.unref?.();
  }

  private retry(): void {
    const starts = [...this.unstarted];
    this.unstarted.clear();
    for (const s of starts) {
      if (s.phase === 'closed' || this.online.get(s.key) !== s) continue;
      this.openRooms(s).catch((err: unknown) => {
        this.failed(s, err, 'rooms could not start');
        this.unstarted.add(s);
        this.retryLater();
      });
    }
    const pipes = [...this.stalled];
    this.stalled.clear();
    for (const [p, s] of pipes) void this.pump(s, p);
  }

  /** The session closed: what it was sent and did not acknowledge stays above its cursors, for next time. */
  gone(s: Session): void {
    this.placement?.gone(s);
    const sr = this.bySession.get(s);
    if (!sr) return;
    this.bySession.delete(s);
    for (const room of sr.pipes.keys()) {
      const st = this.loaded(room);
      const m = st?.members.get(s.key);
      if (st && m) void this.writeCursor(st, s.key, m);
    }
    const other = this.online.get(s.key);
    if (other !== undefined && other !== s) return; // replaced by a newer session of the same name: still online
    for (const room of sr.pipes.keys()) {
      const st = this.loaded(room);
      if (st) this.announce(st, s, false);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Frames

  create(s: Session, f: RoomCreateFrame): void {
    void this.guard(s, f.room, f, async () => {
      const name = roomName(f.room);
      const key = nameKey(name);
      await this.lock.run(key, async () => {
        const now = this.clock.now();
        const rec: RoomRecord = { key, name, ownerKey: s.key, owner: s.name, private: f.private === true, created: now };
        if (!(await storeCall(() => this.store.rooms.createRoom(rec, now)))) throw new AppError('ROOM_EXISTS', 'a room with that name exists', f.room);
        const st: RoomState = { rec, members: new Map([[s.key, member(s.name, 0)]]), tail: [], tailBase: 0, movesSinceTrim: 0, flush: undefined, appended: Promise.resolve() };
        this.states.set(key, Promise.resolve(st));
        this.resolved.set(key, st);
        await this.line(st, s.key, s.name, 'created');
      });
      const st = (await this.state(key))!;
      s.send(this.info(st));
      this.openPipe(s, key, 0);
      this.wake(st);
    });
  }

  join(s: Session, f: RoomJoinFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.existing(f.room);
      const key = st.rec.key;
      const added = await this.lock.run(key, async () => {
        if (st.members.has(s.key)) return false;
        if (st.rec.private && !(await storeCall(() => this.store.rooms.isInvited(key, s.key)))) {
          throw new AppError('NOT_INVITED', 'this room is private: ask its owner for an invitation', f.room);
        }
        const now = this.clock.now();
        const start = await storeCall(() => this.store.rooms.historyStart(key, this.opts.historyCount, now - this.opts.retentionMs));
        const r = await storeCall(() => this.store.rooms.addMember(key, { key: s.key, name: s.name }, start, now, this.opts.memberLimit));
        if (r === 'full') throw new AppError('ROOM_FULL', `the room has ${this.opts.memberLimit} members, its limit`, f.room);
        st.members.set(s.key, member(s.name, start));
        await this.line(st, s.key, s.name, 'joined');
        return true;
      });
      s.send(this.info(st));
      if (!this.pipes(s).pipes.has(key)) this.openPipe(s, key, st.members.get(s.key)?.cursor ?? 0);
      if (added) this.announce(st, s, true);
      this.wake(st);
    });
  }

  leave(s: Session, f: RoomLeaveFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.existing(f.room);
      await this.lock.run(st.rec.key, async () => {
        if (!st.members.has(s.key)) throw new AppError('NOT_A_MEMBER', 'you are not a member of this room', f.room);
        if (st.rec.ownerKey === s.key) throw new AppError('OWNER_CANNOT_LEAVE', 'hand the room over to another member first', f.room);
        await this.drop(st, s.key);
        await this.line(st, s.key, s.name, 'left');
      });
      s.send({ t: Op.RoomGone, room: st.rec.name, reason: 'left' });
      this.wake(st);
    });
  }

  remove(s: Session, f: RoomRemoveFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.owned(s, f.room);
      const target = this.memberKey(f.name, f.room);
      let name = f.name;
      await this.lock.run(st.rec.key, async () => {
        const m = st.members.get(target);
        if (!m) throw new AppError('NOT_A_MEMBER', `${f.name} is not a member of this room`, f.room);
        if (target === st.rec.ownerKey) throw new AppError('OWNER_CANNOT_LEAVE', 'the owner cannot be removed; hand the room over first', f.room);
        name = m.name;
        await this.drop(st, target);
        await this.line(st, target, name, 'removed');
      });
      this.online.get(target)?.send({ t: Op.RoomGone, room: st.rec.name, reason: 'removed' });
      s.send(this.info(st));
      this.wake(st);
    });
  }

  invite(s: Session, f: RoomInviteFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.owned(s, f.room);
      const target = this.memberKey(f.name, f.room);
      const name = await storeCall(() => this.accounts.lookup(target));
      if (name === null) throw new AppError('UNKNOWN_CONTACT', 'no account has that name', f.room);
      if (!st.members.has(target)) {
        if (st.members.size >= this.opts.memberLimit) throw new AppError('ROOM_FULL', `the room has ${this.opts.memberLimit} members, its limit`, f.room);
        await storeCall(() => this.store.rooms.invite(st.rec.key, target, this.clock.now(), s.name));
        const invited: ServerFrame = { t: Op.RoomInvited, room: st.rec.name, by: s.name };
        const here = this.online.get(target);
        if (here) here.send(invited);
        else this.placement?.tell(target, invited);
      }
      s.send(this.info(st));
    });
  }

  handOver(s: Session, f: RoomOwnerFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.owned(s, f.room);
      const target = this.memberKey(f.name, f.room);
      await this.lock.run(st.rec.key, async () => {
        const m = st.members.get(target);
        if (!m) throw new AppError('NOT_A_MEMBER', `${f.name} is not a member of this room`, f.room);
        await storeCall(() => this.store.rooms.setRoomOwner(st.rec.key, target, m.name));
        st.rec = { ...st.rec, ownerKey: target, owner: m.name };
        await this.line(st, target, m.name, 'owner');
      });
      s.send(this.info(st));
      this.wake(st);
    });
  }

  members(s: Session, f: RoomMembersFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.membership(s, f.room);
      s.send(this.info(st));
    });
  }

  list(s: Session): void {
    void this.guard(s, undefined, undefined, async () => {
      const rooms = await storeCall(() => this.store.rooms.listPublicRooms(Limits.maxRoomList));
      s.send({ t: Op.RoomListed, rooms: rooms.map((r) => ({ room: r.name, owner: r.owner })) });
    });
  }

  who(s: Session, f: RoomWhoFrame): void {
    void this.guard(s, f.id, f, async () => {
      const st = await this.membership(s, f.room, f.id);
      const e = st.tail.find((x) => x.fromKey === s.key && x.id === f.id && x.line === undefined);
      if (!e) throw new AppError('MESSAGE_UNKNOWN', 'no recent message of yours in this room has that id', f.id);
      const delivered: string[] = [];
      const pending: string[] = [];
      for (const [key, m] of st.members) if (key !== s.key) (m.cursor >= e.seq ? delivered : pending).push(m.name);
      s.send({ t: Op.RoomWhoIs, room: st.rec.name, id: f.id, delivered, pending });
    });
  }

  /** A text to a room: appended to its log under the room's lock, then handed to every online member's pipe. */
  send(s: Session, f: RoomSendFrame): void {
    void this.guard(s, f.id, f, async () => {
      const st = await this.membership(s, f.room, f.id);
      const key = st.rec.key;
      // Under the lock only while the append is issued: appends in flight together commit together (one
      // durable write for many on the embedded store) and still take seqs and reach the tail in lock order.
      const appended = await this.lock.run(key, async () => {
        if (!st.members.has(s.key)) throw new AppError('NOT_A_MEMBER', 'you are not a member of this room', f.id);
        const entry = { room: key, from: s.name, fromKey: s.key, id: f.id, text: f.text, ts: this.clock.now() };
        return { result: this.appendInOrder(st, entry, this.opts.queueCap) };
      });
      const r = await appended.result;
      if (r.status === 'full') throw new AppError('QUEUE_FULL', `the room's log is full (${this.opts.queueCap}); try again later`, f.id);
      const seq = r.seq;
      s.send({ t: Op.RoomReceipt, items: [this.counts(st, s.key, f.id, seq)] });
      this.wake(st);
    });
  }

  /** Acknowledged room messages move their members' cursors over what is acknowledged without a gap. */
  ack(s: Session, f: AckFrame): void {
    this.placement?.ack(s, f);
    const sr = this.bySession.get(s);
    if (!sr || sr.tags.size === 0) return;
    const touched = new Set<Pipe>();
    for (const tag of f.tags) {
      const t = sr.tags.get(tag);
      if (!t) continue;
      sr.tags.delete(tag);
      const p = sr.pipes.get(t.room);
      if (!p) continue;
      const i = p.unacked.indexOf(t.seq);
      if (i >= 0) p.unacked.splice(i, 1);
      touched.add(p);
    }
    for (const p of touched) {
      const st = this.loaded(p.room);
      const m = st?.members.get(s.key);
      if (!st || !m) continue;
      const cursor = p.unacked.length > 0 ? p.unacked[0]! - 1 : p.sent;
      if (cursor > m.cursor) {
        this.moved(st, s.key, m.cursor, cursor);
        m.cursor = cursor;
        this.cursorDue(st, s.key, m);
      }
      void this.pump(s, p);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Fan-out

  private openPipe(s: Session, room: string, cursor: number): void {
    const sr = this.pipes(s);
    const st = this.loaded(room);
    const backlogTo = st ? (st.tail.length > 0 ? st.tail[st.tail.length - 1]!.seq : st.tailBase) : 0;
    const p: Pipe = { room, sent: cursor, unacked: [], backlogTo, running: false, dirty: false };
    sr.pipes.set(room, p);
    void this.pump(s, p);
  }

  private pipes(s: Session): SessionRooms {
    let sr = this.bySession.get(s);
    if (!sr) this.bySession.set(s, (sr = { pipes: new Map(), tags: new Map() }));
    return sr;
  }

  /** Every online member's pipe of the room reads what is new. */
  private wake(st: RoomState): void {
    for (const key of st.members.keys()) {
      const s = this.online.get(key);
      const p = s && this.bySession.get(s)?.pipes.get(st.rec.key);
      if (s && p) void this.pump(s, p);
    }
  }

  /** Hands the session what the room's log holds above what it was sent, within the window. One loop per pipe. */
  private async pump(s: Session, p: Pipe): Promise<void> {
    if (p.running) {
      p.dirty = true;
      return;
    }
    p.running = true;
    try {
      for (;;) {
        p.dirty = false;
        const st = this.loaded(p.room);
        const sr = this.bySession.get(s);
        if (!st || !sr || sr.pipes.get(p.room) !== p || !st.members.has(s.key) || s.phase === 'closed') return;
        const room = p.room;
        const roomName = st.rec.name;
        const space = this.opts.window - p.unacked.length;
        if (space <= 0) return;
        let entries: RoomEntry[];
        if (p.sent >= st.tailBase) {
          entries = [];
          for (const e of st.tail) if (e.seq > p.sent && entries.length < space) entries.push(e);
        } else {
          entries = await storeCall(() => this.store.rooms.fetchRoom(room, p.sent, Math.min(space, this.opts.batch), this.clock.now() - this.opts.retentionMs));
          this.retryDelay = RETRY_MIN_MS; // the store answers
          if (entries.length === 0) {
            p.sent = Math.max(p.sent, st.tailBase); // nothing left in the log below the tail (trimmed or expired)
            continue;
          }
        }
        for (const e of entries) {
          // Removal takes effect at once: the pipe checks membership before every message.
          if (!st.members.has(s.key) || sr.pipes.get(p.room) !== p || isClosed(s)) return;
          if (e.seq <= p.sent) continue;
          p.unacked.push(e.seq);
          p.sent = e.seq;
          this.hand(s, sr, p, roomName, e);
        }
        if (entries.length === 0 && !p.dirty) return;
      }
    } catch (err) {
      this.failed(s, err, 'room delivery paused');
      this.stalled.set(p, s);
      this.retryLater();
    } finally {
      p.running = false;
    }
  }

  /** Sends one room entry to the session under a new delivery tag (the caller keeps `p.unacked` and `p.sent`). */
  private hand(s: Session, sr: SessionRooms, p: Pipe, roomName: string, e: RoomEntry): void {
    const tag = s.activity.nextTag++;
    sr.tags.set(tag, { room: p.room, seq: e.seq });
    s.send({
      t: Op.Message, tag, id: e.id, from: e.from, text: e.text, ts: e.ts, room: roomName, rseq: e.seq,
      ...(e.seq <= p.backlogTo ? { queued: true } : {}), ...(e.line !== undefined ? { line: e.line } : {}),
    });
  }

  /**
   * A resend was answered with a seq above the tail's base that the tail lacks: an append whose reply was lost
   * (the store wrote it, the adapter saw an error) left a hole. The entry is read back and put in its place, and
   * the online members whose pipes already passed its seq get it now, out of order (clients order by rseq), so
   * no cursor moves over it unseen.
   */
  private async placeLate(st: RoomState, seq: number): Promise<void> {
    if (seq <= st.tailBase || st.tail.some((x) => x.seq === seq)) return;
    const [e] = await storeCall(() => this.store.rooms.fetchRoom(st.rec.key, seq - 1, 1, 0));
    if (!e || e.seq !== seq || seq <= st.tailBase || st.tail.some((x) => x.seq === seq)) return;
    const at = st.tail.findIndex((x) => x.seq > seq);
    st.tail.splice(at < 0 ? st.tail.length : at, 0, e);
    for (const key of st.members.keys()) {
      const s = this.online.get(key);
      const sr = s && this.bySession.get(s);
      const p = sr?.pipes.get(st.rec.key);
      if (!s || !sr || !p || isClosed(s) || p.sent < seq) continue; // a pipe below it reads it from the tail
      const i = p.unacked.findIndex((x) => x > seq);
      p.unacked.splice(i < 0 ? p.unacked.length : i, 0, seq);
      this.hand(s, sr, p, st.rec.name, e);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Counts for senders

  private counts(st: RoomState, senderKey: string, id: string, seq: number): RoomReceiptItem {
    let of = 0;
    let delivered = 0;
    for (const [key, m] of st.members) {
      if (key === senderKey) continue;
      of++;
      if (m.cursor >= seq) delivered++;
    }
    return [id, st.rec.name, delivered, of];
  }

  /** Member `key`'s cursor moved from `from` to `to`: the senders of the entries it passed get new counts. */
  private moved(st: RoomState, key: string, from: number, to: number): void {
    let due = this.countsDue.get(st.rec.key);
    for (const e of st.tail) {
      if (e.seq <= from || e.line !== undefined || e.fromKey === key) continue;
      if (e.seq > to) break;
      if (!due) {
        if (this.countsDue.size === 0) setImmediate(this.flushCounts);
        this.countsDue.set(st.rec.key, (due = new Set()));
      }
      due.add(e.seq);
    }
  }

  private readonly flushCounts = (): void => {
    const bySender = new Map<string, RoomReceiptItem[]>();
    for (const [room, seqs] of this.countsDue) {
      const st = this.loaded(room);
      if (!st) continue;
      for (const e of st.tail) {
        if (!seqs.has(e.seq)) continue;
        const items = bySender.get(e.fromKey) ?? [];
        items.push(this.counts(st, e.fromKey, e.id, e.seq));
        bySender.set(e.fromKey, items);
      }
    }
    this.countsDue.clear();
    for (const [key, items] of bySender) {
      const s = this.online.get(key);
      if (!s || s.phase === 'closed') continue;
      for (let i = 0; i < items.length; i += 1000) s.send({ t: Op.RoomReceipt, items: items.slice(i, i + 1000) });
    }
  };

  // ------------------------------------------------------------------------------------------------------
  // State

  /** The room's state, loaded once per node; null when there is no such room. */
  private state(key: string): Promise<RoomState | null> {
    let p = this.states.get(key);
    if (!p) {
      // Neither a missing room nor an outage is remembered: the next call asks the store again.
      p = this.load(key).then((st) => {
        if (st) this.resolved.set(key, st);
        else this.states.delete(key);
        return st;
      }, (err: unknown) => {
        this.states.delete(key);
        throw err;
      });
      this.states.set(key, p);
    }
    return p;
  }

  private async load(key: string): Promise<RoomState | null> {
    const rec = await storeCall(() => this.store.rooms.getRoom(key));
    if (!rec) return null;
    const [list, last] = await Promise.all([
      storeCall(() => this.store.rooms.members(key)),
      storeCall(() => this.store.rooms.historyStart(key, 0, 0)),
    ]);
    // Several nodes: the claim may have moved while the room loaded (`unload` found nothing to forget then).
    if (this.placement && !this.placement.owns(key)) throw new RouterError('STALE_EPOCH', 'the room moved to another node while it loaded');
    return { rec, members: new Map(list.map((m) => [m.key, member(m.name, m.cursor)])), tail: [], tailBase: last, movesSinceTrim: 0, flush: undefined, appended: Promise.resolve() };
  }

  /** The state of a room already loaded, read synchronously. */
  private loaded(key: string): RoomState | undefined {
    return this.resolved.get(key);
  }

  /** The room named `raw`; refusals carry `ref` (the room as given, or the message id a frame is about). */
  private async existing(raw: string, ref = raw): Promise<RoomState> {
    const name = normalizeName(raw);
    const st = name === null ? null : await this.state(nameKey(name));
    if (!st) throw new AppError('ROOM_UNKNOWN', 'no room has that name', ref);
    return st;
  }

  private async membership(s: Session, raw: string, ref = raw): Promise<RoomState> {
    const st = await this.existing(raw, ref);
    if (!st.members.has(s.key)) throw new AppError('NOT_A_MEMBER', 'you are not a member of this room', ref);
    return st;
  }

  private async owned(s: Session, raw: string): Promise<RoomState> {
    const st = await this.membership(s, raw);
    if (st.rec.ownerKey !== s.key) throw new AppError('NOT_THE_OWNER', 'only the room\'s owner may do that', raw);
    return st;
  }

  private memberKey(raw: string, ref: string): string {
    const name = normalizeName(raw);
    if (name === null) throw new AppError('BAD_NAME', 'not a valid name', ref);
    return nameKey(name);
  }

  /** Appends a line of the room's own (under the room's lock) to its log and tail. */
  private async line(st: RoomState, key: string, name: string, line: RoomLine): Promise<void> {
    const ts = this.clock.now();
    const id = `~${line}-${ts.toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const entry = { room: st.rec.key, from: name, fromKey: key, id, text: '', ts, line };
    // Lines are never refused for the cap: they record what already happened.
    await this.appendInOrder(st, entry, Number.MAX_SAFE_INTEGER);
  }

  /**
   * Issues an append now (call it under the room's lock, so seqs follow the lock's order) and resolves once it is
   * durable and, if stored, in the tail: after every append issued before it, so the tail stays in seq order with
   * nothing missing between. The store takes seqs in call order (embedded: write transactions run in the order
   * they were issued; MongoDB: the seq is claimed before the adapter's first await).
   */
  private appendInOrder(st: RoomState, entry: NewRoomEntry, cap: number): Promise<AppendResult> {
    const appending = storeCall(() => this.store.rooms.append(entry, cap));
    const done = st.appended.then(() => appending).then(async (r) => {
      if (r.status === 'stored') {
        if (this.placement) await this.fillGap(st, r.seq);
        this.push(st, { ...entry, seq: r.seq });
      }
      else if (r.status === 'duplicate') {
        void this.placeLate(st, r.seq).catch((err: unknown) => this.log.warn({ err, room: st.rec.key }, 'could not place a late room entry'));
      }
      return r;
    });
    st.appended = done.catch(() => undefined);
    return done;
  }

  /**
   * Several nodes: a node that owned the room before this one says its last appends are done. What they added
   * above the tail goes in it now, in the append order (after the appends this node issued before), and the
   * members' pipes read it.
   */
  refresh(key: string): void {
    const st = this.resolved.get(key);
    if (!st) return;
    const done = st.appended.then(async () => {
      for (;;) {
        const top = st.tail.length > 0 ? st.tail[st.tail.length - 1]!.seq : st.tailBase;
        const more = await storeCall(() => this.store.rooms.fetchRoom(key, top, this.opts.batch, 0));
        for (const e of more) this.push(st, e);
        if (more.length < this.opts.batch) break;
      }
      this.wake(st);
    }).catch((err: unknown) => this.log.warn({ err, room: key }, 'could not read what an earlier owner appended'));
    st.appended = done;
  }

  /**
   * With several nodes, entries can land in the log that this node did not append: those of a node that owned
   * the room until its claim moved here, appended while this node loaded it. Before an append of its own goes in
   * the tail, whatever the store holds between the tail's top and it goes in first, so the tail stays the log's
   * exact suffix and no pipe passes an entry it never read. (One node: every append is this node's, in order.)
   */
  private async fillGap(st: RoomState, seq: number): Promise<void> {
    try {
      for (let read = 0; ; read++) {
        const top = st.tail.length > 0 ? st.tail[st.tail.length - 1]!.seq : st.tailBase;
        if (seq <= top + 1) return;
        const missing = await storeCall(() => this.store.rooms.fetchRoom(st.rec.key, top, seq - top - 1, 0));
        for (const e of missing) if (e.seq < seq) this.push(st, e);
        // Seqs are not dense (MongoDB: a claimed seq whose insert failed is a hole), so a gap may be for good;
        // but one the earlier owner's append is still filling shows up within a round trip or two.
        if (read >= GAP_READS - 1 || missing.length >= seq - top - 1) return;
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, GAP_WAIT_MS));
      }
    } catch (err) {
      // Unread: the pipes read that stretch from the store instead (tailBase above it).
      this.log.warn({ err, room: st.rec.key }, 'could not read a room log gap');
      st.tail = [];
      st.tailBase = seq - 1;
    }
  }

  private push(st: RoomState, e: RoomEntry): void {
    const top = st.tail.length > 0 ? st.tail[st.tail.length - 1]!.seq : st.tailBase;
    if (e.seq <= top) return;
    st.tail.push(e);
    const max = this.opts.historyCount + TAIL_EXTRA;
    if (st.tail.length > max) {
      const dropped = st.tail.splice(0, st.tail.length - max);
      st.tailBase = dropped[dropped.length - 1]!.seq;
    }
  }

  /** Removes a member (under the room's lock): from memory first, so its pipe stops before the store write. */
  private async drop(st: RoomState, key: string): Promise<void> {
    st.members.delete(key);
    const s = this.online.get(key);
    const sr = s && this.bySession.get(s);
    sr?.pipes.delete(st.rec.key);
    if (sr) for (const [tag, t] of sr.tags) if (t.room === st.rec.key) sr.tags.delete(tag);
    await storeCall(() => this.store.rooms.removeMember(st.rec.key, key));
    if (s) this.announce(st, s, false);
  }

  /** A member's cursor moved in memory: written now if it moved far, else with the room's next batch. */
  private cursorDue(st: RoomState, key: string, m: Member): void {
    if (m.cursor - m.written >= CURSOR_BATCH) {
      void this.writeCursor(st, key, m);
      return;
    }
    if (st.flush !== undefined) return;
    st.flush = this.clock.setTimeout(() => {
      st.flush = undefined;
      for (const [k, member] of st.members) if (member.cursor > member.written) void this.writeCursor(st, k, member);
    }, CURSOR_DELAY_MS);
    st.flush.unref?.();
  }

  /** Writes a member's cursor, latest value only, one write at a time; trims the log now and then. */
  private async writeCursor(st: RoomState, key: string, m: Member): Promise<void> {
    if (m.writing) return;
    m.writing = true;
    try {
      while (m.written < m.cursor && st.members.get(key) === m) {
        const to = m.cursor;
        await storeCall(() => this.store.rooms.advanceCursor(st.rec.key, key, to));
        m.written = to;
        if (++st.movesSinceTrim >= TRIM_EVERY) {
          st.movesSinceTrim = 0;
          void this.lock.run(st.rec.key, () => storeCall(() => this.store.rooms.trimRoom(st.rec.key, this.opts.historyCount))).catch((err: unknown) => {
            this.log.warn({ err, room: st.rec.key }, 'could not trim a room log');
          });
        }
      }
    } catch (err) {
      // The cursor stays behind in the store: those messages come again at the next sign-in (clients de-duplicate).
      this.log.warn({ err, room: st.rec.key }, 'could not write a room cursor');
      if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') this.storeDown();
    } finally {
      m.writing = false;
    }
  }

  private info(st: RoomState): RoomInfoFrame {
    return {
      t: Op.RoomInfo, room: st.rec.name, owner: st.rec.owner, private: st.rec.private,
      members: [...st.members].map(([key, m]) => [m.name, this.isOnline(key)]),
    };
  }

  private isOnline(key: string): boolean {
    const s = this.online.get(key);
    return s !== undefined && s.phase !== 'closed' && s.phase !== 'hello';
  }

  /** Tells the room's other online members that `s`'s member came online or went offline. */
  private announce(st: RoomState, s: Session, online: boolean): void {
    for (const key of st.members.keys()) {
      if (key === s.key) continue;
      const other = this.online.get(key);
      if (other && this.bySession.get(other)?.pipes.has(st.rec.key)) other.send({ t: Op.RoomPresence, room: st.rec.name, name: s.name, online });
    }
  }

  /** Runs a frame's work; whatever it throws becomes the session's coded error. */
  private async guard(s: Session, ref: string | undefined, frame: OwnedRoomFrame | undefined, work: () => Promise<void>): Promise<void> {
    try {
      if (this.placement && frame) {
        // Several nodes: the room's owner runs it (a bad name is refused here, as `work` would).
        const name = normalizeName(frame.room);
        if (name !== null && !(await this.placement.here(nameKey(name)))) {
          this.placement.forward(s, nameKey(name), frame);
          return;
        }
      }
      await work();
    } catch (err) {
      if (err instanceof RouterError) {
        s.log.warn({ err }, 'room frame: the bus between nodes is unavailable');
        if (s.phase !== 'closed') s.error({ code: 'STORE_UNAVAILABLE', message: 'the bus between nodes is unavailable; try again shortly', ref });
      } else if (s.phase !== 'closed') tellError(s, err, ref, this.storeDown);
      else this.failed(s, err, 'room work failed');
    }
  }

  private failed(s: Session, err: unknown, what: string): void {
    if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') {
      this.storeDown();
      s.log.warn({}, `${what}: store unavailable`);
    } else if (!(err instanceof AppError)) s.log.error({ err }, what);
  }
}

/** Read through a call: the phase changes across awaits, which narrowing does not see. */
function isClosed(s: Session): boolean {
  return s.phase === 'closed';
}

function member(name: string, cursor: number): Member {
  return { name, cursor, written: cursor, writing: false };
}

function roomName(raw: string): string {
  const name = normalizeName(raw);
  if (name === null) throw new AppError('BAD_NAME', 'room names follow the account name rules: 1 to 32 letters, digits and ._-', raw);
  return name;
}
