/**
 * One signed-in session of the page: the SDK client and its streams, this browser's history, contacts and
 * presence, and which conversation is open. Views read from here and listen to its events; they never talk
 * to the SDK directly, except the video cards, which drive one stream each.
 */
import { findContact, ParleyClient, ParleyHttpError, Streams, sessionValid, type ClosedReason, type ConnState, type StreamError } from '../sdk/index.ts';
import { Emitter } from '../sdk/emitter.ts';
import { newMessageId } from '../../shared/ids.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import { History, isRoomPeer, type Contact, type MessageState, type StoredMessage } from './history.ts';
import { RoomChat } from './room-chat.ts';
import { Typing } from '../../shared/protocol.ts';
import { t } from './i18n/index.ts';
import { loadSettings, saveSettings, type Settings } from './settings.ts';
import { TabClaim } from './tabs.ts';
import { sendErrorText } from './words.ts';
import { announce } from './notify.ts';

export interface ChatEvents extends Record<string, unknown> {
  /** A message was added (`added`) or changed state. */
  message: { m: StoredMessage; added: boolean };
  /** The contact list or a contact's unread count / last message changed. */
  contacts: undefined;
  presence: { key: string; online: boolean };
  /** The open conversation changed (undefined: none). */
  active: { key: string | undefined };
  conn: { state: ConnState; reason?: ClosedReason | undefined };
  /** A contact started or stopped typing to us (expired, or stopped by a message or a lost connection). */
  typing: { key: string; on: boolean };
  /** Something worth a short notice that belongs to no single message. */
  notice: { text: string };
  /** Something arrived out of view and notifications were never asked for: offer to turn them on. */
  notifyOffer: undefined;
}

function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** The conversation open last in this browser for an account, so a reload reopens it. */
function lastOpen(meKey: string): string | undefined {
  try {
    return localStorage.getItem(`parley:open:${meKey}`) ?? undefined;
  } catch {
    return undefined;
  }
}

function rememberOpen(meKey: string, key: string | undefined): void {
  try {
    if (key) localStorage.setItem(`parley:open:${meKey}`, key);
    else localStorage.removeItem(`parley:open:${meKey}`);
  } catch {
    // not remembered; a reload shows the contact list
  }
}

export class Chat extends Emitter<ChatEvents> {
  readonly meKey: string;
  readonly contacts = new Map<string, Contact>();
  readonly presence = new Map<string, boolean>();
  readonly client: ParleyClient;
  readonly streams: Streams;
  /** The rooms of this session (room-chat.ts); a room's conversation key starts with `#`. */
  readonly rooms: RoomChat;
  active: string | undefined;
  /** Elements of video cards alive in this page, by message key (`fromKey\nid`), shown instead of their record. */
  readonly liveCards = new Map<string, HTMLElement>();
  /**
   * True while the server has not been reached since the page loaded (the session check failed, or the first
   * connection attempt did): the page shows its history as offline rather than as a lost connection.
   */
  offline = false;
  private everOpen = false;
  /** True once another tab of this browser took over this account's connection (see tabs.ts). */
  steppedBack = false;
  settings: Settings = loadSettings();
  /** Contacts typing to us now, with the timer that ends the indicator. */
  readonly typingNow = new Map<string, ReturnType<typeof setTimeout>>();
  /** Our own typing: to whom, and when `on` was last sent. */
  private typingOut: { key: string; at: number } | undefined;
  private readonly offs: (() => void)[] = [];
  private readonly viewOffs: (() => void)[] = [];
  private readonly stopHooks = new Set<() => void>();
  private readonly tab: TabClaim;

  private constructor(readonly me: string, readonly history: History) {
    super();
    this.meKey = nameKey(me);
    this.client = new ParleyClient({
      url: wsUrl(),
      sessionValid: () => sessionValid({ baseUrl: '' }),
      // Acknowledge only once the message is in IndexedDB: a page closed in between gets it again.
      beforeAck: (m) => this.incoming(m.from, m.id, m.text, m.ts),
    });
    this.streams = new Streams(this.client);
    this.rooms = new RoomChat(this);
    this.tab = new TabClaim(this.meKey, () => this.stepBack());
  }

