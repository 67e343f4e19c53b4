/**
 * Read receipts and typing indicators over real sockets: relayed to the other side's live session with the
 * reader's name stamped by the server, dropped (never queued) for someone offline, bad input refused with a
 * coded error, and typing `on` thinned to one per peer per half renew interval.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Op, Typing } from '../../shared/protocol.ts';
import { Harness, wsUrl } from '../support/harness.ts';
import { wire } from '../support/wire.ts';
import { PROTOCOL_VERSION } from '../../shared/protocol.ts';

describe('read receipts and typing', () => {
  const h = new Harness();
  afterEach(() => h.cleanup());

  it('relays read with the reader stamped by the server, and typing on / off', async () => {
    const server = await h.server();
    const alice = h.client(server, await h.account(server, 'alice'));
    const bob = h.client(server, await h.account(server, 'bob'));
    await Promise.all([alice.connect(), bob.connect()]);
    const id = alice.send('bob', 'hello');
    await bob.once('message');

    const read = new Promise<[string, string[]]>((resolve) => alice.onRead((by, ids) => resolve([by, ids])));
    // A forged `by` is not part of the read frame: the server names the reader from the session.
    bob.write({ t: Op.Read, to: 'ALICE', ids: [id], by: 'boss' } as never);
    expect(await read).toEqual(['bob', [id]]);

    const typing: [string, boolean][] = [];
    alice.onTyping((from, on) => typing.push([from, on]));
    const stopped = alice.once('frame', (f) => f.t === Op.TypingFrom && !f.on);
    bob.typing('alice', true);
    bob.typing('alice', true); // within renewMs / 2 of the first: not forwarded again
    bob.typing('alice', false);
    await stopped;
    expect(typing).toEqual([['bob', true], ['bob', false]]);
    expect(Typing.expiryMs).toBeGreaterThan(Typing.renewMs);
  });

  it('never queues: a read or typing for an offline user is dropped, and nothing arrives at sign-in', async () => {
    const server = await h.server();
    const bob = h.client(server, await h.account(server, 'bob'));
    const aliceToken = await h.account(server, 'alice');
    await bob.connect();
    bob.read('alice', ['abcdefgh1234']);
    bob.typing('alice', true);
    // Round trip to be sure the server handled both before alice comes.
    const pong = bob.once('frame', (f) => f.t === Op.Pong);
    bob.write({ t: Op.Ping, n: 1 });
    await pong;
    const alice = h.client(server, aliceToken);
    const seen: number[] = [];
    alice.on('frame', (f) => seen.push(f.t));
    await alice.connect();
    const pong2 = alice.once('frame', (f) => f.t === Op.Pong);
    alice.write({ t: Op.Ping, n: 2 });
    await pong2;
    expect(seen.filter((t) => t === Op.ReadBy || t === Op.TypingFrom)).toEqual([]);
  });

  it('a read for someone whose socket is open but who has not said hello yet waits for their welcome', async () => {
    const server = await h.server();
    const bob = h.client(server, await h.account(server, 'bob'));
    await bob.connect();
    const alice = wire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
    await alice.opened; // online (bob would see presence now), still in hello
    bob.read('alice', ['abcdefgh1234']);
    const pong = bob.once('frame', (f) => f.t === Op.Pong);
    bob.write({ t: Op.Ping, n: 1 });
    await pong;
    alice.send({ t: Op.Hello, v: PROTOCOL_VERSION });
    const read = await alice.next(Op.ReadBy);
    expect(read).toEqual({ t: Op.ReadBy, by: 'bob', ids: ['abcdefgh1234'] });
    const order = alice.frames.map((f) => f.t);
    expect(order.indexOf(Op.Welcome)).toBeLessThan(order.indexOf(Op.ReadBy));
  });

  it('refuses bad input with a coded error: bad ids, too many ids, a bad name, a non-boolean', async () => {
    const server = await h.server();
    const bob = h.client(server, await h.account(server, 'bob'));
    await bob.connect();
    const errors: string[] = [];
    bob.on('error', (e) => errors.push(e.code));
    bob.write({ t: Op.Read, to: 'alice', ids: ['no'] });
    bob.write({ t: Op.Read, to: 'alice', ids: Array.from({ length: 201 }, (_, i) => `message-${i}`) });
    bob.write({ t: Op.Read, to: 'alice', ids: [] });
    bob.write({ t: Op.Typing, to: 'not a name!', on: true });
    bob.write({ t: Op.Typing, to: 'alice', on: 'yes' } as never);
    const pong = bob.once('frame', (f) => f.t === Op.Pong);
    bob.write({ t: Op.Ping, n: 1 });
    await pong;
    expect(errors).toEqual(['BAD_ID', 'BAD_FRAME', 'BAD_FRAME', 'BAD_NAME', 'BAD_FRAME']);
  });
});
