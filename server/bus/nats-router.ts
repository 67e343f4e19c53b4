/**
 * The NATS Router adapter: nodes of one deployment on one NATS bus (Debian's nats-server 2.9 and later, with
 * JetStream enabled; the official `@nats-io/*` client).
 *
 * - **Claims and the fence** live in a JetStream KV bucket (`<prefix>-claims`, file storage, history 1), one key per
 *   name ever claimed, written only by compare-and-set on the entry's revision: a claim reads the entry, writes
 *   `epoch = max(previous + 1, now in ms)` with `update(key, value, revision)`, and starts over when another node
 *   wrote first; the entry read also decides SUPERSEDED (a newer session's claim holds the name: nothing written),
 *   so the rank check and the write are one compare-and-set. A release writes a tombstone that keeps the epoch, so
 *   epochs of a name grow across releases too;
 *   the clock floor keeps them growing even if the bucket were wiped. A node keeps its own current claims in
 *   `held`; an envelope addressed to an epoch it does not hold is answered `stale`.
 * - **Envelopes** are msgpack on core NATS. Each node listens on `<prefix>.node.<nodeId>`: answered envelopes are
 *   requests, a turn's worth for one node in one request whose reply lists their `DeliveryStatus`es (and the
 *   answering node's link; the batching is node-outbox.ts); chunks are plain publishes (NATS keeps one publisher's order). `<prefix>.all` carries
 *   presence, heartbeats (with the node's link) and goodbyes.
 * - **The direct link**: when both nodes have one (node-link.ts), a node's requests to the other and its stream
 *   traffic (chunks, and a stream's `ended`, which must follow its chunks) go over it instead, in the same frames'
 *   order. A node learns a peer's link from its heartbeats and from the answer to any request, so before the answer
 *   to a stream's offer: every chunk of a stream takes the same path. Requests to a node move from the bus to its
 *   link only when none is still unanswered on the bus, so they arrive in the order they were made; a request whose
 *   link never opened goes over the bus. A lost link is told to the receiver (`linkLost`).
 * - **The mirror**: every node watches the claims bucket and keeps its live claims in memory, so `deliver` by name
 *   needs no read; the node it names checks the epoch, and a `stale` answer sends it to the bucket. The watch also
 *   tells a node that one of its claims was overtaken, should the takeover request not have reached it.
 * - **Node liveness**: every node publishes a heartbeat every `heartbeatMs`; a node not heard from for three of them
 *   is gone (`nodeGone`), its claims void for `locate`. Heard from means a heartbeat, an answer to a request, or an
 *   envelope naming it as its `origin`: a node that took a text or a stream from this one (or sent it one) and died
 *   before this one heard its first heartbeat is still seen gone. A node that leaves says goodbye and is gone at once; a
 *   request to a node with no subscription (its process died and NATS dropped its connection) is answered `gone`
 *   by NATS' no-responders status at once.
 * - **Bus outages**: the client reconnects by itself forever. While disconnected, every operation rejects with
 *   BUS_UNAVAILABLE at once (the client would otherwise buffer or wait for a timeout), and liveness is not judged.
 */
import { jetstream, StorageType } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { pack, unpack } from 'msgpackr';
import type { Logger } from '../core/logger.ts';
import { KeyedMutex } from '../core/mutex.ts';
import {
  newerSession, RouterError, type AddressedEnvelope, type BusHealth, type Claim, type DeliveryStatus, type ForwardedEnvelope, type NodeId,
  type PresenceEnvelope, type Router, type RouterReceiver, type SettledEnvelope,
} from '../core/router.ts';
import { NodeLinks, type LinkAddress, type LinkMessage } from './node-link.ts';
import { busError, NodeOutbox, type Answer, type NodeMessage } from './node-outbox.ts';

export interface NatsRouterOptions {
  /** One or more `nats://host:port` URLs, comma-separated (`NATS_URL`). */
  url: string;
  nodeId: NodeId;
  logger: Logger;
  /**
   * Subject prefix and bucket name stem: deployments (or tests) sharing one nats-server keep apart by it.
   * [A-Za-z0-9_-]; default `parley`.
   */
  prefix?: string;
  /** Longest wait for an answer from another node or from JetStream. Default 2000 ms. */
  requestTimeoutMs?: number;
  /** Heartbeat period; a node silent for 3 of them is gone. Default 1000 ms. */
  heartbeatMs?: number;
  /**
   * How often the client pings the server; two unanswered pings and it counts the bus as down (a partition is
   * noticed within about three of these). Default 5000 ms (the client's own default is 2 minutes).
   */
  pingIntervalMs?: number;
  /** Pause between reconnection attempts. Default 250 ms. */
  reconnectWaitMs?: number;
  /**
   * The direct link (`NODE_LINK`, `NODE_LINK_ANNOUNCE`; see node-link.ts): where to listen, and what to announce
   * if not that. Absent: everything this node sends to other nodes goes over the bus.
   */
  link?: { listen: { host: string; port: number }; announce?: { host: string; port: number } };
}

