/**
 * The hub: this node's sessions (at most one live session per name) and their lifecycle, from `open` to close,
 * takeover and shutdown. It composes the parts that each have one job: `Dispatch` (every inbound frame),
 * `Delivery` (text, the queue drain, receipts, requeue), `Presence` (followers), `StoreHealth` (outages),
 * `StreamRelay` (video) and `PeerSignals` (read, typing).
 *
 * Pure core: it speaks to sockets through `Conn`, to storage through `Store` and to the other nodes through
 * `Router`, and imports neither uWS, a database driver nor NATS. The transport calls `open`, `frame`, `textFrame`,
 * `drain` and `closed`; HTTP sign-in reaches it through `Accounts.onTakeover`; the router through `receiver`.
 *
 * One live session per name across nodes: `open` claims the name (`Router.claim`) and keeps the claim on the
 * session; a claim lost to a newer one (`receiver.lost`), or refused because a newer session holds the name
 * (SUPERSEDED), closes its socket with TAKEOVER; close releases it.
 * A claim the router cannot make (bus down) closes the socket with TRY_AGAIN: a node that cannot claim cannot
 * know who else holds the name.
 */
import { AbortReason, CloseCode, type AbortReasonName } from '../../shared/codes.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, type ServerFrame } from '../../shared/protocol.ts';
import type { Accounts, Auth } from './accounts.ts';
import { systemClock, type Clock, type Timer } from './clock.ts';
import { Delivery } from './delivery.ts';
import { Dispatch } from './dispatch.ts';
import type { Logger } from './logger.ts';
import { KeyedMutex } from './mutex.ts';
import { Presence } from './presence.ts';
import { RemoteStreams } from './remote-streams.ts';
import { ROOM_CLAIM, RoomNodes } from './room-nodes.ts';
import { Rooms, type RoomOptions } from './rooms.ts';
import {
  EnvelopeKind, newerSession, RouterError, RouterErrorCode, viaRouter,
  type AddressedEnvelope, type BusHealth, type Claim, type PresenceEnvelope, type Router, type RouterReceiver,
} from './router.ts';
import { ticks, type Session } from './session.ts';
import { PeerSignals } from './signals.ts';
import { StoreHealth } from './store-health.ts';
import type { Store } from './store.ts';
import { StreamRelay, type StreamOptions } from './streams.ts';

/**
 * How long the offline of a session closed by a takeover waits for the newer sign-in's socket (on this node or
 * another): followers then see no offline between the two. A sign-in that never opens a socket shows offline
 * after this.
 */
const TAKEOVER_OFFLINE_GRACE_MS = 5_000;

/** What a claim that was never asked for rejects with: its session closed before its turn (see `claimTurns`). */
const NOT_CLAIMED = new Error('session closed before its claim');

export { Session } from './session.ts';

export interface HubOptions {
  /** Messages one recipient's queue may hold. */
  queueCap: number;
  /** Queued messages older than this are not delivered and are purged. */
  retentionMs: number;
  /** Queued messages sent per batch at sign-in. */
  drainBatch: number;
  /** Time a new socket has to send `hello`. */
  helloTimeoutMs: number;
  /** A session that sends nothing for this long is closed with IDLE. */
  idleTimeoutMs: number;
  /** Control frames per second per connection, sustained and burst. */
  frameRate: number;
  frameBurst: number;
  /** Malformed frames tolerated per connection before it is closed with PROTOCOL. */
  maxBadFrames: number;
  /** (sender, id) pairs of live deliveries remembered for de-duplication. */
  dedupEntries: number;
  streams: StreamOptions;
  /** Room history and member limit (the log cap and retention are `queueCap` and `retentionMs`). */
  rooms: Pick<RoomOptions, 'historyCount' | 'memberLimit' | 'severalNodes'>;
}

