import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { CloseCode } from '../../shared/codes.ts';
import { Limits, Op } from '../../shared/protocol.ts';
import { HARD_FRAME_CAP } from '../../server/transport/uws.ts';
import { Harness, wsUrl, STORE_KINDS } from '../support/harness.ts';
import { helloWire } from '../support/wire.ts';

for (const kind of STORE_KINDS) {
describe(`${kind} store`, () => {
  const h = new Harness(kind);
  afterEach(() => h.cleanup());

  describe('coded errors for bad input', () => {
    it('unknown contact, empty text, oversize text, bad id: coded errors with the message id, nothing delivered', async () => {
      const server = await h.server();
      const alice = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
      const bob = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob')));
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ t: Op.Send, id: 'unknown-contact-1', to: 'nobody', text: 'hi' }, 'UNKNOWN_CONTACT'],
        [{ t: Op.Send, id: 'bad-contact-name1', to: 'not a name!', text: 'hi' }, 'UNKNOWN_CONTACT'],
        [{ t: Op.Send, id: 'empty-text-00001', to: 'bob', text: '' }, 'TEXT_EMPTY'],
        [{ t: Op.Send, id: 'blank-text-00001', to: 'bob', text: ' \n\t ' }, 'TEXT_EMPTY'],
        [{ t: Op.Send, id: 'long-text-000001', to: 'bob', text: 'é'.repeat(Limits.maxTextBytes / 2 + 1) }, 'TEXT_TOO_LONG'],
        [{ t: Op.Send, id: 'short', to: 'bob', text: 'hi' }, 'BAD_ID'],
        [{ t: Op.Send, id: 'bad id with spaces', to: 'bob', text: 'hi' }, 'BAD_ID'],
        [{ t: Op.Send, id: 'no-text-00000001', to: 'bob' }, 'BAD_FRAME'],
        [{ t: Op.Ack, tags: 'nope' }, 'BAD_FRAME'],
        [{ t: 999 }, 'UNKNOWN_TYPE'],
        [{ t: Op.Hello, v: 1 }, 'NOT_READY'],
      ];
      for (const [frame, code] of cases) {
        alice.send(frame);
        const carriesRef = typeof frame.id === 'string' && code !== 'BAD_ID';
        const err = await alice.next(Op.Error, (e) => e.code === code && (!carriesRef || e.ref === frame.id));
        expect(err.message.length).toBeGreaterThan(0);
      }
      // Exactly at the limit is fine.
      alice.send({ t: Op.Send, id: 'max-text-0000001', to: 'bob', text: 'a'.repeat(Limits.maxTextBytes) });
      await bob.next(Op.Message, (m) => m.id === 'max-text-0000001');
      expect(bob.frames.filter((f) => f.t === Op.Message)).toHaveLength(1);
    });

    it('a full queue gets QUEUE_FULL and keeps what it holds', async () => {
      const server = await h.server({ QUEUE_CAP: '5' });
      const alice = h.client(server, await h.account(server, 'alice'));
      await alice.connect();
      await h.account(server, 'bob');
      const failed = alice.once('failed');
      const ids = Array.from({ length: 6 }, (_, i) => alice.send('bob', `m${i}`));
      const f = await failed;
      expect(f).toMatchObject({ id: ids[5], code: 'QUEUE_FULL' });
      const bob = h.client(server, await h.account(server, 'bob', undefined, { register: false }));
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.id));
      await bob.connect();
      await alice.once('receipt', (r) => r.id === ids[4] && r.state === 'delivered');
      expect(got).toEqual(ids.slice(0, 5));
    });

    it('text frames get TEXT_FRAME, oversize frames TOO_LARGE; past the hard cap the connection is cut', async () => {
      const server = await h.server();
      const w = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
      w.ws.send('hello as text');
      expect(await w.next(Op.Error)).toMatchObject({ code: 'TEXT_FRAME' });
      w.send({ t: Op.Send, id: 'oversized-frame1', to: 'bob', text: 'x'.repeat(100_000) });
      expect(await w.next(Op.Error, (e) => e.code === 'TOO_LARGE')).toBeTruthy();
      w.ws.send(randomBytes(HARD_FRAME_CAP + 1));
      // uWS drops such a connection without a close frame.
      expect((await w.closed).code).toBe(1006);
    });

    it('thousands of random and malformed frames each get a coded error or a coded close; others keep chatting', async () => {
      const server = await h.server();
      const alice = h.client(server, await h.account(server, 'alice'));
      const bob = h.client(server, await h.account(server, 'bob'));
      await Promise.all([alice.connect(), bob.connect()]);
      const token = await h.account(server, 'fuzzer');
      const structured = [
        pack(null), pack([]), pack('str'), pack(12), pack({}), pack({ t: 'send' }), pack({ t: Op.Send }),
        pack({ t: Op.Send, id: 123, to: 'bob', text: 'x' }), pack({ t: Op.Follow, names: [1, 2] }),
        pack({ t: Op.Follow, names: Array(Limits.maxFollow + 1).fill('a') }), pack({ t: Op.StreamCredit, sid: -1, bytes: 1 }),
        pack({ t: Op.Ack, tags: [] }), pack({ t: Op.Ack, tags: [1.5] }), pack({ __proto__: { t: Op.Ping }, t: 77 }),
        new Uint8Array([0xc1]), new Uint8Array([0xc1, 0, 0, 0, 1, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1]), new Uint8Array(0),
        new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]), new Uint8Array([0x81, 0xa1, 0x74]),
      ];
      let errors = 0;
      let closes = 0;
      const rounds = 40;
      for (let round = 0; round < rounds; round++) {
        const w = await helloWire(h.rawSocket(wsUrl(server.url), token));
        const before = w.frames.length;
        const frames: Array<Uint8Array | string> = [...structured];
        for (let i = 0; i < 60; i++) frames.push(randomBytes(1 + Math.floor(Math.random() * 512)));
        for (let i = 0; i < 5; i++) frames.push(randomBytes(20).toString('latin1'));
        for (const f of frames) w.ws.send(f);
        // A ping behind them: its pong means every frame before it has been answered.
        w.send({ t: Op.Ping, n: round });
        const end = await Promise.race([w.next(Op.Pong, (p) => p.n === round).then(() => 'pong' as const), w.closed.then((c) => c.code)]);
        const answers = w.frames.slice(before).filter((f) => f.t === Op.Error);
        errors += answers.length;
        if (end === 'pong') {
          expect(answers.length).toBe(frames.length);
          w.ws.terminate();
        } else {
          expect(end).toBe(CloseCode.PROTOCOL);
          closes++;
        }
      }
      expect(errors).toBeGreaterThan(2000);
      // The server is still serving everyone else.
      const got = bob.once('message');
      alice.send('bob', 'still alive?');
      expect((await got).text).toBe('still alive?');
      expect(closes + errors).toBeGreaterThan(0);
    });

    it('persistent garbage gets a PROTOCOL close; a frame flood gets RATE_LIMITED then a FLOOD close', async () => {
      const server = await h.server({ FRAME_RATE: '50', FRAME_BURST: '50' });
      const token = await h.account(server, 'flooder');
      const garbage = await helloWire(h.rawSocket(wsUrl(server.url), token));
      for (let i = 0; i < 150; i++) garbage.ws.send(new Uint8Array([0x81, 0xa1]));
      expect((await garbage.closed).code).toBe(CloseCode.PROTOCOL);
      const flood = await helloWire(h.rawSocket(wsUrl(server.url), token));
      for (let i = 0; i < 500; i++) flood.send({ t: Op.Ping, n: i });
      expect((await flood.closed).code).toBe(CloseCode.FLOOD);
      expect(flood.frames.some((f) => f.t === Op.Error && f.code === 'RATE_LIMITED')).toBe(true);
    });
  });
});
}
