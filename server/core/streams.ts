/**
 * The video relay: offers, answers, credit, chunks, end and cancel, between two online sessions.
 *
 * Flow control is end to end and credit based: the recipient grants bytes, the server passes the grant on
 * (clamped so no more than `windowBytes` are ever outstanding), and refuses any chunk beyond it. So the bytes the
 * server can hold for a stream (in the recipient's socket buffer) are bounded by the window, whatever the file
 * size or the viewer's speed, and a slow viewer only slows its own sender.
 *
 * Chunks are forwarded as the very bytes that arrived: the header is read, never rewritten.
 */
import { AbortReason, type AbortReasonName } from '../../shared/codes.ts';
import { encodeFrame, type ChunkFrame } from '../../shared/codec.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import {
  Op,
  type StreamAnswerFrame, type StreamCancelFrame, type StreamCreditFrame, type StreamEndFrame,
  type StreamOfferFrame,
} from '../../shared/protocol.ts';
import { AppError } from './errors.ts';
import type { Session } from './hub.ts';
import type { Logger } from './logger.ts';

export interface StreamOptions {
  /** Largest chunk payload. */
  maxChunkBytes: number;
  /** Streams one user may take part in at once, as sender or recipient. */
  maxStreamsPerUser: number;
  /** Largest file an offer may declare. */
  maxFileBytes: number;
  /** Most bytes granted but not yet relayed, per stream: the server's memory bound per stream. */
  windowBytes: number;
}

interface Stream {
  sid: number;
  sender: Session;
  recipient: Session;
  size: number;
  state: 'offered' | 'accepted';
  /** Bytes relayed so far, which is also the offset the next chunk must start at. */
  sent: number;
  /** Bytes the recipient has granted in total. */
  granted: number;
}

export class StreamRelay {
  private readonly streams = new Map<number, Stream>();
  /** Streams each session takes part in, for limits and for cleanup when it goes. */
  private readonly bySession = new Map<Session, Set<Stream>>();
  private nextSid = 1;

  constructor(
    private readonly opts: StreamOptions,
    private readonly online: (key: string) => Session | undefined,
    private readonly lookup: (key: string) => Promise<string | null>,
    private readonly log: Logger,
  ) {}

  /** Number of streams open now (for health and tests). */
  get size(): number {
    return this.streams.size;
  }

  offer(s: Session, f: StreamOfferFrame): void {
    const toName = normalizeName(f.to);
    if (!toName) throw new AppError('UNKNOWN_CONTACT', 'no account has that name', f.ref);
    const toKey = nameKey(toName);
    if (toKey === s.key) throw new AppError('STREAM_SELF', 'you cannot send a file to yourself', f.ref);
    if (f.size > this.opts.maxFileBytes) {
      throw new AppError('FILE_TOO_LARGE', `files are limited to ${this.opts.maxFileBytes} bytes`, f.ref);
    }
    const r = this.online(toKey);
    if (!r || r.phase === 'closed' || r.phase === 'hello') {
      // Say whether the name exists only as much as sending a message would.
      void this.lookup(toKey).then(
        (name) => s.error(name === null
          ? { code: 'UNKNOWN_CONTACT', message: 'no account has that name', ref: f.ref }
          : { code: 'RECIPIENT_OFFLINE', message: `${name} is not online`, ref: f.ref }),
        () => s.error({ code: 'RECIPIENT_OFFLINE', message: 'that contact is not online', ref: f.ref }),
      );
      return;
    }
    if (this.count(s) >= this.opts.maxStreamsPerUser || this.count(r) >= this.opts.maxStreamsPerUser) {
      throw new AppError('STREAM_LIMIT', `at most ${this.opts.maxStreamsPerUser} streams at once per user`, f.ref);
    }
    const sid = this.allocateSid();
    const st: Stream = { sid, sender: s, recipient: r, size: f.size, state: 'offered', sent: 0, granted: 0 };
    this.streams.set(sid, st);
    this.link(s, st);
    this.link(r, st);
    const offered = { t: Op.StreamOffered, sid, from: s.name, to: r.name, name: f.name, size: f.size, mime: f.mime, container: f.container } as const;
    r.send(offered);
    s.send({ ...offered, ref: f.ref });
    s.log.info({ sid, to: r.name, size: f.size, mime: f.mime }, 'stream offered');
  }

  answer(s: Session, f: StreamAnswerFrame): void {
    const st = this.owned(s, f.sid, 'recipient');
    if (st.state !== 'offered') throw new AppError('STREAM_UNKNOWN', 'that stream was already answered', f.sid);
    st.sender.send({ t: Op.StreamAnswered, sid: st.sid, accept: f.accept });
    if (!f.accept) {
      this.free(st);
      s.send({ t: Op.StreamAborted, sid: st.sid, reason: AbortReason.DECLINED, message: 'declined' });
      return;
    }
    st.state = 'accepted';
    if (f.credit) this.grant(st, f.credit);
  }

  credit(s: Session, f: StreamCreditFrame): void {
    const st = this.owned(s, f.sid, 'recipient');
    if (st.state !== 'accepted') throw new AppError('STREAM_NOT_ACCEPTED', 'accept the stream first', f.sid);
    this.grant(st, f.bytes);
  }

