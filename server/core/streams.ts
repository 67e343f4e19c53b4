/**
 * The video relay: offers, answers, credit, chunks, end and cancel, between two online sessions.
 *
 * Flow control is end to end and credit based: the recipient grants bytes, the server passes the grant on and
 * refuses any chunk beyond it. A grant is passed on only while the credit outstanding plus what the recipient's
 * socket has not yet taken stays within `windowBytes`, so a viewer that grants credit but never reads cannot
 * make the server hold more than one window for the stream: the rest of its grant waits (`wanted`) until the
 * socket drains. Each accepted stream reserves one window from `maxTotalBytes`, the bound on what all streams
 * together may hold; past it, accepting gets STREAM_CAPACITY.
 *
 * Chunks are forwarded as the very bytes that arrived: the header is read, never rewritten.
 *
 * Resumable transfers: a transfer is known to both sides by its id (`tid`, the offer's `ref`). When a
 * disconnect or a takeover cuts an accepted stream, the stream ends (`streamAborted` with `resumeMs`) but the
 * transfer is kept as `Paused`: who, what and until when, never any file bytes. The recipient then asks to
 * resume with the byte ranges it holds; a new stream starts with those ranges counted as sent, so the sender
 * can send only the rest and nothing is relayed twice beyond what was in flight at the cut. Paused transfers
 * are bounded per user (`maxStreamsPerUser` as sender and as recipient), in all (`maxPaused`) and in time
 * (`resumeMs`): the oldest go first.
 */
import { AbortReason, type AbortReasonName } from '../../shared/codes.ts';
import { MAX_STREAM_RUNS } from '../../shared/chunk.ts';
import { encodeFrame, type ChunkFrame } from '../../shared/codec.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import {
  Op,
  type ByteRanges, type StreamAnswerFrame, type StreamCancelFrame, type StreamCreditFrame, type StreamDropFrame,
  type StreamEndFrame, type StreamOfferFrame, type StreamResumeFrame,
} from '../../shared/protocol.ts';
import { AppError } from './errors.ts';
import type { Session } from './hub.ts';
import type { Logger } from './logger.ts';
import type { TransferMeta } from './router.ts';

export interface StreamOptions {
  /** Largest chunk payload. */
  maxChunkBytes: number;
  /** Streams one user may take part in at once, as sender or recipient. */
  maxStreamsPerUser: number;
  /** Largest file an offer may declare. */
  maxFileBytes: number;
  /** Most bytes granted but not yet relayed, per stream: the server's memory bound per stream. */
  windowBytes: number;
  /** What all streams together may hold: accepted streams x window stays within it. */
  maxTotalBytes: number;
  /** How long a transfer cut by a disconnect stays resumable (ms). Default 10 minutes. */
  resumeMs?: number;
  /** Most paused transfers kept in all. Default 10,000. */
  maxPaused?: number;
}

/** What a transfer is, as offered: kept with a stream so that a cut can pause it. */
interface Offer { tid: string; name: string; size: number; mime: string; container: string }

/** A transfer cut by a disconnect, waiting for its recipient to ask to resume. No bytes, only who and what. */
interface Paused extends Offer {
  senderKey: string;
  recipientKey: string;
  sender: string;
  recipient: string;
  /** Date.now() after which it is forgotten. */
  expires: number;
  /** Given up by one side while the other was offline: kept (till `expires`) only to tell the other side. */
  droppedBy?: AbortReasonName;
}

interface Stream {
  sid: number;
  sender: Session;
  recipient: Session;
  size: number;
  state: 'offered' | 'accepted';
  /** Bytes relayed so far (the sum of the runs' lengths). */
  sent: number;
  /**
   * The byte ranges relayed so far, as [start, end) runs in the order they were begun. A chunk continues the
   * last run or begins a new one that overlaps none (a sender sends an MP4's index first, then the rest), so
   * no byte is relayed twice and `sent === size` means every byte was relayed exactly once.
   */
  runs: [number, number][];
  /** Bytes passed on to the sender as credit in total. */
  granted: number;
  /** Credit the recipient granted that is held back until its socket drains (see the header). */
  wanted: number;
  offer: Offer;
  /**
   * A resumed stream's ranges the recipient already held: counted in `sent`, `granted` and the overlap check,
   * never relayed. Such a stream may begin MAX_STREAM_RUNS runs besides them (what lies between them).
   */
  held: ByteRanges;
}

