/**
 * This browser's memory of one account: its conversations and contacts, in IndexedDB (one database per
 * account, so two people sharing a browser never see each other's messages). The server keeps nothing once
 * delivered, so this is the only copy.
 *
 * Messages are keyed by (sender, id): the sender's client made the id, so a message that arrives twice (a
 * resend after a lost receipt, a queue redelivered after a crash) is stored, and shown, once. `seq` is this
 * browser's arrival order, which is the order the server accepted a conversation's messages in.
 *
 * Rooms live in the same stores: a room's conversation is the peer `#<room key>` (`#` is in no name, so a room
 * never meets a contact), its record among the contacts carries `room: true`, and its messages carry the room's
 * name and their place in the room's one order (`rseq`), which is the order a room is shown in.
 */
import { nameKey } from '../../shared/names.ts';
import type { RoomLineName } from '../../shared/protocol.ts';
import { t } from './i18n/index.ts';
import { files } from './words.ts';

function fileKindLabel(kind: 'photo' | 'video' | 'audio' | 'file' | undefined): string {
  return kind ? files().kindLabel[kind] : files().kindLabel.video;
}

/** `read`: for an outgoing message, the recipient has it on screen; for an incoming one, we sent them `read`. */
export type MessageState = 'sending' | 'accepted' | 'queued' | 'delivered' | 'read' | 'failed';

export interface StoredMessage {
  /** nameKey of the sender; with `id`, the primary key. */
  fromKey: string;
  id: string;
  /** nameKey of the other party: the conversation this message belongs to. */
  peer: string;
  from: string;
  to: string;
  dir: 'in' | 'out';
  text: string;
  /** Server acceptance time for incoming messages, local send time for outgoing ones. */
  ts: number;
  seq: number;
  state: MessageState;
  /** Plain-language reason when `state` is failed. */
  error?: string;
  /** Present on a video card's record: `text` is the file name, `note` what became of the stream. */
  /** A file sent or received; `kind` (photo, video, audio, file) is absent in records made before files had kinds. */
  video?: { size: number; note: string; kind?: 'photo' | 'video' | 'audio' | 'file' };
  /** Set on room messages: the room's display name (then `peer` is `roomPeer(room key)` and `to` the room). */
  room?: string;
  /** The message's place in the room's one order, once the server told it. */
  rseq?: number;
  /** A line of the room's own: what happened to `from` (`text` is empty). */
  line?: RoomLineName;
  /** Own room messages: `[delivered, of]`, how many of the other members have it. */
  count?: [delivered: number, of: number];
}

/** The conversation key of a room (a `Contact.key` too): `#` and the room key. */
export function roomPeer(roomKey: string): string {
  return `#${roomKey}`;
}

export function isRoomPeer(key: string): boolean {
  return key.startsWith('#');
}

export interface Contact {
  /** nameKey(name). */
  key: string;
  /** Display form, updated from what the server says. */
  name: string;
  unread: number;
  /** `seq` of the latest message, for ordering the list by recent activity. */
  lastSeq: number;
  lastText: string;
  lastTs: number;
  /** A room's record: `name` is the room's name. */
  room?: true;
  /** Set once this account is no longer a member of the room (the history stays). */
  gone?: 'left' | 'removed';
}

/** The key views use for a message: sender and id, as in the store. */
export function messageKey(m: Pick<StoredMessage, 'fromKey' | 'id'>): string {
  return `${m.fromKey}\n${m.id}`;
}

const RANK: Record<MessageState, number> = { sending: 0, accepted: 1, queued: 2, delivered: 3, read: 4, failed: 3 };

function done<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    tx.onerror = () => undefined; // followed by abort, which rejects
  });
}

export class History {
  private seq = 0;

  private constructor(private readonly db: IDBDatabase) {}

