/**
 * Streams between a sender and a recipient held by different nodes (docs/architecture.md, "How the hub uses the
 * router", step 5). The same rules as the in-process relay (`streams.ts`), split between the two nodes:
 *
 * - the **sender's node** keeps the stream's sender side: it checks each chunk (owner, acceptance, size, offset,
 *   credit) and forwards it untouched to the recipient's claim (`Router.forward`, in order, unanswered);
 * - the **recipient's node** keeps the recipient side: it passes credit on only while the credit outstanding plus
 *   what the recipient's socket has not taken fits in the window, so the end-to-end window bounds what either node
 *   (and the bus, or the direct link) holds, and it checks that chunks arrive at the offsets the sender's node let
 *   through;
 * - control (offered, aborted) travels as `stream` envelopes (`deliver`, answered) to the other party's claim;
 *   `ended` goes the chunks' way (`forward`), so it cannot overtake them, and so do the recipient's answer and
 *   credit (to the sender's claim named in the offer), which keeps credit off the bus's request round trip where
 *   there is a direct link, and keeps it behind the answer. An answer other than
 *   `taken`, a rejection, the other node gone, the bus down, or the direct link to the other node lost aborts the
 *   stream on the side still here, with a reason, and the other side is told when it can be.
 *
 * Stream ids are made by the sender's node: the high bit set (the in-process relay counts up from 1), then nine
 * bits of the node id's hash and a counter, so two nodes' ids do not meet; a recipient's node that already has the
 * id refuses the offer rather than confuse two streams.
 */
import { AbortReason, type AbortReasonName } from '../../shared/codes.ts';
import type { ChunkFrame } from '../../shared/codec.ts';
import { readChunkHeader } from '../../shared/chunk.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import {
  Op,
  type StreamAnswerFrame, type StreamCancelFrame, type StreamCreditFrame, type StreamEndFrame, type StreamOfferFrame,
} from '../../shared/protocol.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import {
  EnvelopeKind, viaRouter, type ChunkEnvelope, type Claim, type NodeId, type Router, type StreamEnvelope, type StreamOp,
} from './router.ts';
import type { Session } from './session.ts';
import { chunkViolation, placeChunk, type StreamOptions } from './streams.ts';

/** The sender's side, on the sender's node. */
interface Outgoing {
  side: 'out';
  sid: number;
  sender: Session;
  peer: Claim;
  size: number;
  state: 'offered' | 'accepted';
  sent: number;
  runs: [number, number][];
  granted: number;
  /**
   * Answer and credit that arrived before the answer to the offer did (they travel by `forward`, which a direct link
   * does not keep in order with the bus): held until the sender has its `streamOffered`. Null from then on.
   */
  early: StreamOp[] | null;
}

/** The recipient's side, on the recipient's node. */
interface Incoming {
  side: 'in';
  sid: number;
  recipient: Session;
  /** The sender's name key and node: where control goes. */
  senderKey: string;
  origin: NodeId;
  /** The sender's claim, when the offer named its epoch: answer and credit go to it by `forward`. */
  peer: Claim | undefined;
  size: number;
  state: 'offered' | 'accepted';
  received: number;
  runs: [number, number][];
  granted: number;
  wanted: number;
}

type Remote = Outgoing | Incoming;

export class RemoteStreams {
  private readonly streams = new Map<number, Remote>();
  private readonly bySession = new Map<Session, Set<Remote>>();
  private readonly tag: number;
  private counter = 0;

