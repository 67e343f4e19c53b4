/** The receiving end of a file transfer (see client/sdk/streams.ts for the whole picture). */
import { Op, type StreamOfferedFrame } from '../../shared/protocol.ts';
import { CreditWindow } from './credit-window.ts';
import { Emitter } from './emitter.ts';
import { Ranges } from './ranges.ts';
import {
  DEFAULT_RESUME_MS, StreamError, unref,
  type AcceptOptions, type FileMeta, type Pause, type Piece, type StreamEvents,
} from './stream-types.ts';
import type { Streams } from './streams.ts';

/**
 * The receiving side of one stream. Iterate it (after `accept()`) to get the bytes in order; iteration ends
 * when the sender has sent everything and throws StreamError when the stream is aborted.
 */
export class IncomingStream extends Emitter<StreamEvents> implements AsyncIterable<Uint8Array> {
  received = 0;
  /** The stream now (a resumed transfer goes on under a new one). */
  sid: number;
  /** Accepted (or resumed): a cut then pauses the transfer instead of ending it. */
  wasAccepted = false;
  paused: Pause | undefined;
  /** The bytes that have arrived (or were already held when resuming after a reload). */
  readonly have = new Ranges();
  /** A resume request is on its way; another waits for its answer. */
  private asking = false;
  private expiry: ReturnType<typeof setTimeout> | undefined;
  private windowMax = 0;
  private adaptive = true;
  private answered = false;
  private readonly queue: Piece[] = [];
  private ended = false;
  private failed: StreamError | undefined;
  private wake: (() => void) | undefined;
  /** Bytes handed to the consumer so far. */
  private consumedBytes = 0;
  /** Bytes of credit granted so far (the accept's included): the sender may have sent up to this. */
  private grantedBytes = 0;
  private window: CreditWindow | undefined;
  private fixedWindow = 0;
  /** Grants not yet paid for: the first byte beyond `from` is the grant's round trip. */
  private readonly grantsInFlight: Array<{ from: number; at: number }> = [];
  private minRttMs = Infinity;

  constructor(private readonly streams: Streams, readonly offer: StreamOfferedFrame) {
    super();
    this.sid = offer.sid;
  }

  /** The transfer's id, known to both sides. */
  get tid(): string { return this.offer.tid; }
  get from(): string { return this.offer.from; }
  get meta(): FileMeta { return { name: this.offer.name, size: this.offer.size, mime: this.offer.mime, container: this.offer.container }; }
  /** The credit window now, in bytes. */
  get windowBytes(): number { return this.window?.size ?? this.fixedWindow; }

  /**
   * Accepts with a credit window of at most `windowBytes` (default 2 MiB, never more than the server's announced
   * maximum); adaptive by default (see AcceptOptions).
   */
  accept(windowBytes = 2 * 1024 * 1024, opts: AcceptOptions = {}): this {
    if (this.answered) return this;
    this.answered = true;
    // Credit beyond the server's window would be clamped, and waiting to consume it would stall the stream.
    const serverMax = this.streams.client.welcome?.limits.streamWindowBytes ?? windowBytes;
    this.windowMax = Math.max(1, Math.min(windowBytes, serverMax));
    this.adaptive = opts.adaptive !== false;
    this.freshWindow();
    this.wasAccepted = true;
    this.grantedBytes = Math.min(this.windowBytes, this.offer.size);
    this.streams.client.write({ t: Op.StreamAnswer, sid: this.sid, accept: true, credit: Math.max(1, this.grantedBytes) });
    return this;
  }

  private freshWindow(): void {
    this.window = undefined;
    this.fixedWindow = 0;
    if (this.adaptive) this.window = new CreditWindow({ max: this.windowMax });
    else this.fixedWindow = this.windowMax;
  }

  /** @internal A transfer resumed after a reload: accepted already, `held` on disk, paused until resumed. */
  restore(held: ReadonlyArray<readonly [number, number]>, windowBytes: number, opts: AcceptOptions, resumeMs: number): void {
    this.answered = true;
    this.wasAccepted = true;
    this.windowMax = Math.max(1, windowBytes);
    this.adaptive = opts.adaptive !== false;
    for (const [a, b] of held) this.have.add(a, b);
    this.received = this.consumedBytes = this.grantedBytes = this.have.total;
    this.pause(new StreamError('DISCONNECTED', 'the page was reloaded'), resumeMs);
  }

  /** @internal The stream was cut; the transfer waits to go on. */
  pause(why: StreamError, resumeMs = DEFAULT_RESUME_MS): void {
    if (this.failed || this.ended) return;
    this.asking = false;
    this.paused = { why, until: Date.now() + resumeMs };
    clearTimeout(this.expiry);
    this.expiry = unref(setTimeout(() => this.streams.expired(this), resumeMs));
    this.emit('paused', this.paused);
  }