/**
 * Records a chunk of `length` bytes at `offset` in `runs` when it continues the last run or starts a new run
 * that overlaps none; false (and `runs` untouched) otherwise.
 */
export function placeChunk(runs: [number, number][], offset: number, length: number, held: ByteRanges = []): boolean {
  const last = runs[runs.length - 1];
  const end = offset + length;
  const overlaps = runs.some((r) => offset < r[1] && end > r[0]) || held.some((r) => offset < r[1] && end > r[0]);
  if (last && last[1] === offset) {
    if (overlaps) return false;
    last[1] = end;
    return true;
  }
  if (runs.length >= MAX_STREAM_RUNS + held.length || overlaps) return false;
  runs.push([offset, end]);
  return true;
}

/** What a chunk from a stream's sender breaks, if anything (the stream must then be aborted). */
export interface ChunkViolation {
  code: 'CHUNK_TOO_LARGE' | 'STREAM_BAD_OFFSET' | 'STREAM_SIZE_MISMATCH' | 'STREAM_NO_CREDIT';
  message: string;
}

/**
 * The checks every relay makes on a sender's chunk of an accepted stream, in order: size limit, declared size,
 * placement (recorded in `st.runs` when it passes), credit. Undefined when the chunk may go on.
 */
export function chunkViolation(
  st: { sent: number; size: number; granted: number; runs: [number, number][]; held?: ByteRanges },
  offset: number, length: number, maxChunkBytes: number,
): ChunkViolation | undefined {
  if (length > maxChunkBytes) return { code: 'CHUNK_TOO_LARGE', message: `chunks are limited to ${maxChunkBytes} bytes` };
  if (st.sent + length > st.size || offset + length > st.size) return { code: 'STREAM_SIZE_MISMATCH', message: `more bytes than the ${st.size} declared` };
  if (!placeChunk(st.runs, offset, length, st.held)) {
    return { code: 'STREAM_BAD_OFFSET', message: `a chunk at ${offset} overlaps bytes already sent or begins more than ${MAX_STREAM_RUNS} byte ranges` };
  }
  if (st.sent + length > st.granted) return { code: 'STREAM_NO_CREDIT', message: 'chunk beyond the credit granted' };
  return undefined;
}

export class StreamRelay {
  private readonly streams = new Map<number, Stream>();
  /** Streams each session takes part in, for limits and for cleanup when it goes. */
  private readonly bySession = new Map<Session, Set<Stream>>();
  private nextSid = 1;
  /** Accepted streams: each holds one window of `maxTotalBytes`. */
  private accepted = 0;
  /** Paused transfers by `pausedKey`, oldest first (each is re-inserted when paused again). */
  private readonly paused = new Map<string, Paused>();
  /** Paused transfers each user takes part in, by name key (for the per-user bound and lookups). */
  private readonly pausedByUser = new Map<string, Set<Paused>>();
  private readonly resumeMs: number;
  private readonly maxPaused: number;
  private relayed = 0;

  constructor(
    private readonly opts: StreamOptions,
    private readonly online: (key: string) => Session | undefined,
    private readonly lookup: (key: string) => Promise<string | null>,
    private readonly log: Logger,
  ) {
    this.resumeMs = opts.resumeMs ?? 600_000;
    this.maxPaused = opts.maxPaused ?? 10_000;
  }

  /** Payload bytes relayed since start, over all streams (for tests: a resume sends each byte about once). */
  get relayedBytes(): number {
    return this.relayed;
  }

  /** Paused transfers kept now (for health and tests). */
  get pausedCount(): number {
    this.expire();
    return this.paused.size;
  }

  /** Number of streams open now (for health and tests). */
  get size(): number {
    return this.streams.size;
  }