  constructor(
    private readonly router: Router,
    private readonly opts: StreamOptions,
    /** This node's live session of a name. */
    private readonly online: (key: string) => Session | undefined,
    private readonly lookup: (key: string) => Promise<string | null>,
    private readonly log: Logger,
  ) {
    let h = 0;
    for (const c of router.nodeId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    this.tag = h & 0x1ff;
  }

  /** Whether `sid` is a cross-node stream of this node (the hub routes its frames here). */
  has(sid: number): boolean {
    return this.streams.has(sid);
  }

  get size(): number {
    return this.streams.size;
  }

  /** Streams `s` takes part in across nodes (for the per-user limit). */
  count(s: Session): number {
    return this.bySession.get(s)?.size ?? 0;
  }

  /** An offer to a name with no session on this node: find its node, or say the recipient is offline. */
  async offer(s: Session, f: StreamOfferFrame, localCount: number): Promise<void> {
    const toName = normalizeName(f.to);
    if (!toName) throw new AppError('UNKNOWN_CONTACT', 'no account has that name', f.ref);
    const toKey = nameKey(toName);
    if (f.size > this.opts.maxFileBytes) throw new AppError('FILE_TOO_LARGE', `files are limited to ${this.opts.maxFileBytes} bytes`, f.ref);
    if (localCount + this.count(s) >= this.opts.maxStreamsPerUser) {
      throw new AppError('STREAM_LIMIT', `at most ${this.opts.maxStreamsPerUser} streams at once per user`, f.ref);
    }
    const peer = await viaRouter(() => this.router.locate(toKey)).catch(() => null);
    if (s.phase === 'closed') return;
    if (!peer || peer.node === this.router.nodeId) {
      const name = await this.lookup(toKey).catch(() => toName);
      throw name === null
        ? new AppError('UNKNOWN_CONTACT', 'no account has that name', f.ref)
        : new AppError('RECIPIENT_OFFLINE', `${name} is not online`, f.ref);
    }
    const sid = this.allocateSid();
    const st: Outgoing = { side: 'out', sid, sender: s, peer, size: f.size, state: 'offered', sent: 0, runs: [], granted: 0, early: [] };
    this.add(s, st);
    const offered = { t: Op.StreamOffered, sid, tid: f.ref, from: s.name, to: toName, name: f.name, size: f.size, mime: f.mime, container: f.container } as const;
    const status = await this.deliver(st, offered);
    if (status !== 'taken') {
      // The recipient's node could not take it (gone, not ready, an id clash): nothing was relayed.
      this.free(st);
      throw new AppError('RECIPIENT_OFFLINE', `${toName} is not online`, f.ref);
    }
    if (this.streams.get(sid) !== st) return; // aborted while the offer travelled
    s.send({ ...offered, ref: f.ref });
    s.log.info({ sid, to: toName, size: f.size, mime: f.mime, node: peer.node }, 'stream offered across nodes');
    const early = st.early ?? [];
    st.early = null;
    for (const e of early) if (this.streams.get(sid) === st) this.toSenderSession(st, e);
  }

  answer(s: Session, f: StreamAnswerFrame): void {
    const st = this.incoming(s, f.sid);
    if (st.state !== 'offered') throw new AppError('STREAM_UNKNOWN', 'that stream was already answered', f.sid);
    this.toSender(st, { t: Op.StreamAnswered, sid: st.sid, accept: f.accept });
    if (!f.accept) {
      this.free(st);
      s.send({ t: Op.StreamAborted, sid: st.sid, reason: AbortReason.DECLINED, message: 'declined' });
      return;
    }
    st.state = 'accepted';
    if (f.credit) this.grant(st, f.credit);
  }

  credit(s: Session, f: StreamCreditFrame): void {
    const st = this.incoming(s, f.sid);
    if (st.state !== 'accepted') throw new AppError('STREAM_NOT_ACCEPTED', 'accept the stream first', f.sid);
    this.grant(st, f.bytes);
  }

  /** A chunk from this node's sender: checked, then forwarded untouched to the recipient's claim. */
  chunk(s: Session, c: ChunkFrame): boolean {
    const { sid, offset, length } = c.header;
    const st = this.streams.get(sid);
    if (!st || st.side !== 'out' || st.sender !== s) {
      s.error({ code: 'STREAM_UNKNOWN', message: 'no such stream of yours', ref: sid });
      return false;
    }
    if (st.state !== 'accepted') {
      s.error({ code: 'STREAM_NOT_ACCEPTED', message: 'the recipient has not accepted this stream', ref: sid });
      return false;
    }
    const violation = chunkViolation(st, offset, length, this.opts.maxChunkBytes);
    if (violation) {
      s.error({ ...violation, ref: sid });
      this.abort(st, AbortReason.PROTOCOL, violation.message, true);
      return true;
    }
    st.sent += length;
    try {
      this.router.forward(st.peer, { k: EnvelopeKind.Chunk, to: st.peer.key, bytes: c.bytes });
    } catch {
      this.abort(st, AbortReason.RECIPIENT_DISCONNECTED, 'the connection to the recipient\'s server was lost', false);
    }
    return true;
  }

  end(s: Session, f: StreamEndFrame): void {
    const st = this.streams.get(f.sid);
    if (!st || st.side !== 'out' || st.sender !== s) throw new AppError('STREAM_UNKNOWN', 'no such stream where you are the sender', f.sid);
    if (st.state !== 'accepted') throw new AppError('STREAM_NOT_ACCEPTED', 'the recipient has not accepted this stream', f.sid);
    if (st.sent !== st.size) {
      s.error({ code: 'STREAM_SIZE_MISMATCH', message: `ended after ${st.sent} of ${st.size} bytes`, ref: f.sid });
      this.abort(st, AbortReason.PROTOCOL, 'ended before all declared bytes were sent', true);
      return;
    }
    const ended = { t: Op.StreamEnded, sid: st.sid, bytes: st.sent } as const;
    this.free(st);
    try {
      // After the chunks, on their path (a direct link is not ordered with the bus).
      this.router.forward(st.peer, { k: EnvelopeKind.Stream, to: st.peer.key, fromKey: s.key, origin: this.router.nodeId, frame: ended });
    } catch {
      // The bus is down: the recipient's node aborts the stream on its side (busDown); the sender has it all sent.
    }
    s.send(ended);
    s.log.info({ sid: st.sid, bytes: st.sent }, 'stream complete (across nodes)');
  }

  cancel(s: Session, f: StreamCancelFrame): void {
    const st = this.streams.get(f.sid);
    const mine = st && (st.side === 'out' ? st.sender === s : st.recipient === s);
    if (!st || !mine) throw new AppError('STREAM_UNKNOWN', 'no such stream of yours', f.sid);
    this.abort(st, st.side === 'out' ? AbortReason.SENDER_CANCELLED : AbortReason.RECIPIENT_CANCELLED, f.reason ?? 'cancelled', true);
  }

  /** A session closed: its cross-node streams end, and the other side's node is told why. */
  sessionGone(s: Session, why: AbortReasonName): void {
    for (const st of [...(this.bySession.get(s) ?? [])]) {
      const reason = why === AbortReason.RECIPIENT_DISCONNECTED || why === AbortReason.SENDER_DISCONNECTED
        ? (st.side === 'out' ? AbortReason.SENDER_DISCONNECTED : AbortReason.RECIPIENT_DISCONNECTED)
        : why;
      this.abort(st, reason, messageFor(reason), true);
    }
  }

  drained(r: Session): void {
    for (const st of this.bySession.get(r) ?? []) if (st.side === 'in' && st.wanted > 0) this.grant(st, 0);
  }

  /** A `stream` or `chunk` envelope for `r`, a session of this node. Whether it was taken. */
  fromNode(r: Session, env: StreamEnvelope | ChunkEnvelope): boolean {
    if (env.k === EnvelopeKind.Chunk) return this.chunkIn(r, env.bytes);
    const f = env.frame;
    if (f.t === Op.StreamOffered) {
      if (r.phase !== 'live' && r.phase !== 'draining') return false;
      if (this.streams.has(f.sid)) return false; // an id clash with a stream here: the offer is refused
      if (this.count(r) >= this.opts.maxStreamsPerUser) return false;
      const st: Incoming = {
        side: 'in', sid: f.sid, recipient: r, senderKey: env.fromKey, origin: env.origin, size: f.size, state: 'offered',
        received: 0, runs: [], granted: 0, wanted: 0,
        peer: typeof env.fromEpoch === 'number' ? { key: env.fromKey, sid: '', node: env.origin, epoch: env.fromEpoch, rank: 0 } : undefined, // addressing only: the epoch is what a forward checks
      };
      this.add(r, st);
      r.send({ ...f, to: r.name });
      return true;
    }
    const st = this.streams.get(f.sid);
    if (!st) return f.t === Op.StreamAborted; // already gone here: an abort has nothing more to do
    if (st.side === 'out' && st.sender === r) {
      if (st.early && (f.t === Op.StreamAnswered || f.t === Op.StreamGranted)) st.early.push(f);
      else this.toSenderSession(st, f);
      return true;
    }
    if (st.side === 'in' && st.recipient === r) {
      if (f.t === Op.StreamEnded) {
        if (st.received !== st.size) {
          this.abort(st, AbortReason.PROTOCOL, `ended after ${st.received} of ${st.size} bytes arrived`, true);
          return true;
        }
        this.free(st);
        r.send(f);
      } else if (f.t === Op.StreamAborted) {
        this.free(st);
        r.send(f);
      }
      return true;
    }
    return false;
  }

  /** Control from the recipient's node for the sender, once the sender knows the stream. */
  private toSenderSession(st: Outgoing, f: StreamOp): void {
    const r = st.sender;
    if (f.t === Op.StreamAnswered) {
      if (st.state !== 'offered') return;
      if (f.accept) st.state = 'accepted';
      else this.free(st);
      r.send(f);
    } else if (f.t === Op.StreamGranted) {
      st.granted += f.bytes;
      // Credit is latency-critical: out now, not at the end of the turn (as in streams.ts).
      r.forward(encodeFrame(f));
    } else if (f.t === Op.StreamAborted) {
      this.free(st);
      r.send(f);
    }
  }

  /** `node` is gone: streams with a party there are aborted here. */
  nodeGone(node: NodeId): void {
    for (const st of [...this.streams.values()]) {
      if (st.side === 'out' && st.peer.node === node) this.abort(st, AbortReason.RECIPIENT_DISCONNECTED, 'the recipient\'s server is gone', false);
      if (st.side === 'in' && st.origin === node) this.abort(st, AbortReason.SENDER_DISCONNECTED, 'the sender\'s server is gone', false);
    }
  }

  /** The bus is down: no cross-node stream can go on. */
  busDown(): void {
    for (const st of [...this.streams.values()]) this.lostPeer(st);
  }

  /**
   * The direct link with `node` failed: chunks may have been lost on it, so the streams with a party there end as
   * on a bus failure. The other side's node saw the same link fail and does the same; it is told too, in case.
   */
  linkLost(node: NodeId): void {
    for (const st of [...this.streams.values()]) {
      if ((st.side === 'out' ? st.peer.node : st.origin) === node) this.lostPeer(st, true);
    }
  }

  // ------------------------------------------------------------------------------------------------------

  /**
   * The connection to the other party's node failed. `tell`: that node is told too (it should have seen the same
   * failure), with the reason as its user sees it, so whichever comes first the user is told the same.
   */
  private lostPeer(st: Remote, tell = false): void {
    const here = st.side === 'out' ? AbortReason.RECIPIENT_DISCONNECTED : AbortReason.SENDER_DISCONNECTED;
    const there = st.side === 'out' ? AbortReason.SENDER_DISCONNECTED : AbortReason.RECIPIENT_DISCONNECTED;
    const message = 'the connection between the servers was lost';
    if (this.streams.get(st.sid) !== st) return;
    this.abort(st, here, message, false);
    if (tell) this.send(st, { t: Op.StreamAborted, sid: st.sid, reason: there, message });
  }

  /** A chunk from the sender's node: the offsets it let through must line up here too, or bytes went missing. */
  private chunkIn(r: Session, bytes: Uint8Array): boolean {
    const header = readChunkHeader(bytes);
    const st = header ? this.streams.get(header.sid) : undefined;
    if (!header || !st || st.side !== 'in' || st.recipient !== r || st.state !== 'accepted') return false;
    if (!placeChunk(st.runs, header.offset, header.length) || st.received + header.length > st.granted) {
      this.abort(st, AbortReason.PROTOCOL, 'a chunk was lost between the servers', true);
      return true;
    }
    st.received += header.length;
    r.forward(bytes);
    if (st.wanted > 0) this.grant(st, 0);
    return true;
  }

  private grant(st: Incoming, bytes: number): void {
    st.wanted = Math.min(st.wanted + bytes, st.size - st.granted);
    const outstanding = st.granted - st.received;
    const room = this.opts.windowBytes - outstanding - st.recipient.buffered();
    const allowed = Math.max(0, Math.min(st.wanted, room));
    if (allowed === 0) return;
    st.granted += allowed;
    st.wanted -= allowed;
    this.toSender(st, { t: Op.StreamGranted, sid: st.sid, bytes: allowed });
  }

  /**
   * The recipient's answer or credit to the sender's claim by `forward` (unanswered: a sender's node that no longer
   * has the stream has told this node, or will, why), else as any control.
   */
  private toSender(st: Incoming, frame: StreamOp): void {
    if (!st.peer) {
      this.send(st, frame);
      return;
    }
    try {
      this.router.forward(st.peer, { k: EnvelopeKind.Stream, to: st.senderKey, fromKey: st.recipient.key, origin: this.router.nodeId, frame });
    } catch {
      this.lostPeer(st);
    }
  }

  /** Ends a stream here with `reason`; `tell`: the other party's node is told too (it may still be there). */
  private abort(st: Remote, reason: AbortReasonName, message: string, tell: boolean): void {
    if (!this.free(st)) return;
    const frame = { t: Op.StreamAborted, sid: st.sid, reason, message } as const;
    (st.side === 'out' ? st.sender : st.recipient).send(frame);
    if (tell) this.send(st, frame);
    this.log.info({ sid: st.sid, reason, side: st.side }, 'cross-node stream aborted');
  }

  /** Control to the other party's node; a stream whose envelope is not taken there is aborted here. */
  private send(st: Remote, frame: StreamOp): void {
    void this.deliver(st, frame).then((status) => {
      if (status !== 'taken' && this.streams.get(st.sid) === st) {
        this.abort(st, st.side === 'out' ? AbortReason.RECIPIENT_DISCONNECTED : AbortReason.SENDER_DISCONNECTED,
          'the other side\'s server did not take the stream\'s message', false);
      }
    });
  }

  private deliver(st: Remote, frame: StreamOp): Promise<string> {
    const env: StreamEnvelope = st.side === 'out'
      ? { k: EnvelopeKind.Stream, to: st.peer.key, fromKey: st.sender.key, origin: this.router.nodeId, ...epochOf(st.sender), frame }
      : { k: EnvelopeKind.Stream, to: st.senderKey, fromKey: st.recipient.key, origin: this.router.nodeId, frame };
    return viaRouter(() => (st.side === 'out' ? this.router.deliver(env, st.peer) : this.router.deliver(env)))
      .catch(() => 'failed');
  }

  private allocateSid(): number {
    for (;;) {
      this.counter = (this.counter + 1) & 0x3fffff;
      const sid = (0x80000000 | (this.tag << 22) | this.counter) >>> 0;
      if (!this.streams.has(sid)) return sid;
    }
  }

  private incoming(s: Session, sid: number): Incoming {
    const st = this.streams.get(sid);
    if (!st || st.side !== 'in' || st.recipient !== s) throw new AppError('STREAM_UNKNOWN', 'no such stream where you are the recipient', sid);
    return st;
  }

  private add(s: Session, st: Remote): void {
    this.streams.set(st.sid, st);
    let set = this.bySession.get(s);
    if (!set) this.bySession.set(s, (set = new Set()));
    set.add(st);
  }

  private free(st: Remote): boolean {
    if (this.streams.get(st.sid) !== st) return false;
    this.streams.delete(st.sid);
    const s = st.side === 'out' ? st.sender : st.recipient;
    const set = this.bySession.get(s);
    set?.delete(st);
    if (set?.size === 0) this.bySession.delete(s);
    return true;
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

/** The sender's claim epoch for an offer's envelope, when it has one (see `StreamEnvelope.fromEpoch`). */
function epochOf(s: Session): { fromEpoch?: number } {
  return s.claim ? { fromEpoch: s.claim.epoch } : {};
}