  /** Opens (creating on first use) the database of the account `me`. */
  static async open(me: string): Promise<History> {
    const req = indexedDB.open(`parley:${nameKey(me)}`, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      const messages = db.createObjectStore('messages', { keyPath: ['fromKey', 'id'] });
      messages.createIndex('byPeer', ['peer', 'seq']);
      messages.createIndex('bySeq', 'seq');
      messages.createIndex('byState', 'state');
      db.createObjectStore('contacts', { keyPath: 'key' });
    };
    const db = await done(req);
    const h = new History(db);
    const tx = db.transaction('messages', 'readonly');
    const last = await done(tx.objectStore('messages').index('bySeq').openCursor(null, 'prev'));
    h.seq = last ? (last.value as StoredMessage).seq : 0;
    // Another tab of this origin upgrading the schema must not be blocked by us.
    db.onversionchange = () => db.close();
    return h;
  }

  close(): void {
    this.db.close();
  }

  /** The next arrival number; taken synchronously so arrival order survives concurrent writes. */
  nextSeq(): number {
    return ++this.seq;
  }

  /**
   * Stores a message and bumps its contact, unless (from, id) is already stored. Resolves to the updated
   * contact, or null for a duplicate. `unread` adds to the contact's unread count.
   */
  async addMessage(m: StoredMessage, unread: boolean): Promise<Contact | null> {
    const tx = this.db.transaction(['messages', 'contacts'], 'readwrite');
    const ok = committed(tx);
    const messages = tx.objectStore('messages');
    const existing = await done(messages.get([m.fromKey, m.id]));
    if (existing) {
      await ok;
      return null;
    }
    messages.add(m);
    const contacts = tx.objectStore('contacts');
    const c = ((await done(contacts.get(m.peer))) as Contact | undefined)
      ?? (m.room !== undefined ? roomRecord(m.peer, m.room) : emptyContact(m.dir === 'in' ? m.from : m.to));
    if (m.dir === 'in' && m.room === undefined) c.name = m.from;
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    if (m.line === undefined) {
      c.lastText = m.video ? `${fileKindLabel(m.video.kind)}: ${m.text}` : m.room !== undefined && m.dir === 'in' ? `${m.from}: ${m.text}` : m.text;
      c.lastTs = m.ts;
    }
    if (unread) c.unread += 1;
    contacts.put(c);
    await ok;
    return c;
  }

  /** Replaces a stored message as it is (video cards update their note this way). */
  async putMessage(m: StoredMessage): Promise<void> {
    const tx = this.db.transaction('messages', 'readwrite');
    tx.objectStore('messages').put(m);
    await committed(tx);
  }

