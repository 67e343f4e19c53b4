/**
 * File streams over a ParleyClient: `sendFile` on the sending side, `offer` events with accept/decline and an
 * async iterable of chunks on the receiving side. Flow control is credit based end to end: the recipient grants
 * bytes as its consumer takes them, the sender never sends beyond the grant, so neither the server nor the
 * recipient holds more than the window, whatever the file size or the viewer's speed.
 */
import type { AbortReasonName, ErrorCodeName } from '../../shared/codes.ts';
import { chunkPayload, encodeChunk } from '../../shared/chunk.ts';
import { newMessageId } from '../../shared/ids.ts';
import { Op, type ServerFrame, type StreamOfferedFrame } from '../../shared/protocol.ts';
import type { ParleyClient } from './client.ts';
import { Emitter } from './emitter.ts';

export interface FileMeta {
  /** File name shown to the recipient. */
  name: string;
  /** Exact number of bytes that will be sent. */
  size: number;
  /** MIME type with codecs, e.g. `video/webm; codecs="vp9,opus"`. */
  mime: string;
  /** `fmp4`, `mp4`, `webm` or `other`. */
  container: string;
}

export type FileSource = Blob | AsyncIterable<Uint8Array>;

/** Why a stream did not complete: the server's abort reason, a refusal code, or a local cause. */
export class StreamError extends Error {
  constructor(readonly reason: AbortReasonName | ErrorCodeName | 'DISCONNECTED', message: string) {
    super(message);
    this.name = 'StreamError';
  }
}

export interface Progress { bytes: number; size: number }

interface StreamEvents extends Record<string, unknown> {
  progress: Progress;
  accepted: { sid: number };
  done: { bytes: number };
  aborted: StreamError;
}

/** The sending side of one stream. `done` resolves when the recipient has every byte, or rejects with StreamError. */
export class OutgoingStream extends Emitter<StreamEvents> {
  sid: number | undefined;
  sent = 0;
  private credit = 0;
  private creditWaiter: (() => void) | undefined;
  private failed: StreamError | undefined;
  readonly done: Promise<{ bytes: number }>;
  private settle!: { resolve: (v: { bytes: number }) => void; reject: (e: StreamError) => void };

  constructor(private readonly streams: Streams, readonly to: string, readonly meta: FileMeta, readonly ref: string, private readonly source: FileSource) {
    super();
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined); // callers that only listen to events must not see an unhandled rejection
  }

  /** Cancels; the recipient is told SENDER_CANCELLED. */
  cancel(reason = 'cancelled by sender'): void {
    if (this.sid !== undefined) this.streams.client.write({ t: Op.StreamCancel, sid: this.sid, reason });
    this.fail(new StreamError('SENDER_CANCELLED', reason));
  }

  /** @internal */
  grant(bytes: number): void {
    this.credit += bytes;
    this.creditWaiter?.();
  }

  /** @internal */
  fail(err: StreamError): void {
    if (this.failed) return;
    this.failed = err;
    this.creditWaiter?.();
    this.emit('aborted', err);
    this.settle.reject(err);
  }

  /** @internal */
  accepted(): void {
    this.emit('accepted', { sid: this.sid! });
  }

  /** @internal */
  complete(bytes: number): void {
    this.emit('done', { bytes });
    this.settle.resolve({ bytes });
  }

  /** @internal Pumps the source through the credit window. */
  async pump(maxChunk: number): Promise<void> {
    const sid = this.sid!;
    const client = this.streams.client;
    for await (const piece of pieces(this.source, maxChunk)) {
      let off = 0;
      while (off < piece.byteLength) {
        while (this.credit === 0 && !this.failed) await new Promise<void>((r) => (this.creditWaiter = r));
        this.creditWaiter = undefined;
        if (this.failed) return;
        const n = Math.min(this.credit, piece.byteLength - off);
        if (!client.writeBytes(encodeChunk(sid, this.sent, piece.subarray(off, off + n)))) {
          this.fail(new StreamError('DISCONNECTED', 'connection lost while sending'));
          return;
        }
        this.credit -= n;
        this.sent += n;
        off += n;
        this.emit('progress', { bytes: this.sent, size: this.meta.size });
      }
    }
    if (this.sent !== this.meta.size) {
      this.cancel(`source gave ${this.sent} bytes, ${this.meta.size} declared`);
      return;
    }
    client.write({ t: Op.StreamEnd, sid });
  }
}

