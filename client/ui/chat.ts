/**
 * One signed-in session of the page: the SDK client and its streams, this browser's history, contacts and
 * presence, and which conversation is open. Views read from here and listen to its events; they never talk
 * to the SDK directly, except the video cards, which drive one stream each.
 */
import { ParleyClient, Streams, sessionValid, type ClosedReason, type ConnState, type StreamError } from '../sdk/index.ts';
import { Emitter } from '../sdk/emitter.ts';
import { newMessageId } from '../../shared/ids.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import { History, type Contact, type MessageState, type StoredMessage } from './history.ts';
import { TabClaim } from './tabs.ts';
import { sendErrorText } from './words.ts';

export interface ChatEvents extends Record<string, unknown> {
  /** A message was added (`added`) or changed state. */
  message: { m: StoredMessage; added: boolean };
  /** The contact list or a contact's unread count / last message changed. */
  contacts: undefined;
  presence: { key: string; online: boolean };
  /** The open conversation changed (undefined: none). */
  active: { key: string | undefined };
  conn: { state: ConnState; reason?: ClosedReason | undefined };
  /** Something worth a short notice that belongs to no single message. */
  notice: { text: string };
}

function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

export class Chat extends Emitter<ChatEvents> {
  readonly meKey: string;
  readonly contacts = new Map<string, Contact>();
  readonly presence = new Map<string, boolean>();
  readonly client: ParleyClient;
  readonly streams: Streams;
  active: string | undefined;
  /** Elements of video cards alive in this page, by message key (`fromKey\nid`), shown instead of their record. */
  readonly liveCards = new Map<string, HTMLElement>();
  /** True once another tab of this browser took over this account's connection (see tabs.ts). */
  steppedBack = false;
  private readonly offs: (() => void)[] = [];
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
    this.tab = new TabClaim(this.meKey, () => this.stepBack());
  }

  /** Opens the history of `me`, hands unconfirmed messages back to the outbox, and connects. */
  static async start(me: string): Promise<Chat> {
    const chat = new Chat(me, await History.open(me));
    for (const c of await chat.history.contacts()) chat.contacts.set(c.key, c);
    chat.wire();
    // Messages the server never confirmed before the page went away: same ids, so the server and the
    // recipient drop them if they did arrive after all.
    for (const m of await chat.history.unconfirmed()) chat.client.send(m.to, m.text, m.id);
    chat.client.follow(chat.contactNames());
    chat.tab.claim(); // before connecting, so another tab of this account lets go first
    chat.client.connect().catch(() => undefined); // the `conn` event reports how it ended
    return chat;
  }

  get conn(): ConnState {
    return this.client.state;
  }

  private wire(): void {
    const c = this.client;
    this.offs.push(
      c.on('state', ({ to, reason }) => {
        // Presence is only known while connected; the server sends it afresh after every welcome.
        if (to !== 'open') this.forgetPresence();
        this.emit('conn', { state: to, reason });
      }),
      c.on('receipt', (r) => void this.setState(this.meKey, r.id, r.state)),
      c.on('failed', (f) => void this.setState(this.meKey, f.id, 'failed', sendErrorText(f.code, f.message, f.to))),
      c.on('presence', (p) => this.onPresence(p.name, p.online)),
      c.on('error', (e) => {
        if (e.code === 'STORE_UNAVAILABLE') this.emit('notice', { text: 'The server cannot store messages right now; Parley keeps trying.' });
        else if (e.code === 'RATE_LIMITED') this.emit('notice', { text: 'You are sending very fast; the server asked to slow down.' });
        else if (e.code === 'BAD_NAME') this.emit('notice', { text: `"${String(e.ref ?? '')}" is not a valid name.` });
        else if (typeof e.ref !== 'number') this.emit('notice', { text: e.message });
      }),
    );
    const onVisible = () => {
      if (document.visibilityState === 'visible' && this.active) void this.markRead(this.active);
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
    if (!name) return { error: 'Names are 1 to 32 letters or digits, plus . _ or -.' };
    const key = nameKey(name);
    if (key === this.meKey) return { error: 'That is you.' };
    if (!this.contacts.has(key)) {
      this.contacts.set(key, await this.history.addContact(name));
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
    this.emit('active', { key });
    if (key) void this.markRead(key);
  }

  private async markRead(key: string): Promise<void> {
    const c = this.contacts.get(key);
    if (!c || c.unread === 0) return;
    c.unread = 0;
    this.emit('contacts', undefined);
    await this.history.markRead(key).catch((err: unknown) => this.storageFailed(err));
  }

  get unreadTotal(): number {
    let n = 0;
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
  videoRecord(peerName: string, dir: 'in' | 'out', fileName: string, size: number, note: string): StoredMessage {
    const peer = nameKey(peerName);
    return {
      fromKey: dir === 'out' ? this.meKey : peer, id: `video-${newMessageId()}`, peer,
      from: dir === 'out' ? this.me : peerName, to: dir === 'out' ? peerName : this.me, dir,
      text: fileName, ts: Date.now(), seq: this.history.nextSeq(), state: 'delivered',
      video: { size, note },
    };
  }

  storeVideo(m: StoredMessage): Promise<void> {
    return this.record(m, m.dir === 'in' && !this.viewing(m.peer));
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

  private viewing(key: string): boolean {
    return this.active === key && document.visibilityState === 'visible';
  }

  private async incoming(from: string, id: string, text: string, ts: number): Promise<void> {
    const peer = nameKey(from);
    const m: StoredMessage = {
      fromKey: peer, id, peer, from, to: this.me, dir: 'in', text, ts, seq: this.history.nextSeq(), state: 'delivered',
    };
    await this.record(m, !this.viewing(peer));
  }

  /** Persists a new message, then tells the views (once: a duplicate (from, id) is dropped). */
  private async record(m: StoredMessage, unread: boolean): Promise<void> {
    let contact: Contact | null;
    try {
      contact = await this.history.addMessage(m, unread);
    } catch (err) {
      // Storage failing must not hide the conversation: show it, say history is not being kept.
      this.storageFailed(err);
      contact = this.contacts.get(m.peer) ?? { key: m.peer, name: m.dir === 'in' ? m.from : m.to, unread: 0, lastSeq: 0, lastText: '', lastTs: 0 };
      Object.assign(contact, { lastSeq: m.seq, lastText: m.text, lastTs: m.ts, unread: contact.unread + (unread ? 1 : 0) });
    }
    if (!contact) return;
    const isNew = !this.contacts.has(m.peer);
    this.contacts.set(m.peer, contact);
    if (isNew) this.client.follow(this.contactNames());
    this.emit('message', { m, added: true });
    this.emit('contacts', undefined);
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

  private storageFailed(err: unknown): void {
    this.emit('notice', { text: `This browser could not save the conversation (${err instanceof Error ? err.message : String(err)}). It will be gone after a reload.` });
  }

  /** Another tab of this browser is now the live one: let go of the connection, keep showing the history. */
  private stepBack(): void {
    if (this.client.state === 'closed') return;
    this.steppedBack = true;
    this.client.close();
  }

  /** Stops the connection and releases the history; the page is about to show something else. */
  stop(): void {
    for (const off of this.offs.splice(0)) off();
    this.tab.close();
    this.client.close();
    this.history.close();
  }
}
