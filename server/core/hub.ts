/**
 * The hub: who is online, what each connection may do, and where every text message goes.
 *
 * Pure core: it speaks to sockets through `Conn` and to storage through `Store`, and imports neither uWS nor a
 * database driver. The transport calls `open`, `frame`, `textFrame`, `drain` and `closed`; HTTP sign-in reaches
 * it through `Accounts.onTakeover`.
 *
 * Delivery rules (see docs/architecture.md):
 * - A message for a recipient whose session is `live` goes straight to it; the sender gets `accepted`, then
 *   `delivered` when the recipient acks. If the recipient drops first, the message is written to the queue
 *   and the sender gets `queued`.
 * - Otherwise (offline, or online but still draining its queue) the message is appended to the store queue
 *   under a per-recipient lock, so queue order is acceptance order; the sender gets `queued` only after the
 *   store committed it.
 * - A session drains its queue in batches after `hello`, waiting for each batch's acks before deleting it and
 *   fetching the next; it turns `live` only when a fetch comes back empty with no write pending.
 * - (sender, id) de-duplication: a bounded memory of recent live deliveries plus the store's unique index;
 *   the recipient's client de-duplicates too, which covers what neither can remember.
 */
import { AbortReason, CloseCode, type AbortReasonName } from '../../shared/codes.ts';
import { decodeClientFrame, encodeFrame, ProtocolError, type ChunkFrame } from '../../shared/codec.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import {
  Delivery, Limits, Op, PROTOCOL_VERSION,
  type AckFrame, type ClientFrame, type FollowFrame, type HelloFrame, type PingFrame, type ReceiptItem, type SendFrame,
  type ServerFrame,
} from '../../shared/protocol.ts';
import { storeCall, type Accounts, type Auth } from './accounts.ts';
import { KeyedMutex } from './mutex.ts';
import { RecentMap } from './recent.ts';
import type { Conn } from './conn.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import { StoreUnavailableError, type Store } from './store.ts';
import { StreamRelay, type StreamOptions } from './streams.ts';

export interface HubOptions {
  /** Messages one recipient's queue may hold. */
  queueCap: number;
  /** Queued messages older than this are not delivered and are purged. */
  retentionMs: number;
  /** Queued messages sent per batch at sign-in. */
  drainBatch: number;
  /** Time a new socket has to send `hello`. */
  helloTimeoutMs: number;
  /** A session that sends nothing for this long is closed with IDLE. */
  idleTimeoutMs: number;
  /** Control frames per second per connection, sustained and burst. */
  frameRate: number;
  frameBurst: number;
  /** Malformed frames tolerated per connection before it is closed with PROTOCOL. */
  maxBadFrames: number;
  /** (sender, id) pairs of live deliveries remembered for de-duplication. */
  dedupEntries: number;
  streams: StreamOptions;
}

/** One message held by the server for a connection until it acks. */
interface Inflight {
  fromKey: string;
  from: string;
  id: string;
  text: string;
  ts: number;
  /** Set when it came from the store queue; absent for live deliveries. */
  seq?: number;
}

type Phase = 'hello' | 'draining' | 'live' | 'closed';

/**
 * Milliseconds since this module loaded: the clock of the timestamps a session keeps. Small integers on
 * purpose. V8 keeps an integer of up to 31 bits inline in an object, while a `Date.now()` value needs a
 * 16-byte number box per field, and tens of thousands of idle sessions each keep several. After about 24 days
 * of uptime the values outgrow that range; they stay correct, they just cost the boxes again.
 */
const T0 = Date.now();
/** Math.floor changes no value here (Date.now() is whole) but yields a small integer where `-` gives a box. */
const clock = (): number => Math.floor(Date.now() - T0);

/** The state of draining a session's queue after `hello`: made then, dropped when the session turns live. */
class Drain {
  /** Last seq handed out. */
  cursor = 0;
  /** A write to the queue landed since the last fetch. */
  dirty = false;
  /** The drain loop is running (one per session at a time). */
  running = false;
  /**
   * Set when the queue read empty but writes to it were still landing: from then on new messages wait in
   * `held`, in memory, instead of joining the queue, so the drain can finish even while senders keep sending.
   * They are delivered (in order, after the last queued message) when the session turns live.
   */
  settling = false;
  held: Inflight[] | undefined;
  /** Messages of the current batch not yet acked, and what to call when that reaches 0. */
  batchLeft = 0;
  batchDone: (() => void) | undefined;
}

