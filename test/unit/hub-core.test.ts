/**
 * The hub's race logic driven by hand: a fake socket per session, an in-memory store whose calls the test holds
 * and releases, and a clock that moves only when told. Each test states its interleaving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../shared/codes.ts';
import { encodeChunk } from '../../shared/chunk.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { Delivery, Op, PROTOCOL_VERSION, type ClientFrame } from '../../shared/protocol.ts';
import { Accounts, type Auth } from '../../server/core/accounts.ts';
import { Hub, type HubOptions } from '../../server/core/hub.ts';
import { LocalBus, LocalRouter } from '../../server/core/local-router.ts';
import { createLogger } from '../../server/core/logger.ts';
import { hashPassword } from '../../server/core/passwords.ts';
import { RouterError, type AddressedEnvelope, type Claim, type DeliveryStatus, type NodeId, type RouterReceiver } from '../../server/core/router.ts';
import { FakeClock, FakeSession, MemoryStore, settle } from './hub-fakes.ts';

const OPTS: HubOptions = {
  queueCap: 100, retentionMs: 86_400_000, drainBatch: 100, helloTimeoutMs: 10_000, idleTimeoutMs: 60_000,
  frameRate: 1000, frameBurst: 1000, maxBadFrames: 10, dedupEntries: 1000, rooms: { historyCount: 200, memberLimit: 1000 },
  streams: { maxChunkBytes: 65_536, maxStreamsPerUser: 4, maxFileBytes: 1 << 30, windowBytes: 1 << 20, maxTotalBytes: 1 << 26 },
};

let hubs: Hub[] = [];
/**
 * Each session's rank (`Auth.created`), by sid, for the test: a sid's first socket gives it the next one, so a
 * session connected later is a newer sign-in, and a reconnect of one session keeps its rank.
 */
const ranks = new Map<string, number>();
afterEach(async () => {
  for (const h of hubs.splice(0)) await h.shutdown();
  ranks.clear();
});
const rankOf = (sid: string): number => {
  if (!ranks.has(sid)) ranks.set(sid, Date.now() - 60_000 + ranks.size);
  return ranks.get(sid)!;
};

/**
 * One node: a hub on a fake clock and an in-process router. Nodes made with the same `bus` and `store` are
 * nodes of one deployment (the in-process router between them never fails, except by `crash()`).
 */
function setup(opts: { bus?: LocalBus; store?: MemoryStore; node?: string; router?: LocalRouter } = {}) {
  const store = opts.store ?? new MemoryStore();
  for (const n of ['alice', 'bob', 'carol', 'dave']) store.addAccount(n);
  const clock = new FakeClock();
  const router = opts.router ?? new LocalRouter({ nodeId: opts.node ?? 'n1', bus: opts.bus ?? new LocalBus() });
  const log = createLogger('silent');
  const accounts = new Accounts(store, {
    sessionTtlMs: 86_400_000, scrypt: { N: 1024, r: 8, p: 1 },
    signinFailuresPerMinute: 10, signinFailureBurst: 10, registrationsPerMinute: 10, registrationBurst: 10,
  }, log);
  const hub = new Hub(store, accounts, OPTS, log, router, clock);
  void router.start(hub.receiver);
  hubs.push(hub);
  let sid = 0;
  /** Opens a socket for `name` (a new session unless `sameSid`), optionally sending hello. */
  const connect = (name: string, opts: { hello?: boolean; sid?: string } = {}): FakeSession => {
    const id = opts.sid ?? `s${++sid}`;
    const auth: Auth = { name, key: name, sid: id, expires: clock.now() + 86_400_000, created: rankOf(id), replaced: false };
    const s = new FakeSession(auth);
    hub.open(s, auth);
    if (opts.hello !== false) frame(s, { t: Op.Hello, v: PROTOCOL_VERSION });
    return s;
  };
  const frame = (s: FakeSession, f: ClientFrame): void => hub.frame(s, encodeFrame(f));
  const send = (s: FakeSession, to: string, id: string, text = id): void => frame(s, { t: Op.Send, to, id, text });
  const ackAll = (s: FakeSession): void => {
    const tags = s.of(Op.Message).map((m) => m.tag);
    if (tags.length) frame(s, { t: Op.Ack, tags });
  };
  /** The latest receipt state of message `id` seen by `s`. */
  const stateOf = (s: FakeSession, id: string): Delivery | undefined =>
    s.of(Op.Receipt).flatMap((r) => r.items).filter((i) => i[0] === id).at(-1)?.[2];
  return { store, clock, hub, router, accounts, connect, frame, send, ackAll, stateOf };
}

const ids = (s: FakeSession): string[] => s.of(Op.Message).map((m) => m.id);

/**
 * An in-process router whose news the test holds: `nodeGone` waits in `gone` until `tellGone()` (a NATS node sees
 * a dead node gone only after 3 heartbeats, while requests to it are answered `gone` at once), and while
 * `holdLocates` is set each `locate` waits in `locates` until the test calls it.
 */
