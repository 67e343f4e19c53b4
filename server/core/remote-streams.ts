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
 * A cut by a party's disconnect or takeover pauses an accepted stream as on one node: the node of the party still
 * connected keeps the transfer in its relay (`StreamRelay.keep`), and a resume goes from the recipient's node to the
 * sender's holder (`resume`, `resumeAsked`; docs/architecture.md, "Resuming a cut transfer").
 *
 * Stream ids are made by the sender's node (a resumed stream's by the recipient's node, which asks): the high bit set (the in-process relay counts up from 1), then nine
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
  type ByteRanges, type StreamAnswerFrame, type StreamCancelFrame, type StreamCreditFrame, type StreamEndFrame,
  type StreamOfferFrame, type StreamResumedFrame, type StreamResumeFrame,
} from '../../shared/protocol.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import {
  EnvelopeKind, viaRouter, type ChunkEnvelope, type Claim, type NodeId, type Router, type StreamEnvelope, type StreamOp,
  type TransferMeta,
} from './router.ts';
import type { Session } from './session.ts';
import { chunkViolation, placeChunk, type StreamOptions, type StreamRelay } from './streams.ts';

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
   * does not keep in order with the bus): held until the sender has its `streamOffered`, or, for a resume that
   * found the sender still saying hello, its `streamResumed` (`announce`). Null from then on.
   */
  early: StreamOp[] | null;
  /** A resumed stream's `streamResumed` for a sender not welcomed yet: sent at its welcome (`sessionReady`). */
  announce?: StreamResumedFrame;
  /** What the transfer is, kept paused when a cut ends the stream. */
  transfer: TransferMeta;
  /** A resumed stream's ranges the recipient already has (see streams.ts). */
  held: ByteRanges;
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
  /** `resuming`: asked the sender's node to resume; its `streamResumed` (size, what) has not come back yet. */
  state: 'offered' | 'accepted' | 'resuming';
  received: number;
  runs: [number, number][];
  granted: number;
  wanted: number;
  /** What the transfer is; unknown while resuming one the sender's node kept. */
  transfer: TransferMeta | undefined;
  held: ByteRanges;
  /** A resume's paused transfer this node kept and took out: kept again if the resume fails. */
  taken?: TransferMeta & { expires: number };
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
    /** This node's relay: where a cut keeps a transfer paused (the node of the party still connected keeps it). */
    private readonly relay: StreamRelay,
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
    const transfer: TransferMeta = {
      tid: f.ref, name: f.name, size: f.size, mime: f.mime, container: f.container, senderKey: s.key, recipientKey: toKey, sender: s.name, recipient: toName,
    };
    const st: Outgoing = { side: 'out', sid, sender: s, peer, size: f.size, state: 'offered', sent: 0, runs: [], granted: 0, early: [], transfer, held: [] };
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
      // As on one node: an accepted stream cut by a disconnect or a takeover is paused, and the other party's node
      // keeps the transfer (its party is still there); a server shutdown ends it.
      const resumable = st.state !== 'offered' && reason !== AbortReason.SERVER_SHUTDOWN;
      this.abort(st, reason, messageFor(reason), true, resumable ? this.relay.resumeWindowMs : undefined);
    }
  }

  /**
   * A session was welcomed: a resume that found it still saying hello goes on now, and the recipients (on other
   * nodes) of the transfers this node keeps paused from it are told to ask (this node's relay tells its own).
   */
  sessionReady(s: Session): void {
    for (const st of this.bySession.get(s) ?? []) {
      if (st.side !== 'out' || !st.announce) continue;
      s.send(st.announce);
      st.announce = undefined;
      const early = st.early ?? [];
      st.early = null;
      for (const e of early) if (this.streams.get(st.sid) === st) this.toSenderSession(st, e);
    }
    for (const p of this.relay.keptFrom(s.key)) {
      if (this.online(p.recipientKey)) continue;
      const env: StreamEnvelope = {
        k: EnvelopeKind.Stream, to: p.recipientKey, fromKey: s.key, origin: this.router.nodeId, frame: { t: Op.StreamResumable, tid: p.tid, from: s.name },
      };
      viaRouter(() => this.router.deliver(env)).catch(() => undefined); // best effort: the recipient also asks at its welcome
    }
  }

  /**
   * `key` came online on another node (its presence broadcast): recipients here of transfers this node keeps
   * paused from it are told to ask.
   */
  peerOnline(key: string): void {
    for (const p of this.relay.keptFrom(key)) {
      const r = this.online(p.recipientKey);
      if (r && (r.phase === 'live' || r.phase === 'draining')) r.send({ t: Op.StreamResumable, tid: p.tid, from: p.sender });
    }
  }

  /**
   * The recipient of a paused transfer asks to resume, and its sender has no session on this node: the sender's
   * holder is asked (a `streamResumed` envelope with this node's new stream id and, when this node kept the
   * transfer, what it is); its node answers with the same frame by `forward`, the chunks' path, and the stream
   * goes on as a resumed one. Refusals as on one node (docs/protocol.md, "Resumable transfers").
   */
  async resume(r: Session, f: StreamResumeFrame): Promise<void> {
    const fromName = normalizeName(f.from);
    if (!fromName) throw new AppError('TRANSFER_UNKNOWN', 'no paused transfer with that id from that person (finished, given up or expired)', f.tid);
    const senderKey = nameKey(fromName);
    let heldBytes = 0;
    for (let i = 0; i < f.held.length; i++) {
      const [a, b] = f.held[i]!;
      if (!(a < b && (i === 0 || a > f.held[i - 1]![1]))) {
        throw new AppError('STREAM_BAD_OFFSET', 'held ranges must be sorted, apart, non-empty and inside the file', f.tid);
      }
      heldBytes += b - a;
    }
    const taken = this.relay.take(senderKey, f.tid, r.key);
    if (taken && f.held.length > 0 && f.held[f.held.length - 1]![1] > taken.size) {
      this.relay.keep(taken, taken.expires);
      throw new AppError('STREAM_BAD_OFFSET', 'held ranges must be sorted, apart, non-empty and inside the file', f.tid);
    }
    const giveBack = () => {
      if (taken) this.relay.keep(taken, taken.expires);
    };
    if (this.relay.count(r) + this.count(r) >= this.opts.maxStreamsPerUser) {
      giveBack();
      throw new AppError('STREAM_LIMIT', `at most ${this.opts.maxStreamsPerUser} streams at once per user`, f.tid);
    }
    const peer = await viaRouter(() => this.router.locate(senderKey)).catch(() => null);
    if (r.phase === 'closed') return giveBack();
    const offline = new AppError('RECIPIENT_OFFLINE', `${taken?.sender ?? fromName} is not online; the transfer stays paused`, f.tid);
    if (!peer || peer.node === this.router.nodeId || !r.claim) {
      giveBack();
      // With one process nobody else can keep it; in a cluster the node of a party that dropped last may, and
      // the recipient is asked again when the sender is back.
      if (!taken && this.router.kind === 'in-process') {
        throw new AppError('TRANSFER_UNKNOWN', 'no paused transfer with that id from that person (finished, given up or expired)', f.tid);
      }
      throw offline;
    }
    const sid = this.allocateSid();
    const st: Incoming = {
      side: 'in', sid, recipient: r, senderKey, origin: peer.node, peer, size: taken?.size ?? 0, state: 'resuming',
      received: heldBytes, runs: [], granted: heldBytes, wanted: f.credit ?? 0, transfer: taken, held: f.held, taken,
    };
    this.add(r, st);
    const frame = { t: Op.StreamResumed, sid, tid: f.tid, from: taken?.sender ?? fromName, to: r.name, size: st.size, held: f.held } as const;
    const env: StreamEnvelope = {
      k: EnvelopeKind.Stream, to: senderKey, fromKey: r.key, origin: this.router.nodeId, fromEpoch: r.claim.epoch, frame, ...(taken ? { kept: taken } : {}),
    };
    const status = await viaRouter(() => this.router.deliver(env, peer)).catch(() => 'failed');
    if (status === 'taken' || this.streams.get(sid) !== st) return;
    // The sender's node has no such transfer, or its session cannot take it now: still paused, as on one node.
    this.free(st);
    giveBack();
    throw offline;
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
        received: 0, runs: [], granted: 0, wanted: 0, held: [],
        transfer: {
          tid: f.tid, name: f.name, size: f.size, mime: f.mime, container: f.container, senderKey: env.fromKey, recipientKey: r.key, sender: f.from, recipient: r.name,
        },
        peer: typeof env.fromEpoch === 'number' ? { key: env.fromKey, sid: '', node: env.origin, epoch: env.fromEpoch, rank: 0 } : undefined, // addressing only: the epoch is what a forward checks
      };
      this.add(r, st);
      r.send({ ...f, to: r.name });
      return true;
    }
    if (f.t === Op.StreamResumable) {
      if (r.phase !== 'live' && r.phase !== 'draining') return false;
      r.send(f);
      return true;
    }
    const st = this.streams.get(f.sid);
    if (f.t === Op.StreamResumed && !st) return this.resumeAsked(r, env, f);
    if (!st) return f.t === Op.StreamAborted; // already gone here: an abort has nothing more to do
    if (st.side === 'out' && st.sender === r) {
      if (st.early && (f.t === Op.StreamAnswered || f.t === Op.StreamGranted)) st.early.push(f);
      else this.toSenderSession(st, f);
      return true;
    }
    if (st.side === 'in' && st.recipient === r) {
      if (f.t === Op.StreamResumed) {
        // The sender's node took the resume: the stream goes on, already accepted.
        if (st.state !== 'resuming') return true;
        st.state = 'accepted';
        st.size = f.size;
        st.transfer = env.kept ?? st.transfer;
        r.send({ ...f, to: r.name });
        r.log.info({ sid: st.sid, tid: f.tid, from: f.from, held: st.received, size: f.size }, 'stream resumed across nodes');
        if (st.wanted > 0) this.grant(st, 0);
        return true;
      }
      if (f.t === Op.StreamEnded) {
        if (st.received !== st.size) {
          this.abort(st, AbortReason.PROTOCOL, `ended after ${st.received} of ${st.size} bytes arrived`, true);
          return true;
        }
        this.free(st);
        r.send(f);
      } else if (f.t === Op.StreamAborted) {
        this.free(st);
        this.keepIfResumable(f.resumeMs, st.transfer ?? env.kept);
        r.send(f);
      }
      return true;
    }
    return false;
  }

  /**
   * On the sender's node: the recipient's node asks to resume transfer `f.tid` as its new stream `f.sid`. The
   * transfer is the one this node kept paused (the sender was still here at the cut), or the one the recipient's
   * node kept and sends. Whether it was taken (a stream id in use here, or no such transfer, is refused).
   */
  private resumeAsked(s: Session, env: StreamEnvelope, f: StreamResumedFrame): boolean {
    if (s.phase === 'closed' || typeof env.fromEpoch !== 'number' || nameKey(f.from) !== s.key) return false;
    if (this.relay.count(s) + this.count(s) >= this.opts.maxStreamsPerUser) return false;
    const mine = this.relay.take(s.key, f.tid, env.fromKey);
    const kept = env.kept;
    const transfer: TransferMeta | undefined = mine ?? (kept && kept.senderKey === s.key && kept.recipientKey === env.fromKey && kept.tid === f.tid ? kept : undefined);
    if (!transfer) return false;
    const last = f.held[f.held.length - 1];
    if (last && last[1] > transfer.size) {
      if (mine) this.relay.keep(mine, mine.expires);
      return false;
    }
    let heldBytes = 0;
    for (const [a, b] of f.held) heldBytes += b - a;
    const peer: Claim = { key: env.fromKey, sid: '', node: env.origin, epoch: env.fromEpoch, rank: 0 }; // addressing only
    const resumed = { t: Op.StreamResumed, sid: f.sid, tid: f.tid, from: s.name, to: transfer.recipient, size: transfer.size, held: f.held } as const;
    const ready = s.phase === 'live' || s.phase === 'draining';
    const st: Outgoing = {
      side: 'out', sid: f.sid, sender: s, peer, size: transfer.size, state: 'accepted', sent: heldBytes, runs: [], granted: heldBytes,
      early: ready ? null : [], transfer: { ...transfer }, held: f.held, ...(ready ? {} : { announce: resumed }),
    };
    this.add(s, st);
    try {
      this.router.forward(peer, { k: EnvelopeKind.Stream, to: env.fromKey, fromKey: s.key, origin: this.router.nodeId, kept: st.transfer, frame: resumed });
    } catch {
      this.free(st);
      if (mine) this.relay.keep(mine, mine.expires);
      return false;
    }
    if (ready) s.send(resumed);
    s.log.info({ sid: f.sid, tid: f.tid, to: transfer.recipient, held: heldBytes, size: transfer.size, node: env.origin }, 'stream resumed across nodes');
    return true;
  }

  /** A cut on the other party's node paused the transfer (`resumeMs`): this node, whose party is here, keeps it. */
  private keepIfResumable(resumeMs: number | undefined, transfer: TransferMeta | undefined): void {
    if (resumeMs === undefined || !transfer) return;
    this.relay.keep(transfer, Date.now() + resumeMs);
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
      this.keepIfResumable(f.resumeMs, st.transfer);
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
    if (!placeChunk(st.runs, header.offset, header.length, st.held) || st.received + header.length > st.granted) {
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
  /**
   * Ends a stream here with `reason`; `tell`: the other party's node is told too (it may still be there).
   * `resumeMs`: a cut that pauses the transfer; the other party's node keeps it (the frame carries what it is).
   */
  private abort(st: Remote, reason: AbortReasonName, message: string, tell: boolean, resumeMs?: number): void {
    if (!this.free(st)) return;
    const frame = resumeMs === undefined
      ? { t: Op.StreamAborted, sid: st.sid, reason, message } as const
      : { t: Op.StreamAborted, sid: st.sid, reason, message, resumeMs } as const;
    (st.side === 'out' ? st.sender : st.recipient).send(frame);
    if (st.side === 'in' && st.state === 'resuming' && resumeMs === undefined && st.taken) this.relay.keep(st.taken, st.taken.expires);
    if (tell) this.send(st, frame, resumeMs === undefined ? undefined : st.transfer);
    this.log.info({ sid: st.sid, reason, side: st.side, paused: resumeMs !== undefined }, 'cross-node stream aborted');
  }

  /** Control to the other party's node; a stream whose envelope is not taken there is aborted here. */
  private send(st: Remote, frame: StreamOp, kept?: TransferMeta): void {
    void this.deliver(st, frame, kept).then((status) => {
      if (status !== 'taken' && this.streams.get(st.sid) === st) {
        this.abort(st, st.side === 'out' ? AbortReason.RECIPIENT_DISCONNECTED : AbortReason.SENDER_DISCONNECTED,
          'the other side\'s server did not take the stream\'s message', false);
      }
    });
  }

  private deliver(st: Remote, frame: StreamOp, kept?: TransferMeta): Promise<string> {
    const env: StreamEnvelope = st.side === 'out'
      ? { k: EnvelopeKind.Stream, to: st.peer.key, fromKey: st.sender.key, origin: this.router.nodeId, ...epochOf(st.sender), frame }
      : { k: EnvelopeKind.Stream, to: st.senderKey, fromKey: st.recipient.key, origin: this.router.nodeId, frame };
    if (kept) env.kept = kept;
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