/** What a session needs once it does more than sit idle (messages, receipts, follows, bad frames): made on first use. */
class Activity {
  nextTag = 1;
  /** Messages sent to this session and not yet acknowledged, by delivery tag. */
  inflight: Map<number, Inflight> | undefined;
  /** Receipts waiting for the end of this event-loop turn, by message id (see Hub.receipt). */
  receipts: Map<string, ReceiptItem> | undefined;
  follows: Set<string> | undefined;
  badFrames = 0;
  floodStrikes = 0;
  log: Logger | undefined;
}

/**
 * One open, authenticated socket of one user. Kept small: tens of thousands of them sit idle, so what only
 * activity needs (see `Activity`) and the drain state are made when needed, the session is known by a short
 * id (see `sessionId`), and times are small integers (see `clock`).
 *
 * Abstract: the transport's subclass is also the socket (`Conn`), so a connection is one object.
 */
export abstract class Session implements Conn {
  phase: Phase = 'hello';
  /** `clock()` at open, then at every frame after `hello`: the hello and idle timeouts run from it. */
  lastSeen = clock();
  /**
   * Frame-rate token bucket, inline rather than an object per session, in thousandths of a frame so that the
   * refill (elapsed ms x frames per second) stays an exact integer.
   */
  credit: number;
  creditAt = this.lastSeen;
  /** Session expiry in whole seconds on the `clock` (rounded down). */
  readonly expiresSec: number;
  drain: Drain | undefined;
  /** See `Activity`; `activity` makes it. */
  act: Activity | undefined;

  readonly name: string;
  readonly key: string;
  readonly sid: string;

  /** `burst`: the frame-rate bucket starts full (`HubOptions.frameBurst`). */
  constructor(auth: Auth, burst: number) {
    this.name = auth.name;
    this.key = auth.key;
    this.sid = auth.sid;
    this.credit = burst * 1000;
    this.expiresSec = Math.floor((auth.expires - T0) / 1000);
  }

  abstract readonly id: number;
  abstract write(bytes: Uint8Array): void;
  abstract forward(bytes: Uint8Array): void;
  abstract end(code: number, reason: string): void;
  /** The logger the session's own (child) logger derives from. */
  protected abstract get rootLog(): Logger;

  get activity(): Activity {
    return (this.act ??= new Activity());
  }

  /** Expiry as ms since the epoch (to the second, never later than the real one). */
  get expires(): number {
    return T0 + this.expiresSec * 1000;
  }

  /** Messages sent to this session and not yet acknowledged, by delivery tag. */
  get inflight(): Map<number, Inflight> {
    return (this.activity.inflight ??= new Map());
  }

  get log(): Logger {
    return (this.activity.log ??= this.rootLog.child({ conn: this.id, user: this.name }));
  }

  send(frame: ServerFrame): void {
    if (this.phase !== 'closed') this.write(encodeFrame(frame));
  }

  error(err: { code: AppError['code']; message: string; ref?: string | number | undefined }): void {
    this.send(err.ref === undefined
      ? { t: Op.Error, code: err.code, message: err.message }
      : { t: Op.Error, code: err.code, message: err.message, ref: err.ref });
  }
}

type Handlers = { [K in ClientFrame['t']]: (s: Session, f: Extract<ClientFrame, { t: K }>) => void };