class HeldRouter extends LocalRouter {
  holdLocates = false;
  readonly locates: Array<() => void> = [];
  readonly gone: NodeId[] = [];
  private inner: RouterReceiver | undefined;

  override start(receiver: RouterReceiver): Promise<void> {
    this.inner = receiver;
    return super.start({
      envelope: (c, e) => receiver.envelope(c, e), settled: (e) => receiver.settled(e), presence: (e) => receiver.presence(e),
      lost: (c, by) => receiver.lost(c, by), health: (h) => receiver.health(h), nodeGone: (n) => void this.gone.push(n),
    });
  }

  tellGone(): void {
    for (const n of this.gone.splice(0)) this.inner?.nodeGone(n);
  }

  override locate(key: string): Promise<Claim | null> {
    if (!this.holdLocates) return super.locate(key);
    return new Promise((resolve, reject) => this.locates.push(() => void super.locate(key).then(resolve, reject)));
  }
}

describe('hub: drain settling', () => {
  it('messages sent while a queued write is still landing wait in memory and come after it, in order', async () => {
    const { store, connect, send, ackAll, stateOf } = setup();
    const alice = connect('alice');
    await settle();
    // bob is offline: alice's first message goes to the store, and the test holds that write.
    const write = store.hold('enqueue');
    send(alice, 'bob', 'm1-queued-xx');
    const held = await write;
    // bob signs in while it is in the air: his drain reads an empty queue with a write pending, so it settles.
    const bob = connect('bob');
    await settle();
    expect(ids(bob)).toEqual([]);
    send(alice, 'bob', 'm2-held-xxxx');
    send(alice, 'bob', 'm3-held-xxxx');
    await settle();
    expect(store.queue('bob')).toHaveLength(0); // m2, m3 did not join the queue: they wait in memory
    expect(ids(bob)).toEqual([]);
    expect(stateOf(alice, 'm2-held-xxxx')).toBe(Delivery.Accepted);
    held.release();
    await settle();
    expect(ids(bob)).toEqual(['m1-queued-xx']);
    expect(stateOf(alice, 'm1-queued-xx')).toBe(Delivery.Queued);
    ackAll(bob);
    await settle();
    expect(ids(bob)).toEqual(['m1-queued-xx', 'm2-held-xxxx', 'm3-held-xxxx']);
    expect(store.queue('bob')).toHaveLength(0);
    ackAll(bob);
    await settle();
    expect(stateOf(alice, 'm3-held-xxxx')).toBe(Delivery.Delivered);
  });

  it('a session is live only after the batch it was handed is acked, and then deletes it', async () => {
    const { store, connect, send, ackAll } = setup();
    const alice = connect('alice');
    await settle();
    send(alice, 'bob', 'q1-xxxxxxxx');
    send(alice, 'bob', 'q2-xxxxxxxx');
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['q1-xxxxxxxx', 'q2-xxxxxxxx']);
    const bob = connect('bob');
    await settle();
    expect(bob.of(Op.Message).map((m) => [m.id, m.queued])).toEqual([['q1-xxxxxxxx', true], ['q2-xxxxxxxx', true]]);
    expect(bob.phase).toBe('draining');
    ackAll(bob);
    await settle();
    expect(bob.phase).toBe('live');
    expect(store.queue('bob')).toHaveLength(0);
  });
});

describe('hub: requeue during a store outage', () => {
  it('in-flight messages of a session that left wait in memory and are queued once a probe finds the store back', async () => {
    const { store, clock, hub, connect, send, stateOf } = setup();
    const alice = connect('alice');
    const bob = connect('bob');
    await settle();
    expect(bob.phase).toBe('live');
    send(alice, 'bob', 'live1-xxxxxx');
    send(alice, 'bob', 'live2-xxxxxx');
    await settle();
    expect(ids(bob)).toEqual(['live1-xxxxxx', 'live2-xxxxxx']);
    store.down = true;
    hub.closed(bob, 1006); // bob drops before acking, while the store is down
    await settle();
    expect(hub.storeHealthy).toBe(false);
    expect(stateOf(alice, 'live1-xxxxxx')).toBe(Delivery.Accepted);
    // Probes fail while the store is down: nothing is queued, nothing is lost.
    clock.advance(250);
    await settle();
    expect(store.queue('bob')).toHaveLength(0);
    store.down = false;
    clock.advance(500);
    await settle();
    expect(hub.storeHealthy).toBe(true);
    expect(store.queue('bob').map((m) => m.id)).toEqual(['live1-xxxxxx', 'live2-xxxxxx']);
    expect(stateOf(alice, 'live2-xxxxxx')).toBe(Delivery.Queued);
  });

  it('a sender to an offline recipient gets STORE_UNAVAILABLE, never a false queued', async () => {
    const { store, connect, send, stateOf } = setup();
    const alice = connect('alice');
    await settle();
    store.down = true;
    send(alice, 'bob', 'down1-xxxxxx');
    await settle();
    expect(alice.of(Op.Error).map((e) => [e.code, e.ref])).toEqual([['STORE_UNAVAILABLE', 'down1-xxxxxx']]);
    expect(stateOf(alice, 'down1-xxxxxx')).toBeUndefined();
  });
});