export class Hub {
  state: 'running' | 'closing' | 'closed' = 'running';
  /** The live session of each name key. At most one, by construction of `open`. */
  private readonly online = new Map<string, Session>();
  private readonly sweeper: Timer;
  private readonly health: StoreHealth;
  private readonly delivery: Delivery;
  private readonly presence: Presence;
  private readonly dispatch: Dispatch;
  private readonly rooms: Rooms;
  /** Rooms across nodes (several nodes only): owner claims, proxies of members elsewhere. */
  private readonly roomNodes: RoomNodes | undefined;
  readonly streams: StreamRelay;
  /** Streams whose other party is on another node. */
  readonly remoteStreams: RemoteStreams;
  private readonly signals: PeerSignals;
  /** Claims asked for and not yet resolved, by session. */
  private readonly claiming = new Map<Session, Promise<Claim>>();
  /**
   * Claims of one name asked for one at a time, so a session closed before its turn makes none: its claim would
   * come after the claim of a session that is live now, and take the name from it.
   */
  private readonly claimTurns = new KeyedMutex();
  /**
   * A claim that lost its name before its session heard it was made (the adapter tells `lost` once, maybe while
   * `claim` still waits for the earlier holder's node): applied when `claim` resolves, by epoch.
   */
  private readonly lostEarly = new Map<Session, { claim: Claim; by: Claim | null }>();
  /** What the router tells this node (`Router.start(hub.receiver)`). */
  readonly receiver: RouterReceiver;

  constructor(
    store: Store,
    private readonly accounts: Accounts,
    private readonly opts: HubOptions,
    private readonly log: Logger,
    private readonly router: Router,
    private readonly clock: Clock = systemClock,
  ) {
    this.health = new StoreHealth(store, clock, log, async () => {
      await this.delivery.requeuer.retry();
      this.delivery.resumeDrains();
      this.rooms.storeBack();
    });
    this.delivery = new Delivery(store, accounts, opts, this.online, this.health, clock, log, router, (s) => this.fence(s));
    this.presence = new Presence((key) => this.online.get(key), (key) => viaRouter(() => router.locate(key)).then(
      (c) => c !== null && c.node !== router.nodeId,
      () => false,
    ));
    this.receiver = {
      envelope: (claim, env) => this.envelope(claim, env),
      settled: (env) => this.delivery.settled(env),
      presence: (env) => this.presenceFrom(env),
      lost: (claim, by) => this.lost(claim, by),
      nodeGone: (node) => {
        this.log.info({ gone: node }, 'node gone: texts it had not settled are queued');
        this.delivery.remote.nodeGone(node);
        this.remoteStreams.nodeGone(node);
        this.roomNodes?.nodeGone(node);
      },
      linkLost: (node) => this.remoteStreams.linkLost(node),
      health: (h) => this.busHealth(h),
    };
    accounts.onTakeover = (key, _current, replaced) => this.takeover(key, replaced);
    accounts.onSignOut = (key, sid) => void this.sessionEnded(key, sid);
    this.streams = new StreamRelay(opts.streams, (key) => this.online.get(key), (key) => accounts.lookup(key), log);
    this.rooms = new Rooms(store, accounts, {
      ...opts.rooms, queueCap: opts.queueCap, retentionMs: opts.retentionMs, batch: opts.drainBatch, window: 1000,
    }, opts.rooms.severalNodes ? { get: (key) => this.online.get(key) ?? this.roomNodes?.proxy(key) } : this.online, clock, log, () => this.health.down());
    if (opts.rooms.severalNodes) this.rooms.placement = this.roomNodes = new RoomNodes(router, this.rooms, log);
    // A session's rooms start once its one-to-one queue is drained: no room read delays that drain.
    this.delivery.onLive = (s) => this.rooms.start(s);
    this.remoteStreams = new RemoteStreams(router, opts.streams, (key) => this.online.get(key), (key) => accounts.lookup(key), log, this.streams);
    const signals = (this.signals = new PeerSignals((key) => this.online.get(key), (key, frame) => {
      viaRouter(() => router.deliver({ k: EnvelopeKind.Signal, to: key, frame })).catch(() => undefined);
    }));
    this.dispatch = new Dispatch(opts, {
      detach: (s, code, reason) => this.detach(s, code, reason),
      storeDown: () => this.health.down(),
      whenClaimed: (s, fn) => {
        if (s.claim) return fn();
        void this.claiming.get(s)?.then(() => {
          if (s.phase !== 'closed' && s.claim) fn();
        }, () => undefined); // a rejected claim closed the session
      },
      isHere: (key) => this.online.has(key),
    }, this.delivery, this.presence, this.streams, this.remoteStreams, signals, clock, this.rooms);
    const sweepEvery = Math.max(250, Math.min(opts.idleTimeoutMs / 4, opts.helloTimeoutMs / 2, 30_000));
    this.sweeper = clock.setInterval(() => this.sweep(), sweepEvery);
    this.sweeper.unref?.();
  }

  /** What a new session's frame-rate bucket starts with (see `Session`'s constructor). */
  get frameBurst(): number {
    return this.opts.frameBurst;
  }

