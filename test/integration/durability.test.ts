import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../shared/codes.ts';
import { Op } from '../../shared/protocol.ts';
import { nameKey } from '../../shared/names.ts';
import { startChild, type ChildServer } from '../support/child.ts';
import { Harness, STORE_KINDS, wsUrl } from '../support/harness.ts';
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

    it('a recipient that drops before acking gets the unacked messages at its next sign-in; the sender sees queued', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      const bobToken = await h.account(server, 'bob');
      const bobRaw = await helloWire(h.rawSocket(wsUrl(server.url), bobToken)); // reads, never acks
      const ids = Array.from({ length: 20 }, (_, i) => alice.send('bob', `in flight ${i}`));
      await bobRaw.next(Op.Message, (m) => m.id === ids[19]);
      const states = new Map<string, string[]>();
      alice.on('receipt', (r) => states.set(r.id, [...(states.get(r.id) ?? []), r.state]));
      const requeued = alice.once('receipt', (r) => r.id === ids[19] && r.state === 'queued');
      bobRaw.ws.terminate();
      await requeued;
      expect(await server.store.queueLength(nameKey('bob'))).toBe(20);

      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.id));
      await bob.connect();
      await alice.once('receipt', (r) => r.id === ids[19] && r.state === 'delivered');
      expect(got).toEqual(ids);
    });

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