export class Hub {
  state: 'running' | 'closing' | 'closed' = 'running';
  /** The live session of each name key. At most one, by construction of `open`. */
  private readonly online = new Map<string, Session>();
  private readonly followers = new Map<string, Set<Session>>();
  /** Recent live deliveries by message id (see `seen`), bounded by `dedupEntries`. */
  private readonly recent: RecentMap<string, { fromKey: string; state: 'accepted' | 'delivered' }>;
  /** Serialises every store write to one recipient's queue (and the drain's emptiness check). */
  private readonly queueLock = new KeyedMutex();
  /** Accepted messages that could not be written back to the queue while the store was down. */
  private readonly pendingRequeue: Array<{ to: string; msg: Inflight }> = [];
  private readonly keyCache = new Map<string, string | null>();
  /** Sessions with receipts waiting for the end of this event-loop turn. */
  private readonly receiptsDue: Session[] = [];
  private storeUp = true;
  private recovering: ReturnType<typeof setTimeout> | undefined;
  private readonly sweeper: ReturnType<typeof setInterval>;
  readonly streams: StreamRelay;
  private readonly handlers: Handlers;

  constructor(
    private readonly store: Store,
    private readonly accounts: Accounts,
    private readonly opts: HubOptions,
    private readonly log: Logger,
  ) {
    this.recent = new RecentMap(opts.dedupEntries);
    accounts.onTakeover = (key, current) => this.takeover(key, current);
    accounts.onSignOut = (key, sid) => {
      const s = this.online.get(key);
      if (s?.sid === sid) this.detach(s, CloseCode.SESSION_ENDED, 'signed out');
    };
    this.streams = new StreamRelay(opts.streams, (key) => this.online.get(key), (key) => accounts.lookup(key), log);
    this.handlers = {
      [Op.Hello]: (s, f) => this.hello(s, f),
      [Op.Send]: (s, f) => this.send(s, f),
      [Op.Ack]: (s, f) => this.ack(s, f),
      [Op.Follow]: (s, f) => this.follow(s, f),
      [Op.Ping]: (s, f) => this.ping(s, f),
      [Op.StreamOffer]: (s, f) => this.streams.offer(s, f),
      [Op.StreamAnswer]: (s, f) => this.streams.answer(s, f),
      [Op.StreamCredit]: (s, f) => this.streams.credit(s, f),
      [Op.StreamEnd]: (s, f) => this.streams.end(s, f),
      [Op.StreamCancel]: (s, f) => this.streams.cancel(s, f),
    };
    const sweepEvery = Math.max(250, Math.min(opts.idleTimeoutMs / 4, opts.helloTimeoutMs / 2, 30_000));
    this.sweeper = setInterval(() => this.sweep(), sweepEvery);
    this.sweeper.unref();
  }

  /** What a new session's frame-rate bucket starts with (see `Session`'s constructor). */
  get frameBurst(): number {
    return this.opts.frameBurst;
  }

  get onlineCount(): number {
    return this.online.size;
  }

  get storeHealthy(): boolean {
    return this.storeUp;
  }

  // ------------------------------------------------------------------------------------------------------
  // Connection lifecycle (called by the transport)

  /**
   * A socket finished its upgrade: `s` is its session, made by the transport from `auth`. A socket
   * turned away is told why and closed, and its session is `closed` from then on.
   */
  open(s: Session, auth: Auth): void {
    const turnAway = (frame: ServerFrame | undefined, code: number, reason: string): void => {
      if (frame) s.write(encodeFrame(frame));
      s.phase = 'closed';
      s.end(code, reason);
    };
    if (this.state !== 'running') {
      return turnAway({ t: Op.Shutdown, message: 'server is shutting down' }, CloseCode.GOING_AWAY, 'shutting down');
    }
    // Decided synchronously: a sign-out or a newer sign-in may have completed while this upgrade was
    // authenticating.
    if (this.accounts.isEnded(s.sid)) return turnAway(undefined, CloseCode.SESSION_ENDED, 'signed out');
    if (auth.replaced || this.accounts.isReplaced(s.key, s.sid)) {
      this.log.info({ conn: s.id, user: s.name }, 'replaced session turned away');
      return turnAway({ t: Op.Takeover, message: 'signed in elsewhere' }, CloseCode.TAKEOVER, 'signed in elsewhere');
    }
    const previous = this.online.get(s.key);
    if (previous) {
      if (previous.sid === s.sid) {
        this.detach(previous, CloseCode.REPLACED, 'replaced by a newer connection of this session', AbortReason.RECIPIENT_DISCONNECTED);
      } else {
        previous.send({ t: Op.Takeover, message: 'signed in elsewhere' });
        this.detach(previous, CloseCode.TAKEOVER, 'signed in elsewhere', AbortReason.TAKEOVER);
      }
    }
    this.online.set(s.key, s);
    this.accounts.forgetSession(s.sid);
    if (!previous) this.announce(s.key, s.name, true);
    this.log.debug({ conn: s.id, user: s.name }, 'connected');
  }