describe('hub: takeover', () => {
  it('a sign-in elsewhere closes the live socket with takeover and 4001, and its in-flight messages are queued', async () => {
    const { store, accounts, connect, send, stateOf } = setup();
    const alice = connect('alice');
    const bob = connect('bob');
    await settle();
    send(alice, 'bob', 'fly1-xxxxxxx');
    await settle();
    expect(ids(bob)).toEqual(['fly1-xxxxxxx']);
    accounts.onTakeover('bob', 'a-newer-session', [bob.sid]);
    expect(bob.of(Op.Takeover)).toHaveLength(1);
    expect(bob.closedWith?.code).toBe(CloseCode.TAKEOVER);
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['fly1-xxxxxxx']);
    expect(stateOf(alice, 'fly1-xxxxxxx')).toBe(Delivery.Queued);
  });

  it('a socket of another session of the name takes over; one of the same session replaces with 4006', async () => {
    const { hub, connect } = setup();
    const first = connect('bob', { sid: 'one' });
    const again = connect('bob', { sid: 'one' });
    expect(first.closedWith?.code).toBe(CloseCode.REPLACED);
    expect(first.of(Op.Takeover)).toHaveLength(0);
    const other = connect('bob', { sid: 'two' });
    expect(again.closedWith?.code).toBe(CloseCode.TAKEOVER);
    expect(again.of(Op.Takeover)).toHaveLength(1);
    expect(other.closedWith).toBeUndefined();
    expect(hub.onlineCount).toBe(1);
  });

  it('the idle sweeper, on the injected clock, reaps a quiet session with 4005', async () => {
    const { clock, connect } = setup();
    const bob = connect('bob');
    clock.advance(OPTS.idleTimeoutMs - 1000);
    expect(bob.closedWith).toBeUndefined();
    clock.advance(30_000);
    expect(bob.closedWith?.code).toBe(CloseCode.IDLE);
  });
});

describe('hub: queue order for a recipient not yet looked up', () => {
  it('first sends to an uncached offline recipient are queued in the order they were sent', async () => {
    const { store, connect, send, stateOf } = setup();
    const alice = connect('alice');
    await settle();
    // dave's name is not in memory yet: the first send reads his account, and the test holds that read.
    const read = store.hold('getAccount');
    send(alice, 'dave', 'first-xxxxxx');
    const held = await read;
    send(alice, 'dave', 'second-xxxxx');
    await settle();
    held.release();
    await settle();
    expect(store.queue('dave').map((m) => m.id)).toEqual(['first-xxxxxx', 'second-xxxxx']);
    expect(stateOf(alice, 'second-xxxxx')).toBe(Delivery.Queued);
  });
});

/** The in-process router with claims the test resolves or rejects by hand (as a NATS round trip would take time). */
class SlowClaims extends LocalRouter {
  readonly waiting: Array<{ go: () => void; fail: (err: Error) => void }> = [];
  override claim(key: string, sid: string, rank: number): Promise<Claim> {
    return new Promise((resolve, reject) => this.waiting.push({
      go: () => resolve(super.claim(key, sid, rank)),
      fail: reject,
    }));
  }
}

describe('hub: the claim of a name', () => {
  it('welcome waits for the claim; frames sent meanwhile are told to wait', async () => {
    const router = new SlowClaims({ nodeId: 'n1' });
    const { connect, frame } = setup({ router });
    const bob = connect('bob');
    await settle();
    expect(bob.of(Op.Welcome)).toHaveLength(0);
    expect(bob.phase).toBe('claiming');
    frame(bob, { t: Op.Send, to: 'alice', id: 'too-early-xx', text: 'x' });
    expect(bob.of(Op.Error).map((e) => [e.code, e.ref])).toEqual([['NOT_READY', 'too-early-xx']]);
    router.waiting[0]!.go();
    await settle();
    expect(bob.of(Op.Welcome)).toHaveLength(1);
    expect(bob.phase).toBe('live');
  });

  it('a claim the router refuses (bus down) closes the socket with TRY_AGAIN', async () => {
    const router = new SlowClaims({ nodeId: 'n1' });
    const { connect } = setup({ router });
    const bob = connect('bob');
    await settle();
    router.waiting[0]!.fail(new RouterError('BUS_UNAVAILABLE', 'bus down'));
    await settle();
    expect(bob.closedWith?.code).toBe(CloseCode.TRY_AGAIN);
    expect(bob.of(Op.Welcome)).toHaveLength(0);
  });
});

/**
 * The in-process router whose answers to text deliveries the test releases by hand: the holder's node takes the
 * text at once (as a NATS request arrives), but the sender's node hears `taken` only when told, as a reply that
 * is still on the wire, or waits behind an earlier text's answer, while the recipient already acked.
 */
