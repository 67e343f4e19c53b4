/**
 * Frame dispatch: every inbound frame of a session is decoded once, pays into the session's frame-rate bucket,
 * and goes through one table from opcode to handler. Bad input becomes a coded error frame (and, past
 * `maxBadFrames`, a coded close); nothing a client sends can throw out of `frame`.
 */
import { CloseCode } from '../../shared/codes.ts';
import { decodeClientFrame, ProtocolError, type ChunkFrame } from '../../shared/codec.ts';
import { Limits, Op, PROTOCOL_VERSION, type ClientFrame, type HelloFrame, type PingFrame, type StreamOfferFrame, type StreamResumeFrame } from '../../shared/protocol.ts';
import type { Clock } from './clock.ts';
import type { Delivery } from './delivery.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import type { Presence } from './presence.ts';
import type { RemoteStreams } from './remote-streams.ts';
import type { Rooms } from './rooms.ts';
import { tellError, ticks, type Session } from './session.ts';
import type { PeerSignals } from './signals.ts';
import type { StreamOptions, StreamRelay } from './streams.ts';

export interface DispatchOptions {
  /** Control frames per second per connection, sustained and burst. */
  frameRate: number;
  frameBurst: number;
  /** Malformed frames tolerated per connection before it is closed with PROTOCOL. */
  maxBadFrames: number;
  streams: StreamOptions;
}

/** What dispatch needs of the hub: closing a session, reporting a store outage, and the session's claim. */
export interface DispatchHost {
  detach(s: Session, code: number, reason: string): void;
  storeDown(): void;
  /** Runs `fn` once the session holds its name (at once when it already does); never if it is closed first. */
  whenClaimed(s: Session, fn: () => void): void;
  /** Whether the name has a session on this node (else a stream offer goes to another node). */
  isHere(key: string): boolean;
}

type Handlers = { [K in ClientFrame['t']]: (s: Session, f: Extract<ClientFrame, { t: K }>) => void };

export class Dispatch {
  private readonly handlers: Handlers;

  constructor(
    private readonly opts: DispatchOptions,
    private readonly host: DispatchHost,
    private readonly delivery: Delivery,
    private readonly presence: Presence,
    private readonly streams: StreamRelay,
    private readonly remoteStreams: RemoteStreams,
    private readonly signals: PeerSignals,
    private readonly clock: Clock,
    rooms: Rooms,
  ) {
    // A stream's frames go to the relay that has its id: this node's, or the one for streams across nodes.
    const remote = (sid: number): boolean => remoteStreams.has(sid);
    this.handlers = {
      [Op.Hello]: (s, f) => this.hello(s, f),
      [Op.Send]: (s, f) => (f.room === undefined ? delivery.send(s, f) : rooms.send(s, f)),
      [Op.Ack]: (s, f) => {
        delivery.ack(s, f);
        rooms.ack(s, f);
      },
      [Op.Follow]: (s, f) => presence.follow(s, f),
      [Op.Ping]: (s, f) => this.ping(s, f),
      [Op.Read]: (s, f) => signals.read(s, f),
      [Op.Typing]: (s, f) => signals.typing(s, f),
      [Op.StreamOffer]: (s, f) => this.offer(s, f),
      [Op.StreamAnswer]: (s, f) => (remote(f.sid) ? remoteStreams.answer(s, f) : streams.answer(s, f)),
      [Op.StreamCredit]: (s, f) => (remote(f.sid) ? remoteStreams.credit(s, f) : streams.credit(s, f)),
      [Op.StreamEnd]: (s, f) => (remote(f.sid) ? remoteStreams.end(s, f) : streams.end(s, f)),
      [Op.StreamCancel]: (s, f) => (remote(f.sid) ? remoteStreams.cancel(s, f) : streams.cancel(s, f)),
      [Op.StreamResume]: (s, f) => this.resume(s, f),
      [Op.StreamDrop]: (s, f) => streams.drop(s, f),
      [Op.RoomCreate]: (s, f) => rooms.create(s, f),
      [Op.RoomJoin]: (s, f) => rooms.join(s, f),
      [Op.RoomLeave]: (s, f) => rooms.leave(s, f),
      [Op.RoomInvite]: (s, f) => rooms.invite(s, f),
      [Op.RoomRemove]: (s, f) => rooms.remove(s, f),
      [Op.RoomList]: (s) => rooms.list(s),
      [Op.RoomOwner]: (s, f) => rooms.handOver(s, f),
      [Op.RoomMembers]: (s, f) => rooms.members(s, f),
      [Op.RoomWho]: (s, f) => rooms.who(s, f),
    };
  }

