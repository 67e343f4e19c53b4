/**
 * Rooms across several nodes: each room has an **owner node**, the holder of the router claim `#room:<room key>`
 * (its sid is the owner's node id), which runs the room exactly as one node does (`Rooms`: the lock that orders
 * appends, the tail, pipes, cursors, counts, presence). A member whose session is on another node is represented
 * on the owner by a proxy session (`RemoteMember`); what the proxy is sent travels to the member's node in
 * `roomOut` envelopes, which that node writes to the socket; the member's room frames, acks, sign-in (`attach`)
 * and close (`detach`) travel to the owner in `roomIn` envelopes. See docs/architecture.md, "Rooms across nodes".
 *
 * Owners move only when they must: the node that first needs a room nobody owns claims it; when the owner's node
 * is gone (`nodeGone`) the next node to need it claims it and loads the room from the store (the log and the
 * cursors are durable); a node whose claim is taken (`lost`) forgets the room and its members attach elsewhere.
 */
import { nameKey } from '../../shared/names.ts';
import { Op, type AckFrame, type ServerFrame } from '../../shared/protocol.ts';
import type { Logger } from './logger.ts';
import type { RoomPlacement, Rooms } from './rooms.ts';
import {
  EnvelopeKind, RouterError, viaRouter,
  type Claim, type NodeId, type OwnedRoomFrame, type RoomInEnvelope, type RoomMemberRef, type RoomOutEnvelope, type Router,
} from './router.ts';
import { Session } from './session.ts';

/** Router keys of room owner claims: `#` is in no name, so they never meet a user's claim. */
export const ROOM_CLAIM = '#room:';
/** Bytes (roughly) of frames in one `roomOut` envelope: far below NATS' 1 MiB payload limit. */
const OUT_BYTES = 256 * 1024;
/** Times a frame for an owner is sent again after an answer other than `taken` (the owner moved meanwhile). */
const OWNER_TRIES = 4;
/** An attach that could not reach the room's owner (bus down, claim conflict) is tried again after this. */
const ATTACH_RETRY_MS = 2000;
const FAR_FUTURE_MS = 100 * 365 * 24 * 3600 * 1000;

/**
 * On the owner node, a member whose session is on another node. Rooms treats it as a session; what it is sent is
 * queued and leaves as `roomOut` envelopes, one at a time, so the member's node writes it in order.
 */
class RemoteMember extends Session {
  out: ServerFrame[] = [];
  bytes = 0;
  moved: string[] = [];
  sending = false;
  scheduled = false;

  constructor(
    readonly ref: RoomMemberRef,
    /** Unique to this process (node id and a counter): acks name the proxy they are for. */
    readonly proxyId: string,
    readonly id: number,
    private readonly logger: Logger,
    private readonly due: (p: RemoteMember) => void,
  ) {
    super({ name: ref.name, key: ref.key, sid: ref.sid, expires: Date.now() + FAR_FUTURE_MS, replaced: false, created: 0 }, 0);
    this.phase = 'live';
  }

  override send(frame: ServerFrame): void {
    if (this.phase === 'closed') return;
    this.out.push(frame);
    this.bytes += frameBytes(frame);
    this.due(this);
  }

  write(): void {
    throw new Error('a room proxy has no socket: frames go through send()');
  }

  forward(): void {}

  end(): void {
    this.phase = 'closed';
  }

  buffered(): number {
    return 0;
  }

  protected get rootLog(): Logger {
    return this.logger;
  }
}

/** A session of this node with rooms owned elsewhere. */
interface MemberSide {
  /**
   * Room key -> the node that serves it to this session (as last heard). Kept after a leave or removal, so the
   * owner still hears the detach and drops its proxy (an attach of a room one is no member of opens nothing).
   */
  rooms: Map<string, NodeId>;
  /** Local delivery tag -> the owner's proxy and its tag. */
  tags: Map<number, { room: string; proxy: string; tag: number }>;
  /** Room sends passed to an owner and not yet answered by a receipt or an error: sent again if the owner dies. */
  pending: Map<string, { room: string; frame: OwnedRoomFrame }>;
}

interface OwnerHint {
  claim: Promise<Claim>;
  resolved: Claim | undefined;
}

