/**
 * Prompt control on a slow link: a cancel travels behind the bytes in flight, and the recipient's adaptive
 * credit window keeps those to a fraction of a second of what it actually receives (not the configured window,
 * 2 MiB = 14 s at 150 KB/s). Asserted on the wire, never as a timing: the bytes that still arrive after a cancel,
 * and the window reached on a fast link. The latency itself is printed by `npm run bench -- --only cancel`.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Streams, type IncomingStream, type OutgoingStream } from '../../client/sdk/streams.ts';
import { Harness } from '../support/harness.ts';
import { startThrottle, type Throttle } from '../support/throttle.ts';

const h = new Harness();
const throttles: Throttle[] = [];
afterEach(async () => {
  await h.cleanup();
  for (const t of throttles.splice(0)) await t.close();
});

const KiB = 1024;
const MiB = 1024 * KiB;
const RATE = 150_000;
/** 0.2 s at 150 KB/s is 30 KB; allow for a coarse rate sample, a loaded machine's round trips and the relay's buffers: far below 2 MiB. */
const IN_FLIGHT_BOUND = 256 * KiB;
const meta = (size: number) => ({ name: 'film.bin', size, mime: 'application/octet-stream', container: 'other' });

/** Alice sends straight to the server; Bob's connection goes through a 150 KB/s link (or not, when `rate` is 0). */
async function pair(rate: number) {
  const server = await h.server();
  const alice = h.client(server, await h.account(server, 'alice'));
  let bobUrl = server;
  if (rate > 0) {
    const t = await startThrottle({ port: Number(new URL(server.url).port) }, rate);
    throttles.push(t);
    bobUrl = { ...server, url: t.url };
  }
  const bob = h.client(bobUrl, await h.account(server, 'bob'));
  await Promise.all([alice.connect(), bob.connect()]);
  return { as: new Streams(alice), bs: new Streams(bob) };
}

async function start(as: Streams, bs: Streams, size: number): Promise<{ out: OutgoingStream; inc: IncomingStream }> {
  const file = randomBytes(size);
  const offered = bs.once('offer');
  const out = as.sendFile('bob', { ranges: [[0, size]], read: async (a, b) => file.subarray(a, b) }, meta(size));
  const inc = await offered;
  inc.accept();
  return { out, inc };
}

/** Drains the stream as it arrives; resolves with the error that ended it. */
function drain(inc: IncomingStream): Promise<unknown> {
  return (async () => {
    for await (const _ of inc) { /* bytes are counted by inc.received */ }
  })().then(() => undefined, (err: unknown) => err);
}

function receivedAtLeast(inc: IncomingStream, bytes: number): Promise<unknown> {
  return inc.once('progress', (p) => p.bytes >= bytes);
}

describe('prompt cancel on a 150 KB/s link', () => {
  it("a sender's cancel reaches the recipient behind a fraction of a second of bytes, not the whole window", async () => {
    const { as, bs } = await pair(RATE);
    const { out, inc } = await start(as, bs, 8 * MiB);
    const ended = drain(inc);
    await receivedAtLeast(inc, 200 * KiB); // past the first rate samples
    const atCancel = inc.received;
    out.cancel();
    const err = (await ended) as { reason?: string };
    expect(err.reason).toBe('SENDER_CANCELLED');
    expect(inc.received - atCancel).toBeLessThanOrEqual(IN_FLIGHT_BOUND);
    expect(inc.windowBytes).toBeLessThanOrEqual(IN_FLIGHT_BOUND);
  });

  it("a recipient's cancel stops the sender with no more sent than the recipient's window allowed", async () => {
    const { as, bs } = await pair(RATE);
    const { out, inc } = await start(as, bs, 8 * MiB);
    const ended = drain(inc);
    await receivedAtLeast(inc, 200 * KiB);
    const aborted = out.once('aborted');
    inc.cancel();
    expect((await ended as { reason?: string }).reason).toBe('RECIPIENT_CANCELLED');
    expect((await aborted).reason).toBe('RECIPIENT_CANCELLED');
    // Everything the sender wrote was granted; what it wrote beyond what Bob got was in flight when he cancelled.
    expect(out.sent - inc.received).toBeLessThanOrEqual(IN_FLIGHT_BOUND);
  });
});

describe('adaptive window on a fast link', () => {
  it('grows to the configured window and the file arrives whole', async () => {
    const { as, bs } = await pair(0);
    const size = 64 * MiB;
    const { out, inc } = await start(as, bs, size);
    let widest = 0;
    inc.on('progress', () => (widest = Math.max(widest, inc.windowBytes)));
    expect(await drain(inc)).toBeUndefined();
    expect(await out.done).toEqual({ bytes: size });
    expect(inc.received).toBe(size);
    expect(widest).toBe(2 * MiB);
  });
});