  /**
   * Opens the history of `me`, hands unconfirmed messages back to the outbox, and connects. `offline`: the
   * server was not reachable when the page loaded (it may have come from the service worker's copy).
   */
  static async start(me: string, offline = false): Promise<Chat> {
    const chat = new Chat(me, await History.open(me));
    chat.offline = offline;
    for (const c of await chat.history.contacts()) (c.room ? chat.rooms.records : chat.contacts).set(c.key, c);
    const last = lastOpen(chat.meKey);
    // Reopens where the person was before a reload.
    if (last && (chat.contacts.has(last) || chat.rooms.records.has(last))) chat.active = last;
    chat.wire();
    // Messages the server never confirmed before the page went away: same ids, so the server and the
    // recipient drop them if they did arrive after all.
    for (const m of await chat.history.unconfirmed()) {
      if (m.room !== undefined) chat.client.sendToRoom(m.room, m.text, m.id);
      else chat.client.send(m.to, m.text, m.id);
    }
    chat.client.follow(chat.contactNames());
    chat.tab.claim(); // before connecting, so another tab of this account lets go first
    chat.client.connect().catch(() => undefined); // the `conn` event reports how it ended
    return chat;
  }

  /**
   * Subscriptions made through the Chat are the views' (the Chat itself listens to the client): recorded so
   * that `dropViews()` can remove them all when the page is rendered again, e.g. in another language.
   */
  override on<K extends keyof ChatEvents>(type: K, fn: (e: ChatEvents[K]) => void): () => void {
    const off = super.on(type, fn);
    this.viewOffs.push(off);
    return off;
  }

  dropViews(): void {
    for (const off of this.viewOffs.splice(0)) off();
    this.rooms.dropViews();
  }

  get conn(): ConnState {
    return this.client.state;
  }

  private wire(): void {
    const c = this.client;
    this.offs.push(
      c.on('state', ({ to, reason }) => {
        // Presence is only known while connected; the server sends it afresh after every welcome.
        if (to === 'open') this.everOpen = true;
        this.offline = !this.everOpen && (this.offline || to === 'reconnecting' || to === 'closed');
        if (to !== 'open') {
          this.forgetPresence();
          for (const key of [...this.typingNow.keys()]) this.typingFrom(key, false);
        }
        this.emit('conn', { state: to, reason });
      }),
      c.on('receipt', (r) => void this.setState(this.meKey, r.id, r.state)),
      c.on('failed', (f) => {
        if (f.to !== undefined) void this.setState(this.meKey, f.id, 'failed', sendErrorText(f.code, f.message, f.to));
      }),
      c.on('presence', (p) => this.onPresence(p.name, p.online)),
      c.onRead((by, ids) => this.readBy(by, ids)),
      c.onTyping((from, on) => this.typingFrom(nameKey(from), on)),
      c.on('error', (e) => {
        if (this.rooms.handled(e)) return;
        if (e.code === 'STORE_UNAVAILABLE') this.emit('notice', { text: t('notice.storeUnavailable') });
        else if (e.code === 'RATE_LIMITED') this.emit('notice', { text: t('notice.rateLimited') });
        else if (e.code === 'BAD_NAME') this.emit('notice', { text: t('notice.badName', String(e.ref ?? '')) });
        else if (typeof e.ref !== 'number' && !this.streams.handled(e)) this.emit('notice', { text: e.message });
      }),
    );
    const onVisible = () => {
      if (document.visibilityState === 'visible' && this.active) {
        if (isRoomPeer(this.active)) void this.rooms.markRead(this.active);
        void this.markRead(this.active);
        void this.sendRead(this.active);
      }
    };
    document.addEventListener('visibilitychange', onVisible);
    this.offs.push(() => document.removeEventListener('visibilitychange', onVisible));
  }

  private contactNames(): string[] {
    return [...this.contacts.values()].map((c) => c.name);
  }

  /** Contacts, most recent conversation first, then by name. */
  sortedContacts(): Contact[] {
    return [...this.contacts.values()].sort((a, b) => b.lastSeq - a.lastSeq || a.name.localeCompare(b.name));
  }

