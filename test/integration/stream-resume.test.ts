/**
 * Resumable transfers on real sockets: a stream cut by the recipient's (or the sender's) socket dropping goes
 * on once both are back, from the bytes the recipient already has. Asserted on what the recipient ends up with
 * (every byte, exactly once at its offset) and on what was relayed: the file plus at most one window (what was
 * in flight at the cut), counted by the server's relay and by the sender.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { ParleyClient } from '../../client/sdk/client.ts';
import { Streams, type IncomingStream, type OutgoingStream } from '../../client/sdk/streams.ts';
import { encodeChunk } from '../../shared/chunk.ts';
import { Op } from '../../shared/protocol.ts';
import { Harness, wsUrl } from '../support/harness.ts';
import { helloWire } from '../support/wire.ts';

const h = new Harness();
afterEach(() => h.cleanup());

const KiB = 1024;
const MiB = 1024 * KiB;
const WINDOW = 512 * KiB;
const meta = (size: number) => ({ name: 'film.bin', size, mime: 'application/octet-stream', container: 'other' });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function pair(env: Record<string, string> = {}) {
  const server = await h.server({ STREAM_WINDOW_KB: String(WINDOW / KiB), ...env });
  const alice = h.client(server, await h.account(server, 'alice'));
  const bobToken = await h.account(server, 'bob');
  const bob = h.client(server, bobToken);
  await alice.connect();
  const aliceWs = h.sockets.at(-1)!;
  await bob.connect();
  const bobWs = h.sockets.at(-1)!;
  return { server, alice, bob, aliceWs, bobWs, as: new Streams(alice), bs: new Streams(bob) };
}

/** Writes every piece of `inc` into `file` at its offset; resolves when the transfer is complete. */
function collect(inc: IncomingStream, file: Uint8Array): Promise<void> {
  return (async () => {
    for await (const { offset, bytes } of inc.pieces()) file.set(bytes, offset);
  })();
}

async function start(as: Streams, bs: Streams, file: Uint8Array, ranges?: [number, number][]) {
  const offered = bs.once('offer');
  const out = as.sendFile('bob', { ranges: ranges ?? [[0, file.byteLength]], read: async (a, b) => file.subarray(a, b) }, meta(file.byteLength));
  const inc = await offered;
  inc.accept(WINDOW, { adaptive: false });
  return { out, inc };
}

function waitOpen(c: ParleyClient): Promise<unknown> {
  return c.state === 'open' ? Promise.resolve() : c.once('state', (s) => s.to === 'open');
}

