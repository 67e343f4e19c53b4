/**
 * The page's rooms for one signed-in session: the SDK's room layer, each room's record and messages in this
 * browser's history (history.ts keeps them beside the contacts), members with presence, invitations, and the
 * counts of your own room messages. Views read from here and listen to its events, as they do to the Chat.
 */
import { Emitter } from '../sdk/emitter.ts';
import { RoomError, Rooms, roomKey, type Room, type RoomMessage, type WhoHasIt } from '../sdk/index.ts';
import type { ErrorCodeName } from '../../shared/codes.ts';
import { newMessageId } from '../../shared/ids.ts';
import { nameKey } from '../../shared/names.ts';
import type { Chat } from './chat.ts';
import { roomPeer, type Contact, type StoredMessage } from './history.ts';
import { t } from './i18n/index.ts';
import { roomErrorText } from './words.ts';

export interface RoomChatEvents extends Record<string, unknown> {
  /** A room message was added (`added`) or changed (its place, its counts, its state). */
  message: { m: StoredMessage; added: boolean };
  /** The room list changed: a room, its unread count or last message, or the invitations. */
  rooms: undefined;
  /** A room's members, their presence, or its owner changed. */
  members: { key: string };
}

export class RoomChat extends Emitter<RoomChatEvents> {
  readonly sdk: Rooms;
  /** Room records by conversation key (`#room key`), from the history and the server. */
  readonly records = new Map<string, Contact>();
  /** Invitations to private rooms not joined yet, by conversation key. */
  readonly invitations = new Map<string, { room: string; by: string }>();
  private readonly viewOffs: (() => void)[] = [];
  /**
   * Rooms (by room key) being joined: until our own `joined` line, what arrives is the room's recent history,
   * which is neither unread nor worth a notification.
   */
  private readonly joining = new Set<string>();

  constructor(private readonly chat: Chat) {
    super();
    // Acknowledge only once the message is in IndexedDB, as for one-to-one messages.
    this.sdk = new Rooms(chat.client, { beforeAck: (m) => this.incoming(m) });
    this.sdk.on('room', (r) => void this.known(r));
    this.sdk.on('receipt', (r) => void this.counted(r.id, r.delivered, r.of));
    this.sdk.on('failed', (f) => void this.failedSend(f.id, f.code, f.message, f.room));
    this.sdk.on('gone', (g) => void this.gone(g.room, g.reason));
    this.sdk.on('invited', (i) => {
      const key = roomKey(i.room);
      if (!key) return;
      // Pending invitations come again at every sign-in: only a new one is announced.
      const known = this.invitations.has(roomPeer(key));
      this.invitations.set(roomPeer(key), i);
      this.emit('rooms', undefined);
      if (!known) this.chat.say(t('rooms.invitedNotice', i.by, i.room));
    });
    // Removed while away, the server just no longer lists the room: the open one is checked at each connection.
    chat.client.on('welcome', () => {
      if (chat.active) void this.check(chat.active);
    });
  }

  /**
   * Asks the server whether this account is still in the room `key` (when it is opened, and at each
   * connection): a room it no longer knows us in is marked removed.
   */
  async check(key: string): Promise<void> {
    const r = this.records.get(key);
    if (!r || r.gone || this.chat.client.state !== 'open') return;
    try {
      await this.sdk.members(r.name);
    } catch (err) {
      if (err instanceof RoomError && (err.code === 'NOT_A_MEMBER' || err.code === 'ROOM_UNKNOWN')) await this.gone(r.name, 'removed');
    }
  }

  /** As Chat.on: subscriptions of the views, dropped by `dropViews()` when the page is rendered again. */
  override on<K extends keyof RoomChatEvents>(type: K, fn: (e: RoomChatEvents[K]) => void): () => void {
    const off = super.on(type, fn);
    this.viewOffs.push(off);
    return off;
  }

  dropViews(): void {
    for (const off of this.viewOffs.splice(0)) off();
  }

  /** True for a client error that answered a room request (the view that asked shows it in words). */
  handled(e: object): boolean {
    return this.sdk.handled(e);
  }

  /** Rooms, most recent activity first, then by name. */
  sorted(): Contact[] {
    return [...this.records.values()].sort((a, b) => b.lastSeq - a.lastSeq || a.name.localeCompare(b.name));
  }