  chunk(s: Session, c: ChunkFrame): void {
    const { sid, offset, length } = c.header;
    const st = this.streams.get(sid);
    if (!st || st.sender !== s) {
      s.error({ code: 'STREAM_UNKNOWN', message: 'no such stream of yours', ref: sid });
      return;
    }
    if (st.state !== 'accepted') {
      s.error({ code: 'STREAM_NOT_ACCEPTED', message: 'the recipient has not accepted this stream', ref: sid });
      return;
    }
    let violation: { code: 'CHUNK_TOO_LARGE' | 'STREAM_BAD_OFFSET' | 'STREAM_SIZE_MISMATCH' | 'STREAM_NO_CREDIT'; message: string } | undefined;
    if (length > this.opts.maxChunkBytes) violation = { code: 'CHUNK_TOO_LARGE', message: `chunks are limited to ${this.opts.maxChunkBytes} bytes` };
    else if (offset !== st.sent) violation = { code: 'STREAM_BAD_OFFSET', message: `expected offset ${st.sent}, got ${offset}` };
    else if (st.sent + length > st.size) violation = { code: 'STREAM_SIZE_MISMATCH', message: `more bytes than the ${st.size} declared` };
    else if (st.sent + length > st.granted) violation = { code: 'STREAM_NO_CREDIT', message: 'chunk beyond the credit granted' };
    if (violation) {
      // The recipient would be missing bytes from here on: the stream cannot continue.
      s.error({ ...violation, ref: sid });
      this.abort(st, AbortReason.PROTOCOL, violation.message);
      return;
    }
    st.sent += length;
    st.recipient.forward(c.bytes);
  }

  end(s: Session, f: StreamEndFrame): void {
    const st = this.owned(s, f.sid, 'sender');
    if (st.state !== 'accepted') throw new AppError('STREAM_NOT_ACCEPTED', 'the recipient has not accepted this stream', f.sid);
    if (st.sent !== st.size) {
      s.error({ code: 'STREAM_SIZE_MISMATCH', message: `ended after ${st.sent} of ${st.size} bytes`, ref: f.sid });
      this.abort(st, AbortReason.PROTOCOL, 'ended before all declared bytes were sent');
      return;
    }
    this.free(st);
    const ended = { t: Op.StreamEnded, sid: st.sid, bytes: st.sent } as const;
    st.recipient.send(ended);
    st.sender.send(ended);
    s.log.info({ sid: st.sid, bytes: st.sent }, 'stream complete');
  }

  cancel(s: Session, f: StreamCancelFrame): void {
    const st = this.streams.get(f.sid);
    if (!st || (st.sender !== s && st.recipient !== s)) throw new AppError('STREAM_UNKNOWN', 'no such stream of yours', f.sid);
    const reason = st.sender === s ? AbortReason.SENDER_CANCELLED : AbortReason.RECIPIENT_CANCELLED;
    this.abort(st, reason, f.reason ?? 'cancelled');
  }

  /** A session closed: every stream it took part in ends, and the other side is told why. */
  sessionGone(s: Session, why: AbortReasonName): void {
    const set = this.bySession.get(s);
    if (!set) return;
    for (const st of [...set]) {
      const reason = why === AbortReason.RECIPIENT_DISCONNECTED || why === AbortReason.SENDER_DISCONNECTED
        ? (st.sender === s ? AbortReason.SENDER_DISCONNECTED : AbortReason.RECIPIENT_DISCONNECTED)
        : why;
      this.abort(st, reason, messageFor(reason));
    }
  }

  private grant(st: Stream, bytes: number): void {
    const outstanding = st.granted - st.sent;
    const allowed = Math.max(0, Math.min(bytes, this.opts.windowBytes - outstanding, st.size - st.granted));
    if (allowed === 0) return;
    st.granted += allowed;
    // Credit is latency-critical (the sender may be waiting on it): out now, not at the end of the turn.
    if (st.sender.phase !== 'closed') st.sender.forward(encodeFrame({ t: Op.StreamGranted, sid: st.sid, bytes: allowed }));
  }

  private abort(st: Stream, reason: AbortReasonName, message: string): void {
    this.free(st);
    const frame = { t: Op.StreamAborted, sid: st.sid, reason, message } as const;
    st.sender.send(frame);
    st.recipient.send(frame);
    this.log.info({ sid: st.sid, reason, sent: st.sent, size: st.size }, 'stream aborted');
  }

  private owned(s: Session, sid: number, role: 'sender' | 'recipient'): Stream {
    const st = this.streams.get(sid);
    if (!st || st[role] !== s) throw new AppError('STREAM_UNKNOWN', `no such stream where you are the ${role}`, sid);
    return st;
  }

  private count(s: Session): number {
    return this.bySession.get(s)?.size ?? 0;
  }

  private link(s: Session, st: Stream): void {
    let set = this.bySession.get(s);
    if (!set) this.bySession.set(s, (set = new Set()));
    set.add(st);
  }

  private free(st: Stream): void {
    this.streams.delete(st.sid);
    for (const s of [st.sender, st.recipient]) {
      const set = this.bySession.get(s);
      set?.delete(st);
      if (set?.size === 0) this.bySession.delete(s);
    }
  }

  private allocateSid(): number {
    do {
      this.nextSid = this.nextSid >= 0xffffffff ? 1 : this.nextSid + 1;
    } while (this.streams.has(this.nextSid));
    return this.nextSid;
  }
}

function messageFor(reason: AbortReasonName): string {
  switch (reason) {
    case AbortReason.SENDER_DISCONNECTED: return 'the sender disconnected';
    case AbortReason.RECIPIENT_DISCONNECTED: return 'the recipient disconnected';
    case AbortReason.TAKEOVER: return 'a session was taken over by a newer sign-in';
    case AbortReason.SERVER_SHUTDOWN: return 'the server is shutting down';
    default: return reason.toLowerCase().replace(/_/g, ' ');
  }
}