/** What goes to every node. */
type AllMessage = { hb: NodeId; l?: LinkAddress } | { bye: NodeId } | { p: PresenceEnvelope };
/**
 * A KV value: a live claim, or a released name's tombstone (`s` absent) that keeps its epoch. `r`: the claim's
 * rank; absent in values written before ranks, which then count as the oldest session (any claim takes over).
 */
interface ClaimValue { e: number; s?: string; n?: NodeId; r?: number }

/** JetStream's "wrong last sequence": someone else wrote the entry since we read it. */
const WRONG_LAST_SEQUENCE = 10071;
/** Compare-and-set rounds a claim may lose in a row before it gives up with CLAIM_CONFLICT. */
const CLAIM_ROUNDS = 50;
const DOWN_BEFORE_START: BusHealth = { up: false, reason: 'not started' };

export class NatsRouter implements Router {
  readonly kind = 'nats';
  readonly nodeId: NodeId;
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly heartbeatMs: number;
  private nc: NatsConnection | undefined;
  private kv: KV | undefined;
  private receiver: RouterReceiver | undefined;
  private state: BusHealth = DOWN_BEFORE_START;
  private closing = false;
  /** This node's current claims, by name key. */
  private readonly held = new Map<string, Claim>();
  /**
   * Other nodes heard from (a heartbeat, an answer, an envelope from them), with when (ms, `Date.now()`). A node
   * not in here is gone once `judgeFrom` passed; one in here is judged by its last sign of life (`tick`).
   */
  private readonly heard = new Map<NodeId, number>();
  /**
   * Set when the bus comes back: claims this node held while it was away may have been taken over by a node that
   * could reach the bus (a partition), so each is checked again, on every heartbeat until all checks got an answer.
   */
  private recheckDue = false;
  /** Liveness is judged only after we have been connected for 3 heartbeats (we would have heard every node). */
  private judgeFrom = Infinity;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly claiming = new KeyedMutex();
  /**
   * Every live claim in the bucket, kept by watching it: where `deliver` sends first, without a read. A hint only:
   * the node it names checks the epoch. Costs a claim object per signed-in user of the deployment, on every node.
   */
  private readonly mirror = new Map<string, Claim>();
  private watcher: { stop(): void } | undefined;
  /** Answered envelopes to other nodes, batched per turn, over the link or the bus (node-outbox.ts). */
  private readonly outbox: NodeOutbox;
  /** Direct links to other nodes, when configured (node-link.ts). */
  private links: NodeLinks | undefined;

