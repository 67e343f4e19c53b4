/** The sending end of a file transfer (see client/sdk/streams.ts for the whole picture). */
import { encodeChunk } from '../../shared/chunk.ts';
import { Op } from '../../shared/protocol.ts';
import { Emitter } from './emitter.ts';
import { Ranges, without } from './ranges.ts';
import {
  DEFAULT_RESUME_MS, StreamError, unref,
  type FileMeta, type FileSource, type Pause, type Piece, type RangedSource, type StreamEvents,
} from './stream-types.ts';
import type { Streams } from './streams.ts';

/** The smallest chunk a sender cuts (below this, headers and frames cost more than they carry). */
const MIN_CHUNK = 4 * 1024;

/** The sending side of one stream. `done` resolves when the recipient has every byte, or rejects with StreamError. */
export class OutgoingStream extends Emitter<StreamEvents> {
  sid: number | undefined;
  /** Bytes of the file the recipient has or has been sent: its progress. */
  sent = 0;
  /** Payload bytes written to the socket in all streams of this transfer (a resume adds only what was missing). */
  written = 0;
  /** Accepted at least once: a cut then pauses the transfer instead of ending it (when the source allows). */
  wasAccepted = false;
  paused: Pause | undefined;
  /** Bumped at each cut and resume, so a pump of an earlier stream stops. */
  private generation = 0;
  private expiry: ReturnType<typeof setTimeout> | undefined;
  private credit = 0;
  /** The largest grant seen: chunks are at most half of it (see pump). */
  private largestGrant = 0;
  private creditWaiter: (() => void) | undefined;
  private failed: StreamError | undefined;
  readonly done: Promise<{ bytes: number }>;
  private settle!: { resolve: (v: { bytes: number }) => void; reject: (e: StreamError) => void };