class SlowTextAnswers extends LocalRouter {
  /** Releases one text's answer: as it was, or lost on the way (NO_ANSWER) when `lost`. */
  readonly answers: Array<(lost?: boolean) => void> = [];
  override deliver(env: AddressedEnvelope, to?: Claim): Promise<DeliveryStatus> {
    const status = super.deliver(env, to);
    if (env.k !== 'text') return status;
    return new Promise((resolve, reject) => this.answers.push((lost) => {
      if (lost) reject(new RouterError('NO_ANSWER', 'no answer from the bus in time'));
      else resolve(status);
    }));
  }
}

/** Holds the answer to each stream offer (delivered at once) until the test releases it. */
class SlowOfferAnswers extends LocalRouter {
  readonly answers: Array<() => void> = [];
  override deliver(env: AddressedEnvelope, to?: Claim): Promise<DeliveryStatus> {
    const status = super.deliver(env, to);
    if (env.k !== 'stream' || env.frame.t !== Op.StreamOffered) return status;
    return new Promise((resolve) => this.answers.push(() => resolve(status)));
  }
}

/**
 * The in-process router as a NATS node behaves when its claim waits for the earlier holder's node to answer the
 * takeover: the claim is on the bus at once (later claims of the name see it and take it over), but `claim`
 * resolves only when the test calls `answers[i]()`. And, as the NATS adapter does, it tells `lost` once per claim:
 * a later fence check of a claim already reported lost only rejects (LocalRouter's would report it again).
 */
class SlowClaimAnswers extends LocalRouter {
  readonly answers: Array<() => void> = [];
  override start(receiver: RouterReceiver): Promise<void> {
    const told = new Set<number>();
    return super.start({
      ...receiver,
      lost: (c, by) => {
        if (told.has(c.epoch)) return;
        told.add(c.epoch);
        receiver.lost(c, by);
      },
    });
  }

  override claim(key: string, sid: string, rank: number): Promise<Claim> {
    const made = super.claim(key, sid, rank);
    return new Promise((resolve, reject) => this.answers.push(() => void made.then(resolve, reject)));
  }
}

