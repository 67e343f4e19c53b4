/**
 * Test doubles for driving the hub by hand (test/unit/hub-*.test.ts), so a test states an interleaving instead
 * of hoping for it:
 *
 * - `FakeClock`: wall time and timers that move only when the test calls `advance`.
 * - `MemoryStore`: the Store port in memory, with `down` (every call rejects as unavailable) and `hold(method)`
 *   (the next call of that method waits until the test releases it). It models the port's promises that the hub
 *   relies on (per-recipient seq order, the cap, (sender, id) uniqueness, receipts) and nothing of durability,
 *   expiry or several processes; sessions and skeletons are kept only as far as `Accounts` reads them.
 * - `FakeSession`: a `Session` whose socket records the frames written to it and the close code.
 */
import { decodeServerFrame } from '../../shared/codec.ts';
import type { ServerFrame } from '../../shared/protocol.ts';
import type { Auth } from '../../server/core/accounts.ts';
import type { Clock, Timer } from '../../server/core/clock.ts';
import { createLogger, type Logger } from '../../server/core/logger.ts';
import { Session } from '../../server/core/session.ts';
import type { RoomStore } from '../../server/core/room-store.ts';
import {
  StoreUnavailableError,
  type Account, type EnqueueResult, type NewQueuedMessage, type PendingReceipt, type QueuedMessage, type SessionRecord, type Store,
} from '../../server/core/store.ts';

interface FakeTimer extends Timer { at: number; every: number | undefined; fn: () => void; dead: boolean }