  constructor(private readonly opts: NatsRouterOptions) {
    this.nodeId = opts.nodeId;
    this.log = opts.logger;
    this.prefix = opts.prefix ?? 'parley';
    this.timeout = opts.requestTimeoutMs ?? 2000;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(this.nodeId)) throw new Error(`node id must be 1 to 32 of [A-Za-z0-9_-], got ${JSON.stringify(this.nodeId)}`);
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(this.prefix)) throw new Error(`bus prefix must be 1 to 64 of [A-Za-z0-9_-], got ${JSON.stringify(this.prefix)}`);
    this.outbox = new NodeOutbox({
      connection: () => this.connection(), links: () => this.links, subject: (node) => this.nodeSubject(node),
      alive: (node) => this.alive(node), timeout: this.timeout,
    });
  }

  async start(receiver: RouterReceiver): Promise<void> {
    if (this.nc) throw new Error('router already started');
    const servers = this.opts.url.split(',').map((s) => s.trim()).filter(Boolean);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers, name: `parley-${this.nodeId}`, maxReconnectAttempts: -1, reconnectTimeWait: this.opts.reconnectWaitMs ?? 250,
        timeout: this.timeout, pingInterval: this.opts.pingIntervalMs ?? 5000, maxPingOut: 2,
        // Otherwise every request builds an Error up front for the stack of a timeout that rarely comes: 2% of a
        // node's busy time under cross-node text (bench profile). A timeout still says what timed out.
        noAsyncTraces: true,
      });
    } catch (err) {
      throw new Error(`cannot reach NATS at ${this.opts.url}: ${(err as Error).message}`, { cause: err });
    }
    this.nc = nc;
    this.receiver = receiver;
    if (this.opts.link) {
      const links = new NodeLinks({ nodeId: this.nodeId, ...this.opts.link, logger: this.log, requestTimeoutMs: this.timeout }, {
        message: (from, m) => this.fromLink(from, m),
        request: (from, msgs) => this.requestFromLink(from, msgs),
        lost: (node) => this.receiver?.linkLost?.(node),
      });
      try {
        await links.listen();
      } catch (err) {
        await nc.close();
        this.nc = undefined;
        const { host, port } = this.opts.link.listen;
        throw new Error(`cannot listen for node links on ${host}:${port}: ${(err as Error).message}`, { cause: err });
      }
      this.links = links;
    }
    try {
      this.kv = await new Kvm(jetstream(nc, { timeout: this.timeout })).create(`${this.prefix}-claims`, { history: 1, storage: StorageType.File });
    } catch (err) {
      await nc.close();
      await this.links?.close();
      this.nc = undefined;
      throw new Error(`NATS at ${this.opts.url} has no usable JetStream (run nats-server with -js): ${(err as Error).message}`, { cause: err });
    }
    const watch = await this.kv.watch();
    this.watcher = watch;
    void (async () => {
      try {
        for await (const e of watch) this.onClaimEntry(e);
      } catch (err) {
        this.log.error({ err }, 'claims watch ended; deliveries read the bucket instead');
        this.mirror.clear();
      }
    })();
    nc.subscribe(this.nodeSubject(this.nodeId), { callback: (err, m) => (err ? this.log.error({ err }, 'bus subscription failed') : this.onNodeMessage(m)) });
    nc.subscribe(`${this.prefix}.all`, { callback: (err, m) => (err ? this.log.error({ err }, 'bus subscription failed') : this.onAllMessage(m)) });
    await nc.flush();
    this.setHealth({ up: true });
    void this.watchStatus(nc);
    this.timer = setInterval(() => this.tick(), this.heartbeatMs);
    this.timer.unref();
    this.tick();
  }

  async close(): Promise<void> {
    const nc = this.nc;
    if (!nc || this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    this.watcher?.stop();
    if (this.state.up) {
      await Promise.all([...this.held.values()].map((c) => this.release(c).catch((err: unknown) => {
        this.log.warn({ err, user: c.key }, 'could not release a claim on close');
      })));
      nc.publish(`${this.prefix}.all`, pack({ bye: this.nodeId } satisfies AllMessage));
      await nc.drain().catch(() => nc.close());
    } else {
      await nc.close();
    }
    // After the bus: what this node told its peers about its streams is on its way before the links say goodbye.
    await this.links?.close();
    this.setHealth({ up: false, reason: 'closed' });
    this.receiver = undefined;
  }

  health(): BusHealth {
    return this.state;
  }

  claim(key: string, sid: string, rank: number): Promise<Claim> {
    const kv = this.ready();
    // One claim of a name at a time per node: compare-and-set then only races the other nodes, each of which
    // wins a round, so a claim needs at most about as many rounds as there are nodes.
    return this.claiming.run(key, () => this.claimOnce(kv, key, sid, rank));
  }

  private async claimOnce(kv: KV, key: string, sid: string, rank: number): Promise<Claim> {
    const k = kvKey(key);
    for (let attempt = 0; attempt < CLAIM_ROUNDS; attempt++) {
      const entry = await this.kvCall(() => kv.get(k));
      const prev = entry ? readValue(entry) : null;
      // Decided against the entry the write below is conditional on: a newer session's claim landing meanwhile
      // makes the write fail, and the next round sees it.
      if (prev?.s !== undefined && newerSession({ rank: rankOf(prev), sid: prev.s }, { rank, sid })) {
        throw new RouterError('SUPERSEDED', `a newer session holds ${key}`);
      }
      const claim: Claim = { key, sid, node: this.nodeId, epoch: Math.max((prev?.e ?? 0) + 1, Date.now()), rank };
      const value = pack(toValue(claim));
      try {
        if (entry) await kv.update(k, value, entry.revision);
        else await kv.create(k, value);
      } catch (err) {
        if (isConflict(err)) continue;
        throw busError(err);
      }
      const mine = this.held.get(key);
      if (!mine || mine.epoch < claim.epoch) this.held.set(key, claim);
      if (mine && mine.epoch < claim.epoch) this.receiver?.lost(mine, claim);
      if (prev?.s !== undefined && prev.n !== undefined && prev.n !== this.nodeId) {
        await this.tellLost(claimOf(key, prev, prev.s, prev.n), claim);
      }
      return claim;
    }
    throw new RouterError('CLAIM_CONFLICT', `claim of ${key} lost the compare-and-set race ${CLAIM_ROUNDS} times`);
  }

  async release(claim: Claim): Promise<boolean> {
    const kv = this.ready();
    const k = kvKey(claim.key);
    const entry = await this.kvCall(() => kv.get(k));
    const current = entry ? readValue(entry) : null;
    if (this.held.get(claim.key)?.epoch === claim.epoch) this.held.delete(claim.key);
    if (!entry || current?.e !== claim.epoch || current.s === undefined) return false;
    try {
      await kv.update(k, pack({ e: claim.epoch } satisfies ClaimValue), entry.revision);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw busError(err);
    }
  }

  async locate(key: string): Promise<Claim | null> {
    const kv = this.ready();
    const entry = await this.kvCall(() => kv.get(kvKey(key)));
    const v = entry ? readValue(entry) : null;
    if (!v || v.s === undefined || v.n === undefined) return null;
    const claim = claimOf(key, v, v.s, v.n);
    if (claim.node === this.nodeId) return this.held.get(key)?.epoch === claim.epoch ? claim : null;
    return this.isGone(claim.node) ? null : claim;
  }

  async check(claim: Claim): Promise<void> {
    const kv = this.ready();
    const held = this.held.get(claim.key);
    if (held !== undefined && held.epoch > claim.epoch) throw this.stale(claim);
    const entry = await this.kvCall(() => kv.get(kvKey(claim.key)));
    const v = entry ? readValue(entry) : null;
    if (v?.e === claim.epoch && v.s !== undefined) return;
    if (this.held.get(claim.key)?.epoch === claim.epoch) {
      this.held.delete(claim.key);
      this.receiver?.lost(claim, null);
    }
    throw this.stale(claim);
  }

  async deliver(env: AddressedEnvelope, to?: Claim): Promise<DeliveryStatus> {
    this.ready();
    if (to) return this.deliverTo(env, to);
    // The mirror first: right nearly always, and a wrong one is answered `stale` or `nobody` by the node it names
    // (it checks the epoch), so only then is the bucket read and the envelope sent where the bucket says.
    const hint = this.mirror.get(env.to);
    let first: DeliveryStatus | undefined;
    if (hint) {
      first = await this.deliverTo(env, hint);
      if (first === 'taken' || first === 'refused') return first;
    }
    const target = await this.locate(env.to);
    if (!target) return 'nobody';
    if (hint && first !== undefined && target.node === hint.node && target.epoch === hint.epoch) return first;
    return this.deliverTo(env, target);
  }

  private deliverTo(env: AddressedEnvelope, target: Claim): Promise<DeliveryStatus> | DeliveryStatus {
    if (target.node === this.nodeId) return this.accept(env, target.epoch);
    if (this.isGone(target.node)) return 'gone';
    return this.outbox.request(target.node, { e: env, ep: target.epoch });
  }

  async settle(env: SettledEnvelope): Promise<'taken' | 'gone'> {
    this.connection();
    if (env.node === this.nodeId) {
      this.receiver?.settled(env);
      return 'taken';
    }
    if (this.isGone(env.node)) return 'gone';
    return (await this.outbox.request(env.node, { s: env })) === 'gone' ? 'gone' : 'taken';
  }

  forward(to: Claim, env: ForwardedEnvelope): void {
    const nc = this.connection();
    if (to.node === this.nodeId) this.accept(env, to.epoch);
    else if (this.links?.usable(to.node)) {
      if (env.k === 'chunk') this.links.chunk(to.node, env.to, to.epoch, env.bytes);
      else this.links.envelope(to.node, { e: env, ep: to.epoch } satisfies NodeMessage);
    } else nc.publish(this.nodeSubject(to.node), pack({ e: env, ep: to.epoch } satisfies NodeMessage));
  }

  broadcast(env: PresenceEnvelope): void {
    this.connection().publish(`${this.prefix}.all`, pack({ p: env } satisfies AllMessage));
  }

  // ------------------------------------------------------------------------------------------------------

  /** A change in the claims bucket: the mirror follows, and a claim of ours overtaken elsewhere is lost. */
  private onClaimEntry(e: KvEntry): void {
    const key = Buffer.from(e.key, 'base64url').toString('utf8');
    const v = readValue(e);
    if (!v || v.s === undefined || v.n === undefined) {
      this.mirror.delete(key);
      return;
    }
    const claim = claimOf(key, v, v.s, v.n);
    this.mirror.set(key, claim);
    const mine = this.held.get(key);
    if (mine && mine.epoch < claim.epoch) {
      this.held.delete(key);
      this.receiver?.lost(mine, claim);
    }
  }

  /** Decides an envelope for one of this node's claims, synchronously, on arrival. */
  private accept(env: AddressedEnvelope, epoch: number | undefined): DeliveryStatus {
    const held = this.held.get(env.to);
    if (env.k === 'takeover') {
      if (held && held.epoch <= env.epoch && held.epoch < env.by.epoch) {
        this.held.delete(env.to);
        this.receiver?.lost(held, env.by);
      }
      return 'taken';
    }
    if (!held) return epoch === undefined ? 'nobody' : 'stale';
    if (epoch !== undefined && epoch !== held.epoch) return 'stale';
    return this.receiver?.envelope(held, env) ? 'taken' : 'refused';
  }

  /** A frame from a peer's direct link: the same messages as on the bus, in the order that node sent them. */
  private fromLink(from: NodeId, m: LinkMessage): void {
    this.alive(from);
    if (m.kind === 'chunk') {
      try {
        this.accept({ k: 'chunk', to: m.to, bytes: m.bytes }, m.epoch);
      } catch (err) {
        this.log.error({ err }, 'chunk from a node link failed');
      }
    } else {
      this.take(m.msg as NodeMessage);
    }
  }

  /** A request over a peer's link: envelopes, answered with their statuses in order, as on the bus. */
  private requestFromLink(from: NodeId, msgs: unknown): DeliveryStatus[] {
    this.alive(from);
    if (!Array.isArray(msgs)) {
      this.log.error({ node: from }, 'bad request from a node link');
      return [];
    }
    // Cut off from the bus, this node may hold claims that were taken over meanwhile: `gone`, as the bus answers a
    // request to a node that lost its connection (no responders).
    if (!this.state.up) return msgs.map(() => 'gone');
    return (msgs as NodeMessage[]).map((msg) => this.take(msg));
  }

  /** A request (an array of envelopes, answered with their statuses) or a forwarded chunk (one, unanswered). */
  private onNodeMessage(m: Msg): void {
    let decoded: NodeMessage | NodeMessage[];
    try {
      decoded = unpack(m.data) as NodeMessage | NodeMessage[];
    } catch (err) {
      this.log.error({ err }, 'bad envelope from the bus');
      if (m.reply) m.respond(pack({ st: [] } satisfies Answer));
      return;
    }
    if (!Array.isArray(decoded)) {
      this.take(decoded);
      return;
    }
    const statuses = decoded.map((msg) => this.take(msg));
    if (m.reply) m.respond(pack({ st: statuses, l: this.links?.address } satisfies Answer));
  }

  private take(msg: NodeMessage): DeliveryStatus {
    try {
      if ('s' in msg) {
        this.receiver?.settled(msg.s);
        return 'taken';
      }
      const origin = 'origin' in msg.e ? msg.e.origin : undefined;
      if (origin !== undefined) this.alive(origin);
      return this.accept(msg.e, msg.ep);
    } catch (err) {
      this.log.error({ err }, 'envelope from the bus failed');
      return 'refused';
    }
  }

  private onAllMessage(m: Msg): void {
    let msg: AllMessage;
    try {
      msg = unpack(m.data) as AllMessage;
    } catch (err) {
      this.log.error({ err }, 'bad broadcast from the bus');
      return;
    }
    if ('hb' in msg) {
      this.alive(msg.hb);
      if (msg.l) this.links?.learn(msg.hb, msg.l);
    } else if ('bye' in msg) {
      if (msg.bye === this.nodeId) return;
      this.links?.forget(msg.bye);
      if (this.heard.delete(msg.bye)) this.receiver?.nodeGone(msg.bye);
    } else {
      this.receiver?.presence(msg.p);
    }
  }

  /** Heartbeat out, recheck claims after an outage, and judge who went silent. */
  private tick(): void {
    if (!this.state.up || !this.nc) return;
    this.nc.publish(`${this.prefix}.all`, pack({ hb: this.nodeId, l: this.links?.address } satisfies AllMessage));
    if (this.recheckDue) void this.recheck();
    const now = Date.now();
    if (now < this.judgeFrom) return;
    for (const [node, at] of [...this.heard]) {
      if (now - at <= 3 * this.heartbeatMs) continue;
      this.heard.delete(node);
      this.links?.forget(node);
      this.log.warn({ node }, 'node gone: no heartbeat');
      this.receiver?.nodeGone(node);
    }
  }

  private rechecking = false;

  /** `check` of every held claim; a stale one fires `lost` (inside `check`). Done once every check was answered. */
  private async recheck(): Promise<void> {
    if (this.rechecking) return;
    this.rechecking = true;
    let answered = true;
    try {
      await Promise.all([...this.held.values()].map((c) => this.check(c).catch((err: unknown) => {
        if (!(err instanceof RouterError && err.code === 'STALE_EPOCH')) answered = false;
      })));
      if (answered) this.recheckDue = false;
    } finally {
      this.rechecking = false;
    }
  }

  /** A sign of life from `node`: from now on it is judged by its heartbeats, and seen gone when they stop. */
  private alive(node: NodeId): void {
    if (node !== this.nodeId) this.heard.set(node, Date.now());
  }

  private isGone(node: NodeId): boolean {
    return node !== this.nodeId && !this.heard.has(node) && Date.now() >= this.judgeFrom;
  }

  private async tellLost(prev: Claim, by: Claim): Promise<void> {
    if (this.isGone(prev.node)) return;
    try {
      await this.outbox.request(prev.node, { e: { k: 'takeover', to: prev.key, epoch: prev.epoch, by } });
    } catch (err) {
      // The fence holds without it: that node's checks now fail and envelopes for its epoch are `stale`.
      this.log.warn({ err, node: prev.node, user: prev.key }, 'earlier holder did not answer the takeover');
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') this.setHealth({ up: false, reason: `disconnected from ${s.server}` });
      else if (s.type === 'reconnect') this.setHealth({ up: true });
      else if (s.type === 'close' && !this.closing) this.setHealth({ up: false, reason: 'connection closed' });
    }
  }

  private setHealth(h: BusHealth): void {
    if (h.up === this.state.up) return;
    this.state = h;
    if (h.up) {
      // Everyone gets three fresh heartbeats before being judged: we heard nothing while we were away.
      const now = Date.now();
      this.judgeFrom = now + 3 * this.heartbeatMs;
      for (const node of this.heard.keys()) this.heard.set(node, now);
      if (this.held.size > 0) this.recheckDue = true;
      this.log.info({ node: this.nodeId }, 'bus up');
    } else {
      this.judgeFrom = Infinity;
      if (this.closing) this.log.info({ node: this.nodeId }, 'left the bus');
      else this.log.warn({ node: this.nodeId, reason: h.reason }, 'bus down');
    }
    this.receiver?.health(h);
  }

  private connection(): NatsConnection {
    if (!this.nc || !this.state.up) throw new RouterError('BUS_UNAVAILABLE', `bus unavailable: ${this.state.up ? 'not started' : this.state.reason}`);
    return this.nc;
  }

  private ready(): KV {
    this.connection();
    return this.kv!;
  }

  private async kvCall<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw busError(err);
    }
  }

  private stale(claim: Claim): RouterError {
    return new RouterError('STALE_EPOCH', `claim ${claim.epoch} of ${claim.key} is no longer current`);
  }

  private nodeSubject(node: NodeId): string {
    return `${this.prefix}.node.${node}`;
  }
}

/** KV keys allow [-/_=.A-Za-z0-9] with `.` as a separator; name keys can be any script: base64url of UTF-8. */
function kvKey(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function toValue(c: Claim): ClaimValue {
  return { e: c.epoch, s: c.sid, n: c.node, r: c.rank };
}

/** The claim a live KV value holds (`sid`, `node`: its `s` and `n`, checked present by the caller). */
function claimOf(key: string, v: ClaimValue, sid: string, node: NodeId): Claim {
  return { key, sid, node, epoch: v.e, rank: rankOf(v) };
}

function rankOf(v: ClaimValue): number {
  return typeof v.r === 'number' ? v.r : 0;
}

function readValue(entry: KvEntry): ClaimValue | null {
  if (entry.operation !== 'PUT') return null;
  const v = unpack(entry.value) as ClaimValue;
  return typeof v?.e === 'number' ? v : null;
}

function isConflict(err: unknown): boolean {
  return (err as { code?: unknown })?.code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test((err as Error)?.message ?? '');
}
