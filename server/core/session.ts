/**
 * Session state: one open, authenticated socket of one user, and what it holds while it drains its queue or
 * has messages in flight. Data and small helpers only; the hub and its parts (delivery, presence, dispatch)
 * decide what happens to it.
 */
import { encodeFrame } from '../../shared/codec.ts';
import { Op, type ReceiptItem, type ServerFrame } from '../../shared/protocol.ts';
import type { Auth } from './accounts.ts';
import type { Conn } from './conn.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { Claim } from './router.ts';
import { StoreUnavailableError } from './store.ts';

/** One message held by the server for a connection until it acks. */
export interface Inflight {
  fromKey: string;
  from: string;
  id: string;
  text: string;
  ts: number;
  /** Set when it came from the store queue; absent for live deliveries. */
  seq?: number;
  /** Set when another node sent it (that node keeps a copy and is owed a `settled`; see router.ts). */
  origin?: string;
}

/**
 * `hello`: opened, no `hello` yet; `claiming`: `hello` received, waiting for the name's claim (see Hub) before
 * `welcome`; `draining`: handing over its queue; `live`; `closed`.
 */
export type Phase = 'hello' | 'claiming' | 'draining' | 'live' | 'closed';

/**
 * The origin of the small-integer times a session keeps (`ticks`). Small integers on purpose: V8 keeps an
 * integer of up to 31 bits inline in an object, while a `Date.now()` value needs a 16-byte number box per field,
 * and tens of thousands of idle sessions each keep several. After about 24 days of uptime the values outgrow that
 * range; they stay correct, they just cost the boxes again.
 */
export const T0 = Date.now();
/** Math.floor changes no value here (times are whole) but yields a small integer where `-` gives a box. */
export const ticks = (nowMs: number): number => Math.floor(nowMs - T0);

/** The state of draining a session's queue after `hello`: made then, dropped when the session turns live. */
export class Drain {
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
export class Activity {
  nextTag = 1;
  /** Messages sent to this session and not yet acknowledged, by delivery tag. */
  inflight: Map<number, Inflight> | undefined;
  /** Receipts waiting for the end of this event-loop turn, by message id (see Delivery.receipt). */
  receipts: Map<string, ReceiptItem> | undefined;
  follows: Set<string> | undefined;
  badFrames = 0;
  floodStrikes = 0;
  log: Logger | undefined;
}

/**
 * One open, authenticated socket of one user. Kept small: tens of thousands of them sit idle, so what only
 * activity needs (see `Activity`) and the drain state are made when needed, the session is known by a short
 * id (see `sessionId`), and times are small integers (see `ticks`).
 *
 * Abstract: the transport's subclass is also the socket (`Conn`), so a connection is one object.
 */
export abstract class Session implements Conn {
  phase: Phase = 'hello';
  /** `ticks` at open, then at every frame after `hello`: the hello and idle timeouts run from it. */
  lastSeen = ticks(Date.now());
  /**
   * Frame-rate token bucket, inline rather than an object per session, in thousandths of a frame so that the
   * refill (elapsed ms x frames per second) stays an exact integer.
   */
  credit: number;
  creditAt = this.lastSeen;
  /** Session expiry in whole seconds on the `ticks` scale (rounded down). */
  readonly expiresSec: number;
  /** `Auth.created` on the `ticks` scale (see `rank`). */
  private readonly createdAt: number;
  drain: Drain | undefined;
  /** See `Activity`; `activity` makes it. */
  act: Activity | undefined;
  /** This session's hold on its name (see router.ts), once `Router.claim` resolved. */
  claim: Claim | undefined;

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
    this.createdAt = ticks(auth.created);
  }

  abstract readonly id: number;
  abstract write(bytes: Uint8Array): void;
  abstract forward(bytes: Uint8Array): void;
  abstract end(code: number, reason: string): void;
  abstract buffered(): number;
  /** The logger the session's own (child) logger derives from. */
  protected abstract get rootLog(): Logger;

  get activity(): Activity {
    return (this.act ??= new Activity());
  }

  /** The session's rank among its name's sessions (`Auth.created`, ms since the epoch): what it claims the name with. */
  get rank(): number {
    return T0 + this.createdAt;
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

/**
 * The one place an error thrown while handling a session's frame becomes an `error` frame: an AppError with its
 * code, a store outage as STORE_UNAVAILABLE (and `storeDown` is told), anything else logged and INTERNAL.
 */
export function tellError(s: Session, err: unknown, ref: string | number | undefined, storeDown: () => void): void {
  if (err instanceof AppError) {
    if (err.code === 'STORE_UNAVAILABLE') storeDown();
    s.error({ code: err.code, message: err.message, ref: err.ref ?? ref });
  } else if (err instanceof StoreUnavailableError) {
    storeDown();
    s.error({ code: 'STORE_UNAVAILABLE', message: 'the message store is unavailable; try again shortly', ref });
  } else {
    s.log.error({ err }, 'handler failed');
    s.error({ code: 'INTERNAL', message: 'internal error', ref });
  }
}