describe('resumable transfers', () => {
  it("the recipient's socket drops mid-way: both sides pause, the transfer resumes and the file arrives exactly, relaying at most one window twice", async () => {
    const { server, bob, bobWs, as, bs } = await pair();
    const size = 24 * MiB + 777;
    const file = randomBytes(size);
    const got = new Uint8Array(size);
    const { out, inc } = await start(as, bs, file);
    expect(inc.tid).toBe(out.tid);
    const filled = collect(inc, got);
    await inc.once('progress', (p) => p.bytes >= 6 * MiB);

    const outPaused = out.once('paused');
    const incPaused = inc.once('paused');
    bobWs.terminate(); // Bob's network drops; his client reconnects by itself
    expect((await outPaused).why.reason).toBe('RECIPIENT_DISCONNECTED');
    expect((await incPaused).why.reason).toBe('DISCONNECTED');
    expect(server.hub.streams.pausedCount).toBe(1);
    const heldAtCut = inc.have.total;
    expect(heldAtCut).toBeGreaterThan(0);
    expect(heldAtCut).toBeLessThan(size);

    const resumed = out.once('resumed');
    await waitOpen(bob);
    expect((await resumed).held).toBe(heldAtCut);
    await filled;
    expect(await out.done).toEqual({ bytes: size });
    expect(sha(got)).toBe(sha(file));
    const relayed = server.hub.streams.relayedBytes;
    expect(relayed).toBeGreaterThanOrEqual(size);
    expect(relayed).toBeLessThanOrEqual(size + WINDOW);
    expect(out.written).toBeLessThanOrEqual(size + WINDOW);
    expect(server.hub.streams.pausedCount).toBe(0);
    expect(server.hub.streams.size).toBe(0);
  });

  it("the sender's socket drops: the recipient is told when the sender is back, asks, and the ranges (index first) complete", async () => {
    const { server, alice, aliceWs, as, bs } = await pair();
    const size = 12 * MiB + 5;
    const file = randomBytes(size);
    const got = new Uint8Array(size);
    const { out, inc } = await start(as, bs, file, [[size - MiB, size], [0, size - MiB]]);
    const filled = collect(inc, got);
    await inc.once('progress', (p) => p.bytes >= 4 * MiB);
    const incPaused = inc.once('paused');
    const outPaused = out.once('paused');
    const resumable = new Promise<void>((resolve) => bs.client.on('frame', (f) => { if (f.t === Op.StreamResumable) resolve(); }));
    aliceWs.terminate();
    expect((await incPaused).why.reason).toBe('SENDER_DISCONNECTED');
    expect((await outPaused).why.reason).toBe('DISCONNECTED');
    await waitOpen(alice);
    await resumable;
    await filled;
    expect(await out.done).toEqual({ bytes: size });
    expect(sha(got)).toBe(sha(file));
    expect(server.hub.streams.relayedBytes).toBeLessThanOrEqual(size + WINDOW);
  });

  it('giving up a paused transfer ends it on both sides, even for a side that was away when it happened', async () => {
    const { server, bobWs, as, bs } = await pair();
    const size = 8 * MiB;
    const file = randomBytes(size);
    const { out, inc } = await start(as, bs, file);
    const filled = collect(inc, new Uint8Array(size)).then(() => undefined, (err: unknown) => err);
    await inc.once('progress', (p) => p.bytes >= MiB);
    // Alice gives up the moment the transfer pauses, before Bob's client is back.
    out.once('paused').then(() => out.cancel('changed my mind'), () => undefined);
    bobWs.terminate();
    await expect(out.done).rejects.toMatchObject({ reason: 'SENDER_CANCELLED' });
    expect(await filled).toMatchObject({ reason: 'SENDER_CANCELLED' });
    expect(server.hub.streams.pausedCount).toBe(0);
    expect(server.hub.streams.size).toBe(0);
  });

  it('a stream cut after its last byte but before its end is paused too, and a resume holding every byte just ends', async () => {
    const server = await h.server();
    const mallory = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'mallory')));
    const bobTok = await h.account(server, 'bob');
    let bob = await helloWire(h.rawSocket(wsUrl(server.url), bobTok));
    mallory.send({ t: Op.StreamOffer, ref: 'tid-last', to: 'bob', name: 'x.bin', size: 1000, mime: 'application/octet-stream', container: 'other' });
    const offered = await bob.next(Op.StreamOffered, (f) => f.tid === 'tid-last');
    bob.send({ t: Op.StreamAnswer, sid: offered.sid, accept: true, credit: 1000 });
    await mallory.next(Op.StreamGranted, (g) => g.sid === offered.sid);
    mallory.ws.send(encodeChunk(offered.sid, 0, new Uint8Array(1000)));
    await bob.next('chunk' as never); // the last byte reached Bob
    bob.ws.terminate();
    expect((await mallory.next(Op.StreamAborted, (f) => f.sid === offered.sid)).resumeMs).toBeGreaterThan(0);
    bob = await helloWire(h.rawSocket(wsUrl(server.url), bobTok));
    bob.send({ t: Op.StreamResume, tid: 'tid-last', from: 'mallory', held: [[0, 1000]] });
    const resumed = await mallory.next(Op.StreamResumed, (f) => f.tid === 'tid-last');
    mallory.send({ t: Op.StreamEnd, sid: resumed.sid });
    expect(await bob.next(Op.StreamEnded, (f) => f.sid === resumed.sid)).toMatchObject({ bytes: 1000 });
    expect(server.hub.streams.pausedCount).toBe(0);
  });

  it('bad resume frames get coded errors and change nothing; giving up tells the other side; paused transfers are bounded', async () => {
    const server = await h.server({ MAX_STREAMS_PER_USER: '2' });
    const mallory = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'mallory')));
    // Mallory sends to Bob over the wire; Bob's socket then drops, pausing the transfer.
    const bobTok = await h.account(server, 'bob');
    const bobWire = async () => helloWire(h.rawSocket(wsUrl(server.url), bobTok));
    let bob = await bobWire();
    mallory.send({ t: Op.StreamOffer, ref: 'tid-one', to: 'bob', name: 'x.bin', size: 1000, mime: 'application/octet-stream', container: 'other' });
    const offered = await bob.next(Op.StreamOffered, (f) => f.tid === 'tid-one');
    expect(offered.ref).toBeUndefined();
    bob.send({ t: Op.StreamAnswer, sid: offered.sid, accept: true, credit: 1000 });
    await mallory.next(Op.StreamGranted, (g) => g.sid === offered.sid);
    mallory.ws.send(encodeChunk(offered.sid, 0, new Uint8Array(300)));
    bob.ws.terminate();
    const cut = await mallory.next(Op.StreamAborted, (f) => f.sid === offered.sid);
    expect(cut).toMatchObject({ reason: 'RECIPIENT_DISCONNECTED' });
    expect(cut.resumeMs).toBeGreaterThan(0);
    bob = await bobWire();

    const errorFor = async (frame: Record<string, unknown>) => {
      const n = bob.frames.length;
      bob.send(frame);
      return bob.next(Op.Error, (e) => bob.frames.indexOf(e) >= n);
    };
    const base = { t: Op.StreamResume, tid: 'tid-one', from: 'mallory' };
    expect(await errorFor({ ...base, tid: 'no/such', held: [] })).toMatchObject({ code: 'BAD_ID' });
    expect(await errorFor({ ...base, held: 'all' })).toMatchObject({ code: 'BAD_FRAME' });
    expect(await errorFor({ ...base, held: [[0, 1, 2]] })).toMatchObject({ code: 'BAD_FRAME' });
    expect(await errorFor({ ...base, held: Array.from({ length: 9 }, (_, i) => [i * 10, i * 10 + 5]) })).toMatchObject({ code: 'BAD_FRAME' });
    expect(await errorFor({ ...base, held: [[0, 2000]] })).toMatchObject({ code: 'STREAM_BAD_OFFSET', ref: 'tid-one' });
    expect(await errorFor({ ...base, held: [[100, 200], [0, 50]] })).toMatchObject({ code: 'STREAM_BAD_OFFSET' });
    expect(await errorFor({ ...base, held: [[0, 100], [100, 200]] })).toMatchObject({ code: 'STREAM_BAD_OFFSET' });
    expect(await errorFor({ ...base, tid: 'tid-other', held: [] })).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    expect(await errorFor({ ...base, from: 'alice', held: [] })).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    // Not Alice's to resume: only the recipient may.
    const alice = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
    alice.send({ ...base, held: [] });
    expect(await alice.next(Op.Error)).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    expect(server.hub.streams.pausedCount).toBe(1);

    // A good resume: a new stream that counts [0, 300) as sent; a chunk over it is refused.
    bob.send({ ...base, held: [[0, 300]], credit: 700 });
    const resumed = await mallory.next(Op.StreamResumed, (f) => f.tid === 'tid-one');
    expect(resumed).toMatchObject({ from: 'mallory', to: 'bob', size: 1000, held: [[0, 300]] });
    expect(await bob.next(Op.StreamResumed)).toMatchObject({ sid: resumed.sid });
    await mallory.next(Op.StreamGranted, (g) => g.sid === resumed.sid);
    mallory.ws.send(encodeChunk(resumed.sid, 200, new Uint8Array(200)));
    expect(await mallory.next(Op.Error, (e) => e.ref === resumed.sid)).toMatchObject({ code: 'STREAM_BAD_OFFSET' });
    await bob.next(Op.StreamAborted, (f) => f.sid === resumed.sid && f.reason === 'PROTOCOL');
    expect(server.hub.streams.pausedCount).toBe(0);

    // Given up while paused: the other side hears, and a resume after it is refused.
    mallory.send({ t: Op.StreamOffer, ref: 'tid-two', to: 'bob', name: 'y.bin', size: 1000, mime: 'application/octet-stream', container: 'other' });
    const two = await bob.next(Op.StreamOffered, (f) => f.tid === 'tid-two');
    bob.send({ t: Op.StreamAnswer, sid: two.sid, accept: true, credit: 1000 });
    await mallory.next(Op.StreamGranted, (g) => g.sid === two.sid);
    bob.ws.terminate();
    await mallory.next(Op.StreamAborted, (f) => f.sid === two.sid);
    mallory.send({ t: Op.StreamDrop, tid: 'tid-two', peer: 'bob' });
    bob = await bobWire(); // Bob was away when Mallory gave up: he hears of it at his hello
    expect(await bob.next(Op.StreamDropped, (f) => f.tid === 'tid-two')).toMatchObject({ reason: 'SENDER_CANCELLED', from: 'mallory', to: 'bob' });
    expect(await errorFor({ t: Op.StreamResume, tid: 'tid-two', from: 'mallory', held: [] })).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    const drop = bob.frames.length;
    mallory.send({ t: Op.StreamDrop, tid: 'tid-two', peer: 'bob' });
    expect(await mallory.next(Op.Error, (e) => e.ref === 'tid-two')).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    expect(bob.frames.slice(drop).some((f) => f.t === Op.StreamDropped)).toBe(false);

    // Bounded: with MAX_STREAMS_PER_USER=2, a third paused transfer of one sender pushes out the oldest.
    for (const tid of ['p1', 'p2', 'p3']) {
      mallory.send({ t: Op.StreamOffer, ref: `tid-${tid}`, to: 'bob', name: 'z.bin', size: 1000, mime: 'application/octet-stream', container: 'other' });
      const o = await bob.next(Op.StreamOffered, (f) => f.tid === `tid-${tid}`);
      bob.send({ t: Op.StreamAnswer, sid: o.sid, accept: true, credit: 1000 });
      await mallory.next(Op.StreamGranted, (g) => g.sid === o.sid);
      bob.ws.terminate();
      await mallory.next(Op.StreamAborted, (f) => f.sid === o.sid);
      bob = await bobWire();
    }
    expect(server.hub.streams.pausedCount).toBe(2);
    expect(await errorFor({ t: Op.StreamResume, tid: 'tid-p1', from: 'mallory', held: [] })).toMatchObject({ code: 'TRANSFER_UNKNOWN' });
    // Bob gives up p2: Mallory, online, is told.
    bob.send({ t: Op.StreamDrop, tid: 'tid-p2', peer: 'mallory' });
    expect(await mallory.next(Op.StreamDropped, (f) => f.tid === 'tid-p2')).toMatchObject({ from: 'mallory', to: 'bob', reason: 'RECIPIENT_CANCELLED' });
    expect(server.hub.streams.pausedCount).toBe(1);
  });
});