  /** Adds a contact; returns an error in words when the name cannot be one. */
  async addContact(raw: string): Promise<{ key: string } | { error: string }> {
    const name = normalizeName(raw.trim());
    if (!name) return { error: t('contacts.badName') };
    const key = nameKey(name);
    if (key === this.meKey) return { error: t('contacts.self') };
    if (!this.contacts.has(key)) {
      // Ask the server first, so a name with no account is refused now rather than at the first message.
      // Unreachable server: added anyway (a message to a name with no account still fails clearly later).
      let shown = name;
      try {
        shown = (await findContact({ baseUrl: '' }, name)).name;
      } catch (err) {
        const code = err instanceof ParleyHttpError ? err.code : 'NETWORK';
        if (code === 'UNKNOWN_CONTACT') return { error: t('contacts.unknown', name) };
        if (code === 'RATE_LIMITED') return { error: t('contacts.rateLimited') };
        if (code === 'BAD_NAME') return { error: t('contacts.badName') };
      }
      if (this.contacts.has(key)) return { key };
      this.contacts.set(key, await this.history.addContact(shown));
      this.client.follow(this.contactNames());
      this.emit('contacts', undefined);
    }
    return { key };
  }

  async removeContact(key: string): Promise<void> {
    await this.history.removeContact(key);
    this.contacts.delete(key);
    this.client.follow(this.contactNames());
    if (this.active === key) this.open(undefined);
    this.emit('contacts', undefined);
  }

  open(key: string | undefined): void {
    this.active = key;
    rememberOpen(this.meKey, key);
    if (this.typingOut && this.typingOut.key !== key) this.typing(this.typingOut.key, false);
    this.emit('active', { key });
    if (key && isRoomPeer(key)) {
      void this.rooms.markRead(key);
      void this.rooms.check(key);
    }
    else if (key) {
      void this.markRead(key);
      void this.sendRead(key);
    }
  }

  private async markRead(key: string): Promise<void> {
    const c = this.contacts.get(key);
    if (!c || c.unread === 0) return;
    c.unread = 0;
    this.emit('contacts', undefined);
    await this.history.markRead(key).catch((err: unknown) => this.storageFailed(err));
  }

  get unreadTotal(): number {
    let n = this.rooms.unreadTotal;
    for (const c of this.contacts.values()) n += c.unread;
    return n;
  }

  /** Sends text to a contact: stored as `sending` first, so a reload before the receipt resends it. */
  async send(key: string, text: string): Promise<void> {
    const c = this.contacts.get(key);
    if (!c) return;
    const m: StoredMessage = {
      fromKey: this.meKey, id: newMessageId(), peer: key, from: this.me, to: c.name, dir: 'out',
      text, ts: Date.now(), seq: this.history.nextSeq(), state: 'sending',
    };
    const stored = this.record(m, false);
    this.typing(key, false);
    this.client.send(c.name, text, m.id);
    await stored;
  }

  /** Sends a failed message's text again as a new message, and forgets the failed one. */
  async retry(m: StoredMessage): Promise<void> {
    await this.history.deleteMessage(m.fromKey, m.id);
    await this.send(m.peer, m.text);
    this.emit('active', { key: this.active }); // re-render without the old bubble
  }

  /**
   * A video card's record, not stored yet: the card registers itself in `liveCards` under this record's key,
   * then `storeVideo()` puts it in the conversation (in order) and in the history (so a reload shows what
   * became of it).
   */
  videoRecord(peerName: string, dir: 'in' | 'out', fileName: string, size: number, note: string, kind?: 'photo' | 'video' | 'audio' | 'file'): StoredMessage {
    const peer = nameKey(peerName);
    return {
      fromKey: dir === 'out' ? this.meKey : peer, id: `video-${newMessageId()}`, peer,
      from: dir === 'out' ? this.me : peerName, to: dir === 'out' ? peerName : this.me, dir,
      text: fileName, ts: Date.now(), seq: this.history.nextSeq(), state: 'delivered',
      video: kind ? { size, note, kind } : { size, note },
    };
  }

