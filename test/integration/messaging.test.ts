import { afterEach, describe, expect, it } from 'vitest';
import { nameKey } from '../../shared/names.ts';
import { Harness, collect, STORE_KINDS } from '../support/harness.ts';

for (const kind of STORE_KINDS) {
describe(`${kind} store`, () => {
  const h = new Harness(kind);
  afterEach(() => h.cleanup());

  describe('text delivery', () => {
    it('two online users exchange messages both ways with accepted then delivered receipts', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      const bob = h.client(server, await h.account(server, 'bob'));
      await Promise.all([alice.connect(), bob.connect()]);

      const aliceReceipts = collect<{ id: string; state: string }>((fn) => alice.on('receipt', fn));
      const bobGot = bob.once('message');
      const id = alice.send('bob', 'hello bob');
      const m = await bobGot;
      expect(m).toMatchObject({ from: 'alice', id, text: 'hello bob', queued: false });
      await alice.once('receipt', (r) => r.id === id && r.state === 'delivered');
      expect(aliceReceipts.filter((r) => r.id === id).map((r) => r.state)).toEqual(['accepted', 'delivered']);

      const aliceGot = alice.once('message');
      const id2 = bob.send('Alice', 'hi alice'); // names are case-insensitive
      expect(await aliceGot).toMatchObject({ from: 'bob', id: id2, text: 'hi alice' });
      await bob.once('receipt', (r) => r.id === id2 && r.state === 'delivered');
    });

    it('the server stamps the sender: a client cannot claim to be someone else', async () => {
      const server = await h.server();
      const mallory = h.client(server, await h.account(server, 'mallory'));
      const bob = h.client(server, await h.account(server, 'bob'));
      await Promise.all([mallory.connect(), bob.connect()]);
      // A forged `from` field is not part of the send frame; the decoder drops unknown fields.
      mallory.write({ t: 2, id: 'forged-id-0001', to: 'bob', text: 'from the boss', from: 'boss' } as never);
      const m = await bob.once('message');
      expect(m.from).toBe('mallory');
    });

    it('queues for an offline user, delivers in order at sign-in, and deletes after the ack', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      await h.account(server, 'bob');
      const ids: string[] = [];
      const queued = collect<{ id: string; state: string }>((fn) => alice.on('receipt', fn));
      for (let i = 0; i < 250; i++) ids.push(alice.send('bob', `message ${i}`));
      await alice.once('receipt', (r) => r.id === ids[ids.length - 1] && r.state === 'queued');
      expect(queued.filter((r) => r.state === 'queued').map((r) => r.id)).toEqual(ids);
      expect(await server.store.queueLength(nameKey('bob'))).toBe(250);

      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got = collect<{ id: string; queued: boolean }>((fn) => bob.on('message', fn));
      const delivered = collect<{ id: string; state: string }>((fn) => alice.on('receipt', fn));
      await bob.connect();
      await alice.once('receipt', (r) => r.id === ids[ids.length - 1] && r.state === 'delivered');
      expect(got.map((m) => m.id)).toEqual(ids);
      expect(got.every((m) => m.queued)).toBe(true);
      expect(delivered.filter((r) => r.state === 'delivered')).toHaveLength(250);
      // Acks are deleted in bulk right after they arrive; wait for the store to reflect the last one.
      for (let i = 0; i < 100 && (await server.store.queueLength(nameKey('bob'))) > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await server.store.queueLength(nameKey('bob'))).toBe(0);
    });

    it('messages sent while the recipient drains its queue come after the queued ones', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      await h.account(server, 'bob');
      const ids: string[] = [];
      for (let i = 0; i < 300; i++) ids.push(alice.send('bob', `early ${i}`));
      await alice.once('receipt', (r) => r.id === ids[299] && r.state === 'queued');
      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got = collect<{ id: string }>((fn) => bob.on('message', fn));
      const welcome = bob.connect();
      await welcome;
      for (let i = 0; i < 50; i++) ids.push(alice.send('bob', `late ${i}`));
      await alice.once('receipt', (r) => r.id === ids[ids.length - 1] && r.state === 'delivered');
      expect(got.map((m) => m.id)).toEqual(ids);
    });

    it('a sender that never pauses does not keep the recipient draining forever; order holds', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      await h.account(server, 'bob');
      const ids: string[] = [];
      for (let i = 0; i < 50; i++) ids.push(alice.send('bob', `queued ${i}`));
      await alice.once('receipt', (r) => r.id === ids[49] && r.state === 'queued');
      // Keep sending, a message at a time with one always in flight, while bob signs in and drains.
      let sending = true;
      const receipts: string[] = [];
      alice.on('receipt', (r) => receipts.push(r.state));
      const pump = (async () => {
        for (let i = 0; sending && i < 2000; i++) {
          const id = alice.send('bob', `stream ${i}`);
          ids.push(id);
          await alice.once('receipt', (r) => r.id === id);
        }
      })();
      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.id));
      await bob.connect();
      // Live delivery (an `accepted` receipt) means bob's drain finished despite the steady stream.
      await alice.once('receipt', (r) => r.state === 'accepted');
      sending = false;
      await pump;
      await alice.once('receipt', (r) => r.id === ids[ids.length - 1] && r.state === 'delivered');
      expect(got).toEqual(ids);
    });
  });
});
}