  get onlineCount(): number {
    return this.online.size;
  }

  /** Texts other nodes took that this node keeps a copy of until they are settled (for tests and health). */
  get remoteCopies(): number {
    return this.delivery.remote.copyCount;
  }

  get storeHealthy(): boolean {
    return this.health.up;
  }

  /** Whether the bus between nodes is up (always, with the in-process router). */
  get busHealthy(): boolean {
    return this.router.health().up;
  }

  // ------------------------------------------------------------------------------------------------------
  // Connection lifecycle (called by the transport)

  /**
   * A socket finished its upgrade: `s` is its session, made by the transport from `auth`. A socket
   * turned away is told why and closed, and its session is `closed` from then on.
   */
  open(s: Session, auth: Auth): void {
    const turnAway = (frame: ServerFrame | undefined, code: number, reason: string): void => {
      if (frame) s.write(encodeFrame(frame));
      s.phase = 'closed';
      s.end(code, reason);
    };
    if (this.state !== 'running') {
      return turnAway({ t: Op.Shutdown, message: 'server is shutting down' }, CloseCode.GOING_AWAY, 'shutting down');
    }
    // Decided synchronously: a sign-out or a newer sign-in may have completed while this upgrade was
    // authenticating.
    if (this.accounts.isEnded(s.sid)) return turnAway(undefined, CloseCode.SESSION_ENDED, 'signed out');
    if (auth.replaced || this.accounts.isReplaced(s.sid)) {
      this.log.info({ conn: s.id, user: s.name }, 'replaced session turned away');
      return turnAway({ t: Op.Takeover, message: 'signed in elsewhere' }, CloseCode.TAKEOVER, 'signed in elsewhere');
    }
    const previous = this.online.get(s.key);
    if (previous && newerSession(previous, s)) {
      // The fence's order, here too: an older session (authenticated before a sign-in on another node replaced
      // it) does not close the newer one's socket; its claim would be refused anyway (SUPERSEDED).
      this.log.info({ conn: s.id, user: s.name }, 'older session turned away: a newer one is live here');
      return turnAway({ t: Op.Takeover, message: 'signed in elsewhere' }, CloseCode.TAKEOVER, 'signed in elsewhere');
    }
    s.lastSeen = s.creditAt = ticks(this.clock.now());
    if (previous) {
      if (previous.sid === s.sid) {
        this.detach(previous, CloseCode.REPLACED, 'replaced by a newer connection of this session', AbortReason.RECIPIENT_DISCONNECTED);
      } else {
        previous.send({ t: Op.Takeover, message: 'signed in elsewhere' });
        this.detach(previous, CloseCode.TAKEOVER, 'signed in elsewhere', AbortReason.TAKEOVER);
      }
    }
    this.online.set(s.key, s);
    this.accounts.forgetSession(s.sid);
    if (!previous) this.presence.announce(s.key, s.name, true);
    this.claimName(s, !previous);
    this.log.debug({ conn: s.id, user: s.name }, 'connected');
  }

  /** Claims the session's name cluster-wide; `first`: no session of the name was here, so others are told. */
  private claimName(s: Session, first: boolean): void {
    const pending = this.claimTurns.run(s.key, () => (s.phase === 'closed' ? Promise.reject(NOT_CLAIMED) : viaRouter(() => this.router.claim(s.key, s.sid, s.rank))));
    this.claiming.set(s, pending);
    pending.then((claim) => {
      this.claiming.delete(s);
      const early = this.lostEarly.get(s);
      this.lostEarly.delete(s);
      if (s.phase === 'closed' || this.online.get(s.key) !== s) {
        // Closed while claiming: give the name up again (a newer claim, if any, stays).
        void this.releaseClaim(s.key, s.name, claim, !this.online.has(s.key));
        return;
      }
      s.claim = claim;
      if (early?.claim.epoch === claim.epoch) return this.lost(claim, early.by);
      if (first) this.broadcast({ k: EnvelopeKind.Presence, key: s.key, name: s.name, online: true, origin: this.router.nodeId });
    }, (err: unknown) => {
      this.lostEarly.delete(s);
      if (err instanceof RouterError && err.code === RouterErrorCode.SUPERSEDED) {
        // A newer session holds the name (its sign-in replaced this one while this socket's claim was on its
        // way): told and closed, never welcomed. Still in `claiming` while it closes, so its close announces
        // no offline; that waits for the name to be held nowhere, as the holder is on another node.
        if (s.phase !== 'closed') {
          s.log.info({}, 'claim refused: a newer session holds the name');
          this.kick(s);
        }
        this.claiming.delete(s);
        if (!this.online.has(s.key)) void this.offlineUnlessHeld(s.key, s.name);
        return;
      }
      this.claiming.delete(s);
      if (err === NOT_CLAIMED) {
        if (!this.online.has(s.key)) void this.offlineUnlessHeld(s.key, s.name);
      } else if (s.phase !== 'closed') {
        s.log.warn({ err }, 'could not claim the name; closing with TRY_AGAIN');
        this.detach(s, CloseCode.TRY_AGAIN, 'cluster bus unavailable; try again');
      } else if (!this.online.has(s.key)) this.presence.announce(s.key, s.name, false);
    });
  }