export class RoomNodes implements RoomPlacement {
  /** Room key -> who owns it, as far as this node knows (a hint: a wrong one is answered `stale`). */
  private readonly owners = new Map<string, OwnerHint>();
  /** On an owner: proxies of members elsewhere, by member key and by proxy id. */
  private readonly proxies = new Map<string, RemoteMember>();
  private readonly byId = new Map<string, RemoteMember>();
  private readonly sides = new Map<Session, MemberSide>();
  private proxyCount = 0;

  constructor(
    private readonly router: Router,
    private readonly rooms: Rooms,
    private readonly log: Logger,
  ) {}

  /** The proxy of member `key`, for Rooms' session lookup on an owner node. */
  proxy(key: string): Session | undefined {
    return this.proxies.get(key);
  }

  // ------------------------------------------------------------------------------------------------------
  // Who owns a room

  async here(key: string): Promise<boolean> {
    return (await this.ownerNow(key)).node === this.router.nodeId;
  }

  /**
   * The room's owner claim as this node knows it now. A hint dropped while it resolved (its claim lost, say, before
   * `claim` even resolved: the router tells `lost` once) is not used: the owner is asked for again.
   */
  private async ownerNow(key: string): Promise<Claim> {
    for (;;) {
      const hint = this.owner(key);
      const claim = await hint.claim;
      if (this.owners.get(key) === hint) return claim;
    }
  }

  owns(key: string): boolean {
    return this.owners.get(key)?.resolved?.node === this.router.nodeId;
  }

  /** This node gave room `key` up and its last appends are done: the new owner reads what they added. */
  settled(key: string): void {
    const member = { key: '', name: '', sid: '', node: this.router.nodeId };
    const env: RoomInEnvelope = { k: EnvelopeKind.RoomIn, to: ROOM_CLAIM + key, member, op: 'refresh', origin: this.router.nodeId };
    viaRouter(() => this.router.deliver(env)).catch((err: unknown) => this.log.warn({ err, room: key }, 'room refresh not delivered'));
  }

  private owner(key: string): OwnerHint {
    let hint = this.owners.get(key);
    if (hint) return hint;
    const claim = viaRouter(() => this.router.locate(ROOM_CLAIM + key)).then(async (c) => {
      if (c) return c;
      // Nobody serves it: this node does, from the store (a copy it may hold from an earlier claim is stale).
      this.rooms.unload(key);
      // Ranked by the time of asking: a later claim takes over one of a node that died, and a claim that reaches
      // the fence after a later one (two nodes racing for a free room) is refused (SUPERSEDED) and looks again.
      return viaRouter(() => this.router.claim(ROOM_CLAIM + key, this.router.nodeId, Date.now()));
    });
    const made: OwnerHint = (hint = { claim, resolved: undefined });
    this.owners.set(key, made);
    claim.then((c) => {
      made.resolved = c;
    }, () => {
      if (this.owners.get(key) === made) this.owners.delete(key);
    });
    return made;
  }

  private forgetOwner(key: string, claim?: Claim): void {
    const hint = this.owners.get(key);
    if (!hint) return;
    // Only the hint that answer was about: a newer one (still resolving, or another claim) stays, so frames sent
    // again after the same refusal all wait on one lookup and keep their order.
    if (claim && (!hint.resolved || hint.resolved.node !== claim.node || hint.resolved.epoch !== claim.epoch)) return;
    this.owners.delete(key);
  }

  // ------------------------------------------------------------------------------------------------------
  // A member's node

  forward(s: Session, key: string, frame: OwnedRoomFrame): void {
    if (s.phase === 'closed') return; // its side is gone with it (`gone`): nothing may make it again
    if (!(s instanceof RemoteMember) && frame.t === Op.Send) this.side(s).pending.set(frame.id, { room: key, frame });
    this.toOwner(s, key, 'frame', frame);
  }

  attach(s: Session, key: string): void {
    this.toOwner(s, key, 'attach', undefined);
  }

  moved(s: Session, key: string): void {
    if (s instanceof RemoteMember) {
      s.moved.push(key);
      this.due(s);
    } else this.attach(s, key);
  }