  /** What streams make the server hold now: credit outstanding plus the recipients' unsent socket bytes. */
  get heldBytes(): number {
    let n = 0;
    const recipients = new Set<Session>();
    for (const st of this.streams.values()) {
      n += st.granted - st.sent;
      recipients.add(st.recipient);
    }
    for (const r of recipients) n += r.buffered();
    return n;
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
    if (!r || r.phase === 'closed' || r.phase === 'hello' || r.phase === 'claiming') {
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
    const offer: Offer = { tid: f.ref, name: f.name, size: f.size, mime: f.mime, container: f.container };
    const st: Stream = { sid, sender: s, recipient: r, size: f.size, state: 'offered', sent: 0, granted: 0, wanted: 0, runs: [], offer, held: [] };
    this.streams.set(sid, st);
    this.link(s, st);
    this.link(r, st);
    const offered = { t: Op.StreamOffered, sid, tid: f.ref, from: s.name, to: r.name, name: f.name, size: f.size, mime: f.mime, container: f.container } as const;
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
    if ((this.accepted + 1) * this.opts.windowBytes > this.opts.maxTotalBytes) {
      const message = 'the server is relaying as many streams as it can hold; try again later';
      s.error({ code: 'STREAM_CAPACITY', message, ref: st.sid });
      this.abort(st, AbortReason.PROTOCOL, message);
      return;
    }
    st.state = 'accepted';
    this.accepted++;
    if (f.credit) this.grant(st, f.credit);
  }

  credit(s: Session, f: StreamCreditFrame): void {
    const st = this.owned(s, f.sid, 'recipient');
    if (st.state !== 'accepted') throw new AppError('STREAM_NOT_ACCEPTED', 'accept the stream first', f.sid);
    this.grant(st, f.bytes);
  }

  /** Relays a chunk. False when it was for no stream this session may send on (the hub counts that as bad input). */
  chunk(s: Session, c: ChunkFrame): boolean {
    const { sid, offset, length } = c.header;
    const st = this.streams.get(sid);
    if (!st || st.sender !== s) {
      s.error({ code: 'STREAM_UNKNOWN', message: 'no such stream of yours', ref: sid });
      return false;
    }
    if (st.state !== 'accepted') {
      s.error({ code: 'STREAM_NOT_ACCEPTED', message: 'the recipient has not accepted this stream', ref: sid });
      return false;
    }
    const violation = chunkViolation(st, offset, length, this.opts.maxChunkBytes);
    if (violation) {
      // The recipient would be missing bytes from here on: the stream cannot continue.
      s.error({ ...violation, ref: sid });
      this.abort(st, AbortReason.PROTOCOL, violation.message);
      return true;
    }
    st.sent += length;
    this.relayed += length;
    st.recipient.forward(c.bytes);
    if (st.wanted > 0) this.grant(st, 0);
    return true;
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

  /**
   * A session closed: every stream it took part in ends, and the other side is told why. An accepted stream
   * cut by a disconnect or a takeover is paused rather than over (see the header); a server shutdown ends it.
   */
  sessionGone(s: Session, why: AbortReasonName): void {
    const set = this.bySession.get(s);
    if (!set) return;
    for (const st of [...set]) {
      const reason = why === AbortReason.RECIPIENT_DISCONNECTED || why === AbortReason.SENDER_DISCONNECTED
        ? (st.sender === s ? AbortReason.SENDER_DISCONNECTED : AbortReason.RECIPIENT_DISCONNECTED)
        : why;
      // Even with every byte relayed the recipient may not have them all (they were in flight): still resumable.
      const resumable = st.state === 'accepted' && reason !== AbortReason.SERVER_SHUTDOWN;
      if (resumable) this.pause(st);
      this.abort(st, reason, messageFor(reason), resumable ? this.resumeMs : undefined);
    }
  }

  /**
   * A session said hello: it hears of its paused transfers given up while it was away, and recipients waiting on
   * its paused transfers as sender are told to ask now.
   */
  sessionReady(s: Session): void {
    this.expire();
    for (const p of [...this.pausedByUser.get(s.key) ?? []]) {
      if (p.droppedBy) {
        const toldKey = p.droppedBy === AbortReason.SENDER_CANCELLED ? p.recipientKey : p.senderKey;
        if (toldKey === s.key) {
          s.send({ t: Op.StreamDropped, tid: p.tid, from: p.sender, to: p.recipient, reason: p.droppedBy });
          this.unpause(p);
        }
        continue;
      }
      if (p.senderKey !== s.key) continue;
      const r = this.online(p.recipientKey);
      if (r && r.phase !== 'closed' && r.phase !== 'hello') r.send({ t: Op.StreamResumable, tid: p.tid, from: s.name });
    }
  }

  /** The recipient of a paused transfer asks to go on from the ranges it holds: a new stream, already accepted. */
  resume(r: Session, f: StreamResumeFrame): void {
    this.expire();
    const fromName = normalizeName(f.from);
    const p = fromName ? this.paused.get(pausedKey(nameKey(fromName), f.tid)) : undefined;
    if (!p || p.recipientKey !== r.key || p.droppedBy) {
      throw new AppError('TRANSFER_UNKNOWN', 'no paused transfer with that id from that person (finished, given up or expired)', f.tid);
    }
    let heldBytes = 0;
    for (let i = 0; i < f.held.length; i++) {
      const [a, b] = f.held[i]!;
      if (!(a < b && b <= p.size && (i === 0 || a > f.held[i - 1]![1]))) {
        throw new AppError('STREAM_BAD_OFFSET', 'held ranges must be sorted, apart, non-empty and inside the file', f.tid);
      }
      heldBytes += b - a;
    }
    const s = this.online(p.senderKey);
    if (!s || s.phase === 'closed' || s.phase === 'hello') {
      throw new AppError('RECIPIENT_OFFLINE', `${p.sender} is not online; the transfer stays paused`, f.tid);
    }
    if (this.count(s) >= this.opts.maxStreamsPerUser || this.count(r) >= this.opts.maxStreamsPerUser) {
      throw new AppError('STREAM_LIMIT', `at most ${this.opts.maxStreamsPerUser} streams at once per user`, f.tid);
    }
    if ((this.accepted + 1) * this.opts.windowBytes > this.opts.maxTotalBytes) {
      throw new AppError('STREAM_CAPACITY', 'the server is relaying as many streams as it can hold; try again later', f.tid);
    }
    this.unpause(p);
    const sid = this.allocateSid();
    const st: Stream = {
      sid, sender: s, recipient: r, size: p.size, state: 'accepted', sent: heldBytes, granted: heldBytes, wanted: 0, runs: [],
      offer: { tid: p.tid, name: p.name, size: p.size, mime: p.mime, container: p.container }, held: f.held,
    };
    this.streams.set(sid, st);
    this.link(s, st);
    this.link(r, st);
    this.accepted++;
    const resumed = { t: Op.StreamResumed, sid, tid: p.tid, from: s.name, to: r.name, size: p.size, held: f.held } as const;
    s.send(resumed);
    r.send(resumed);
    r.log.info({ sid, tid: p.tid, from: s.name, held: heldBytes, size: p.size }, 'stream resumed');
    if (f.credit) this.grant(st, f.credit);
  }

  /** Either side gives up a paused transfer; the other side, when online, is told. */
  drop(s: Session, f: StreamDropFrame): void {
    this.expire();
    const peerName = normalizeName(f.peer);
    const peerKey = peerName ? nameKey(peerName) : '';
    const asSender = this.paused.get(pausedKey(s.key, f.tid));
    const asRecipient = this.paused.get(pausedKey(peerKey, f.tid));
    const p = asSender?.recipientKey === peerKey ? asSender : asRecipient?.recipientKey === s.key ? asRecipient : undefined;
    if (!p || p.droppedBy) throw new AppError('TRANSFER_UNKNOWN', 'no paused transfer with that id between you two', f.tid);
    const reason = p.senderKey === s.key ? AbortReason.SENDER_CANCELLED : AbortReason.RECIPIENT_CANCELLED;
    const other = this.online(p.senderKey === s.key ? p.recipientKey : p.senderKey);
    if (other && other.phase !== 'closed' && other.phase !== 'hello') {
      other.send({ t: Op.StreamDropped, tid: p.tid, from: p.sender, to: p.recipient, reason });
      this.unpause(p);
    } else {
      p.droppedBy = reason; // told at its next hello (see sessionReady)
    }
    s.log.info({ tid: p.tid, reason }, 'paused transfer given up');
  }

  /** The recipient's socket drained: pass on credit held back for its streams. */
  drained(r: Session): void {
    for (const st of this.bySession.get(r) ?? []) if (st.recipient === r && st.wanted > 0) this.grant(st, 0);
  }

  private grant(st: Stream, bytes: number): void {
    st.wanted = Math.min(st.wanted + bytes, st.size - st.granted);
    const outstanding = st.granted - st.sent;
    const room = this.opts.windowBytes - outstanding - st.recipient.buffered();
    const allowed = Math.max(0, Math.min(st.wanted, room));
    if (allowed === 0) return;
    st.granted += allowed;
    st.wanted -= allowed;
    // Credit is latency-critical (the sender may be waiting on it): out now, not at the end of the turn.
    if (st.sender.phase !== 'closed') st.sender.forward(encodeFrame({ t: Op.StreamGranted, sid: st.sid, bytes: allowed }));
  }

  private abort(st: Stream, reason: AbortReasonName, message: string, resumeMs?: number): void {
    this.free(st);
    const frame = resumeMs === undefined
      ? { t: Op.StreamAborted, sid: st.sid, reason, message } as const
      : { t: Op.StreamAborted, sid: st.sid, reason, message, resumeMs } as const;
    st.sender.send(frame);
    st.recipient.send(frame);
    this.log.info({ sid: st.sid, reason, sent: st.sent, size: st.size }, 'stream aborted');
  }

  private pause(st: Stream): void {
    this.keep({ ...st.offer, senderKey: st.sender.key, recipientKey: st.recipient.key, sender: st.sender.name, recipient: st.recipient.name });
  }

  /** How long a cut transfer stays resumable (ms). */
  get resumeWindowMs(): number {
    return this.resumeMs;
  }

  /**
   * Keeps a transfer paused, as a cut here does; also for a transfer across nodes whose other party's node cut it
   * (remote-streams.ts: the node of the party still there keeps it). `expires` defaults to now + `resumeMs`.
   */
  keep(t: TransferMeta, expires = Date.now() + this.resumeMs): void {
    this.expire();
    const key = pausedKey(t.senderKey, t.tid);
    const old = this.paused.get(key);
    if (old) this.unpause(old);
    const p: Paused = {
      tid: t.tid, name: t.name, size: t.size, mime: t.mime, container: t.container, senderKey: t.senderKey,
      recipientKey: t.recipientKey, sender: t.sender, recipient: t.recipient, expires,
    };
    // Bounds: per user in each role, then in all; the oldest paused transfer gives way.
    for (const [userKey, role] of [[p.senderKey, 'senderKey'], [p.recipientKey, 'recipientKey']] as const) {
      const mine = [...this.pausedByUser.get(userKey) ?? []].filter((q) => q[role] === userKey);
      if (mine.length >= this.opts.maxStreamsPerUser) this.unpause(mine.reduce((a, b) => (a.expires <= b.expires ? a : b)));
    }
    if (this.paused.size >= this.maxPaused) this.unpause(this.paused.values().next().value!);
    this.paused.set(key, p);
    for (const k of [p.senderKey, p.recipientKey]) {
      let set = this.pausedByUser.get(k);
      if (!set) this.pausedByUser.set(k, (set = new Set()));
      set.add(p);
    }
  }

  private unpause(p: Paused): void {
    this.paused.delete(pausedKey(p.senderKey, p.tid));
    for (const k of [p.senderKey, p.recipientKey]) {
      const set = this.pausedByUser.get(k);
      set?.delete(p);
      if (set?.size === 0) this.pausedByUser.delete(k);
    }
  }

  /** Takes a paused transfer out to resume it across nodes (not one given up): undefined when there is none. */
  take(senderKey: string, tid: string, recipientKey: string): (TransferMeta & { expires: number }) | undefined {
    this.expire();
    const p = this.paused.get(pausedKey(senderKey, tid));
    if (!p || p.recipientKey !== recipientKey || p.droppedBy) return undefined;
    this.unpause(p);
    return p.expires > Date.now() ? p : undefined;
  }

  /** Paused transfers kept here that `key` sends (not given up). */
  keptFrom(key: string): TransferMeta[] {
    this.expire();
    return [...this.pausedByUser.get(key) ?? []].filter((p) => p.senderKey === key && !p.droppedBy);
  }

  /** Forgets expired paused transfers: the map is in pause order and every pause lasts as long, so from the front. */
  private expire(): void {
    const now = Date.now();
    for (const p of this.paused.values()) {
      if (p.expires > now) break;
      this.unpause(p);
    }
  }

  private owned(s: Session, sid: number, role: 'sender' | 'recipient'): Stream {
    const st = this.streams.get(sid);
    if (!st || st[role] !== s) throw new AppError('STREAM_UNKNOWN', `no such stream where you are the ${role}`, sid);
    return st;
  }

  /** Streams `s` takes part in here (the per-user limit also counts its streams across nodes). */
  count(s: Session): number {
    return this.bySession.get(s)?.size ?? 0;
  }

  private link(s: Session, st: Stream): void {
    let set = this.bySession.get(s);
    if (!set) this.bySession.set(s, (set = new Set()));
    set.add(st);
  }

  private free(st: Stream): void {
    if (!this.streams.delete(st.sid)) return;
    if (st.state === 'accepted') this.accepted--;
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

function pausedKey(senderKey: string, tid: string): string {
  return `${senderKey}\n${tid}`;
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
