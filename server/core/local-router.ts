/**
 * The in-process Router adapter: the default, one node and no bus. Claims and epochs live in a `LocalBus` object;
 * `deliver` is a map lookup and a direct call into the receiver, so the hot path costs a lookup and a promise.
 *
 * Several routers may share one `LocalBus` (several hubs in one process, and the contract suite's "two nodes"):
 * they then behave as nodes of one deployment whose bus never fails. `crash()` takes a node off the bus without
 * releasing anything, as a process dying would.
 */
import { randomBytes } from 'node:crypto';
import {
  newerSession, RouterError, type AddressedEnvelope, type BusHealth, type Claim, type DeliveryStatus, type ForwardedEnvelope, type NodeId,
  type PresenceEnvelope, type Router, type RouterReceiver, type SettledEnvelope,
} from './router.ts';

/** What the routers of one process share: every claim, and a counter every epoch comes from. */
export class LocalBus {
  readonly claims = new Map<string, Claim>();
  readonly nodes = new Map<NodeId, LocalRouter>();
  /** One counter for all names: per-name growth with no per-name memory left behind by a release. */
  epoch = 0;
}

const UP: BusHealth = { up: true };

export class LocalRouter implements Router {
  readonly kind = 'in-process';
  readonly nodeId: NodeId;
  private readonly bus: LocalBus;
  private receiver: RouterReceiver | undefined;

  constructor(opts: { nodeId?: NodeId; bus?: LocalBus } = {}) {
    this.nodeId = opts.nodeId ?? randomBytes(6).toString('base64url');
    this.bus = opts.bus ?? new LocalBus();
  }

  start(receiver: RouterReceiver): Promise<void> {
    if (this.bus.nodes.has(this.nodeId)) return Promise.reject(new Error(`node id ${this.nodeId} is already on this bus`));
    this.receiver = receiver;
    this.bus.nodes.set(this.nodeId, this);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.bus.nodes.get(this.nodeId) !== this) return Promise.resolve();
    for (const [key, c] of this.bus.claims) if (c.node === this.nodeId) this.bus.claims.delete(key);
    this.leave();
    return Promise.resolve();
  }

  /** Leaves the bus without releasing claims, as a process killed with -9 would; the others see it gone at once. */
  crash(): void {
    if (this.bus.nodes.get(this.nodeId) === this) this.leave();
  }

  health(): BusHealth {
    return UP;
  }

  claim(key: string, sid: string, rank: number): Promise<Claim> {
    if (!this.live()) return this.closed();
    const previous = this.bus.claims.get(key);
    if (previous && newerSession(previous, { rank, sid })) {
      return Promise.reject(new RouterError('SUPERSEDED', `a newer session holds ${key}`));
    }
    const claim: Claim = { key, sid, node: this.nodeId, epoch: ++this.bus.epoch, rank };
    this.bus.claims.set(key, claim);
    if (previous) this.bus.nodes.get(previous.node)?.receiver?.lost(previous, claim);
    return Promise.resolve(claim);
  }

  release(claim: Claim): Promise<boolean> {
    if (!this.live()) return this.closed();
    const current = this.bus.claims.get(claim.key);
    if (current?.epoch !== claim.epoch) return Promise.resolve(false);
    this.bus.claims.delete(claim.key);
    return Promise.resolve(true);
  }

  locate(key: string): Promise<Claim | null> {
    if (!this.live()) return this.closed();
    return Promise.resolve(this.current(key) ?? null);
  }

  check(claim: Claim): Promise<void> {
    if (!this.live()) return this.closed();
    if (this.bus.claims.get(claim.key)?.epoch === claim.epoch) return Promise.resolve();
    if (claim.node === this.nodeId) this.receiver?.lost(claim, null);
    return Promise.reject(new RouterError('STALE_EPOCH', `claim ${claim.epoch} of ${claim.key} is no longer current`));
  }

  deliver(env: AddressedEnvelope, to?: Claim): Promise<DeliveryStatus> {
    if (!this.live()) return this.closed();
    return Promise.resolve(this.deliverNow(env, to));
  }

  /** `deliver` without the promise: what a same-process caller can use on its hot path. */
  deliverNow(env: AddressedEnvelope, to?: Claim): DeliveryStatus {
    const current = this.bus.claims.get(env.to);
    if (to !== undefined && current?.epoch !== to.epoch) return 'stale';
    if (current === undefined) return 'nobody';
    const node = this.bus.nodes.get(current.node);
    if (!node?.receiver) return 'gone';
    return node.receiver.envelope(current, env) ? 'taken' : 'refused';
  }

  settle(env: SettledEnvelope): Promise<'taken' | 'gone'> {
    if (!this.live()) return this.closed();
    const node = this.bus.nodes.get(env.node);
    if (!node?.receiver) return Promise.resolve('gone');
    node.receiver.settled(env);
    return Promise.resolve('taken');
  }

  forward(to: Claim, env: ForwardedEnvelope): void {
    if (!this.live()) throw new RouterError('BUS_UNAVAILABLE', 'router closed');
    const current = this.bus.claims.get(env.to);
    if (current?.epoch !== to.epoch) return;
    this.bus.nodes.get(current.node)?.receiver?.envelope(current, env);
  }

  broadcast(env: PresenceEnvelope): void {
    if (!this.live()) throw new RouterError('BUS_UNAVAILABLE', 'router closed');
    for (const node of [...this.bus.nodes.values()]) node.receiver?.presence(env);
  }

  private current(key: string): Claim | undefined {
    const c = this.bus.claims.get(key);
    return c && this.bus.nodes.has(c.node) ? c : undefined;
  }

  private live(): boolean {
    return this.bus.nodes.get(this.nodeId) === this;
  }

  private closed<T>(): Promise<T> {
    return Promise.reject(new RouterError('BUS_UNAVAILABLE', 'router closed'));
  }

  private leave(): void {
    this.bus.nodes.delete(this.nodeId);
    this.receiver = undefined;
    for (const node of [...this.bus.nodes.values()]) node.receiver?.nodeGone(this.nodeId);
  }
}