  /** Passes `frame` (or an attach) to the room's owner: runs it here when this node owns the room. */
  private toOwner(s: Session, key: string, op: 'frame' | 'attach', frame: OwnedRoomFrame | undefined, tries = 0): void {
    const member = s instanceof RemoteMember ? s.ref : { key: s.key, name: s.name, sid: s.sid, node: this.router.nodeId };
    const fail = (err: unknown): void => {
      this.log.warn({ err, room: key, user: s.key, op }, 'room frame could not reach the room\'s owner');
      if (op === 'attach') {
        if (s.phase === 'closed') return;
        // Nobody asked for it: tried again in a while (and at once when the bus is back, see `busBack`).
        if (!(s instanceof RemoteMember)) this.side(s).rooms.set(key, this.side(s).rooms.get(key) ?? '');
        if (!this.router.health().up) return;
        const again = setTimeout(() => {
          if (s.phase !== 'closed') this.attach(s, key);
        }, ATTACH_RETRY_MS);
        again.unref?.();
        return;
      }
      const ref = frame === undefined ? undefined : frame.t === Op.Send || frame.t === Op.RoomWho ? frame.id : frame.room;
      if (s.phase !== 'closed') s.error({ code: 'STORE_UNAVAILABLE', message: 'the room\'s node cannot be reached; try again shortly', ref });
    };
    void this.ownerNow(key).then(async (claim) => {
      if (s.phase === 'closed') return;
      if (claim.node === this.router.nodeId) {
        const side = s instanceof RemoteMember ? undefined : this.sides.get(s);
        side?.rooms.delete(key);
        if (frame?.t === Op.Send) side?.pending.delete(frame.id); // answered here from now on
        if (op === 'attach') {
          await this.rooms.openRoom(s, key).catch((err: unknown) => {
            if (!(err instanceof RouterError)) throw err;
            this.moved(s, key); // the claim moved while the room loaded: to the new owner
          });
        } else this.run(s, frame!);
        return;
      }
      if (!(s instanceof RemoteMember)) this.side(s).rooms.set(key, claim.node);
      const env: RoomInEnvelope = { k: EnvelopeKind.RoomIn, to: ROOM_CLAIM + key, member, op, origin: this.router.nodeId, ...(frame ? { frame } : {}) };
      const status = await viaRouter(() => this.router.deliver(env, claim));
      if (status === 'taken') return;
      // The owner's node died and is not yet seen gone (that takes a few heartbeats): `nodeGone` attaches the
      // room to its next owner and sends the pending sends again.
      if (status === 'gone' && (op === 'attach' || (frame?.t === Op.Send && !(s instanceof RemoteMember)))) return;
      this.forgetOwner(key, claim);
      if (tries + 1 >= OWNER_TRIES) throw new Error(`the room's owner answered ${status}`);
      this.toOwner(s, key, op, frame, tries + 1);
    }).catch(fail);
  }

  /** A `roomOut` for session `s` of this node: its frames go to the socket, room messages under tags of ours. */
  toMember(s: Session, env: RoomOutEnvelope): boolean {
    if ((env.sid !== undefined && env.sid !== s.sid) || s.phase !== 'live') return false;
    const side = this.side(s);
    for (const f of env.frames) {
      switch (f.t) {
        case Op.Message: {
          if (f.room === undefined || env.proxy === undefined) break;
          const tag = s.activity.nextTag++;
          const room = nameKey(f.room);
          side.tags.set(tag, { room, proxy: env.proxy, tag: f.tag });
          side.rooms.set(room, env.origin);
          s.send({ ...f, tag });
          continue;
        }
        case Op.RoomInfo:
          if (env.proxy !== undefined) side.rooms.set(nameKey(f.room), env.origin);
          break;
        case Op.RoomReceipt:
          for (const [id] of f.items) side.pending.delete(id);
          break;
        case Op.Error:
          if (typeof f.ref === 'string') side.pending.delete(f.ref);
          break;
        default:
          break;
      }
      s.send(f);
    }
    for (const key of env.moved ?? []) {
      side.rooms.delete(key);
      this.forgetOwner(key);
      this.attach(s, key);
    }
    return true;
  }

