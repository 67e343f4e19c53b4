import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../shared/codes.ts';
import { Op } from '../../shared/protocol.ts';
import { nameKey } from '../../shared/names.ts';
import { startChild, type ChildServer } from '../support/child.ts';
import { Harness, STORE_KINDS, wsUrl } from '../support/harness.ts';
import { STANDIN_FAULTS, type StandinFault } from '../support/mongo-standin.ts';
import { helloWire } from '../support/wire.ts';

for (const kind of STORE_KINDS) {
describe(`${kind} store`, () => {
  const h = new Harness(kind);
  const children: ChildServer[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await h.cleanup();
  });

  describe('nothing accepted is lost', () => {
    it('queued messages survive kill -9 of the server and are delivered exactly once by the next one', async () => {
      const dataDir = h.tempDir();
      const storeEnv = await h.storeEnv(); // MongoDB: both processes use one database
      const first = await startChild({ DATA_DIR: dataDir, ...storeEnv });
      children.push(first);
      const alice = h.client(first, await h.account(first, 'alice'));
      await alice.connect();
      await h.account(first, 'bob');
      const ids = Array.from({ length: 200 }, (_, i) => alice.send('bob', `before the crash ${i}`));
      const queued = new Set<string>();
      alice.on('receipt', (r) => r.state === 'queued' && queued.add(r.id));
      await alice.once('receipt', (r) => r.id === ids[ids.length - 1] && r.state === 'queued');
      expect(queued.size).toBe(200);
      alice.close();

      first.proc.kill('SIGKILL');
      expect((await first.exited).signal).toBe('SIGKILL');

      const second = await startChild({ DATA_DIR: dataDir, ...storeEnv });
      children.push(second);
      const bob = h.client(second, await h.account(second, 'bob', undefined, { register: false }));
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.id));
      const raw: string[] = [];
      bob.on('frame', (f) => f.t === Op.Message && raw.push(f.id));
      await bob.connect();
      // The last message's arrival means the whole queue (in order) has been handed over.
      while (got.length < ids.length) await bob.once('message');
      expect(got).toEqual(ids);
      expect(raw).toEqual(ids); // exactly once on the wire too, not just after client de-duplication
    });

    it('SIGTERM closes sockets with 1001 and exits 0', async () => {
      const child = await startChild({ DATA_DIR: h.tempDir(), ...(await h.storeEnv()) });
      children.push(child);
      const w = await helloWire(h.rawSocket(wsUrl(child.url), await h.account(child, 'alice')));
      child.proc.kill('SIGTERM');
      expect((await w.closed).code).toBe(CloseCode.GOING_AWAY);
      expect(w.frames.some((f) => f.t === Op.Shutdown)).toBe(true);
      expect(await child.exited).toEqual({ code: 0, signal: null });
    });

    it('a recipient that drops before acking gets the unacked messages at its next sign-in; the sender sees queued', () =>
      dropBeforeAck(h));

    it('a sender that resends after losing its connection creates no duplicates (online and offline recipient)', async () => {
      const server = await h.server();
      const aliceToken = await h.account(server, 'alice');
      const bobRaw = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob')));
      bobRaw.ws.on('message', () => undefined);
      // Online recipient: send, drop before reading the receipt, reconnect, resend the same id.
      const a1 = await helloWire(h.rawSocket(wsUrl(server.url), aliceToken));
      a1.send({ t: Op.Send, id: 'resent-online-01', to: 'bob', text: 'once' });
      const m = await bobRaw.next(Op.Message, (f) => f.id === 'resent-online-01');
      a1.ws.terminate();
      bobRaw.send({ t: Op.Ack, tags: [m.tag] });
      const a2 = await helloWire(h.rawSocket(wsUrl(server.url), aliceToken));
      a2.send({ t: Op.Send, id: 'resent-online-01', to: 'bob', text: 'once' });
      expect(await a2.next(Op.Receipt, (r) => r.id === 'resent-online-01')).toMatchObject({ state: 'delivered' });

      // Offline recipient: the store's unique (sender, id) answers the resend.
      bobRaw.ws.close();
      await bobRaw.closed;
      a2.send({ t: Op.Send, id: 'resent-offline-1', to: 'bob', text: 'once offline' });
      await a2.next(Op.Receipt, (r) => r.id === 'resent-offline-1' && r.state === 'queued');
      a2.ws.terminate();
      const a3 = await helloWire(h.rawSocket(wsUrl(server.url), aliceToken));
      a3.send({ t: Op.Send, id: 'resent-offline-1', to: 'bob', text: 'once offline' });
      await a3.next(Op.Receipt, (r) => r.id === 'resent-offline-1' && r.state === 'queued');
      expect(await server.store.queueLength(nameKey('bob'))).toBe(1);

      const bob2 = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob', undefined, { register: false })));
      await bob2.next(Op.Message, (f) => f.id === 'resent-offline-1');
      bob2.send({ t: Op.Ping, n: 1 });
      await bob2.next(Op.Pong);
      const messages = [...bobRaw.frames, ...bob2.frames].filter((f) => f.t === Op.Message).map((f) => (f as { id: string }).id);
      expect(messages).toEqual(['resent-online-01', 'resent-offline-1']);
    });

    it('the SDK outbox resends what the server never confirmed, with the same id, after reconnecting', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      await h.account(server, 'bob');
      const reconnected = alice.once('state', (s) => s.to === 'open');
      // Cut the client's socket (the harness made it last), then send while the client is reconnecting.
      h.sockets.at(-1)!.terminate();
      await alice.once('state', (s) => s.to === 'reconnecting');
      const id = alice.send('bob', 'sent while offline');
      expect(alice.unconfirmed.map((m) => m.id)).toEqual([id]);
      await reconnected;
      await alice.once('receipt', (r) => r.id === id && r.state === 'queued');
      expect(alice.unconfirmed).toEqual([]);
      expect(await server.store.queueLength(nameKey('bob'))).toBe(1);
    });
  });
});
}