  async storeVideo(m: StoredMessage): Promise<void> {
    await this.record(m, m.dir === 'in' && !this.viewing(m.peer));
  }

  /** Shows the live card registered for `m` (already in the history) in place of its summary. */
  showCard(m: StoredMessage): void {
    this.emit('message', { m, added: false });
  }

  async updateVideoNote(m: StoredMessage, note: string): Promise<void> {
    if (!m.video || m.video.note === note) return;
    m.video = { ...m.video, note };
    await this.history.putMessage(m).catch((err: unknown) => this.storageFailed(err));
  }

  /** Why a stream ended, naming a takeover when that is how the connection was lost. */
  streamReason(err: StreamError): StreamError['reason'] {
    return err.reason === 'DISCONNECTED' && this.client.closedReason === 'takeover' ? 'TAKEOVER' : err.reason;
  }

  /** Shows the open conversation again (after a message was replaced). */
  reopen(): void {
    this.emit('active', { key: this.active });
  }

  /** A short notice that belongs to no single message. */
  say(text: string): void {
    this.emit('notice', { text });
  }

  /** The conversation `key` (a contact's or a room's) is on screen now. */
  viewing(key: string): boolean {
    return this.active === key && document.visibilityState === 'visible';
  }

  private async incoming(from: string, id: string, text: string, ts: number): Promise<void> {
    const peer = nameKey(from);
    const m: StoredMessage = {
      fromKey: peer, id, peer, from, to: this.me, dir: 'in', text, ts, seq: this.history.nextSeq(), state: 'delivered',
    };
    this.typingFrom(peer, false);
    const viewing = this.viewing(peer);
    const isNew = await this.record(m, !viewing);
    if (viewing) void this.sendRead(peer);
    else if (isNew) this.outOfView(peer, from, text);
  }

  /** Notifies (notify.ts) of a message or file offer from `from` that arrived while its conversation is not in view. */
  outOfView(peer: string, from: string, body: string): void {
    if (announce(this, peer, from, body) === 'offer') this.emit('notifyOffer', undefined);
  }

  /** A file offer arrived: notified like a message when its conversation is not in view. */
  offered(from: string, fileName: string): void {
    const peer = nameKey(from);
    if (!this.viewing(peer)) this.outOfView(peer, from, t('notify.file', fileName));
  }

  /** Persists a new message, then tells the views (once: a duplicate (from, id) is dropped). True when new. */
  private async record(m: StoredMessage, unread: boolean): Promise<boolean> {
    let contact: Contact | null;
    try {
      contact = await this.history.addMessage(m, unread);
    } catch (err) {
      // Storage failing must not hide the conversation: show it, say history is not being kept.
      this.storageFailed(err);
      contact = this.contacts.get(m.peer) ?? { key: m.peer, name: m.dir === 'in' ? m.from : m.to, unread: 0, lastSeq: 0, lastText: '', lastTs: 0 };
      Object.assign(contact, { lastSeq: m.seq, lastText: m.text, lastTs: m.ts, unread: contact.unread + (unread ? 1 : 0) });
    }
    if (!contact) return false;
    const isNew = !this.contacts.has(m.peer);
    this.contacts.set(m.peer, contact);
    if (isNew) this.client.follow(this.contactNames());
    this.emit('message', { m, added: true });
    this.emit('contacts', undefined);
    return true;
  }

  private async setState(fromKey: string, id: string, state: MessageState, error?: string): Promise<void> {
    try {
      const m = await this.history.updateState(fromKey, id, state, error);
      if (m) this.emit('message', { m, added: false });
    } catch (err) {
      this.storageFailed(err);
    }
  }

  private onPresence(name: string, online: boolean): void {
    const key = nameKey(name);
    if (online && this.presence.get(key) !== true) void this.resendRead(key);
    this.presence.set(key, online);
    const c = this.contacts.get(key);
    if (c && c.name !== name) {
      c.name = name; // the server's display form
      void this.history.renameContact(key, name).catch((err: unknown) => this.storageFailed(err));
      this.emit('contacts', undefined);
    }
    this.emit('presence', { key, online });
  }