  ack(s: Session, f: AckFrame): void {
    const side = this.sides.get(s);
    if (!side || side.tags.size === 0) return;
    const due = new Map<string, { room: string; proxy: string; tags: number[] }>();
    for (const tag of f.tags) {
      const t = side.tags.get(tag);
      if (!t) continue;
      side.tags.delete(tag);
      const k = `${t.room}\u0000${t.proxy}`;
      let d = due.get(k);
      if (!d) due.set(k, (d = { room: t.room, proxy: t.proxy, tags: [] }));
      d.tags.push(t.tag);
    }
    const member = { key: s.key, name: s.name, sid: s.sid, node: this.router.nodeId };
    for (const d of due.values()) {
      // To whoever owns the room now: a new owner has no proxy of that id and ignores it (it sends from the
      // stored cursor again, which clients de-duplicate).
      const env: RoomInEnvelope = { k: EnvelopeKind.RoomIn, to: ROOM_CLAIM + d.room, member, op: 'ack', proxy: d.proxy, tags: d.tags, origin: this.router.nodeId };
      viaRouter(() => this.router.deliver(env)).catch((err: unknown) => this.log.debug({ err, room: d.room }, 'room ack not delivered'));
    }
  }

  gone(s: Session): void {
    if (s instanceof RemoteMember) return;
    const side = this.sides.get(s);
    if (!side) return;
    this.sides.delete(s);
    const member = { key: s.key, name: s.name, sid: s.sid, node: this.router.nodeId };
    for (const room of side.rooms.keys()) {
      const env: RoomInEnvelope = { k: EnvelopeKind.RoomIn, to: ROOM_CLAIM + room, member, op: 'detach', origin: this.router.nodeId };
      viaRouter(() => this.router.deliver(env)).catch((err: unknown) => this.log.debug({ err, room }, 'room detach not delivered'));
    }
  }

  tell(key: string, frame: ServerFrame): void {
    const env: RoomOutEnvelope = { k: EnvelopeKind.RoomOut, to: key, frames: [frame], origin: this.router.nodeId, bytes: frameBytes(frame) };
    viaRouter(() => this.router.deliver(env)).catch((err: unknown) => this.log.debug({ err, user: key }, 'room notice not delivered'));
  }

  private side(s: Session): MemberSide {
    let side = this.sides.get(s);
    if (!side) this.sides.set(s, (side = { rooms: new Map(), tags: new Map(), pending: new Map() }));
    return side;
  }

  // ------------------------------------------------------------------------------------------------------
  // The owner node

  /** A `roomIn` for a room whose claim this node holds (the router checked the epoch). */
  fromNode(claim: Claim, env: RoomInEnvelope): boolean {
    if (!claim.key.startsWith(ROOM_CLAIM) || claim.sid !== this.router.nodeId) return false;
    const room = claim.key.slice(ROOM_CLAIM.length);
    switch (env.op) {
      case 'attach': {
        const p = this.proxyFor(env.member);
        this.rooms.openRoom(p, room).catch((err: unknown) => {
          if (err instanceof RouterError) this.moved(p, room); // the claim moved while the room loaded
          else this.log.warn({ err, room, user: p.key }, 'room could not open for a member elsewhere');
        });
        return true;
      }
      case 'frame':
        if (!env.frame) return false;
        this.run(this.proxyFor(env.member), env.frame);
        return true;
      case 'ack': {
        const p = env.proxy === undefined ? undefined : this.byId.get(env.proxy);
        if (p && p.key === env.member.key && env.tags) this.rooms.ack(p, { t: Op.Ack, tags: env.tags });
        return true;
      }
      case 'refresh':
        this.rooms.refresh(room);
        return true;
      case 'detach': {
        const p = this.proxies.get(env.member.key);
        if (p && p.ref.sid === env.member.sid && p.ref.node === env.member.node) this.retire(p);
        return true;
      }
      default:
        return false;
    }
  }

  private run(s: Session, f: OwnedRoomFrame): void {
    switch (f.t) {
      case Op.Send: return this.rooms.send(s, f);
      case Op.RoomCreate: return this.rooms.create(s, f);
      case Op.RoomJoin: return this.rooms.join(s, f);
      case Op.RoomLeave: return this.rooms.leave(s, f);
      case Op.RoomInvite: return this.rooms.invite(s, f);
      case Op.RoomRemove: return this.rooms.remove(s, f);
      case Op.RoomOwner: return this.rooms.handOver(s, f);
      case Op.RoomMembers: return this.rooms.members(s, f);
      case Op.RoomWho: return this.rooms.who(s, f);
      default: return undefined;
    }
  }