  constructor(private readonly streams: Streams, readonly to: string, readonly meta: FileMeta, readonly ref: string, private readonly source: FileSource) {
    super();
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined); // callers that only listen to events must not see an unhandled rejection
  }

  /** The transfer's id, known to both sides (the offer's ref). */
  get tid(): string {
    return this.ref;
  }

  /** The source can be read again from any offset, so a cut transfer can go on. */
  get resumable(): boolean {
    return (typeof Blob !== 'undefined' && this.source instanceof Blob) || isRanged(this.source);
  }

  /** Cancels (or, while paused, gives up); the recipient is told SENDER_CANCELLED. */
  cancel(reason = 'cancelled by sender'): void {
    if (this.paused) this.streams.giveUp(this.tid, this.to);
    else if (this.sid !== undefined) this.streams.client.write({ t: Op.StreamCancel, sid: this.sid, reason });
    this.fail(new StreamError('SENDER_CANCELLED', reason));
  }

  /** @internal The stream was cut; the transfer waits to go on. */
  pause(why: StreamError, resumeMs = DEFAULT_RESUME_MS): void {
    if (this.failed) return;
    this.generation++;
    this.credit = 0;
    this.creditWaiter?.();
    this.paused = { why, until: Date.now() + resumeMs };
    clearTimeout(this.expiry);
    this.expiry = unref(setTimeout(() => this.streams.expired(this), resumeMs));
    this.emit('paused', this.paused);
  }

  /** @internal Goes on as stream `sid`, sending only what `held` lacks. */
  resume(sid: number, held: [number, number][], maxChunk: number): void {
    clearTimeout(this.expiry);
    this.paused = undefined;
    this.sid = sid;
    this.generation++;
    this.credit = 0;
    this.largestGrant = 0;
    const have = new Ranges(held);
    this.sent = have.total;
    this.emit('resumed', { sid, held: have.total });
    this.pump(maxChunk, held).catch((err: unknown) => this.unreadable(err));
  }

  /** @internal Restored by a page that did not cut it (see `Streams.resumeOutgoing`): accepted once, now paused. */
  restore(resumeMs: number): void {
    this.wasAccepted = true;
    this.pause(new StreamError('DISCONNECTED', 'the page that sent it went away'), resumeMs);
  }

  /** Lets go of a paused transfer here, without giving it up: another page of this browser carries it on. */
  letGo(): void {
    if (!this.paused) return;
    this.streams.letGo(this);
    this.fail(new StreamError('DISCONNECTED', 'carried on by another page'));
  }

  /**
   * @internal Reading the file failed mid-stream: the stream cannot go on, so the server and the recipient
   * are told (the recipient hears SENDER_CANCELLED), rather than left waiting on a stream that sends nothing.
   */
  unreadable(err: unknown): void {
    if (this.failed) return;
    const reason = `the sender could not read the file (${(err as Error).message ?? String(err)})`;
    if (this.sid !== undefined && !this.paused) this.streams.client.write({ t: Op.StreamCancel, sid: this.sid, reason });
    this.fail(new StreamError('UNREADABLE', reason));
  }

  /** @internal */
  grant(bytes: number): void {
    this.credit += bytes;
    this.largestGrant = Math.max(this.largestGrant, bytes);
    this.creditWaiter?.();
  }

  /** @internal */
  fail(err: StreamError): void {
    if (this.failed) return;
    this.failed = err;
    clearTimeout(this.expiry);
    this.paused = undefined;
    this.creditWaiter?.();
    this.emit('aborted', err);
    this.settle.reject(err);
  }

  /** @internal */
  accepted(): void {
    this.wasAccepted = true;
    this.emit('accepted', { sid: this.sid! });
  }

  /** @internal */
  complete(bytes: number): void {
    clearTimeout(this.expiry);
    this.emit('done', { bytes });
    this.settle.resolve({ bytes });
  }

  /** @internal Pumps the source (without the `held` ranges) through the credit window. */
  async pump(maxChunk: number, held: [number, number][] = []): Promise<void> {
    const sid = this.sid!;
    const generation = this.generation;
    const client = this.streams.client;
    const gone = () => this.failed !== undefined || this.generation !== generation;
    for await (const { offset, bytes: piece } of pieces(this.source, maxChunk, held)) {
      if (gone()) return;
      let off = 0;
      while (off < piece.byteLength) {
        while (this.credit === 0 && !gone()) await new Promise<void>((r) => (this.creditWaiter = r));
        this.creditWaiter = undefined;
        if (gone()) return;
        // Chunks sized to the credit: a recipient on a slow link grants a few KiB at a time, and one chunk as big
        // as its window would cross each store-and-forward hop whole, doubling the round trip the window pays for.
        const n = Math.min(this.credit, piece.byteLength - off, Math.max(MIN_CHUNK, Math.ceil(this.largestGrant / 2)));
        // A write on a closed socket fails; the connection's state change pauses or ends the transfer.
        if (!client.writeBytes(encodeChunk(sid, offset + off, piece.subarray(off, off + n)))) return;
        this.credit -= n;
        this.sent += n;
        this.written += n;
        off += n;
        this.emit('progress', { bytes: this.sent, size: this.meta.size });
      }
    }
    if (gone()) return;
    if (this.sent !== this.meta.size) {
      this.cancel(`source gave ${this.sent} bytes, ${this.meta.size} declared`);
      return;
    }
    client.write({ t: Op.StreamEnd, sid });
  }
}


export function isRanged(source: FileSource): source is RangedSource {
  return typeof (source as RangedSource).read === 'function' && Array.isArray((source as RangedSource).ranges);
}

/**
 * Splits a source into pieces of at most `max` bytes, each with its offset in the file, leaving out `held`
 * (what the recipient already has when a transfer resumes; only Blob and ranged sources can skip).
 */
async function* pieces(source: FileSource, max: number, held: [number, number][] = []): AsyncIterable<Piece> {
  if ((typeof Blob !== 'undefined' && source instanceof Blob) || isRanged(source)) {
    const all: ReadonlyArray<readonly [number, number]> = isRanged(source) ? source.ranges : [[0, source.size]];
    const read = isRanged(source)
      ? (a: number, b: number) => source.read(a, b)
      : async (a: number, b: number) => new Uint8Array(await source.slice(a, b).arrayBuffer());
    for (const [start, end] of held.length > 0 ? without(all, held) : all) {
      for (let off = start; off < end; off += max) yield { offset: off, bytes: await read(off, Math.min(off + max, end)) };
    }
    return;
  }
  let offset = 0;
  for await (const chunk of source as AsyncIterable<Uint8Array>) {
    const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk as ArrayBufferLike);
    for (let off = 0; off < bytes.byteLength; off += max) {
      const piece = bytes.subarray(off, Math.min(off + max, bytes.byteLength));
      yield { offset, bytes: piece };
      offset += piece.byteLength;
    }
  }
}