describe('hub: two nodes on one in-process bus', () => {
  function cluster() {
    const bus = new LocalBus();
    const store = new MemoryStore();
    return { n1: setup({ bus, store, node: 'n1' }), n2: setup({ bus, store, node: 'n2' }), store };
  }

  it('a text to a recipient on the other node is delivered there; accepted, then delivered once acked', async () => {
    const { n1, n2, store } = cluster();
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.send(alice, 'bob', 'x-node-1xxxx');
    await settle();
    expect(ids(bob)).toEqual(['x-node-1xxxx']);
    expect(bob.of(Op.Message)[0]).toMatchObject({ from: 'alice', text: 'x-node-1xxxx' });
    expect(n1.stateOf(alice, 'x-node-1xxxx')).toBe(Delivery.Accepted);
    n2.ackAll(bob);
    await settle();
    expect(n1.stateOf(alice, 'x-node-1xxxx')).toBe(Delivery.Delivered);
    expect(store.queue('bob')).toHaveLength(0);
  });

  it("the recipient's ack settles a text before the sender's node heard `taken`: the sender still ends delivered", async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const router = new SlowTextAnswers({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router });
    const n2 = setup({ bus, store, node: 'n2' });
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.send(alice, 'bob', 'early-settle');
    n1.send(alice, 'bob', 'early-later1');
    await settle();
    expect(ids(bob)).toEqual(['early-settle', 'early-later1']);
    n2.ackAll(bob); // both settled (delivered) to n1, whose `deliver` answers are still outstanding
    await settle();
    router.answers[1]!(); // the second answer first: it waits behind the first, as answers apply in send order
    await settle();
    router.answers[0]!();
    await settle();
    expect(n1.stateOf(alice, 'early-settle')).toBe(Delivery.Delivered);
    expect(n1.stateOf(alice, 'early-later1')).toBe(Delivery.Delivered);
    expect(n1.hub.remoteCopies).toBe(0); // no copy left behind to be queued again later
    // A resend of either id is answered from the de-duplication memory: delivered, not sent again.
    n1.send(alice, 'bob', 'early-settle');
    await settle();
    expect(n1.stateOf(alice, 'early-settle')).toBe(Delivery.Delivered);
    expect(ids(bob)).toHaveLength(2);
    expect(store.queue('bob')).toHaveLength(0);
  });

  it('a text settled delivered whose own answer was lost is not queued: the sender sees delivered', async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const router = new SlowTextAnswers({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router });
    const n2 = setup({ bus, store, node: 'n2' });
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.send(alice, 'bob', 'lost-answer1');
    await settle();
    n2.ackAll(bob);
    await settle();
    router.answers[0]!(true);
    await settle();
    expect(n1.stateOf(alice, 'lost-answer1')).toBe(Delivery.Delivered);
    expect(store.queue('bob')).toHaveLength(0);
    expect(ids(bob)).toEqual(['lost-answer1']);
  });

  it('the recipient drops before acking: its node queues the text and the sender sees queued', async () => {
    const { n1, n2, store } = cluster();
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.send(alice, 'bob', 'drop-1xxxxxx');
    await settle();
    n2.hub.closed(bob, 1006);
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['drop-1xxxxxx']);
    expect(n1.stateOf(alice, 'drop-1xxxxxx')).toBe(Delivery.Queued);
  });

  it("the recipient's node dies with the text unacked: the sender's node queues its copy", async () => {
    const { n1, n2, store } = cluster();
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.send(alice, 'bob', 'gone-1xxxxxx');
    await settle();
    expect(ids(bob)).toEqual(['gone-1xxxxxx']);
    n2.router.crash();
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['gone-1xxxxxx']);
    expect(n1.stateOf(alice, 'gone-1xxxxxx')).toBe(Delivery.Queued);
  });

  it("texts sent after the recipient's node died, before it is seen gone, are queued after the copies it had taken", async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const r1 = new HeldRouter({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router: r1 });
    const n2 = setup({ bus, store, node: 'n2' });
    const alice = n1.connect('alice');
    const bob = n2.connect('bob'); // never acks
    await settle();
    n1.send(alice, 'bob', 'taken-1xxxxx');
    n1.send(alice, 'bob', 'taken-2xxxxx');
    await settle();
    expect(ids(bob)).toEqual(['taken-1xxxxx', 'taken-2xxxxx']);
    n2.router.crash();
    await settle();
    expect(r1.gone).toEqual(['n2']); // n1 has not heard yet: its copies of the two are still kept
    // The next text finds bob's node gone (answered `gone`) and nobody else holding him: the queue. The two
    // copies go there first, so bob's queue keeps the order alice sent in.
    n1.send(alice, 'bob', 'after-1xxxxx');
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['taken-1xxxxx', 'taken-2xxxxx', 'after-1xxxxx']);
    r1.tellGone();
    await settle();
    expect(store.queue('bob').map((m) => m.id)).toEqual(['taken-1xxxxx', 'taken-2xxxxx', 'after-1xxxxx']);
    for (const id of ['taken-1xxxxx', 'taken-2xxxxx', 'after-1xxxxx']) expect(n1.stateOf(alice, id)).toBe(Delivery.Queued);
    const again = n1.connect('bob');
    await settle();
    expect(ids(again)).toEqual(['taken-1xxxxx', 'taken-2xxxxx', 'after-1xxxxx']);
  });

  it('texts to a recipient on another node leave in send order while its holder is being located', async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const r1 = new HeldRouter({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router: r1 });
    const n2 = setup({ bus, store, node: 'n2' });
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    r1.holdLocates = true;
    n1.send(alice, 'bob', 'first-xxxxxx');
    n1.send(alice, 'bob', 'second-xxxxx');
    await settle();
    // The first answer arrives; a third text sent now knows where bob is, but must not pass the second.
    r1.locates.shift()!();
    await settle();
    n1.send(alice, 'bob', 'third-xxxxxx');
    await settle();
    while (r1.locates.length > 0) r1.locates.shift()!();
    await settle();
    expect(ids(bob)).toEqual(['first-xxxxxx', 'second-xxxxx', 'third-xxxxxx']);
    expect(store.queue('bob')).toHaveLength(0);
  });

  it('a text queued by one node just as the recipient turned live on the other still reaches it (wake)', async () => {
    const { n1, n2, store } = cluster();
    const alice = n1.connect('alice');
    await settle();
    const write = store.hold('enqueue');
    n1.send(alice, 'bob', 'late-write-x'); // nobody holds bob: n1 queues it, and the test holds the write
    const held = await write;
    const bob = n2.connect('bob');
    await settle();
    expect(bob.phase).toBe('live'); // n2's drain read an empty queue: the write had not landed
    held.release();
    await settle();
    expect(ids(bob)).toEqual(['late-write-x']);
    expect(bob.of(Op.Message)[0]?.queued).toBe(true);
    n2.ackAll(bob);
    await settle();
    expect(bob.phase).toBe('live');
    expect(store.queue('bob')).toHaveLength(0);
    expect(n1.stateOf(alice, 'late-write-x')).toBe(Delivery.Delivered);
  });

  it('a socket of another session on the other node takes the name over: takeover and 4001 here', async () => {
    const { n1, n2 } = cluster();
    const old = n1.connect('bob', { sid: 'old' });
    await settle();
    const fresh = n2.connect('bob', { sid: 'new' });
    await settle();
    expect(old.of(Op.Takeover)).toHaveLength(1);
    expect(old.closedWith?.code).toBe(CloseCode.TAKEOVER);
    expect(fresh.closedWith).toBeUndefined();
    expect(n1.hub.onlineCount).toBe(0);
  });

  it('a sign-in on the other node closes the live socket here with takeover and 4001', async () => {
    const { n1, n2 } = cluster();
    const old = n1.connect('bob', { sid: 'old' });
    await settle();
    await n2.accounts.onTakeover('bob', 'signed-in-now', ['old']);
    expect(old.of(Op.Takeover)).toHaveLength(1);
    expect(old.closedWith?.code).toBe(CloseCode.TAKEOVER);
  });

  it('a sign-in closes only the sessions it replaced: a newer session live on the other node stays', async () => {
    const { n1, n2 } = cluster();
    // The newest session's socket claimed the name on n1; an older sign-in on n2 (it replaced only 'oldest')
    // finishes its takeover after that claim.
    const newest = n1.connect('bob', { sid: 'newest' });
    await settle();
    await n2.accounts.onTakeover('bob', 'older', ['oldest']);
    await settle();
    expect(newest.of(Op.Takeover)).toHaveLength(0);
    expect(newest.closedWith).toBeUndefined();
    expect(n1.hub.onlineCount).toBe(1);
  });

  it('a session signed in on the other node opens here after a sign-in here; the one it replaced is turned away', async () => {
    const { n1, n2, store } = cluster();
    const password = 'a long enough password';
    store.accounts.set('bob', { key: 'bob', name: 'bob', passwordHash: await hashPassword(password, { N: 1024, r: 8, p: 1 }), created: 0 });
    const first = await n1.accounts.signIn('bob', password, '192.0.2.1');
    // Authenticated before the newer sign-in, opened after it (the race `open` decides synchronously).
    const firstAuth = (await n2.accounts.authenticate(first.token))!;
    expect(firstAuth.replaced).toBe(false);
    const second = await n2.accounts.signIn('bob', password, '192.0.2.2');
    const late = new FakeSession(firstAuth);
    n2.hub.open(late, firstAuth);
    expect(late.closedWith?.code).toBe(CloseCode.TAKEOVER);
    const secondAuth = (await n1.accounts.authenticate(second.token))!;
    expect(secondAuth.replaced).toBe(false);
    const live = new FakeSession(secondAuth);
    n1.hub.open(live, secondAuth);
    await settle();
    expect(live.closedWith).toBeUndefined();
    expect(n1.hub.onlineCount).toBe(1);
    expect((await n1.accounts.authenticate(first.token))?.replaced).toBe(true);
  });

  it('a claim taken over before it resolved: its socket is told and closed with 4001, never welcomed', async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const slow = new SlowClaimAnswers({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router: slow });
    const n2 = setup({ bus, store, node: 'n2' });
    // The older session's claim is on the bus, its answer still on the way, when a newer socket claims on n2.
    const older = n1.connect('bob', { sid: 'older' });
    await settle();
    const newer = n2.connect('bob', { sid: 'newer' });
    await settle();
    slow.answers[0]!();
    await settle();
    expect(older.of(Op.Welcome)).toHaveLength(0);
    expect(older.of(Op.Takeover)).toHaveLength(1);
    expect(older.closedWith?.code).toBe(CloseCode.TAKEOVER);
    expect(newer.of(Op.Welcome)).toHaveLength(1);
    expect(newer.closedWith).toBeUndefined();
    expect([n1.hub.onlineCount, n2.hub.onlineCount]).toEqual([0, 1]);
  });

  it("an older session's claim that lands after the newest session's is refused: the newest stays live, the older is closed with 4001", async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const slow = new SlowClaims({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router: slow });
    const n2 = setup({ bus, store, node: 'n2' });
    const carol = n2.connect('carol');
    await settle();
    n2.frame(carol, { t: Op.Follow, names: ['bob'] });
    await settle();
    // The older session's socket opened on n1 (its session was current then) and its claim is on its way...
    const older = n1.connect('bob', { sid: 'older' });
    await settle();
    expect(slow.waiting).toHaveLength(1);
    // ...when a newer sign-in on n2 replaces it: nobody holds the name yet, so there is no socket to close.
    await n2.accounts.onTakeover('bob', 'newer', ['older']);
    const newer = n2.connect('bob', { sid: 'newer' });
    await settle();
    expect(newer.of(Op.Welcome)).toHaveLength(1);
    // The older claim lands after the newest session's.
    slow.waiting[0]!.go();
    await settle();
    expect(older.of(Op.Welcome)).toHaveLength(0);
    expect(older.of(Op.Takeover)).toHaveLength(1);
    expect(older.closedWith?.code).toBe(CloseCode.TAKEOVER);
    expect(newer.of(Op.Takeover)).toHaveLength(0);
    expect(newer.closedWith).toBeUndefined();
    expect([n1.hub.onlineCount, n2.hub.onlineCount]).toEqual([0, 2]); // n2: bob and carol
    // The newest session still receives, from either node.
    const alice = n1.connect('alice');
    await settle();
    slow.waiting[1]!.go();
    await settle();
    n1.send(alice, 'bob', 'after-race-x');
    await settle();
    expect(ids(newer)).toEqual(['after-race-x']);
    // Followers saw bob offline when they followed, then online, and no offline from the refused socket.
    expect(carol.of(Op.Presence).filter((p) => p.name === 'bob').map((p) => p.online)).toEqual([false, true]);
  });

  it('an older session opening on the node where the newest is live is turned away with 4001; the newest stays', async () => {
    const { n1, n2 } = cluster();
    rankOf('older'); // signed in first...
    const newer = n1.connect('bob', { sid: 'newer' });
    await settle();
    // ...its socket authenticated before the newer sign-in (on n2) replaced it, and opens on n1 only now.
    await n2.accounts.onTakeover('bob', 'newer', ['older']);
    const older = n1.connect('bob', { sid: 'older' });
    await settle();
    expect(older.of(Op.Takeover)).toHaveLength(1);
    expect(older.closedWith?.code).toBe(CloseCode.TAKEOVER);
    expect(older.of(Op.Welcome)).toHaveLength(0);
    expect(newer.closedWith).toBeUndefined();
    expect(newer.of(Op.Takeover)).toHaveLength(0);
    expect(n1.hub.onlineCount).toBe(1);
  });

  it('a session closed before its turn to claim claims nothing: the newer session on the other node keeps the name', async () => {
    const bus = new LocalBus();
    const store = new MemoryStore();
    const slow = new SlowClaims({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, router: slow });
    const n2 = setup({ bus, store, node: 'n2' });
    n1.connect('bob', { sid: 'a' });
    await settle(); // a's claim is asked for and waits
    const b = n1.connect('bob', { sid: 'b' }); // replaces a here; its claim comes after a's
    await n1.accounts.onTakeover('bob', 'c', ['b']); // a sign-in of c replaced b before b's turn
    expect(b.closedWith?.code).toBe(CloseCode.TAKEOVER);
    slow.waiting[0]!.go();
    await settle();
    const c = n2.connect('bob', { sid: 'c' });
    await settle();
    expect(c.of(Op.Welcome)).toHaveLength(1);
    for (const w of slow.waiting.slice(1)) w.go(); // a claim made for b would land now, after c's
    await settle();
    expect(c.of(Op.Takeover)).toHaveLength(0);
    expect(c.closedWith).toBeUndefined();
    expect(slow.waiting).toHaveLength(1);
    expect([n1.hub.onlineCount, n2.hub.onlineCount]).toEqual([0, 1]);
  });

  it('presence crosses nodes, and a move between nodes shows no offline', async () => {
    const { n1, n2 } = cluster();
    const carol = n1.connect('carol');
    await settle();
    n1.frame(carol, { t: Op.Follow, names: ['bob'] });
    await settle();
    const bob = n2.connect('bob', { sid: 'b1' });
    await settle();
    expect(carol.of(Op.Presence).map((p) => p.online)).toEqual([false, true]);
    n1.connect('bob', { sid: 'b1' }); // the same session moves to carol's node
    await settle();
    expect(bob.closedWith?.code).toBe(CloseCode.REPLACED);
    expect(carol.of(Op.Presence).map((p) => p.online)).toEqual([false, true, true]);
    const dave = n2.connect('dave');
    await settle();
    n2.frame(dave, { t: Op.Follow, names: ['bob'] });
    await settle();
    expect(dave.of(Op.Presence).map((p) => p.online)).toEqual([false, true]);
  });

  it('read receipts and typing reach a contact on the other node, stamped with the sender', async () => {
    const { n1, n2 } = cluster();
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n2.frame(bob, { t: Op.Read, to: 'alice', ids: ['m-read-xxxxx'] });
    n1.frame(alice, { t: Op.Typing, to: 'bob', on: true });
    await settle();
    expect(alice.of(Op.ReadBy)).toEqual([{ t: Op.ReadBy, by: 'bob', ids: ['m-read-xxxxx'] }]);
    expect(bob.of(Op.TypingFrom)).toEqual([{ t: Op.TypingFrom, from: 'alice', on: true }]);
  });

  async function streamBetween(n1: ReturnType<typeof setup>, n2: ReturnType<typeof setup>) {
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.frame(alice, { t: Op.StreamOffer, ref: 'r1', to: 'bob', name: 'clip.webm', size: 10, mime: 'video/webm', container: 'webm' });
    await settle();
    const offered = bob.of(Op.StreamOffered)[0]!;
    expect(offered).toMatchObject({ from: 'alice', to: 'bob', name: 'clip.webm', size: 10 });
    expect(alice.of(Op.StreamOffered)[0]).toMatchObject({ sid: offered.sid, ref: 'r1' });
    return { alice, bob, sid: offered.sid };
  }

  it('a stream crosses nodes: offer, accept with credit, chunks forwarded untouched, end', async () => {
    const { n1, n2 } = cluster();
    const { alice, bob, sid } = await streamBetween(n1, n2);
    expect(sid).toBeGreaterThanOrEqual(0x80000000); // ids made for streams across nodes never meet the local relay's
    n2.frame(bob, { t: Op.StreamAnswer, sid, accept: true, credit: 6 });
    await settle();
    expect(alice.of(Op.StreamAnswered)[0]).toMatchObject({ sid, accept: true });
    expect(alice.of(Op.StreamGranted).map((g) => g.bytes)).toEqual([6]);
    const first = encodeChunk(sid, 0, new Uint8Array([1, 2, 3, 4, 5, 6]));
    n1.hub.frame(alice, first);
    await settle();
    expect(bob.frames.filter((f) => (f as { t: unknown }).t === 'chunk')).toHaveLength(1);
    // Beyond the credit: refused on the sender's node, and the stream aborts on both sides.
    n1.hub.frame(alice, encodeChunk(sid, 6, new Uint8Array([7, 8, 9, 10])));
    await settle();
    expect(alice.of(Op.Error).map((e) => e.code)).toEqual(['STREAM_NO_CREDIT']);
    expect(bob.of(Op.StreamAborted)[0]).toMatchObject({ sid, reason: 'PROTOCOL' });
  });

  it("the recipient's answer and credit overtaking the answer to the offer reach the sender after its streamOffered", async () => {
    // The answer and credit go by `forward` (a direct link between NATS nodes), the offer's answer by the bus: the
    // first can arrive first. The sender's node holds them until the sender has its `streamOffered`.
    const bus = new LocalBus();
    const store = new MemoryStore();
    const slowOffers = new SlowOfferAnswers({ nodeId: 'n1', bus });
    const n1 = setup({ bus, store, node: 'n1', router: slowOffers });
    const n2 = setup({ bus, store, node: 'n2' });
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await settle();
    n1.frame(alice, { t: Op.StreamOffer, ref: 'r1', to: 'bob', name: 'clip.webm', size: 10, mime: 'video/webm', container: 'webm' });
    await settle();
    const { sid } = bob.of(Op.StreamOffered)[0]!;
    n2.frame(bob, { t: Op.StreamAnswer, sid, accept: true, credit: 10 });
    await settle();
    expect(alice.of(Op.StreamAnswered)).toEqual([]); // held: alice does not know the stream yet
    expect(alice.of(Op.StreamGranted)).toEqual([]);
    slowOffers.answers.splice(0).forEach((release) => release());
    await settle();
    const order = alice.frames.map((f) => (f as { t: unknown }).t).filter((t) => t === Op.StreamOffered || t === Op.StreamAnswered || t === Op.StreamGranted);
    expect(order).toEqual([Op.StreamOffered, Op.StreamAnswered, Op.StreamGranted]);
    n1.hub.frame(alice, encodeChunk(sid, 0, new Uint8Array(10)));
    n1.frame(alice, { t: Op.StreamEnd, sid });
    await settle();
    expect(bob.of(Op.StreamEnded)[0]).toMatchObject({ sid, bytes: 10 });
  });

  it('a stream ends once every byte crossed; credit granted as the recipient asks', async () => {
    const { n1, n2 } = cluster();
    const { alice, bob, sid } = await streamBetween(n1, n2);
    n2.frame(bob, { t: Op.StreamAnswer, sid, accept: true, credit: 4 });
    await settle();
    n1.hub.frame(alice, encodeChunk(sid, 0, new Uint8Array([1, 2, 3, 4])));
    n2.frame(bob, { t: Op.StreamCredit, sid, bytes: 6 });
    await settle();
    n1.hub.frame(alice, encodeChunk(sid, 4, new Uint8Array([5, 6, 7, 8, 9, 10])));
    n1.frame(alice, { t: Op.StreamEnd, sid });
    await settle();
    expect(bob.frames.filter((f) => (f as { t: unknown }).t === 'chunk')).toHaveLength(2);
    expect(bob.of(Op.StreamEnded)[0]).toMatchObject({ sid, bytes: 10 });
    expect(alice.of(Op.StreamEnded)[0]).toMatchObject({ sid, bytes: 10 });
    expect(n1.hub.remoteStreams.size + n2.hub.remoteStreams.size).toBe(0);
  });

  it("a stream is aborted with a reason on both sides when one side leaves, and when the other's node dies", async () => {
    const { n1, n2 } = cluster();
    const first = await streamBetween(n1, n2);
    n2.hub.closed(first.bob, 1006);
    await settle();
    expect(first.alice.of(Op.StreamAborted)[0]).toMatchObject({ sid: first.sid, reason: 'RECIPIENT_DISCONNECTED' });

    const bob = n2.connect('bob', { sid: 'again' });
    await settle();
    n1.frame(first.alice, { t: Op.StreamOffer, ref: 'r2', to: 'bob', name: 'b.webm', size: 10, mime: 'video/webm', container: 'webm' });
    await settle();
    const sid = bob.of(Op.StreamOffered)[0]!.sid;
    n2.router.crash();
    await settle();
    expect(first.alice.of(Op.StreamAborted).find((a) => a.sid === sid)).toMatchObject({ reason: 'RECIPIENT_DISCONNECTED' });
  });
});