  /** One binary frame from a session's socket. Never throws: bad input becomes an error frame or a close. */
  frame(s: Session, bytes: Uint8Array): void {
    if (s.phase === 'closed') return;
    const now = ticks(this.clock.now());
    if (s.phase !== 'hello') s.lastSeen = now;
    let f: ClientFrame | ChunkFrame;
    try {
      f = decodeClientFrame(bytes);
    } catch (err) {
      this.badFrame(s, err);
      return;
    }
    // Every frame, chunk or control, pays into one bucket: a chunk flood must not get past the limiter.
    if (!this.takeToken(s, now)) {
      s.error({ code: 'RATE_LIMITED', message: 'too many frames; slow down', ref: f.t === Op.Send ? f.id : f.t === 'chunk' ? f.header.sid : undefined });
      if (++s.activity.floodStrikes > this.opts.frameBurst) this.host.detach(s, CloseCode.FLOOD, 'frame flood');
      return;
    }
    if (f.t === 'chunk') {
      // A chunk for no stream of this sender is bad input like a malformed frame, and counts the same.
      const ok = this.remoteStreams.has(f.header.sid) ? this.remoteStreams.chunk(s, f) : this.streams.chunk(s, f);
      if (!ok) this.countBad(s);
      return;
    }
    if (s.phase === 'hello' && f.t !== Op.Hello) {
      s.error({ code: 'NOT_READY', message: 'send hello first', ref: f.t === Op.Send ? f.id : undefined });
      return;
    }
    if (s.phase === 'claiming') {
      s.error({ code: 'NOT_READY', message: 'wait for welcome', ref: f.t === Op.Send ? f.id : undefined });
      return;
    }
    try {
      (this.handlers[f.t] as (s: Session, f: ClientFrame) => void)(s, f);
    } catch (err) {
      tellError(s, err, undefined, () => this.host.storeDown());
    }
  }

  /** Text frames are not part of the protocol. */
  textFrame(s: Session): void {
    if (s.phase === 'closed') return;
    if (s.phase !== 'hello') s.lastSeen = ticks(this.clock.now());
    this.badFrame(s, new ProtocolError('TEXT_FRAME', 'Parley speaks binary frames only'));
  }

  private hello(s: Session, f: HelloFrame): void {
    if (s.phase !== 'hello') {
      s.error({ code: 'NOT_READY', message: 'hello was already received' });
      return;
    }
    if (f.v !== PROTOCOL_VERSION) {
      s.error({ code: 'VERSION_UNSUPPORTED', message: `this server speaks protocol version ${PROTOCOL_VERSION}` });
      this.host.detach(s, CloseCode.VERSION, 'unsupported protocol version');
      return;
    }
    // `welcome` says the session is this name's, cluster-wide: a sender on another node that locates it from
    // then on finds it. With one node the claim has long resolved and this runs at once.
    s.phase = 'claiming';
    this.host.whenClaimed(s, () => this.welcome(s, f));
  }

  private welcome(s: Session, f: HelloFrame): void {
    s.send({
      t: Op.Welcome, v: PROTOCOL_VERSION, name: s.name, now: this.clock.now(),
      limits: {
        maxTextBytes: Limits.maxTextBytes,
        maxChunkBytes: this.opts.streams.maxChunkBytes,
        maxStreamsPerUser: this.opts.streams.maxStreamsPerUser,
        maxFileBytes: this.opts.streams.maxFileBytes,
        streamWindowBytes: this.opts.streams.windowBytes,
      },
    });
    if (f.follow) this.presence.follow(s, { t: Op.Follow, names: f.follow });
    this.signals.ready(s);
    s.lastSeen = ticks(this.clock.now());
    this.delivery.start(s);
    this.streams.sessionReady(s);
    this.remoteStreams.sessionReady(s);
  }

  /** A resume whose sender has a session here goes to this node's relay; otherwise across nodes. */
  private resume(s: Session, f: StreamResumeFrame): void {
    const name = normalizeName(f.from);
    if (name === null || this.host.isHere(nameKey(name))) return this.streams.resume(s, f);
    this.remoteStreams.resume(s, f).catch((err: unknown) => {
      tellError(s, err, f.tid, () => this.host.storeDown());
    });
  }

  /** An offer to a name held here goes to this node's relay; to any other name, across nodes (or offline). */
  private offer(s: Session, f: StreamOfferFrame): void {
    const name = normalizeName(f.to);
    const key = name === null ? null : nameKey(name);
    if (key === null || key === s.key || this.host.isHere(key)) return this.streams.offer(s, f);
    this.remoteStreams.offer(s, f, this.streams.count(s)).catch((err: unknown) => {
      tellError(s, err, f.ref, () => this.host.storeDown());
    });
  }

  private ping(s: Session, f: PingFrame): void {
    const now = this.clock.now();
    s.send(f.n === undefined ? { t: Op.Pong, now } : { t: Op.Pong, n: f.n, now });
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
    this.countBad(s);
  }

  /** One bad-frame count per connection for every kind of bad input; past `maxBadFrames` it is closed. */
  private countBad(s: Session): void {
    if (++s.activity.badFrames > this.opts.maxBadFrames) this.host.detach(s, CloseCode.PROTOCOL, 'too many malformed frames');
  }
}