  /** One binary frame from a session's socket. Never throws: bad input becomes an error frame or a close. */
  frame(s: Session, bytes: Uint8Array): void {
    if (s.phase === 'closed') return;
    const now = clock();
    if (s.phase !== 'hello') s.lastSeen = now;
    let f: ClientFrame | ChunkFrame;
    try {
      f = decodeClientFrame(bytes);
    } catch (err) {
      this.badFrame(s, err);
      return;
    }
    if (f.t === 'chunk') {
      this.streams.chunk(s, f);
      return;
    }
    if (!this.takeToken(s, now)) {
      s.error({ code: 'RATE_LIMITED', message: 'too many frames; slow down', ref: f.t === Op.Send ? f.id : undefined });
      if (++s.activity.floodStrikes > this.opts.frameBurst) this.detach(s, CloseCode.FLOOD, 'frame flood');
      return;
    }
    if (s.phase === 'hello' && f.t !== Op.Hello) {
      s.error({ code: 'NOT_READY', message: 'send hello first', ref: f.t === Op.Send ? f.id : undefined });
      return;
    }
    try {
      (this.handlers[f.t] as (s: Session, f: ClientFrame) => void)(s, f);
    } catch (err) {
      this.handlerError(s, err);
    }
  }

  /** Text frames are not part of the protocol. */
  textFrame(s: Session): void {
    if (s.phase === 'closed') return;
    if (s.phase !== 'hello') s.lastSeen = clock();
    this.badFrame(s, new ProtocolError('TEXT_FRAME', 'Parley speaks binary frames only'));
  }

  /** The transport saw the socket close (any reason). Idempotent with `detach`. */
  closed(s: Session, code: number): void {
    if (s.phase === 'closed') return;
    s.log.debug({ code }, 'disconnected');
    this.release(s, AbortReason.RECIPIENT_DISCONNECTED);
  }

  /** Stops accepting, tells every socket, requeues what was in flight, and waits for the store writes. */
  async shutdown(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'closing';
    clearInterval(this.sweeper);
    for (const s of [...this.online.values()]) {
      s.send({ t: Op.Shutdown, message: 'server is shutting down' });
      this.detach(s, CloseCode.GOING_AWAY, 'server shutting down', AbortReason.SERVER_SHUTDOWN);
    }
    // Every requeue was started under the queue lock; wait for all of them.
    await this.queueLock.idle();
    if (this.pendingRequeue.length > 0) await this.retryRequeue();
    if (this.pendingRequeue.length > 0) {
      this.log.error({ count: this.pendingRequeue.length }, 'store down at shutdown: accepted messages could not be queued');
    }
    clearTimeout(this.recovering);
    this.state = 'closed';
  }

  // ------------------------------------------------------------------------------------------------------
  // Frame handlers

  private hello(s: Session, f: HelloFrame): void {
    if (s.phase !== 'hello') {
      s.error({ code: 'NOT_READY', message: 'hello was already received' });
      return;
    }
    if (f.v !== PROTOCOL_VERSION) {
      s.error({ code: 'VERSION_UNSUPPORTED', message: `this server speaks protocol version ${PROTOCOL_VERSION}` });
      this.detach(s, CloseCode.VERSION, 'unsupported protocol version');
      return;
    }
    s.send({
      t: Op.Welcome, v: PROTOCOL_VERSION, name: s.name, now: Date.now(),
      limits: {
        maxTextBytes: Limits.maxTextBytes,
        maxChunkBytes: this.opts.streams.maxChunkBytes,
        maxStreamsPerUser: this.opts.streams.maxStreamsPerUser,
        maxFileBytes: this.opts.streams.maxFileBytes,
        streamWindowBytes: this.opts.streams.windowBytes,
      },
    });
    if (f.follow) this.follow(s, { t: Op.Follow, names: f.follow });
    s.phase = 'draining';
    s.lastSeen = clock();
    s.drain = new Drain();
    void this.runDrain(s);
  }