  /** What the server said of the room lately (members, owner), while connected and a member. */
  info(key: string): Room | undefined {
    return this.sdk.rooms.get(key.slice(1));
  }

  get unreadTotal(): number {
    let n = 0;
    for (const r of this.records.values()) n += r.unread;
    return n;
  }

  // ---- asking the server (each resolves to an error in words, or nothing) ----

  async create(name: string, priv: boolean): Promise<{ key: string } | { error: string }> {
    return this.asking(name, () => this.sdk.create(name.trim(), { private: priv }));
  }

  async join(name: string): Promise<{ key: string } | { error: string }> {
    const key = roomKey(name.trim());
    const member = key !== null && this.sdk.rooms.has(key);
    if (key !== null && !member) this.joining.add(key);
    const r = await this.asking(name, () => this.sdk.join(name.trim()));
    if ('error' in r && key !== null) this.joining.delete(key);
    return r;
  }

  async leave(key: string): Promise<string | undefined> {
    const r = this.records.get(key);
    if (!r) return undefined;
    return this.words(() => this.sdk.leave(r.name), r.name);
  }

  invite(key: string, name: string): Promise<string | undefined> {
    return this.words(() => this.sdk.invite(this.records.get(key)?.name ?? '', name.trim()), name.trim());
  }

  remove(key: string, name: string): Promise<string | undefined> {
    return this.words(() => this.sdk.remove(this.records.get(key)?.name ?? '', name), name);
  }

  handOver(key: string, name: string): Promise<string | undefined> {
    return this.words(() => this.sdk.handOver(this.records.get(key)?.name ?? '', name), name);
  }

  /** Public rooms to browse, or an error in words. */
  async list(): Promise<Array<{ room: string; owner: string }> | { error: string }> {
    try {
      return await this.sdk.list();
    } catch (err) {
      return { error: this.errorText(err, '') };
    }
  }

  /** Who of the other members has your message `m`, or an error in words. */
  async who(m: StoredMessage): Promise<WhoHasIt | { error: string }> {
    try {
      return await this.sdk.who(m.room ?? '', m.id);
    } catch (err) {
      return { error: this.errorText(err, m.room ?? '') };
    }
  }

  /** Sends text to a room: stored as `sending` first, so a reload before the server has it resends it. */
  async send(key: string, text: string): Promise<void> {
    const r = this.records.get(key);
    if (!r) return;
    const m: StoredMessage = {
      fromKey: this.chat.meKey, id: newMessageId(), peer: key, from: this.chat.me, to: r.name, dir: 'out',
      text, ts: Date.now(), seq: this.chat.history.nextSeq(), state: 'sending', room: r.name,
    };
    const stored = this.record(m, false);
    this.sdk.send(r.name, text, m.id);
    await stored;
  }

  /** Sends a failed room message's text again as a new message, and forgets the failed one. */
  async retry(m: StoredMessage): Promise<void> {
    await this.chat.history.deleteMessage(m.fromKey, m.id);
    await this.send(m.peer, m.text);
    this.chat.reopen();
  }

  async markRead(key: string): Promise<void> {
    const r = this.records.get(key);
    if (!r || r.unread === 0) return;
    r.unread = 0;
    this.emit('rooms', undefined);
    await this.chat.history.markRead(key).catch((err: unknown) => this.chat.storageFailed(err));
  }

  // ---- what the server tells ----

  private async asking(name: string, ask: () => Promise<Room>): Promise<{ key: string } | { error: string }> {
    try {
      const r = await ask();
      const key = roomPeer(nameKey(r.name));
      await this.known(r);
      this.invitations.delete(key);
      this.emit('rooms', undefined);
      return { key };
    } catch (err) {
      return { error: this.errorText(err, name.trim()) };
    }
  }

  private async words(ask: () => Promise<unknown>, subject: string): Promise<string | undefined> {
    try {
      await ask();
      return undefined;
    } catch (err) {
      return this.errorText(err, subject);
    }
  }

  private errorText(err: unknown, subject: string): string {
    if (err instanceof RoomError) return roomErrorText(err.code, err.message, subject);
    return err instanceof Error ? err.message : String(err);
  }