/**
 * The same test on a stand-in that waits 5 ms before serving each command: an enqueue then takes some 25 ms,
 * well over ten times the plain stand-in, so a test that only passed because the store was quick fails here.
 */
describe('a store over ten times slower (stand-in, 5 ms per command)', () => {
  const h = new Harness('mongodb', { standin: { delayMs: 5 } });
  afterEach(() => h.cleanup());

  it('a recipient that drops before acking gets the unacked messages at its next sign-in; the sender sees queued', () =>
    dropBeforeAck(h));
});

/** A recipient reads 20 messages without acking and drops: all 20 are queued, then delivered in order. */
async function dropBeforeAck(h: Harness): Promise<void> {
  const server = await h.server();
  const alice = h.client(server, await h.account(server, 'alice'));
  await alice.connect();
  const bobToken = await h.account(server, 'bob');
  const bobRaw = await helloWire(h.rawSocket(wsUrl(server.url), bobToken)); // reads, never acks
  // Receipts are recorded from the first send: whether a message reaches bob live (and is queued when he
  // drops) or through his queue (queued before he drops) depends on how fast the store answers bob's
  // sign-in drain, and the test must hold either way.
  const states = new Map<string, string[]>();
  const ids: string[] = [];
  const reached = (state: string) =>
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (ids.length === 20 && ids.every((id) => states.get(id)?.includes(state))) resolve();
      };
      alice.on('receipt', check);
    });
  alice.on('receipt', (r) => states.set(r.id, [...(states.get(r.id) ?? []), r.state]));
  const allQueued = reached('queued');
  const allDelivered = reached('delivered');
  // A wait that does not end says where every message stood (it once ran into the test's timeout in a full run).
  const stood = (): string => ids.map((id, i) => `#${i} ${(states.get(id) ?? []).join('>') || '-'}`).join(', ');
  const bounded = <T>(p: Promise<T>, what: () => string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still waiting for ${what()} after 45 s; receipts: ${stood()}`)), 45_000);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  };
  for (let i = 0; i < 20; i++) ids.push(alice.send('bob', `in flight ${i}`));
  await bounded(bobRaw.next(Op.Message, (m) => m.id === ids[19]), () => `bob's raw socket to get #19 (it got ${bobRaw.frames.filter((f) => f.t === Op.Message).length} messages)`);
  bobRaw.ws.terminate();
  await bounded(allQueued, () => 'every message queued');
  expect(await server.store.queueLength(nameKey('bob'))).toBe(20);

  const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
  const got: string[] = [];
  bob.on('message', (m) => got.push(m.id));
  await bob.connect();
  await bounded(allDelivered, () => `every message delivered (bob got ${got.length})`);
  expect(got).toEqual(ids);
}

/**
 * Parley started four times (a start and three restarts, SIGTERM in between) on one MongoDB database of a
 * stand-in: plain, and with every fault mode at once, as FerretDB 1.24 behaved (index creation on an existing
 * database used to fail there). Each run queues messages for an offline recipient with a session made in the
 * first run; at the end he receives every one of them, in order.
 */
describe('Parley restarted three times on one MongoDB database (stand-in)', () => {
  const variants: Array<readonly StandinFault[]> = [[], STANDIN_FAULTS];
  for (const faults of variants) {
    const h = new Harness('mongodb', { standin: { faults } });
    const children: ChildServer[] = [];
    afterEach(async () => {
      for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
      await h.cleanup();
    });

    it(`keeps queued messages and sessions across every restart (stand-in faults: ${faults.join(', ') || 'none'})`, async () => {
      const storeEnv = await h.storeEnv();
      const start = async (): Promise<ChildServer> => {
        const child = await startChild({ DATA_DIR: h.tempDir(), ...storeEnv });
        children.push(child);
        return child;
      };
      let server = await start();
      const aliceToken = await h.account(server, 'alice');
      await h.account(server, 'bob');
      const ids: string[] = [];
      for (let run = 0; run < 4; run++) {
        if (run > 0) {
          server.proc.kill('SIGTERM');
          expect(await server.exited).toEqual({ code: 0, signal: null });
          server = await start();
        }
        // The session signed in during the first run, presented again to each new process.
        const alice = h.client(server, aliceToken);
        await alice.connect();
        // One message alone first: the hub looks the recipient's account up before taking its queue lock, so
        // sends racing that first (uncached) lookup in a fresh process can be queued out of order. That is a
        // hub defect reported separately; this test is about restarts.
        const first = alice.send('bob', `run ${run} message 0`);
        await alice.once('receipt', (r) => r.id === first && r.state === 'queued');
        const batch = [first, ...Array.from({ length: 4 }, (_, i) => alice.send('bob', `run ${run} message ${i + 1}`))];
        await alice.once('receipt', (r) => r.id === batch[4] && r.state === 'queued');
        ids.push(...batch);
        alice.close();
      }
      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.id));
      await bob.connect();
      while (got.length < ids.length) await bob.once('message');
      expect(got).toEqual(ids);
    });
  }
});
