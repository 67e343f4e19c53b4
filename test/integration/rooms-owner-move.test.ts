/**
 * A room's owner claim moving between two live nodes (the node that loses it forgets the room; its members, its
 * own and those it served for the other node, attach to the new owner), stated step by step: two hubs in this
 * process on one in-process bus (`LocalBus`, the router contract's "two nodes") and one real embedded store, fake
 * sockets that record what they are sent. The three-process version, with NATS and `kill -9`, is rooms-nodes.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION, type ClientFrame, type MessageFrame } from '../../shared/protocol.ts';
import { Accounts, type Auth } from '../../server/core/accounts.ts';
import { Hub, type HubOptions } from '../../server/core/hub.ts';
import { LocalBus, LocalRouter } from '../../server/core/local-router.ts';
import { createLogger } from '../../server/core/logger.ts';
import { ROOM_CLAIM } from '../../server/core/room-nodes.ts';
import type { Store } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { FakeClock, FakeSession } from '../unit/hub-fakes.ts';
import { until } from '../support/harness.ts';

const OPTS: HubOptions = {
  queueCap: 1000, retentionMs: 86_400_000, drainBatch: 100, helloTimeoutMs: 10_000, idleTimeoutMs: 60_000,
  frameRate: 1000, frameBurst: 1000, maxBadFrames: 10, dedupEntries: 1000,
  rooms: { historyCount: 200, memberLimit: 1000, severalNodes: true },
  streams: { maxChunkBytes: 65_536, maxStreamsPerUser: 4, maxFileBytes: 1 << 30, windowBytes: 1 << 20, maxTotalBytes: 1 << 26 },
};

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function deployment() {
  const dir = await mkdtemp(join(tmpdir(), 'parley-rooms-move-'));
  const store = new EmbeddedStore({ dir });
  await store.open();
  cleanup.push(() => rm(dir, { recursive: true, force: true }), () => store.close());
  const bus = new LocalBus();
  const log = createLogger('silent');
  let sid = 0;
  const node = (id: string) => {
    // The node's view of the shared store, with room appends it can hold back: what the test needs to state "an
    // append issued by the old owner lands after the new owner loaded the room". Everything else passes through.
    const held: Array<() => void> = [];
    let holding = false;
    const rooms = new Proxy(store.rooms, {
      get: (t, op) => (op !== 'append' ? bound(t, op) : (...args: Parameters<Store['rooms']['append']>) => {
        if (!holding) return t.append(...args);
        return new Promise<void>((resolve) => held.push(resolve)).then(() => t.append(...args));
      }),
    });
    const mine = new Proxy(store, { get: (t, op) => (op === 'rooms' ? rooms : bound(t, op)) }) as Store;
    const hold = () => {
      holding = true;
    };
    const release = () => {
      holding = false;
      for (const go of held.splice(0)) go();
    };
    const clock = new FakeClock();
    const router = new LocalRouter({ nodeId: id, bus });
    const accounts = new Accounts(store, {
      sessionTtlMs: 86_400_000, scrypt: { N: 1024, r: 8, p: 1 },
      signinFailuresPerMinute: 10, signinFailureBurst: 10, registrationsPerMinute: 10, registrationBurst: 10,
    }, log);
    const hub = new Hub(mine, accounts, OPTS, log, router, clock);
    void router.start(hub.receiver);
    cleanup.push(() => hub.shutdown());
    const frame = (s: FakeSession, f: ClientFrame): void => hub.frame(s, encodeFrame(f));
    const connect = (name: string): FakeSession => {
      const auth: Auth = { name, key: name, sid: `s${++sid}`, expires: Date.now() + 86_400_000, replaced: false, created: Date.now() };
      const s = new FakeSession(auth);
      hub.open(s, auth);
      frame(s, { t: Op.Hello, v: PROTOCOL_VERSION });
      // Acknowledges every room message as it arrives, as a client does.
      const write = s.write.bind(s);
      s.write = (bytes) => {
        write(bytes);
        const f = s.frames.at(-1);
        if (f?.t === Op.Message && f.room !== undefined) queueMicrotask(() => frame(s, { t: Op.Ack, tags: [f.tag] }));
      };
      return s;
    };
    return { hub, router, frame, connect, hold, release, held };
  };
  return { n1: node('n1'), n2: node('n2') };
}

/** A property of `t`, methods bound to it (the adapters keep #private state, which a proxy as `this` cannot read). */
function bound(t: object, op: string | symbol): unknown {
  const v: unknown = Reflect.get(t, op, t);
  return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
}