  /** Resolves while `s` holds its name (the fence before queue reads and acks; see Delivery). */
  private fence(s: Session): Promise<void> {
    const claim = s.claim;
    if (claim) return viaRouter(() => this.router.check(claim));
    const pending = this.claiming.get(s);
    if (pending) return pending.then((c) => this.router.check(c));
    return Promise.reject(new RouterError('BUS_UNAVAILABLE', 'the session holds no claim'));
  }

  /** One binary frame from a session's socket. Never throws: bad input becomes an error frame or a close. */
  frame(s: Session, bytes: Uint8Array): void {
    this.dispatch.frame(s, bytes);
  }

  /** The socket's send buffer drained below its limit: streams held back for it may be granted more. */
  drain(s: Session): void {
    if (s.phase === 'closed') return;
    this.streams.drained(s);
    this.remoteStreams.drained(s);
  }

  /** Text frames are not part of the protocol. */
  textFrame(s: Session): void {
    this.dispatch.textFrame(s);
  }

  /** The transport saw the socket close (any reason). Idempotent with `detach`. */
  closed(s: Session, code: number): void {
    if (s.phase === 'closed') return;
    s.log.debug({ code }, 'disconnected');
    this.release(s, AbortReason.RECIPIENT_DISCONNECTED);
  }

  /** Stops accepting, tells every socket, requeues what was in flight, and waits for the store writes. */
  async shutdown(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'closing';
    this.clock.clearInterval(this.sweeper);
    for (const s of [...this.online.values()]) {
      s.send({ t: Op.Shutdown, message: 'server is shutting down' });
      this.detach(s, CloseCode.GOING_AWAY, 'server shutting down', AbortReason.SERVER_SHUTDOWN);
    }
    this.roomNodes?.close(); // proxies of members elsewhere: their cursors are written as a session's are
    // Every requeue was started under the queue lock; wait for all of them.
    const { queueLock, requeuer } = this.delivery;
    await queueLock.idle();
    if (requeuer.pendingCount > 0) await requeuer.retry();
    if (requeuer.pendingCount > 0) {
      this.log.error({ count: requeuer.pendingCount }, 'store down at shutdown: accepted messages could not be queued');
    }
    this.health.stop();
    this.state = 'closed';
  }

  // ------------------------------------------------------------------------------------------------------
  // What the router tells this node

  private envelope(claim: Claim, env: AddressedEnvelope): boolean {
    if (env.k === EnvelopeKind.RoomIn) return this.roomNodes?.fromNode(claim, env) ?? false;
    const s = this.online.get(claim.key);
    if (!s || s.phase === 'closed' || s.sid !== claim.sid || (s.claim && s.claim.epoch !== claim.epoch)) return false;
    switch (env.k) {
      case EnvelopeKind.Text:
        return this.delivery.fromNode(s, env);
      case EnvelopeKind.Receipt:
        this.delivery.receipt(s, env.id, env.peer, env.state);
        return true;
      case EnvelopeKind.Takeover:
        return true; // the router acts on it (`lost`)
      case EnvelopeKind.Replaced:
        if (env.sid !== s.sid) return false;
        this.kick(s);
        return true;
      case EnvelopeKind.Ended:
        if (env.sid !== s.sid) return false;
        this.accounts.forgetEnded(s.sid);
        this.detach(s, CloseCode.SESSION_ENDED, 'signed out');
        return true;
      case EnvelopeKind.Wake:
        this.delivery.woken(s);
        return true;
      case EnvelopeKind.Stream:
      case EnvelopeKind.Chunk:
        return this.remoteStreams.fromNode(s, env);
      case EnvelopeKind.Signal:
        this.signals.fromNode(s, env.frame);
        return true;
      case EnvelopeKind.RoomOut:
        return this.roomNodes?.toMember(s, env) ?? false;
      default:
        return false;
    }
  }