/**
 * The receiving side of one stream. Iterate it (after `accept()`) to get the bytes in order; iteration ends
 * when the sender has sent everything and throws StreamError when the stream is aborted.
 */
export class IncomingStream extends Emitter<StreamEvents> implements AsyncIterable<Uint8Array> {
  received = 0;
  private answered = false;
  private readonly queue: Uint8Array[] = [];
  private ended = false;
  private failed: StreamError | undefined;
  private wake: (() => void) | undefined;
  /** Bytes handed to the consumer but not yet given back to the sender as credit. */
  private consumedUngranted = 0;
  private window = 0;

  constructor(private readonly streams: Streams, readonly offer: StreamOfferedFrame) {
    super();
  }

  get sid(): number { return this.offer.sid; }
  get from(): string { return this.offer.from; }
  get meta(): FileMeta { return { name: this.offer.name, size: this.offer.size, mime: this.offer.mime, container: this.offer.container }; }

  /** Accepts with a credit window (default 2 MiB, never more than the server's announced maximum). */
  accept(windowBytes = 2 * 1024 * 1024): this {
    if (this.answered) return this;
    this.answered = true;
    // Credit beyond the server's window would be clamped, and waiting to consume it would stall the stream.
    const serverMax = this.streams.client.welcome?.limits.streamWindowBytes ?? windowBytes;
    this.window = Math.max(1, Math.min(windowBytes, serverMax, this.offer.size));
    this.streams.client.write({ t: Op.StreamAnswer, sid: this.sid, accept: true, credit: this.window });
    return this;
  }

  decline(): void {
    if (this.answered) return;
    this.answered = true;
    this.streams.client.write({ t: Op.StreamAnswer, sid: this.sid, accept: false });
    this.streams.forget(this.sid);
  }

  cancel(reason = 'cancelled by recipient'): void {
    this.streams.client.write({ t: Op.StreamCancel, sid: this.sid, reason });
    this.fail(new StreamError('RECIPIENT_CANCELLED', reason));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        this.consumed(next.byteLength);
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
  push(payload: Uint8Array): void {
    // The socket's buffer is reused after this event in some runtimes: keep a copy of exactly the payload.
    this.queue.push(payload.slice());
    this.received += payload.byteLength;
    this.emit('progress', { bytes: this.received, size: this.offer.size });
    this.wake?.();
  }

  /** @internal */
  end(bytes: number): void {
    this.ended = true;
    this.emit('done', { bytes });
    this.wake?.();
  }

  /** @internal */
  fail(err: StreamError): void {
    if (this.failed || this.ended) return;
    this.failed = err;
    this.emit('aborted', err);
    this.wake?.();
  }

  private consumed(n: number): void {
    this.consumedUngranted += n;
    // Grant in quarter-window steps: few credit frames, and the sender never idles for a full window.
    if (this.consumedUngranted >= this.window / 4 && this.received < this.offer.size) {
      const remaining = this.offer.size - this.received - this.queue.reduce((a, q) => a + q.byteLength, 0);
      const grant = Math.min(this.consumedUngranted, Math.max(0, remaining));
      this.consumedUngranted = 0;
      if (grant > 0) this.streams.client.write({ t: Op.StreamCredit, sid: this.sid, bytes: grant });
    }
  }
}

interface StreamsEvents extends Record<string, unknown> {
  offer: IncomingStream;
}

/** Attaches stream handling to a client. One per client. */
export class Streams extends Emitter<StreamsEvents> {
  private readonly outgoing = new Map<number, OutgoingStream>();
  private readonly pendingOffers = new Map<string, OutgoingStream>();
  private readonly incoming = new Map<number, IncomingStream>();