/** Room texts a session got, once per rseq (what a client keeps), in rseq order. */
const texts = (s: FakeSession): MessageFrame[] => {
  const seen = new Map<number, MessageFrame>();
  for (const f of s.frames) if (f.t === Op.Message && f.room !== undefined && f.line === undefined && !seen.has(f.rseq!)) seen.set(f.rseq!, f);
  return [...seen.values()].sort((a, b) => a.rseq! - b.rseq!);
};

describe('a room whose owner claim moves to another live node', () => {
  it('keeps every message once in one order for members on both nodes, before and after the move', async () => {
    const { n1, n2 } = await deployment();
    const alice = n1.connect('alice');
    const bob = n2.connect('bob');
    await until(() => alice.frames.some((f) => f.t === Op.Welcome) && bob.frames.some((f) => f.t === Op.Welcome), 'both welcomed');
    n1.frame(alice, { t: Op.RoomCreate, room: 'Harbour' }); // n1 claims the room
    await until(() => alice.frames.some((f) => f.t === Op.RoomInfo), 'created');
    n2.frame(bob, { t: Op.RoomJoin, room: 'harbour' }); // served by n1 through bob's proxy there
    await until(() => bob.frames.some((f) => f.t === Op.RoomInfo), 'bob joined');

    const sent: string[] = [];
    const say = (n: typeof n1, s: FakeSession, text: string) => {
      const id = `${text.replace(/\W/g, '-')}-xxxxxxxx`.slice(0, 21);
      sent.push(id);
      n.frame(s, { t: Op.Send, id, room: 'harbour', text });
    };
    for (let i = 0; i < 5; i++) {
      say(n1, alice, `alice before ${i}`);
      say(n2, bob, `bob before ${i}`);
    }
    await until(() => texts(alice).length === 10 && texts(bob).length === 10, 'ten each before the move');

    // n2 takes the room's claim from n1, as a node that found nobody there would: n1 is told (`lost`) and forgets it.
    const before = await n1.router.locate(ROOM_CLAIM + 'harbour');
    expect(before?.node).toBe('n1');
    // Alice's next sends are still being appended by n1 when it loses the claim, and land after n2 loaded the room
    // (once alice's node attached her there: her second roomInfo), with nothing appended by n2 after them.
    n1.hold();
    for (let i = 0; i < 5; i++) say(n1, alice, `alice during ${i}`);
    await until(() => n1.held.length === 5, 'five appends issued by n1');
    const infos = () => alice.frames.filter((f) => f.t === Op.RoomInfo).length;
    const infosBefore = infos();
    await n2.router.claim(ROOM_CLAIM + 'harbour', 'n2', Date.now());
    await until(() => infos() > infosBefore, 'alice attached to n2');
    n1.release();
    await until(() => texts(alice).length === 15 && texts(bob).length === 15, 'the old owner\'s late appends reach both members');

    for (let i = 0; i < 5; i++) {
      say(n1, alice, `alice after ${i}`);
      say(n2, bob, `bob after ${i}`);
    }
    await until(() => texts(alice).length === 25 && texts(bob).length === 25, 'twenty-five each after the move');
    expect((await n1.router.locate(ROOM_CLAIM + 'harbour'))?.node).toBe('n2');
    for (const s of [alice, bob]) {
      expect(texts(s).map((m) => m.id).sort()).toEqual([...sent].sort());
      const seqs = texts(s).map((m) => m.rseq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a! - b!));
    }
    expect(texts(alice).map((m) => m.id)).toEqual(texts(bob).map((m) => m.id));
    // Each sender's messages in its sending order, and each counted for the other member.
    for (const who of ['alice', 'bob']) {
      expect(texts(alice).filter((m) => m.from === who).map((m) => m.text)).toEqual(
        (who === 'alice' ? ['before', 'during', 'after'] : ['before', 'after']).flatMap((l) => Array.from({ length: 5 }, (_, i) => `${who} ${l} ${i}`)));
    }
    const counted = (s: FakeSession, id: string) => s.frames.some((f) => f.t === Op.RoomReceipt && f.items.some(([i, , d, of]) => i === id && d === 1 && of === 1));
    await until(() => sent.every((id) => counted(alice, id) || counted(bob, id)), 'every message counted 1 of 1 at its sender');
  });
});