  /**
   * Records a delivery state for the sender's session; all of a turn's receipts leave in one frame per session
   * (see `ReceiptFrame`). A later state of the same message replaces an earlier one not yet sent.
   */
  private receipt(s: Session | undefined, id: string, to: string, state: Delivery): void {
    if (!s || s.phase === 'closed') return;
    const a = s.activity;
    if (!a.receipts) {
      a.receipts = new Map();
      this.receiptsDue.push(s);
      if (this.receiptsDue.length === 1) setImmediate(this.flushReceipts);
    }
    const prev = a.receipts.get(id);
    if (prev) {
      prev[1] = to;
      prev[2] = state;
    } else a.receipts.set(id, [id, to, state]);
  }

  private readonly flushReceipts = (): void => {
    const due = this.receiptsDue.splice(0);
    for (const s of due) {
      const a = s.activity;
      const items = [...a.receipts!.values()];
      a.receipts = undefined;
      if (s.phase === 'closed') continue;
      for (let i = 0; i < items.length; i += 1000) s.send({ t: Op.Receipt, items: items.slice(i, i + 1000) });
    }
  };

  /** Name key for a name as typed, or null when it is not a valid name. Cached: it runs for every message. */
  private keyOf(raw: string): string | null {
    let key = this.keyCache.get(raw);
    if (key === undefined) {
      const name = normalizeName(raw);
      key = name === null ? null : nameKey(name);
      if (this.keyCache.size >= 10_000) this.keyCache.clear();
      this.keyCache.set(raw, key);
    }
    return key;
  }

  private send(s: Session, f: SendFrame): void {
    const toKey = this.keyOf(f.to);
    if (toKey === null) {
      s.error({ code: 'UNKNOWN_CONTACT', message: 'no account has that name', ref: f.id });
      return;
    }
    const seen = this.seen(s.key, f.id);
    if (seen) {
      this.receipt(s, f.id, f.to, seen === 'accepted' ? Delivery.Accepted : Delivery.Delivered);
      return;
    }
    const msg: Inflight = { fromKey: s.key, from: s.name, id: f.id, text: f.text, ts: Date.now() };
    const r = this.online.get(toKey);
    const d = r?.phase === 'draining' ? r.drain : undefined;
    if (r && (r.phase === 'live' || (d && (d.settling || !this.storeUp)))) {
      if (r.phase === 'live' || !this.storeUp) this.deliver(r, msg);
      else (d!.held ??= []).push(msg);
      this.remember(s.key, f.id, 'accepted');
      this.receipt(s, f.id, r.name, Delivery.Accepted);
      return;
    }
    void this.queueFromSender(s, toKey, msg);
  }

  private async queueFromSender(s: Session, toKey: string, msg: Inflight): Promise<void> {
    try {
      const toName = this.online.get(toKey)?.name ?? (await this.accounts.lookup(toKey));
      if (toName === null) throw new AppError('UNKNOWN_CONTACT', 'no account has that name', msg.id);
      if (!this.storeUp) throw new AppError('STORE_UNAVAILABLE', 'the message store is unavailable; try again shortly', msg.id);
      const result = await this.enqueue(toKey, msg, this.opts.queueCap);
      if (result === 'full') throw new AppError('QUEUE_FULL', `${toName}'s queue is full; try again later`, msg.id);
      this.receipt(s, msg.id, toName, Delivery.Queued);
    } catch (err) {
      if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') this.storeDown();
      this.handlerError(s, err, msg.id);
    }
  }