  /** The proxy of the member's session: a newer session of the name (or one on another node) replaces it. */
  private proxyFor(ref: RoomMemberRef): RemoteMember {
    const had = this.proxies.get(ref.key);
    if (had && had.ref.sid === ref.sid && had.ref.node === ref.node) return had;
    const id = ++this.proxyCount;
    const p = new RemoteMember(ref, `${this.router.nodeId}:${id}`, -id, this.log, (x) => this.due(x));
    this.proxies.set(ref.key, p);
    this.byId.set(p.proxyId, p);
    if (had) this.retire(had); // after the new one is in place: no offline line between the two
    return p;
  }

  /** The proxy's session is gone (detached, refused, its node gone): its pipes stop, its cursors are written. */
  private retire(p: RemoteMember): void {
    if (p.phase === 'closed') return;
    p.phase = 'closed';
    if (this.proxies.get(p.key) === p) this.proxies.delete(p.key);
    this.byId.delete(p.proxyId);
    this.rooms.gone(p);
  }

  private due(p: RemoteMember): void {
    if (p.sending || p.scheduled) return;
    p.scheduled = true;
    setImmediate(() => {
      p.scheduled = false;
      this.flush(p);
    });
  }

  /** Sends what the proxy was sent, one envelope at a time (so the member's node writes it in order). */
  private flush(p: RemoteMember): void {
    if (p.sending || (p.out.length === 0 && p.moved.length === 0)) return;
    let n = 0;
    let bytes = 0;
    while (n < p.out.length && (n === 0 || bytes + frameBytes(p.out[n]!) <= OUT_BYTES)) bytes += frameBytes(p.out[n++]!);
    const frames = p.out.splice(0, n);
    p.bytes -= bytes;
    const moved = p.moved.splice(0);
    const env: RoomOutEnvelope = {
      k: EnvelopeKind.RoomOut, to: p.ref.key, sid: p.ref.sid, proxy: p.proxyId, frames, origin: this.router.nodeId, bytes,
      ...(moved.length > 0 ? { moved } : {}),
    };
    p.sending = true;
    viaRouter(() => this.router.deliver(env)).then((status) => {
      p.sending = false;
      if (status !== 'taken') {
        this.retire(p);
        return;
      }
      this.flush(p);
    }, (err: unknown) => {
      p.sending = false;
      this.log.warn({ err, user: p.key, node: p.ref.node }, 'room frames for a member elsewhere not delivered');
      this.retire(p);
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // What the router tells

  /** This node's claim of a room was taken by another node: the room is forgotten here. */
  lost(claim: Claim): void {
    const key = claim.key.slice(ROOM_CLAIM.length);
    this.log.info({ room: key }, 'room moved to another node');
    this.owners.delete(key);
    this.rooms.unload(key);
  }

  /** `node` is gone: proxies of its members stop; rooms it served are attached to their next owner. */
  nodeGone(node: NodeId): void {
    for (const p of [...this.proxies.values()]) if (p.ref.node === node) this.retire(p);
    for (const [key, hint] of this.owners) if (hint.resolved?.node === node) this.owners.delete(key);
    for (const [s, side] of this.sides) {
      for (const [room, at] of side.rooms) {
        if (at !== node) continue;
        this.attach(s, room);
        // Sends the dead owner had not answered: the store's (room, sender, id) answers any that it did store.
        for (const p of side.pending.values()) if (p.room === room) this.toOwner(s, room, 'frame', p.frame);
      }
    }
  }

  /** Shutdown: every proxy is retired (its cursors written); the members' nodes see this node gone. */
  close(): void {
    for (const p of [...this.proxies.values()]) this.retire(p);
  }

  /** The bus is back: every session's rooms elsewhere are attached again (the owner ignores what it has). */
  busBack(): void {
    this.owners.clear();
    for (const [s, side] of this.sides) {
      for (const room of side.rooms.keys()) this.attach(s, room);
      // A receipt lost with the bus would leave the client waiting for one until it reconnects.
      for (const p of side.pending.values()) this.toOwner(s, p.room, 'frame', p.frame);
    }
  }
}

/** A rough encoded size of a server frame, for envelope batches. */
function frameBytes(f: ServerFrame): number {
  if (f.t === Op.Message) return f.text.length * 3 + 160;
  if (f.t === Op.RoomReceipt) return f.items.length * 64 + 32;
  if (f.t === Op.RoomInfo) return f.members.length * 48 + 96;
  return 160;
}