describe("the sender's page comes back as a new client (a reload, or a newer page taking over)", () => {
  async function cutBySender(size: number) {
    const server = await h.server({ STREAM_WINDOW_KB: String(WINDOW / KiB) });
    const aliceTok = await h.account(server, 'alice');
    const first = h.client(server, aliceTok);
    const bob = h.client(server, await h.account(server, 'bob'));
    await first.connect();
    await bob.connect();
    const bs = new Streams(bob);
    const file = randomBytes(size);
    const { out, inc } = await start(new Streams(first), bs, file);
    const got = new Uint8Array(size);
    const filled = collect(inc, got).then(() => undefined, (err: unknown) => err);
    await inc.once('progress', (p) => p.bytes >= 2 * MiB);
    const incPaused = inc.once('paused');
    first.close(); // the page goes away, and with it the sender's objects
    expect((await incPaused).why.reason).toBe('SENDER_DISCONNECTED');
    return { server, aliceTok, out, inc, file, got, filled };
  }

  it('registered before it connects, the new client goes on from what the recipient has: same SHA-256, at most one window sent twice', async () => {
    const size = 10 * MiB + 99;
    const { server, aliceTok, out, file, got, filled } = await cutBySender(size);
    const second = h.client(server, aliceTok);
    const as = new Streams(second);
    const again = as.resumeOutgoing(
      { tid: out.tid, to: 'bob', meta: meta(size), until: Date.now() + 60_000 },
      { ranges: [[0, size]], read: async (a, b) => file.subarray(a, b) },
    );
    expect(again.paused?.why.reason).toBe('DISCONNECTED');
    const resumed = again.once('resumed');
    await second.connect();
    expect((await resumed).held).toBeGreaterThan(0);
    expect(await again.done).toEqual({ bytes: size });
    expect(await filled).toBeUndefined();
    expect(sha(got)).toBe(sha(file));
    const relayed = server.hub.streams.relayedBytes;
    expect(relayed).toBeGreaterThanOrEqual(size);
    expect(relayed).toBeLessThanOrEqual(size + WINDOW);
    expect(server.hub.streams.pausedCount).toBe(0);
  });

  it('a new client whose copy cannot be read cancels the resumed stream: the recipient hears SENDER_CANCELLED and nothing stays open', async () => {
    const size = 6 * MiB;
    const { server, aliceTok, out, filled } = await cutBySender(size);
    const second = h.client(server, aliceTok);
    const again = new Streams(second).resumeOutgoing(
      { tid: out.tid, to: 'bob', meta: meta(size), until: Date.now() + 60_000 },
      { ranges: [[0, size]], read: () => Promise.reject(new Error('the kept copy is gone')) },
    );
    await second.connect();
    await expect(again.done).rejects.toMatchObject({ reason: 'UNREADABLE' });
    expect(await filled).toMatchObject({ reason: 'SENDER_CANCELLED' });
    expect(server.hub.streams.size).toBe(0);
    expect(server.hub.streams.pausedCount).toBe(0);
  });
});