  private forgetPresence(): void {
    const known = [...this.presence.keys()];
    this.presence.clear();
    for (const key of known) this.emit('presence', { key, online: false });
  }

  storageFailed(err: unknown): void {
    this.emit('notice', { text: t('notice.storageFailed', err instanceof Error ? err.message : String(err)) });
  }

  // ---- read receipts and typing (rules in docs/protocol.md, "Read receipts and typing") ----

  changeSettings(next: Partial<Settings>): void {
    this.settings = { ...this.settings, ...next };
    saveSettings(this.settings);
    if (!this.settings.typing && this.typingOut) this.typing(this.typingOut.key, false);
  }

  /** Our composer changed: `on` while there is text (renewed every Typing.renewMs), `off` when it empties. */
  typing(key: string, on: boolean): void {
    const c = this.contacts.get(key);
    if (!c) return;
    if (on) {
      if (!this.settings.typing) return;
      const now = Date.now();
      if (this.typingOut?.key === key && now - this.typingOut.at < Typing.renewMs) return;
      if (this.client.typing(c.name, true)) this.typingOut = { key, at: now };
    } else if (this.typingOut?.key === key) {
      this.typingOut = undefined;
      this.client.typing(c.name, false);
    }
  }

  private typingFrom(key: string, on: boolean): void {
    const timer = this.typingNow.get(key);
    if (timer) clearTimeout(timer);
    if (on) this.typingNow.set(key, setTimeout(() => this.typingFrom(key, false), Typing.expiryMs));
    else if (!timer) return;
    else this.typingNow.delete(key);
    this.emit('typing', { key, on });
  }

  /** Tells `key` which of its messages are now on our screen (only those acknowledged and not yet told). */
  private async sendRead(key: string): Promise<void> {
    const c = this.contacts.get(key);
    if (!c || !this.settings.readReceipts || !this.viewing(key) || this.client.state !== 'open') return;
    const messages = await this.history.conversation(key, 200).catch(() => []);
    const ids = messages.filter((m) => m.dir === 'in' && m.state === 'delivered' && !m.video).map((m) => m.id);
    if (ids.length === 0 || !this.client.read(c.name, ids)) return;
    for (const id of ids) await this.history.updateState(key, id, 'read').catch((err: unknown) => this.storageFailed(err));
  }

  /** Best effort for a sender who was offline when we read: tell them again when they come online. */
  private async resendRead(key: string): Promise<void> {
    const c = this.contacts.get(key);
    if (!c || !this.settings.readReceipts) return;
    const messages = await this.history.conversation(key, 200).catch(() => []);
    const ids = messages.filter((m) => m.dir === 'in' && m.state === 'read').map((m) => m.id);
    if (ids.length > 0) this.client.read(c.name, ids);
  }

  private async readBy(by: string, ids: string[]): Promise<void> {
    const peer = nameKey(by);
    for (const id of ids) {
      try {
        const m = await this.history.updateState(this.meKey, id, 'read', undefined, peer);
        if (m) this.emit('message', { m, added: false });
      } catch (err) {
        this.storageFailed(err);
      }
    }
  }

  /** Another tab of this browser is now the live one: let go of the connection, keep showing the history. */
  private stepBack(): void {
    if (this.client.state === 'closed') return;
    this.steppedBack = true;
    this.client.close();
  }

  /** Stops the connection and releases the history; the page is about to show something else. */
  /**
   * Runs `fn` when this chat stops (sign-out, takeover then signing in again): a card holding a file open lets
   * go of it, so the next chat can resume it. Returns the way to cancel that.
   */
  onStop(fn: () => void): () => void {
    this.stopHooks.add(fn);
    return () => this.stopHooks.delete(fn);
  }

  stop(): void {
    for (const fn of [...this.stopHooks]) fn();
    this.stopHooks.clear();
    for (const off of this.offs.splice(0)) off();
    for (const timer of this.typingNow.values()) clearTimeout(timer);
    this.tab.close();
    this.client.close();
    this.history.close();
  }
}
