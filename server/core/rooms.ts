/**
 * Rooms as one node runs them: create, join, leave, invite, remove, hand over, list, members; room messages fanned
 * out to every member through the room's log (Store.rooms); delivery counts for senders; room presence. With
 * several nodes each room is run this way by its owner node only (`RoomPlacement`, server/core/room-nodes.ts),
 * members on other nodes being proxy sessions there.
 *
 * This file: the frames, membership and sessions' lifecycle. Beside it: room-state.ts (loading), room-log.ts
 * (appends, the tail), room-pipes.ts (delivery), room-cursors.ts, room-counts.ts, room-presence.ts, room-retry.ts.
 *
 * Rules (see docs/architecture.md, "Rooms"):
 * - Every write to a room (append, membership, owner, trim) runs under the room's lock, so the log's seq order
 *   is acceptance order and a newcomer's history start cannot be trimmed away under it; an append is issued under
 *   it and awaited outside it (`RoomLog.appendInOrder`), so appends in flight together commit together.
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
  type AckFrame, type RoomCreateFrame, type RoomInviteFrame, type RoomJoinFrame, type RoomLeaveFrame,
  type RoomMembersFrame, type RoomOwnerFrame, type RoomRemoveFrame, type RoomSendFrame, type RoomWhoFrame,
  type ServerFrame,
} from '../../shared/protocol.ts';
import { storeCall, type Accounts } from './accounts.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import { KeyedMutex } from './mutex.ts';
import { RoomCounts } from './room-counts.ts';
import { RoomCursors } from './room-cursors.ts';
import { RoomLog } from './room-log.ts';
import { RoomPipes } from './room-pipes.ts';
import type { RoomOptions, RoomPlacement, SessionLookup } from './room-ports.ts';
import { RoomPresence } from './room-presence.ts';
import { RoomRetry, roomWorkFailed } from './room-retry.ts';
import { member, RoomStates, type RoomState } from './room-state.ts';
import type { RoomLine, RoomRecord } from './room-store.ts';
import { RouterError, type OwnedRoomFrame } from './router.ts';
import { tellError, type Session } from './session.ts';
import type { Store } from './store.ts';

export type { RoomOptions, RoomPlacement, SessionLookup } from './room-ports.ts';

/** Pending invitations told at sign-in, the most recent first: a flood of invitations cannot flood a sign-in. */
const INVITES_AT_SIGN_IN = 100;

export class Rooms {
  private readonly lock = new KeyedMutex();
  private readonly states: RoomStates;
  private readonly pipes: RoomPipes;
  private readonly roomLog: RoomLog;
  private readonly counts: RoomCounts;
  private readonly cursors: RoomCursors;
  private readonly presence: RoomPresence;
  /** Sessions whose rooms a store failure stopped from starting, tried again with the stalled pipes. */
  private readonly unstarted = new Set<Session>();
  private readonly retries: RoomRetry;

