/**
 * The headless Parley client: one WebSocket, a connection state machine with full-jitter reconnect, an outbox
 * that resends unconfirmed messages with their original ids, batched acks, de-duplication of incoming
 * messages, presence, and takeover. The same code runs in the browser and in Node: the WebSocket is made by an
 * injected factory.
 *
 * States: idle -> connecting -> open <-> reconnecting, and -> closed (final: signed out, taken over, session
 * ended, protocol version refused, or `close()` called).
 */
import { CloseCode, type ErrorCodeName } from '../../shared/codes.ts';
import { decodeServerFrame, encodeFrame, type ChunkFrame } from '../../shared/codec.ts';
import { newMessageId } from '../../shared/ids.ts';
import {
  Delivery, Limits, Op, PROTOCOL_VERSION,
  type ClientFrame, type MessageFrame, type ServerFrame, type WelcomeFrame,
} from '../../shared/protocol.ts';
import { Emitter } from './emitter.ts';

/** The part of the WebSocket API the client uses (the browser's and the `ws` package's both fit). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type ConnState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
export type ClosedReason = 'closed' | 'takeover' | 'replaced' | 'session-ended' | 'unauthorized' | 'version' | 'protocol';

export interface IncomingMessage { from: string; id: string; text: string; ts: number; queued: boolean }
/** A message in the outbox: to a contact (`to`) or to a room (`room`, see rooms.ts), exactly one of the two. */
export type OutgoingMessage = { id: string; to: string; room?: undefined; text: string } | { id: string; to?: undefined; room: string; text: string };

/**
 * Takes each room message (a `message` frame with `room`) for the room layer (rooms.ts). `false`: already seen,
 * acknowledge it; a promise: acknowledge once it resolves (not at all if it rejects); otherwise acknowledge now.
 */
export type RoomSink = (f: MessageFrame) => Promise<void> | boolean | void;

export interface ClientEvents extends Record<string, unknown> {
  state: { from: ConnState; to: ConnState; reason?: ClosedReason | undefined };
  welcome: WelcomeFrame;
  message: IncomingMessage;
  receipt: { id: string; to: string; state: Delivery };
  /**
   * A message the server refused for good (unknown contact, full queue, bad text; for a room, not a member or
   * no such room): it will not be resent. Room messages carry `room` instead of `to`.
   */
  failed: { id: string; to: string; room?: undefined; code: ErrorCodeName; message: string }
    | { id: string; to?: undefined; room: string; code: ErrorCodeName; message: string };
  presence: { name: string; online: boolean };
  /** Coded errors not tied to one outgoing message. */
  error: { code: ErrorCodeName; message: string; ref?: string | number | undefined };
  takeover: { message: string };
  /** Server frames the stream layer handles (see streams.ts). */
  frame: ServerFrame;
  chunk: ChunkFrame;
}

export interface ClientOptions {
  /** WebSocket URL, e.g. `ws://127.0.0.1:8080/ws` (browser: derived from location). */
  url: string;
  /** Makes the socket; Node passes one that sets `Authorization: Bearer <token>`. */
  connect?: (url: string) => WebSocketLike;
  /** Asked after a connection attempt fails: false means the session is gone (stop retrying). */
  sessionValid?: () => Promise<boolean | null>;
  /** Names whose presence to follow from the start. */
  follow?: string[];
  /** App-level ping period; a connection silent for twice this long is considered dead. */
  pingIntervalMs?: number;
  /** Reconnect backoff: full jitter between 0 and min(max, base * 2^attempt). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Incoming (from, id) pairs remembered for de-duplication. */
  dedupSize?: number;
  /**
   * Called for each new incoming message after the `message` event; the message is acknowledged only once the
   * returned promise resolves (e.g. after the app stored it), so closing the page in between loses nothing:
   * unacknowledged messages come again at the next connection. If it rejects, the message is not acknowledged.
   */
  beforeAck?: (m: IncomingMessage) => Promise<void> | void;
}

/** Codes after which a message is not resent: the same bytes would be refused again. */
const PERMANENT = new Set<ErrorCodeName>([
  'UNKNOWN_CONTACT', 'QUEUE_FULL', 'TEXT_EMPTY', 'TEXT_TOO_LONG', 'BAD_ID', 'BAD_FRAME', 'NOT_A_MEMBER', 'ROOM_UNKNOWN',
  'ROOMS_SINGLE_NODE',
]);

const OPEN = 1;