  /** Appends to the queue under the recipient's lock and wakes its drain; maps outages to AppError. */
  private async enqueue(toKey: string, msg: Inflight, cap: number): Promise<'queued' | 'full'> {
    const result = await this.queueLock.run(toKey, () => storeCall(() => this.store.enqueue({
      to: toKey, from: msg.from, fromKey: msg.fromKey, id: msg.id, text: msg.text, ts: msg.ts,
    }, cap)));
    if (result.status === 'full') return 'full';
    const d = this.online.get(toKey)?.drain;
    if (d) {
      d.dirty = true;
      if (!d.running) void this.runDrain(this.online.get(toKey)!);
    }
    return 'queued';
  }

  private ack(s: Session, f: AckFrame): void {
    const seqs: number[] = [];
    for (const tag of f.tags) {
      const m = s.inflight.get(tag);
      if (!m) continue; // already acked, or a tag from an earlier connection: nothing to do
      s.inflight.delete(tag);
      if (m.seq !== undefined) {
        seqs.push(m.seq);
        const d = s.drain;
        if (d && --d.batchLeft === 0) d.batchDone?.();
      }
      this.remember(m.fromKey, m.id, 'delivered');
      this.receipt(this.online.get(m.fromKey), m.id, s.name, Delivery.Delivered);
    }
    if (seqs.length > 0) {
      // If this delete is lost the messages come again next sign-in; the client de-duplicates them.
      storeCall(() => this.store.ackQueue(s.key, seqs)).catch((err: unknown) => {
        s.log.warn({ err, count: seqs.length }, 'could not delete acknowledged messages');
      });
    }
  }

  private follow(s: Session, f: FollowFrame): void {
    const a = s.activity;
    for (const key of a.follows ?? []) this.followers.get(key)?.delete(s);
    const follows = (a.follows = new Set());
    for (const raw of f.names) {
      const name = normalizeName(raw);
      if (!name) {
        s.error({ code: 'BAD_NAME', message: `not a valid name: ${raw.slice(0, 40)}`, ref: raw.slice(0, 40) });
        continue;
      }
      const key = nameKey(name);
      follows.add(key);
      let set = this.followers.get(key);
      if (!set) this.followers.set(key, (set = new Set()));
      set.add(s);
      const peer = this.online.get(key);
      s.send({ t: Op.Presence, name: peer?.name ?? name, online: peer !== undefined });
    }
  }

  private ping(s: Session, f: PingFrame): void {
    s.send(f.n === undefined ? { t: Op.Pong, now: Date.now() } : { t: Op.Pong, n: f.n, now: Date.now() });
  }

  // ------------------------------------------------------------------------------------------------------
  // Delivery

  private deliver(r: Session, m: Inflight): void {
    const tag = r.activity.nextTag++;
    r.inflight.set(tag, m);
    r.send(m.seq === undefined
      ? { t: Op.Message, tag, id: m.id, from: m.from, text: m.text, ts: m.ts }
      : { t: Op.Message, tag, id: m.id, from: m.from, text: m.text, ts: m.ts, queued: true });
  }