  /** A claim of this node lost its name: the session holding it is told and closed. */
  private lost(claim: Claim, by: Claim | null): void {
    if (claim.key.startsWith(ROOM_CLAIM)) return this.roomNodes?.lost(claim);
    const s = this.online.get(claim.key);
    if (!s || s.phase === 'closed') return;
    if (!s.claim && this.claiming.has(s) && claim.sid === s.sid) {
      // Its own claim, still resolving (the router tells this once): the session is told when it resolves. The
      // latest epoch wins: an earlier one is a claim of an earlier socket of this session.
      if ((this.lostEarly.get(s)?.claim.epoch ?? -1) < claim.epoch) this.lostEarly.set(s, { claim, by });
      return;
    }
    if (s.claim?.epoch !== claim.epoch) return;
    if (by && by.sid === s.sid) {
      this.detach(s, CloseCode.REPLACED, 'replaced by a newer connection of this session', AbortReason.RECIPIENT_DISCONNECTED);
      return;
    }
    s.log.info({ by: by?.node }, 'name taken over');
    s.send({ t: Op.Takeover, message: 'signed in elsewhere' });
    this.detach(s, CloseCode.TAKEOVER, 'signed in elsewhere', AbortReason.TAKEOVER);
  }

  private presenceFrom(env: PresenceEnvelope): void {
    if (env.origin === this.router.nodeId) return; // announced here already
    this.delivery.remote.forget(env.key);
    if (env.online) this.remoteStreams.peerOnline(env.key);
    if (!env.online && this.online.has(env.key)) return; // moved here: no offline
    this.presence.announce(env.key, env.name, env.online);
  }

  private busHealth(h: BusHealth): void {
    if (!h.up) {
      this.log.warn({ bus: h.reason }, 'bus down: texts other nodes took and had not settled are queued');
      this.delivery.remote.busDown();
      this.remoteStreams.busDown();
      return;
    }
    this.log.info({}, 'bus up again');
    this.delivery.redrainAll();
    void this.presence.refresh();
    this.roomNodes?.busBack();
  }

  /** Presence to every node; best effort (nodes re-read followed names when the bus is back). */
  private broadcast(env: PresenceEnvelope): void {
    try {
      this.router.broadcast(env);
    } catch (err) {
      this.log.debug({ err }, 'presence not broadcast: bus unavailable');
    }
  }

  /**
   * Gives a claim up; followers hear `offline` only when the name is then held nowhere (a move between nodes is
   * a claim elsewhere then this release, and shows no offline). `announce`: the session was the name's here.
   */
  private async releaseClaim(key: string, name: string, claim: Claim, announce: boolean, graceMs = 0): Promise<void> {
    try {
      const released = await this.router.release(claim);
      if (!released || !announce || this.online.has(key)) return;
    } catch (err) {
      this.log.debug({ err, user: name }, 'claim not released: bus unavailable');
      if (!announce || this.online.has(key)) return;
      return this.announceOffline(key, name);
    }
    await this.offlineUnlessHeld(key, name, graceMs);
  }

