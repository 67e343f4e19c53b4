/**
 * The SDK's room layer (client/sdk/rooms.ts) against a real server on real sockets: requests answered or
 * refused with their code, messages once each in the room's order across a reconnect, the outbox for room
 * sends, delivered k of n and who has it, presence, invitations, removal and leave as the app sees them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Rooms, RoomError, type RoomMessage } from '../../client/sdk/rooms.ts';
import { Op } from '../../shared/protocol.ts';
import { Harness, collect, until } from '../support/harness.ts';

describe('rooms in the SDK', () => {
  const h = new Harness();
  afterEach(() => h.cleanup());

  async function people(names: string[]) {
    const server = await h.server();
    const out = new Map<string, { rooms: Rooms; got: RoomMessage[] }>();
    for (const n of names) {
      const c = h.client(server, await h.account(server, n));
      const rooms = new Rooms(c);
      const got = collect<RoomMessage>((fn) => rooms.on('message', fn));
      await c.connect();
      out.set(n, { rooms, got });
    }
    return (n: string) => out.get(n)!;
  }

  const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof RoomError ? e.code : String(e)));

  it('answers each request, and refuses with the code', async () => {
    const p = await people(['alice', 'bob']);
    const [alice, bob] = [p('alice').rooms, p('bob').rooms];
    const made = await alice.create('Garden');
    expect([made.name, made.owner, made.private, [...made.members.values()]]).toEqual(['Garden', 'alice', false, [{ name: 'alice', online: true }]]);
    expect(await code(bob.create('GARDEN'))).toBe('ROOM_EXISTS');
    expect(await code(bob.join('nowhere'))).toBe('ROOM_UNKNOWN');
    expect(await code(bob.create('no spaces'))).toBe('BAD_NAME');
    expect(await code(bob.members('garden'))).toBe('NOT_A_MEMBER');
    expect(await bob.list()).toEqual([{ room: 'Garden', owner: 'alice' }]);
    const joined = await bob.join('garden');
    expect([...joined.members.keys()]).toEqual(['alice', 'bob']);
    expect(await code(bob.invite('garden', 'alice'))).toBe('NOT_THE_OWNER');
    expect(await code(alice.leave('garden'))).toBe('OWNER_CANNOT_LEAVE');
    expect(await code(alice.who('garden', 'never-sent-1'))).toBe('MESSAGE_UNKNOWN');
    const failed = alice.once('failed');
    const id = alice.send('nowhere', 'hello?');
    expect(await failed).toMatchObject({ id, room: 'nowhere', code: 'ROOM_UNKNOWN' });
    // Hand-over moves the powers; the new owner sees it through the line.
    await alice.handOver('garden', 'bob');
    await until(() => bob.rooms.get('garden')?.owner === 'bob', 'bob owns the room');
    await alice.leave('garden');
    expect(alice.rooms.has('garden')).toBe(false);
    await until(() => bob.rooms.get('garden')?.members.size === 1, 'alice gone from bob\'s member list');
  });

  it('hands over messages once each, in rseq order, across a reconnect; the sender sees k of n and who', async () => {
    const p = await people(['alice', 'bob', 'carol']);
    const [alice, bob, carol] = [p('alice'), p('bob'), p('carol')];
    await alice.rooms.create('Club');
    await bob.rooms.join('club');
    await carol.rooms.join('club');
    const receipts = collect<{ id: string; delivered: number; of: number }>((fn) => alice.rooms.on('receipt', fn));
    const first = alice.rooms.send('Club', 'one');
    await until(() => receipts.some((r) => r.id === first && r.delivered === 2 && r.of === 2), 'delivered to 2 of 2');
    expect(await alice.rooms.who('club', first)).toEqual({ delivered: expect.arrayContaining(['bob', 'carol']), pending: [] });

    // Carol drops; what is sent meanwhile reaches her once she is back, once each, after what she had.
    h.sockets.at(-1)!.terminate(); // carol's socket, the last one opened
    await until(() => carol.rooms.client.state !== 'open', 'carol dropped');
    const ids = ['two', 'three', 'four'].map((t) => bob.rooms.send('club', t));
    await until(() => alice.got.filter((m) => !m.line).length === 4, 'alice has all four');
    await until(() => carol.rooms.client.state === 'open', 'carol back');
    await until(() => carol.got.filter((m) => !m.line).length === 4, 'carol has all four');
    const texts = (got: RoomMessage[]) => got.filter((m) => !m.line).map((m) => m.text);
    expect(texts(carol.got)).toEqual(['one', 'two', 'three', 'four']);
    for (const x of [alice, bob, carol]) {
      const seqs = x.got.map((m) => m.rseq);
      expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
    }
    expect(carol.got.filter((m) => ids.includes(m.id))).toHaveLength(3);
    // Everyone sees the same order.
    const order = (got: RoomMessage[]) => got.filter((m) => !m.line).map((m) => `${m.rseq}:${m.id}`);
    expect(order(alice.got)).toEqual(order(carol.got));
    expect(order(bob.got)).toEqual(order(carol.got));
  });

  it('a room message written before the connection waits in the outbox and arrives once after the welcome', async () => {
    const server = await h.server();
    const [ta, tb] = [await h.account(server, 'alice'), await h.account(server, 'bob')];
    const first = new Rooms(h.client(server, ta));
    const bob = new Rooms(h.client(server, tb));
    const got = collect<RoomMessage>((fn) => bob.on('message', fn));
    await Promise.all([first.client.connect(), bob.client.connect()]);
    await first.create('Porch');
    await bob.join('porch');
    first.client.close();
    // The page reloaded: a new client, and the message goes in before it has connected.
    const alice = new Rooms(h.client(server, ta));
    const id = alice.send('porch', 'written offline');
    expect(alice.client.unconfirmed).toEqual([{ id, room: 'porch', text: 'written offline' }]);
    const stored = alice.once('receipt', (r) => r.id === id);
    await alice.client.connect();
    expect(await stored).toMatchObject({ id, room: 'Porch', of: 1 });
    expect(alice.client.unconfirmed).toEqual([]);
    await until(() => got.some((m) => m.id === id), 'bob has it');
    expect(got.filter((m) => m.id === id)).toHaveLength(1);
  });

  it('drops what comes again after a reconnect (not acknowledged), and lets through what the app did not keep', async () => {
    const server = await h.server();
    const [ta, tb] = [await h.account(server, 'alice'), await h.account(server, 'bob')];
    const alice = new Rooms(h.client(server, ta));
    // Bob's app holds 'one' and 'two' unstored until his connection drops; it fails to keep 'three' once.
    let hold = false;
    let failThree = true;
    const bob = new Rooms(h.client(server, tb), {
      beforeAck: (m) => {
        if (hold) return new Promise<void>(() => undefined);
        if (m.text === 'three' && failThree) {
          failThree = false;
          return Promise.reject(new Error('disk full'));
        }
        return undefined;
      },
    });
    const got = collect<RoomMessage>((fn) => bob.on('message', fn));
    const wire: string[] = [];
    bob.client.on('frame', (f) => {
      if (f.t === Op.Message && f.room !== undefined && f.line === undefined) wire.push(f.text);
    });
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    await alice.create('Yard');
    await bob.join('yard');
    await until(() => got.some((m) => m.line === 'joined'), 'bob has his joined line');
    hold = true;
    alice.send('yard', 'one');
    alice.send('yard', 'two');
    await until(() => got.filter((m) => !m.line).length === 2, 'bob has both');
    hold = false;
    h.sockets[1]!.terminate(); // bob's
    await until(() => wire.length === 4, 'the server sent both again');
    alice.send('yard', 'three');
    await until(() => wire.filter((t) => t === 'three').length === 1, 'three sent');
    h.sockets.at(-1)!.terminate(); // bob's again: 'three' was not kept, so it was not acknowledged
    await until(() => wire.filter((t) => t === 'three').length === 2, 'three sent again');
    alice.send('yard', 'four');
    await until(() => got.some((m) => m.text === 'four'), 'bob has four');
    expect(got.filter((m) => !m.line).map((m) => m.text)).toEqual(['one', 'two', 'three', 'three', 'four']);
    const seqs = got.filter((m) => !m.line).map((m) => m.rseq);
    expect(seqs[2]).toBe(seqs[3]); // the same entry, passed on again because the app had not kept it
  });

  it('presence and invitations: an invited user joins a private room; a removed member gets nothing after', async () => {
    const p = await people(['alice', 'bob', 'carol']);
    const [alice, bob, carol] = [p('alice'), p('bob'), p('carol')];
    await alice.rooms.create('Secret', { private: true });
    expect(await code(bob.rooms.join('secret'))).toBe('NOT_INVITED');
    const invited = bob.rooms.once('invited');
    await alice.rooms.invite('secret', 'bob');
    expect(await invited).toEqual({ room: 'Secret', by: 'alice' });
    await bob.rooms.join('secret');
    await alice.rooms.invite('secret', 'carol');
    await carol.rooms.join('secret');
    await until(() => alice.rooms.rooms.get('secret')?.members.get('carol')?.online === true, 'carol online in alice\'s list');
    alice.rooms.send('secret', 'before');
    await until(() => carol.got.some((m) => m.text === 'before'), 'carol has it');
    const gone = carol.rooms.once('gone');
    await alice.rooms.remove('secret', 'carol');
    expect(await gone).toEqual({ room: 'Secret', reason: 'removed' });
    expect(carol.rooms.rooms.has('secret')).toBe(false);
    alice.rooms.send('secret', 'after');
    await until(() => bob.got.some((m) => m.text === 'after'), 'bob has the later one');
    expect(carol.got.filter((m) => !m.line).map((m) => m.text)).toEqual(['before']);
    const failed = carol.rooms.once('failed');
    carol.rooms.send('secret', 'me?');
    expect((await failed).code).toBe('NOT_A_MEMBER');
  });
});