  constructor(
    private readonly store: Store,
    private readonly accounts: Accounts,
    private readonly opts: RoomOptions,
    private readonly online: SessionLookup,
    private readonly clock: Clock,
    log: Logger,
    private readonly storeDown: () => void,
  ) {
    this.states = new RoomStates(store, () => this.placement);
    this.retries = new RoomRetry(clock, () => this.retry());
    this.pipes = new RoomPipes(store, opts, online, clock, this.states, this.retries, storeDown);
    this.roomLog = new RoomLog(store, opts, clock, log, () => this.placement, this.states, this.pipes);
    this.counts = new RoomCounts(this.states, online);
    this.cursors = new RoomCursors(store, this.lock, opts, clock, log, storeDown);
    this.presence = new RoomPresence(online, this.pipes);
  }

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
      this.retries.later();
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
    const st = await this.states.state(key);
    const m = st?.members.get(s.key);
    if (!st || !m || s.phase === 'closed' || this.pipes.has(s, key)) return;
    s.send(this.presence.info(st)); // before the pipe, which may hand it entries at once
    this.pipes.open(s, key, m.cursor);
    this.presence.announce(st, s, true);
  }

  /**
   * A room read for what an invitation needs (name, owner, members): this node's state when it serves the room,
   * else the store, uncached (another node orders it, so a copy here would go stale).
   */
  private async peek(key: string): Promise<{ rec: RoomRecord; members: ReadonlyMap<string, unknown> } | null> {
    if (!this.placement || (await this.placement.here(key))) return this.states.state(key);
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
    const st = this.states.forget(key);
    if (!st) return;
    this.clock.clearTimeout(st.flush);
    // Appends issued here before the claim moved may land after the new owner loaded the room.
    void st.appended.then(() => this.placement?.settled(key));
    for (const [mk, m] of st.members) {
      const s = this.online.get(mk);
      if (m.cursor > m.written) void this.cursors.write(st, mk, m);
      if (!s || !this.pipes.has(s, key)) continue;
      this.pipes.close(s, key);
      if (s.phase !== 'closed') this.placement?.moved(s, key);
    }
  }

  /**
   * Several nodes: a node that owned the room before this one says its last appends are done; they go in the
   * tail and the members' pipes read them (`RoomLog.refresh`).
   */
  refresh(key: string): void {
    this.roomLog.refresh(key);
  }

  /** The store answers again: what it stopped goes on now. */
  storeBack(): void {
    this.retries.back();
  }

  /** Tries again what a store failure stopped: sessions' rooms first, then stalled pipes. */
  private retry(): void {
    const starts = [...this.unstarted];
    this.unstarted.clear();
    for (const s of starts) {
      if (s.phase === 'closed' || this.online.get(s.key) !== s) continue;
      this.openRooms(s).catch((err: unknown) => {
        roomWorkFailed(s, err, 'rooms could not start', this.storeDown);
        this.unstarted.add(s);
        this.retries.later();
      });
    }
    this.pipes.retry();
  }

  /** The session closed: what it was sent and did not acknowledge stays above its cursors, for next time. */
  gone(s: Session): void {
    this.placement?.gone(s);
    const rooms = this.pipes.forget(s);
    if (!rooms) return;
    for (const room of rooms) {
      const st = this.states.loaded(room);
      const m = st?.members.get(s.key);
      if (st && m) void this.cursors.write(st, s.key, m);
    }
    const other = this.online.get(s.key);
    if (other !== undefined && other !== s) return; // replaced by a newer session of the same name: still online
    for (const room of rooms) {
      const st = this.states.loaded(room);
      if (st) this.presence.announce(st, s, false);
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
        this.states.add(key, st);
        await this.line(st, s.key, s.name, 'created');
      });
      const st = (await this.states.state(key))!;
      s.send(this.presence.info(st));
      this.pipes.open(s, key, 0);
      this.pipes.wake(st);
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
      s.send(this.presence.info(st));
      if (!this.pipes.has(s, key)) this.pipes.open(s, key, st.members.get(s.key)?.cursor ?? 0);
      if (added) this.presence.announce(st, s, true);
      this.pipes.wake(st);
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
      this.pipes.wake(st);
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
      s.send(this.presence.info(st));
      this.pipes.wake(st);
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
      s.send(this.presence.info(st));
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
      s.send(this.presence.info(st));
      this.pipes.wake(st);
    });
  }

  members(s: Session, f: RoomMembersFrame): void {
    void this.guard(s, f.room, f, async () => {
      const st = await this.membership(s, f.room);
      s.send(this.presence.info(st));
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
        return { result: this.roomLog.appendInOrder(st, entry, this.opts.queueCap) };
      });
      const r = await appended.result;
      if (r.status === 'full') throw new AppError('QUEUE_FULL', `the room's log is full (${this.opts.queueCap}); try again later`, f.id);
      const seq = r.seq;
      s.send({ t: Op.RoomReceipt, items: [this.counts.counts(st, s.key, f.id, seq)] });
      this.pipes.wake(st);
    });
  }

  /** Acknowledged room messages move their members' cursors over what is acknowledged without a gap. */
  ack(s: Session, f: AckFrame): void {
    this.placement?.ack(s, f);
    for (const p of this.pipes.acked(s, f)) {
      const st = this.states.loaded(p.room);
      const m = st?.members.get(s.key);
      if (!st || !m) continue;
      const cursor = p.unacked.length > 0 ? p.unacked[0]! - 1 : p.sent;
      if (cursor > m.cursor) {
        this.counts.moved(st, s.key, m.cursor, cursor);
        m.cursor = cursor;
        this.cursors.due(st, s.key, m);
      }
      void this.pipes.pump(s, p);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Membership

  /** The room named `raw`; refusals carry `ref` (the room as given, or the message id a frame is about). */
  private async existing(raw: string, ref = raw): Promise<RoomState> {
    const name = normalizeName(raw);
    const st = name === null ? null : await this.states.state(nameKey(name));
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
    await this.roomLog.appendInOrder(st, entry, Number.MAX_SAFE_INTEGER);
  }

  /** Removes a member (under the room's lock): from memory first, so its pipe stops before the store write. */
  private async drop(st: RoomState, key: string): Promise<void> {
    st.members.delete(key);
    const s = this.online.get(key);
    if (s) this.pipes.close(s, st.rec.key);
    await storeCall(() => this.store.rooms.removeMember(st.rec.key, key));
    if (s) this.presence.announce(st, s, false);
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
      else roomWorkFailed(s, err, 'room work failed', this.storeDown);
    }
  }
}

function roomName(raw: string): string {
  const name = normalizeName(raw);
  if (name === null) throw new AppError('BAD_NAME', 'room names follow the account name rules: 1 to 32 letters, digits and ._-', raw);
  return name;
}