  /** Offline to followers here and on every node, unless the name is held here or elsewhere (after `graceMs`). */
  private async offlineUnlessHeld(key: string, name: string, graceMs = 0): Promise<void> {
    try {
      if (graceMs > 0) {
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, graceMs).unref?.());
        if (this.state !== 'running' || this.online.has(key)) return;
      }
      if ((await this.router.locate(key)) !== null || this.online.has(key)) return;
    } catch (err) {
      this.log.debug({ err, user: name }, 'name not located: bus unavailable');
      if (this.online.has(key)) return;
    }
    this.announceOffline(key, name);
  }

  private announceOffline(key: string, name: string): void {
    this.presence.announce(key, name, false);
    this.broadcast({ k: EnvelopeKind.Presence, key, name, online: false, origin: this.router.nodeId });
  }

  // ------------------------------------------------------------------------------------------------------
  // Takeover, closing

  /**
   * A sign-in for `key` completed and replaced the sessions `replaced` (the store marked them): the live socket
   * of one of those is told and closed, here at once, and on another node by a `replaced` envelope to the claim
   * the router locates, when that claim is one of theirs. Only those: a sign-in on another node may have
   * completed meanwhile, and its session (newer, not in `replaced`) must stay. The sign-in does not claim the
   * name: its claim could come after the newest session's own and close it. Awaited by the sign-in; a bus outage
   * only leaves the kick to the new socket's own claim.
   */
  private async takeover(key: string, replaced: readonly string[]): Promise<void> {
    if (replaced.length === 0) return;
    const s = this.online.get(key);
    if (s && replaced.includes(s.sid)) this.kick(s);
    try {
      const holder = await this.router.locate(key);
      if (holder && holder.node !== this.router.nodeId && replaced.includes(holder.sid)) {
        await this.router.deliver({ k: EnvelopeKind.Replaced, to: key, sid: holder.sid }, holder);
      }
    } catch (err) {
      this.log.warn({ err, user: key }, 'sign-in could not close the replaced session cluster-wide; the new socket will');
    }
  }

  /** Session `sid` of `key` was signed out or ended here: its socket closes, on this node or the one holding it. */
  private async sessionEnded(key: string, sid: string): Promise<void> {
    const s = this.online.get(key);
    if (s?.sid === sid) {
      this.detach(s, CloseCode.SESSION_ENDED, 'signed out');
      return;
    }
    try {
      const holder = await this.router.locate(key);
      if (holder && holder.node !== this.router.nodeId && holder.sid === sid) {
        await this.router.deliver({ k: EnvelopeKind.Ended, to: key, sid }, holder);
      }
    } catch (err) {
      this.log.warn({ err, user: key }, 'could not close the ended session on its node; its token no longer works');
    }
  }

  /** Tells a session a newer sign-in of its name took over, and closes it with TAKEOVER. */
  private kick(s: Session): void {
    s.send({ t: Op.Takeover, message: 'signed in elsewhere' });
    this.detach(s, CloseCode.TAKEOVER, 'signed in elsewhere', AbortReason.TAKEOVER);
  }

  /** Closes a session's socket and releases its state now, without waiting for the transport's close event. */
  detach(s: Session, code: number, reason: string, abort: AbortReasonName = AbortReason.RECIPIENT_DISCONNECTED): void {
    if (s.phase === 'closed') return;
    s.log.debug({ code, reason }, 'closing');
    this.release(s, abort);
    s.end(code, reason);
  }

  private release(s: Session, abort: AbortReasonName): void {
    s.phase = 'closed';
    this.accounts.rememberSession(s.sid, s.key, s.name, s.rank, s.expires);
    s.drain?.batchDone?.();
    this.streams.sessionGone(s, abort);
    this.remoteStreams.sessionGone(s, abort);
    this.presence.unfollowAll(s);
    this.delivery.requeue(s);
    this.rooms.gone(s);
    if (this.online.get(s.key) === s) {
      this.online.delete(s.key);
      // A session replaced by another of the same name leaves no offline gap: `open` registered the new one.
      // A session closed by a takeover has a newer sign-in whose socket is on its way, maybe to another node:
      // its offline waits a moment, so followers see no offline between the two (no flap on a move).
      if (s.claim) void this.releaseClaim(s.key, s.name, s.claim, true, abort === AbortReason.TAKEOVER ? TAKEOVER_OFFLINE_GRACE_MS : 0);
      else if (!this.claiming.has(s)) {
        queueMicrotask(() => {
          if (!this.online.has(s.key)) this.presence.announce(s.key, s.name, false);
        });
      }
    } else if (s.claim) void this.releaseClaim(s.key, s.name, s.claim, false);
  }

  /** Closes sessions that never said hello, expired, or went quiet. One timer for all sessions. */
  private sweep(): void {
    const now = ticks(this.clock.now());
    const cutoff = now - this.opts.idleTimeoutMs;
    const helloCutoff = now - this.opts.helloTimeoutMs;
    const nowSec = Math.floor(now / 1000);
    for (const s of [...this.online.values()]) {
      if (s.phase === 'hello' && s.lastSeen < helloCutoff) {
        s.error({ code: 'VERSION_UNSUPPORTED', message: 'no hello received in time' });
        this.detach(s, CloseCode.VERSION, 'no hello');
      } else if (s.expiresSec <= nowSec) this.detach(s, CloseCode.SESSION_ENDED, 'session expired');
      else if (s.lastSeen < cutoff) this.detach(s, CloseCode.IDLE, 'idle');
    }
  }
}