export class ParleyClient extends Emitter<ClientEvents> {
  state: ConnState = 'idle';
  closedReason: ClosedReason | undefined;
  /** Limits and name from the server's welcome. */
  welcome: WelcomeFrame | undefined;
  private ws: WebSocketLike | undefined;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private follows: string[];
  /** Sent but not yet accepted/queued/delivered, in send order: resent after every reconnect. */
  private readonly outbox = new Map<string, OutgoingMessage>();
  /**
   * Recipients (by `recipientKey`) whose messages wait for one retry after a transient refusal. Until it
   * fires, new messages to them only join the outbox; then all of theirs are resent, in send order, so one
   * recipient never gets a retried message after a later one.
   */
  private readonly retrying = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly seen = new Set<string>();
  private pendingAcks: number[] = [];
  private roomSink: RoomSink | undefined;
  private readonly opts: Required<Omit<ClientOptions, 'follow' | 'sessionValid' | 'beforeAck'>> & Pick<ClientOptions, 'sessionValid' | 'beforeAck'>;

  constructor(options: ClientOptions) {
    super();
    this.follows = options.follow ?? [];
    this.opts = {
      url: options.url,
      connect: options.connect ?? ((url) => new (globalThis as unknown as { WebSocket: new (u: string) => WebSocketLike }).WebSocket(url)),
      sessionValid: options.sessionValid,
      beforeAck: options.beforeAck,
      pingIntervalMs: options.pingIntervalMs ?? 20_000,
      backoffBaseMs: options.backoffBaseMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
      dedupSize: options.dedupSize ?? 10_000,
    };
  }

  /** Opens the connection; resolves on the server's welcome, rejects if the client closes first. */
  connect(): Promise<WelcomeFrame> {
    if (this.state === 'closed') return Promise.reject(new Error(`client is closed (${this.closedReason})`));
    if (this.state === 'idle') this.open();
    return new Promise((resolve, reject) => {
      if (this.state === 'open' && this.welcome) return resolve(this.welcome);
      const offW = this.on('welcome', (w) => {
        offW();
        offS();
        resolve(w);
      });
      const offS = this.on('state', ({ to, reason }) => {
        if (to !== 'closed') return;
        offW();
        offS();
        reject(new Error(`connection closed: ${reason}`));
      });
    });
  }

  /**
   * Sends text to a contact. Returns the message id at once; `receipt` events report accepted / queued /
   * delivered, `failed` a refusal. While disconnected the message waits in the outbox and goes on reconnect.
   */
  send(to: string, text: string, id: string = newMessageId()): string {
    return this.post({ id, to, text });
  }

  /**
   * Sends text to a room through the same outbox (rooms.ts `Rooms.send` is the usual way in): resent with the
   * same id until the server says it is in the room's log (`roomReceipt`), or refused it for good (`failed`).
   */
  sendToRoom(room: string, text: string, id: string = newMessageId()): string {
    return this.post({ id, room, text });
  }

  /** Hands room messages to `sink` (one per client: the room layer); without one they are acknowledged unread. */
  setRoomSink(sink: RoomSink): void {
    this.roomSink = sink;
  }

  private post(m: OutgoingMessage): string {
    this.outbox.set(m.id, m);
    if (this.state === 'open' && !this.retrying.has(recipientKey(m))) this.write(sendFrame(m));
    return m.id;
  }

  /** Messages not yet confirmed by the server, oldest first. */
  get unconfirmed(): OutgoingMessage[] {
    return [...this.outbox.values()];
  }

  /** Replaces the set of followed names; presence events follow. */
  follow(names: string[]): void {
    this.follows = [...names];
    if (this.state === 'open') this.write({ t: Op.Follow, names: this.follows });
  }