  /** @internal Asks the server to go on from what has arrived (once at a time). */
  ask(): void {
    if (!this.paused || this.asking || this.failed) return;
    const serverMax = this.streams.client.welcome?.limits.streamWindowBytes ?? this.windowMax;
    this.windowMax = Math.min(this.windowMax, serverMax);
    this.freshWindow();
    this.grantsInFlight.length = 0;
    // Bytes still queued for the consumer have arrived: they count against the window, as before the cut.
    this.received = this.have.total;
    const credit = Math.max(0, Math.min(this.windowBytes - (this.received - this.consumedBytes), this.offer.size - this.received));
    this.grantedBytes = this.received + credit;
    const held = this.have.forResume();
    this.asking = this.streams.client.write({
      t: Op.StreamResume, tid: this.tid, from: this.from, held, ...(credit > 0 ? { credit } : {}),
    });
  }

  /** @internal The resume was refused for now (the sender is offline, limits): still paused. */
  notNow(): void {
    this.asking = false;
  }

  /** @internal Goes on as stream `sid`. */
  resumed(sid: number): void {
    clearTimeout(this.expiry);
    this.paused = undefined;
    this.asking = false;
    this.sid = sid;
    this.emit('resumed', { sid, held: this.received });
    this.topUp();
  }

  decline(): void {
    if (this.answered) return;
    this.answered = true;
    this.streams.client.write({ t: Op.StreamAnswer, sid: this.sid, accept: false });
    this.streams.forget(this.sid);
  }

  /** Cancels (or, while paused, gives up); the sender is told RECIPIENT_CANCELLED. */
  cancel(reason = 'cancelled by recipient'): void {
    if (this.paused) this.streams.giveUp(this.tid, this.from);
    else this.streams.client.write({ t: Op.StreamCancel, sid: this.sid, reason });
    this.fail(new StreamError('RECIPIENT_CANCELLED', reason));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for await (const p of this.pieces()) yield p.bytes;
  }

  /** The bytes with their offsets in the file, in the order they arrive (a sender may send ranges). */
  async *pieces(): AsyncGenerator<Piece, void, undefined> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        this.consumed(next.bytes.byteLength);
        yield next;
        continue;
      }
      if (this.failed) throw this.failed;
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }

  /** @internal */
  push(offset: number, payload: Uint8Array): void {
    // The socket's buffer is reused after this event in some runtimes: keep a copy of exactly the payload.
    this.queue.push({ offset, bytes: payload.slice() });
    this.have.add(offset, offset + payload.byteLength);
    this.received += payload.byteLength;
    if (this.window) {
      const now = performance.now();
      while (this.grantsInFlight.length > 0 && this.received > this.grantsInFlight[0]!.from) {
        this.minRttMs = Math.min(this.minRttMs, now - this.grantsInFlight.shift()!.at);
      }
      if (this.window.arrived(this.received, now, Number.isFinite(this.minRttMs) ? this.minRttMs : 0)) this.topUp();
    }
    this.emit('progress', { bytes: this.received, size: this.offer.size });
    this.wake?.();
  }

  /** @internal */
  end(bytes: number): void {
    clearTimeout(this.expiry);
    this.ended = true;
    this.emit('done', { bytes });
    this.wake?.();
  }

  /** @internal */
  fail(err: StreamError): void {
    if (this.failed || this.ended) return;
    this.failed = err;
    clearTimeout(this.expiry);
    this.paused = undefined;
    this.emit('aborted', err);
    this.wake?.();
  }

  private consumed(n: number): void {
    this.consumedBytes += n;
    this.topUp();
  }

  /**
   * Grants what keeps (granted - consumed) at the window: bytes in flight plus bytes not yet taken by the consumer
   * never exceed it, so a slow consumer slows the sender. Grants go in quarter-window steps (few credit frames, and
   * the sender never idles for a whole window), or all that is left of the file.
   */
  private topUp(): void {
    // No stream to grant on while paused: the resume request carries the credit instead.
    if (this.failed || this.ended || this.paused || !this.wasAccepted) return;
    const remaining = this.offer.size - this.grantedBytes;
    const grant = Math.min(this.windowBytes - (this.grantedBytes - this.consumedBytes), remaining);
    if (grant <= 0 || (grant < this.windowBytes / 4 && grant < remaining)) return;
    // Only a grant the sender was waiting for measures a round trip; one behind bytes still in flight measures the queue.
    if (this.window && this.grantsInFlight.length < 64 && this.grantedBytes === this.received) this.grantsInFlight.push({ from: this.grantedBytes, at: performance.now() });
    this.grantedBytes += grant;
    this.streams.client.write({ t: Op.StreamCredit, sid: this.sid, bytes: grant });
  }
}