  constructor(readonly client: ParleyClient) {
    super();
    client.on('frame', (f) => this.frame(f));
    client.on('chunk', (c) => this.incoming.get(c.header.sid)?.push(chunkPayload(c.bytes)));
    client.on('error', (e) => {
      if (typeof e.ref === 'string') {
        const p = this.pendingOffers.get(e.ref);
        if (p) {
          this.pendingOffers.delete(e.ref);
          p.fail(new StreamError(e.code, e.message));
        }
      } else if (typeof e.ref === 'number') {
        this.outgoing.get(e.ref)?.fail(new StreamError(e.code, e.message));
      }
    });
    client.on('state', ({ to }) => {
      if (to === 'open' || to === 'connecting') return;
      // A lost connection ends every stream; the server has aborted them too.
      for (const s of this.outgoing.values()) s.fail(new StreamError('DISCONNECTED', 'connection lost'));
      for (const p of this.pendingOffers.values()) p.fail(new StreamError('DISCONNECTED', 'connection lost'));
      for (const s of this.incoming.values()) s.fail(new StreamError('DISCONNECTED', 'connection lost'));
      this.outgoing.clear();
      this.pendingOffers.clear();
      this.incoming.clear();
    });
  }

  /** Offers a file to an online contact and, once accepted, sends it through the credit window. */
  sendFile(to: string, source: FileSource, meta: FileMeta): OutgoingStream {
    const ref = newMessageId();
    const stream = new OutgoingStream(this, to, meta, ref, source);
    this.pendingOffers.set(ref, stream);
    if (!this.client.write({ t: Op.StreamOffer, ref, to, name: meta.name, size: meta.size, mime: meta.mime, container: meta.container })) {
      this.pendingOffers.delete(ref);
      stream.fail(new StreamError('DISCONNECTED', 'not connected'));
    }
    return stream;
  }

  /** @internal */
  forget(sid: number): void {
    this.incoming.delete(sid);
  }

  private frame(f: ServerFrame): void {
    switch (f.t) {
      case Op.StreamOffered: {
        if (f.ref !== undefined) {
          const p = this.pendingOffers.get(f.ref);
          if (!p) return;
          this.pendingOffers.delete(f.ref);
          p.sid = f.sid;
          this.outgoing.set(f.sid, p);
          return;
        }
        const s = new IncomingStream(this, f);
        this.incoming.set(f.sid, s);
        this.emit('offer', s);
        return;
      }
      case Op.StreamAnswered: {
        const s = this.outgoing.get(f.sid);
        if (!s) return;
        if (!f.accept) {
          this.outgoing.delete(f.sid);
          s.fail(new StreamError('DECLINED', 'the recipient declined'));
          return;
        }
        s.accepted();
        const max = this.client.welcome?.limits.maxChunkBytes ?? 256 * 1024;
        s.pump(max).catch((err: unknown) => s.fail(new StreamError('DISCONNECTED', `reading the file failed: ${(err as Error).message}`)));
        return;
      }
      case Op.StreamGranted:
        this.outgoing.get(f.sid)?.grant(f.bytes);
        return;
      case Op.StreamEnded: {
        const out = this.outgoing.get(f.sid);
        if (out) {
          this.outgoing.delete(f.sid);
          out.complete(f.bytes);
        }
        const inc = this.incoming.get(f.sid);
        if (inc) {
          this.incoming.delete(f.sid);
          inc.end(f.bytes);
        }
        return;
      }
      case Op.StreamAborted: {
        const err = new StreamError(f.reason, f.message);
        this.outgoing.get(f.sid)?.fail(err);
        this.incoming.get(f.sid)?.fail(err);
        this.outgoing.delete(f.sid);
        this.incoming.delete(f.sid);
        return;
      }
      default:
        return;
    }
  }
}

/** Splits a Blob or an async iterable of byte arrays into pieces of at most `max` bytes. */
async function* pieces(source: FileSource, max: number): AsyncIterable<Uint8Array> {
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    for (let off = 0; off < source.size; off += max) {
      yield new Uint8Array(await source.slice(off, Math.min(off + max, source.size)).arrayBuffer());
    }
    return;
  }
  for await (const chunk of source as AsyncIterable<Uint8Array>) {
    const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk as ArrayBufferLike);
    for (let off = 0; off < bytes.byteLength; off += max) yield bytes.subarray(off, Math.min(off + max, bytes.byteLength));
  }
}