export class FakeClock implements Clock {
  private timers: FakeTimer[] = [];
  constructor(public t = Date.now()) {}
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { at: this.t + ms, every: undefined, fn, dead: false };
    this.timers.push(timer);
    return timer;
  }
  setInterval(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { at: this.t + ms, every: ms, fn, dead: false };
    this.timers.push(timer);
    return timer;
  }
  clearTimeout(t: Timer | undefined): void {
    if (t) (t as FakeTimer).dead = true;
  }
  clearInterval(t: Timer | undefined): void {
    this.clearTimeout(t);
  }
  /** Moves time forward by `ms`, firing every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => !x.dead && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      if (due.every === undefined) due.dead = true;
      else due.at += due.every;
      due.fn();
    }
    this.t = end;
    this.timers = this.timers.filter((x) => !x.dead);
  }
}

type Held = { release: () => void; fail: (err: unknown) => void };

export class MemoryStore implements Store {
  readonly kind = 'memory';
  /** The hub's unit tests have no rooms: a member of none, invited to none; any other room call fails loudly. */
  readonly rooms = new Proxy({} as RoomStore, {
    get: (_t, op) => (op === 'roomsOf' || op === 'invitesOf' ? () => Promise.resolve([]) : () => Promise.reject(new Error(`MemoryStore has no rooms (${String(op)})`))),
  });
  down = false;
  readonly accounts = new Map<string, Account>();
  readonly queues = new Map<string, QueuedMessage[]>();
  readonly receipts = new Map<string, PendingReceipt[]>();
  readonly sessions = new Map<string, SessionRecord>();
  private seq = 0;
  private readonly holds = new Map<string, Array<(h: Held) => void>>();
  /** Calls made, by method name, in order. */
  readonly calls: string[] = [];

  /** The next call of `method` waits; resolves (with its controls) once that call has started. */
  hold(method: keyof Store): Promise<Held> {
    return new Promise((resolve) => {
      const list = this.holds.get(method) ?? [];
      list.push(resolve);
      this.holds.set(method, list);
    });
  }

  private async enter(method: string): Promise<void> {
    this.calls.push(method);
    const waiting = this.holds.get(method)?.shift();
    if (waiting) {
      await new Promise<void>((release, fail) => waiting({ release: () => release(), fail }));
    }
    if (this.down) throw new StoreUnavailableError(`memory store is down (${method})`);
  }

  addAccount(name: string): void {
    this.accounts.set(name.toLowerCase(), { key: name.toLowerCase(), name, passwordHash: 'x', created: 0 });
  }

  queue(to: string): QueuedMessage[] {
    return this.queues.get(to) ?? [];
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {}
  async ping(): Promise<boolean> {
    this.calls.push('ping');
    return !this.down;
  }
  async createAccount(a: Account): Promise<boolean> {
    await this.enter('createAccount');
    if (this.accounts.has(a.key)) return false;
    this.accounts.set(a.key, a);
    return true;
  }
  async getAccount(key: string): Promise<Account | null> {
    await this.enter('getAccount');
    return this.accounts.get(key) ?? null;
  }
  async claimSkeleton(_skeleton: string, key: string): Promise<string> {
    await this.enter('claimSkeleton');
    return key;
  }
  async putSession(s: SessionRecord): Promise<void> {
    await this.enter('putSession');
    this.sessions.set(s.tokenHash, s);
  }
  async getSession(tokenHash: string): Promise<SessionRecord | null> {
    await this.enter('getSession');
    return this.sessions.get(tokenHash) ?? null;
  }
  async deleteSession(tokenHash: string): Promise<void> {
    await this.enter('deleteSession');
    this.sessions.delete(tokenHash);
  }
  async replaceSessions(key: string, keepTokenHash: string, at: number): Promise<string[]> {
    await this.enter('replaceSessions');
    const replaced: string[] = [];
    for (const [h, rec] of this.sessions) {
      if (rec.key !== key || h === keepTokenHash || rec.replacedAt !== undefined) continue;
      this.sessions.set(h, { ...rec, replacedAt: at });
      replaced.push(h);
    }
    return replaced;
  }
  async purgeExpiredSessions(): Promise<number> {
    return 0;
  }
  async enqueue(m: NewQueuedMessage, cap: number): Promise<EnqueueResult> {
    await this.enter('enqueue');
    return this.put(m, cap);
  }
  async enqueueBatch(to: string, messages: NewQueuedMessage[]): Promise<EnqueueResult[]> {
    await this.enter('enqueueBatch');
    return messages.map((m) => this.put({ ...m, to }, Number.MAX_SAFE_INTEGER));
  }
  private put(m: NewQueuedMessage, cap: number): EnqueueResult {
    const q = this.queues.get(m.to) ?? [];
    const dup = q.find((x) => x.fromKey === m.fromKey && x.id === m.id);
    if (dup) return { status: 'duplicate', seq: dup.seq };
    if (q.length >= cap) return { status: 'full' };
    const seq = ++this.seq;
    q.push({ ...m, seq });
    this.queues.set(m.to, q);
    return { status: 'queued', seq };
  }
  async putReceipts(fromKey: string, receipts: PendingReceipt[]): Promise<void> {
    await this.enter('putReceipts');
    this.receipts.set(fromKey, [...(this.receipts.get(fromKey) ?? []), ...receipts]);
  }
  async takeReceipts(fromKey: string, limit: number): Promise<PendingReceipt[]> {
    await this.enter('takeReceipts');
    const all = this.receipts.get(fromKey) ?? [];
    const out = all.splice(0, limit);
    return out;
  }
  async fetchQueue(to: string, afterSeq: number, limit: number, notBefore: number): Promise<QueuedMessage[]> {
    await this.enter('fetchQueue');
    return this.queue(to).filter((m) => m.seq > afterSeq && m.ts >= notBefore).slice(0, limit);
  }
  async ackQueue(to: string, seqs: number[]): Promise<number> {
    await this.enter('ackQueue');
    const q = this.queue(to);
    const left = q.filter((m) => !seqs.includes(m.seq));
    this.queues.set(to, left);
    return q.length - left.length;
  }
  async queueLength(to: string): Promise<number> {
    return this.queue(to).length;
  }
  async findQueued(fromKey: string, id: string): Promise<QueuedMessage | null> {
    for (const q of this.queues.values()) for (const m of q) if (m.fromKey === fromKey && m.id === id) return m;
    return null;
  }
  async purgeExpiredMessages(): Promise<number> {
    return 0;
  }
  async setPassword(): Promise<boolean> {
    return true;
  }
  async deleteSessionsOf(): Promise<string[]> {
    return [];
  }
  async deleteAccount(): Promise<boolean> {
    return true;
  }
}

let nextConn = 1;
const quiet = createLogger('silent');

export class FakeSession extends Session {
  readonly id = nextConn++;
  /** Every frame written, decoded. */
  readonly frames: ServerFrame[] = [];
  closedWith: { code: number; reason: string } | undefined;

  constructor(auth: Auth, burst = 1000) {
    super(auth, burst);
  }
  write(bytes: Uint8Array): void {
    if (!this.closedWith) this.frames.push(decodeServerFrame(bytes) as ServerFrame);
  }
  forward(bytes: Uint8Array): void {
    this.write(bytes);
  }
  buffered(): number {
    return 0;
  }
  end(code: number, reason: string): void {
    this.closedWith ??= { code, reason };
  }
  protected get rootLog(): Logger {
    return quiet;
  }
  /** Frames of type `t`. */
  of<T extends ServerFrame['t']>(t: T): Array<Extract<ServerFrame, { t: T }>> {
    return this.frames.filter((f) => f.t === t) as Array<Extract<ServerFrame, { t: T }>>;
  }
}

/** Lets every pending promise callback and `setImmediate` (receipt flush) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