  /** Moves a message's state forward (never back: a late `accepted` does not undo `delivered`). */
  /** `peer`, when given, must be the message's conversation (a `read` counts only from the recipient). */
  async updateState(fromKey: string, id: string, state: MessageState, error?: string, peer?: string): Promise<StoredMessage | undefined> {
    const tx = this.db.transaction('messages', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('messages');
    const m = (await done(store.get([fromKey, id]))) as StoredMessage | undefined;
    let changed: StoredMessage | undefined;
    if (m && (peer === undefined || m.peer === peer) && m.state !== state && m.state !== 'failed' && RANK[state] >= RANK[m.state]) {
      m.state = state;
      if (error) m.error = error;
      else delete m.error;
      store.put(m);
      changed = m;
    }
    await ok;
    return changed;
  }

  /**
   * Changes a stored room message in place, in one transaction (its `rseq`, its counts, its state, which only
   * moves forward as in `updateState`); resolves to it as stored, if it is. One transaction per change, so
   * what a caller shows after it is never older than what an earlier caller showed.
   */
  async patchMessage(fromKey: string, id: string, patch: { rseq?: number; count?: [number, number]; state?: MessageState }): Promise<StoredMessage | undefined> {
    const tx = this.db.transaction('messages', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('messages');
    const m = (await done(store.get([fromKey, id]))) as StoredMessage | undefined;
    if (m) {
      if (patch.rseq !== undefined) m.rseq = patch.rseq;
      if (patch.count) m.count = patch.count;
      if (patch.state && m.state !== 'failed' && RANK[patch.state] > RANK[m.state]) m.state = patch.state;
      store.put(m);
    }
    await ok;
    return m;
  }

  /** A room this account is in (`gone` undefined) or no longer in; created when new. */
  async putRoom(key: string, name: string, gone?: 'left' | 'removed'): Promise<Contact> {
    const tx = this.db.transaction('contacts', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('contacts');
    const c = ((await done(store.get(key))) as Contact | undefined) ?? roomRecord(key, name);
    c.name = name;
    if (gone) c.gone = gone;
    else delete c.gone;
    store.put(c);
    await ok;
    return c;
  }

  async deleteMessage(fromKey: string, id: string): Promise<void> {
    const tx = this.db.transaction('messages', 'readwrite');
    tx.objectStore('messages').delete([fromKey, id]);
    await committed(tx);
  }

  /** The latest `limit` messages with `peer`, oldest first. */
  async conversation(peer: string, limit = 500): Promise<StoredMessage[]> {
    const tx = this.db.transaction('messages', 'readonly');
    const range = IDBKeyRange.bound([peer, -Infinity], [peer, Infinity]);
    const out: StoredMessage[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = tx.objectStore('messages').index('byPeer').openCursor(range, 'prev');
      req.onerror = () => reject(req.error ?? new Error('IndexedDB cursor failed'));
      req.onsuccess = () => {
        const cur = req.result;
        if (!cur || out.length >= limit) return resolve();
        out.push(cur.value as StoredMessage);
        cur.continue();
      };
    });
    return out.reverse();
  }

  /** Outgoing messages the server has not stored or delivered yet: to hand back to the client's outbox. */
  async unconfirmed(): Promise<StoredMessage[]> {
    const tx = this.db.transaction('messages', 'readonly');
    const idx = tx.objectStore('messages').index('byState');
    const [sending, accepted] = await Promise.all([done(idx.getAll('sending')), done(idx.getAll('accepted'))]);
    return ([...sending, ...accepted] as StoredMessage[]).filter((m) => m.dir === 'out').sort((a, b) => a.seq - b.seq);
  }

  async contacts(): Promise<Contact[]> {
    const tx = this.db.transaction('contacts', 'readonly');
    return (await done(tx.objectStore('contacts').getAll())) as Contact[];
  }

  /** Adds a contact by name; resolves to the existing one when the name (ignoring case) is known. */
  async addContact(name: string): Promise<Contact> {
    const tx = this.db.transaction('contacts', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('contacts');
    const key = nameKey(name);
    let c = (await done(store.get(key))) as Contact | undefined;
    if (!c) {
      c = emptyContact(name);
      store.put(c);
    }
    await ok;
    return c;
  }

  async removeContact(key: string): Promise<void> {
    const tx = this.db.transaction('contacts', 'readwrite');
    tx.objectStore('contacts').delete(key);
    await committed(tx);
  }

  async markRead(key: string): Promise<void> {
    const tx = this.db.transaction('contacts', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('contacts');
    const c = (await done(store.get(key))) as Contact | undefined;
    if (c && c.unread !== 0) {
      c.unread = 0;
      store.put(c);
    }
    await ok;
  }

  /** Records the server's display form of a contact's name (e.g. "Bob" typed, "bob" registered). */
  async renameContact(key: string, name: string): Promise<void> {
    const tx = this.db.transaction('contacts', 'readwrite');
    const ok = committed(tx);
    const store = tx.objectStore('contacts');
    const c = (await done(store.get(key))) as Contact | undefined;
    if (c && c.name !== name) {
      c.name = name;
      store.put(c);
    }
    await ok;
  }
}

function emptyContact(name: string): Contact {
  return { key: nameKey(name), name, unread: 0, lastSeq: 0, lastText: '', lastTs: 0 };
}

function roomRecord(key: string, name: string): Contact {
  return { key, name, unread: 0, lastSeq: 0, lastText: '', lastTs: 0, room: true };
}