  /** A room the server says this account is in: its record exists (and is not gone). */
  private async known(r: Room): Promise<void> {
    const key = roomPeer(nameKey(r.name));
    const had = this.records.get(key);
    if (!had || had.gone || had.name !== r.name) {
      try {
        this.records.set(key, await this.chat.history.putRoom(key, r.name));
      } catch (err) {
        this.chat.storageFailed(err);
        this.records.set(key, { key, name: r.name, unread: 0, lastSeq: 0, lastText: '', lastTs: 0, room: true });
      }
      this.emit('rooms', undefined);
    }
    this.emit('members', { key });
  }

  private async gone(room: string, reason: 'left' | 'removed'): Promise<void> {
    const key = roomPeer(nameKey(room));
    try {
      this.records.set(key, await this.chat.history.putRoom(key, room, reason));
    } catch (err) {
      this.chat.storageFailed(err);
    }
    if (reason === 'removed') this.chat.say(t('rooms.removedNotice', room));
    this.emit('rooms', undefined);
    this.emit('members', { key });
  }

  /** A new entry of a room's log: stored, then shown; our own texts come back with their place in the order. */
  private async incoming(rm: RoomMessage): Promise<void> {
    const key = nameKey(rm.room);
    const peer = roomPeer(key);
    const fromKey = nameKey(rm.from);
    if (fromKey === this.chat.meKey && rm.line === undefined) {
      const m = await this.chat.history.patchMessage(fromKey, rm.id, { rseq: rm.rseq });
      if (m) {
        this.emit('message', { m, added: false });
        return;
      }
    }
    const m: StoredMessage = {
      fromKey, id: rm.id, peer, from: rm.from, to: rm.room, dir: fromKey === this.chat.meKey && !rm.line ? 'out' : 'in',
      text: rm.text, ts: rm.ts, seq: this.chat.history.nextSeq(), state: fromKey === this.chat.meKey ? 'queued' : 'delivered',
      room: rm.room, rseq: rm.rseq,
    };
    if (rm.line !== undefined) m.line = rm.line;
    const history = this.joining.has(key);
    if (history && rm.line === 'joined' && fromKey === this.chat.meKey) this.joining.delete(key);
    const counts = m.dir === 'in' && m.line === undefined && !history;
    const viewing = this.chat.viewing(peer);
    const isNew = await this.record(m, counts && !viewing);
    if (isNew && counts && !viewing) this.chat.outOfView(peer, t('rooms.notifyTitle', rm.from, rm.room), rm.text);
  }

  /** Persists a new room message, then tells the views (once: a duplicate (from, id) is dropped). */
  private async record(m: StoredMessage, unread: boolean): Promise<boolean> {
    let rec: Contact | null;
    try {
      rec = await this.chat.history.addMessage(m, unread);
    } catch (err) {
      this.chat.storageFailed(err);
      rec = this.records.get(m.peer) ?? { key: m.peer, name: m.room ?? m.to, unread: 0, lastSeq: 0, lastText: '', lastTs: 0, room: true };
      Object.assign(rec, { lastSeq: m.seq, unread: rec.unread + (unread ? 1 : 0) });
    }
    if (!rec) return false;
    const had = this.records.get(m.peer);
    // Membership is the server's word, not the history's: a record stays gone until `roomInfo` says otherwise.
    if (had?.gone && !rec.gone) rec.gone = had.gone;
    this.records.set(m.peer, rec);
    this.emit('message', { m, added: true });
    this.emit('rooms', undefined);
    return true;
  }

  private async counted(id: string, delivered: number, of: number): Promise<void> {
    try {
      // In the room's log, durably: `queued` (never resent); every other member has it: `delivered`.
      const state = of > 0 && delivered >= of ? 'delivered' : 'queued';
      const m = await this.chat.history.patchMessage(this.chat.meKey, id, { count: [delivered, of], state });
      if (m) this.emit('message', { m, added: false });
    } catch (err) {
      this.chat.storageFailed(err);
    }
  }

  private async failedSend(id: string, code: ErrorCodeName, message: string, room: string): Promise<void> {
    try {
      const m = await this.chat.history.updateState(this.chat.meKey, id, 'failed', roomErrorText(code, message, room));
      if (m) this.emit('message', { m, added: false });
    } catch (err) {
      this.chat.storageFailed(err);
    }
  }
}