  /** Sends a control frame now (stream layer); false when not connected. */
  write(frame: ClientFrame): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(encodeFrame(frame));
    return true;
  }

  /**
   * Read receipts: tells `to` (the messages' sender) that these of its messages are on screen. Sent now or
   * not at all (never kept for later; see docs/protocol.md); false when not connected. At most
   * `Limits.maxReadIds` ids per frame: longer lists are split.
   */
  read(to: string, ids: string[]): boolean {
    let ok = ids.length > 0;
    for (let i = 0; i < ids.length; i += Limits.maxReadIds) ok = this.write({ t: Op.Read, to, ids: ids.slice(i, i + Limits.maxReadIds) }) && ok;
    return ok;
  }

  /** Typing indicator to `to`: `on` while typing (renew every `Typing.renewMs`), `off` on stopping. Never queued. */
  typing(to: string, on: boolean): boolean {
    return this.write({ t: Op.Typing, to, on });
  }

  /** `fn(by, ids)` when `by` has read messages of ours. Returns the unsubscribe function. */
  onRead(fn: (by: string, ids: string[]) => void): () => void {
    return this.on('frame', (f) => {
      if (f.t === Op.ReadBy) fn(f.by, f.ids);
    });
  }

  /** `fn(from, on)` when `from` starts or stops typing to us. Returns the unsubscribe function. */
  onTyping(fn: (from: string, on: boolean) => void): () => void {
    return this.on('frame', (f) => {
      if (f.t === Op.TypingFrom) fn(f.from, f.on);
    });
  }

  /** Sends raw bytes (chunk frames); false when not connected. */
  writeBytes(bytes: Uint8Array): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(bytes);
    return true;
  }

  /** Bytes queued in the socket and not yet sent. */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  /** Closes for good (no reconnect). */
  close(): void {
    this.finish('closed', CloseCode.NORMAL);
  }

  // ------------------------------------------------------------------------------------------------------

  private setState(to: ConnState, reason?: ClosedReason): void {
    const from = this.state;
    if (from === to) return;
    this.state = to;
    this.emit('state', { from, to, reason });
  }

  private open(): void {
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let ws: WebSocketLike;
    try {
      ws = this.opts.connect(this.opts.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
      const hello: ClientFrame = this.follows.length > 0
        ? { t: Op.Hello, v: PROTOCOL_VERSION, follow: this.follows }
        : { t: Op.Hello, v: PROTOCOL_VERSION };
      ws.send(encodeFrame(hello));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      const data = ev.data;
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
        : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined;
      if (!bytes) return;
      let f: ServerFrame | ChunkFrame;
      try {
        f = decodeServerFrame(bytes);
      } catch (err) {
        this.emit('error', { code: 'BAD_FRAME', message: `undecodable frame from server: ${(err as Error).message}` });
        return;
      }
      if (f.t === 'chunk') this.emit('chunk', f);
      else this.dispatch(f);
    };
    ws.onerror = () => {
      /* followed by onclose, which decides */
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.stopPing();
      this.flushAcks(); // no-op without a socket; acks are per connection and the server requeues anyway
      this.pendingAcks = [];
      if (this.state === 'closed') return;
      const final = finalReason(ev.code);
      if (final) {
        this.finish(final, undefined);
        return;
      }
      if (!opened && this.opts.sessionValid) {
        void this.opts.sessionValid().then((valid) => {
          if (valid === false) this.finish('unauthorized', undefined);
          else this.scheduleReconnect();
        });
        return;
      }
      this.scheduleReconnect();
    };
  }

  private dispatch(f: ServerFrame): void {
    switch (f.t) {
      case Op.Welcome:
        this.welcome = f;
        this.attempt = 0;
        this.setState('open');
        this.startPing();
        // Resend whatever the server has not confirmed, with the same ids, in the original order.
        for (const t of this.retrying.values()) clearTimeout(t);
        this.retrying.clear();
        for (const m of this.outbox.values()) this.write(sendFrame(m));
        this.emit('welcome', f);
        break;
      case Op.Message: {
        if (f.room !== undefined) {
          this.roomMessage(f);
          break;
        }
        const k = `${f.from}\n${f.id}`;
        if (this.seen.has(k)) {
          this.ack(f.tag);
          break;
        }
        this.seen.add(k);
        if (this.seen.size > this.opts.dedupSize) this.seen.delete(this.seen.values().next().value!);
        const m = { from: f.from, id: f.id, text: f.text, ts: f.ts, queued: f.queued === true };
        this.emit('message', m);
        const ws = this.ws;
        if (!this.opts.beforeAck) this.ack(f.tag);
        else {
          Promise.resolve(this.opts.beforeAck(m)).then(
            // A tag is only valid on the connection that carried it.
            () => this.ws === ws && this.ack(f.tag),
            () => this.seen.delete(k), // not kept: let the redelivery through
          );
        }
        break;
      }
      case Op.Receipt:
        for (const [id, to, state] of f.items) {
          // `accepted` keeps the message in the outbox: if the server dies before delivery it is resent.
          if (state !== Delivery.Accepted) this.outbox.delete(id);
          this.emit('receipt', { id, to, state });
        }
        break;
      case Op.RoomReceipt:
        // The first count of a room message means it is in the room's log, durably: no resend from here on.
        for (const [id] of f.items) this.outbox.delete(id);
        break;
      case Op.Presence:
        this.emit('presence', { name: f.name, online: f.online });
        break;
      case Op.Error: {
        const m = typeof f.ref === 'string' ? this.outbox.get(f.ref) : undefined;
        if (m && PERMANENT.has(f.code)) {
          this.outbox.delete(m.id);
          this.emit('failed', m.room !== undefined
            ? { id: m.id, room: m.room, code: f.code, message: f.message }
            : { id: m.id, to: m.to, code: f.code, message: f.message });
        } else if (m) {
          // Transient (store down, rate limited): after a pause, resend everything unconfirmed to this
          // recipient in send order; one timer per recipient, not one per message (see `retrying`).
          const key = recipientKey(m);
          if (!this.retrying.has(key)) {
            this.retrying.set(key, setTimeout(() => {
              this.retrying.delete(key);
              if (this.state !== 'open') return; // the welcome of the next connection resends them all
              for (const o of this.outbox.values()) if (recipientKey(o) === key) this.write(sendFrame(o));
            }, 1000 + Math.random() * 1000));
          }
          this.emit('error', { code: f.code, message: f.message, ref: f.ref });
        } else {
          this.emit('error', { code: f.code, message: f.message, ref: f.ref });
        }
        break;
      }
      case Op.Takeover:
        this.emit('takeover', { message: f.message });
        break;
      case Op.Pong:
      case Op.Shutdown:
        break;
      default:
        break;
    }
    this.emit('frame', f);
  }

  /** A room message: the room layer says whether it is new, and when it may be acknowledged. */
  private roomMessage(f: MessageFrame): void {
    const r = this.roomSink?.(f);
    const ws = this.ws;
    if (r instanceof Promise) {
      r.then(() => this.ws === ws && this.ack(f.tag), () => undefined); // not kept: it comes again after a reconnect
    } else {
      this.ack(f.tag);
    }
  }

  private ack(tag: number): void {
    if (this.pendingAcks.push(tag) === 1) queueMicrotask(() => this.flushAcks());
  }

  private flushAcks(): void {
    const tags = this.pendingAcks;
    if (tags.length === 0) return;
    this.pendingAcks = [];
    for (let i = 0; i < tags.length; i += 1000) this.write({ t: Op.Ack, tags: tags.slice(i, i + 1000) });
  }

  private startPing(): void {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 2 * this.opts.pingIntervalMs) {
        // Silent for too long: the connection is dead even if the socket has not noticed.
        this.ws?.close(CloseCode.NORMAL, 'no response');
        return;
      }
      this.write({ t: Op.Ping });
    }, this.opts.pingIntervalMs);
    (this.pingTimer as { unref?: () => void }).unref?.();
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed') return;
    this.setState('reconnecting');
    const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** Math.min(this.attempt, 16));
    this.attempt++;
    this.reconnectTimer = setTimeout(() => this.open(), Math.random() * cap);
  }

  private finish(reason: ClosedReason, code: number | undefined): void {
    if (this.state === 'closed') return;
    clearTimeout(this.reconnectTimer);
    for (const t of this.retrying.values()) clearTimeout(t);
    this.retrying.clear();
    this.stopPing();
    this.closedReason = reason;
    const ws = this.ws;
    this.ws = undefined;
    if (ws && code !== undefined) ws.close(code, reason);
    this.setState('closed', reason);
  }
}

/** Close codes after which reconnecting would be wrong. */
function finalReason(code: number): ClosedReason | undefined {
  switch (code) {
    case CloseCode.TAKEOVER: return 'takeover';
    // Another client of this very session (another tab sharing the cookie) took the connection: reconnecting
    // would take it back, and the two would swap forever.
    case CloseCode.REPLACED: return 'replaced';
    case CloseCode.SESSION_ENDED: return 'session-ended';
    case CloseCode.VERSION: return 'version';
    case CloseCode.PROTOCOL: return 'protocol';
    default: return undefined;
  }
}

/**
 * Groups messages by recipient the way the server identifies names (NFKC, case-insensitive); rooms apart from
 * people (`#` is in no name).
 */
function recipientKey(m: OutgoingMessage): string {
  return m.room !== undefined ? `#${m.room.normalize('NFKC').toLowerCase()}` : m.to.normalize('NFKC').toLowerCase();
}

function sendFrame(m: OutgoingMessage): ClientFrame {
  return m.room !== undefined ? { t: Op.Send, id: m.id, room: m.room, text: m.text } : { t: Op.Send, id: m.id, to: m.to, text: m.text };
}