  /** Hands the session its queue, batch by batch, then turns it live. One loop per session at a time. */
  private async runDrain(s: Session): Promise<void> {
    const d = s.drain;
    if (!d || d.running) return;
    d.running = true;
    try {
      while (s.phase === 'draining') {
        d.dirty = false;
        const batch = await storeCall(() =>
          this.store.fetchQueue(s.key, d.cursor, this.opts.drainBatch, Date.now() - this.opts.retentionMs));
        if (s.phase !== 'draining') return;
        if (batch.length === 0) {
          if (d.dirty || this.queueLock.busy(s.key)) {
            // Writes are still landing: hold new messages in memory so they stop, then read what landed.
            d.settling = true;
            await this.queueLock.run(s.key, async () => undefined);
            continue;
          }
          s.phase = 'live';
          s.drain = undefined;
          for (const m of d.held?.splice(0) ?? []) this.deliver(s, m);
          this.log.debug({ conn: s.id, user: s.name }, 'queue drained; live');
          return;
        }
        const done = new Promise<void>((resolve) => (d.batchDone = resolve));
        d.batchLeft = batch.length;
        for (const q of batch) this.deliver(s, { fromKey: q.fromKey, from: q.from, id: q.id, text: q.text, ts: q.ts, seq: q.seq });
        d.cursor = batch[batch.length - 1]!.seq;
        await done;
      }
    } catch (err) {
      if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') {
        // The session stays `draining`; live messages reach it meanwhile (see `send`), and recovery resumes it.
        this.storeDown();
        s.log.warn({}, 'queue drain paused: store unavailable');
      } else {
        s.log.error({ err }, 'queue drain failed');
      }
    } finally {
      d.running = false;
    }
  }

  /** Writes what was in flight to a departed session back to its queue, in the order it was sent. */
  private requeue(s: Session): void {
    const inflight = s.act?.inflight;
    const live = [...[...(inflight?.values() ?? [])].filter((m) => m.seq === undefined), ...(s.drain?.held?.splice(0) ?? [])];
    inflight?.clear();
    if (live.length === 0) return;
    void this.queueLock.run(s.key, async () => {
      for (const [i, m] of live.entries()) {
        try {
          // Accepted messages are never refused for the cap: the sender was already told `accepted`.
          await storeCall(() => this.store.enqueue({ to: s.key, from: m.from, fromKey: m.fromKey, id: m.id, text: m.text, ts: m.ts }, Number.MAX_SAFE_INTEGER));
          this.forget(m.fromKey, m.id);
          this.receipt(this.online.get(m.fromKey), m.id, s.name, Delivery.Queued);
        } catch (err) {
          for (const rest of live.slice(i)) this.pendingRequeue.push({ to: s.key, msg: rest });
          this.storeDown();
          s.log.warn({ err, count: live.length - i }, 'requeue deferred: store unavailable');
          return;
        }
      }
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // Store outages

  private storeDown(): void {
    if (this.storeUp) this.log.warn({ store: this.store.kind }, 'store unavailable; will retry');
    this.storeUp = false;
    if (this.recovering || this.state === 'closed') return;
    const probe = async (delay: number): Promise<void> => {
      const ok = await this.store.ping().catch(() => false);
      if (!ok) {
        this.recovering = setTimeout(() => void probe(Math.min(delay * 2, 5000)), delay);
        this.recovering.unref();
        return;
      }
      this.recovering = undefined;
      this.storeUp = true;
      this.log.info({ store: this.store.kind }, 'store available again');
      await this.retryRequeue();
      for (const s of this.online.values()) if (s.phase === 'draining') void this.runDrain(s);
    };
    this.recovering = setTimeout(() => void probe(250), 250);
    this.recovering.unref();
  }

  private async retryRequeue(): Promise<void> {
    const items = this.pendingRequeue.splice(0);
    for (const [i, { to, msg }] of items.entries()) {
      try {
        await this.queueLock.run(to, () => storeCall(() => this.store.enqueue({ to, from: msg.from, fromKey: msg.fromKey, id: msg.id, text: msg.text, ts: msg.ts }, Number.MAX_SAFE_INTEGER)));
        this.forget(msg.fromKey, msg.id);
        const r = this.online.get(to);
        if (r?.drain) r.drain.dirty = true;
        this.receipt(this.online.get(msg.fromKey), msg.id, r?.name ?? to, Delivery.Queued);
      } catch {
        this.pendingRequeue.unshift(...items.slice(i));
        this.storeDown();
        return;
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Takeover, presence, closing

  /** A sign-in for `key` completed: the live socket of any other session of that name is told and closed. */
  private takeover(key: string, currentSid: string): void {
    const s = this.online.get(key);
    if (!s || s.sid === currentSid) return;
    s.send({ t: Op.Takeover, message: 'signed in elsewhere' });
    this.detach(s, CloseCode.TAKEOVER, 'signed in elsewhere', AbortReason.TAKEOVER);
  }

  /** Closes a session's socket and releases its state now, without waiting for the transport's close event. */
  detach(s: Session, code: number, reason: string, abort: AbortReasonName = AbortReason.RECIPIENT_DISCONNECTED): void {
    if (s.phase === 'closed') return;
    s.log.debug({ code, reason }, 'closing');
    this.release(s, abort);
    s.end(code, reason);
  }

  private release(s: Session, abort: AbortReasonName): void {
    s.phase = 'closed';
    this.accounts.rememberSession(s.sid, s.key, s.name, s.expires);
    s.drain?.batchDone?.();
    this.streams.sessionGone(s, abort);
    for (const key of s.act?.follows ?? []) this.followers.get(key)?.delete(s);
    this.requeue(s);
    if (this.online.get(s.key) === s) {
      this.online.delete(s.key);
      // A session replaced by another of the same name leaves no offline gap: `open` registered the new one.
      queueMicrotask(() => {
        if (!this.online.has(s.key)) this.announce(s.key, s.name, false);
      });
    }
  }

  private announce(key: string, name: string, online: boolean): void {
    const set = this.followers.get(key);
    if (!set) return;
    const bytes = encodeFrame({ t: Op.Presence, name, online });
    for (const f of set) if (f.phase !== 'closed') f.write(bytes);
  }

  /**
   * De-duplication memory, keyed by message id alone with the sender in the value: ids are 126-bit random
   * strings made by clients, and hashing the bare id is much cheaper on the hot path than hashing a fresh
   * `sender + id` string. An id another sender already used is simply not de-duplicated, never confused.
   */
  private seen(fromKey: string, id: string): 'accepted' | 'delivered' | undefined {
    const e = this.recent.get(id);
    return e !== undefined && e.fromKey === fromKey ? e.state : undefined;
  }

  private remember(fromKey: string, id: string, state: 'accepted' | 'delivered'): void {
    const e = this.recent.get(id);
    if (e !== undefined && e.fromKey === fromKey) e.state = state;
    else if (e === undefined) this.recent.set(id, { fromKey, state });
  }

  private forget(fromKey: string, id: string): void {
    if (this.recent.get(id)?.fromKey === fromKey) this.recent.delete(id);
  }

  /** Closes sessions that never said hello, expired, or went quiet. One timer for all sessions. */
  private sweep(): void {
    const now = clock();
    const cutoff = now - this.opts.idleTimeoutMs;
    const helloCutoff = now - this.opts.helloTimeoutMs;
    const nowSec = Math.floor(now / 1000);
    for (const s of [...this.online.values()]) {
      if (s.phase === 'hello' && s.lastSeen < helloCutoff) {
        s.error({ code: 'VERSION_UNSUPPORTED', message: 'no hello received in time' });
        this.detach(s, CloseCode.VERSION, 'no hello');
      } else if (s.expiresSec <= nowSec) this.detach(s, CloseCode.SESSION_ENDED, 'session expired');
      else if (s.lastSeen < cutoff) this.detach(s, CloseCode.IDLE, 'idle');
    }
  }

  /** The session's frame-rate bucket (in thousandths of a frame, see `Session.credit`). */
  private takeToken(s: Session, now: number): boolean {
    s.credit = Math.min(this.opts.frameBurst * 1000, s.credit + (now - s.creditAt) * this.opts.frameRate);
    s.creditAt = now;
    if (s.credit < 1000) return false;
    s.credit -= 1000;
    return true;
  }

  private badFrame(s: Session, err: unknown): void {
    if (err instanceof ProtocolError) {
      s.error({ code: err.code, message: err.message, ref: err.ref });
    } else {
      s.log.error({ err }, 'frame decoding failed unexpectedly');
      s.error({ code: 'INTERNAL', message: 'internal error' });
    }
    if (++s.activity.badFrames > this.opts.maxBadFrames) this.detach(s, CloseCode.PROTOCOL, 'too many malformed frames');
  }

  private handlerError(s: Session, err: unknown, ref?: string | number): void {
    if (err instanceof AppError) {
      s.error({ code: err.code, message: err.message, ref: err.ref ?? ref });
    } else if (err instanceof StoreUnavailableError) {
      this.storeDown();
      s.error({ code: 'STORE_UNAVAILABLE', message: 'the message store is unavailable; try again shortly', ref });
    } else {
      s.log.error({ err }, 'handler failed');
      s.error({ code: 'INTERNAL', message: 'internal error', ref });
    }
  }
}
