/**
 * Cancel latency on a slow link: the recipient's connection (then both users') goes through a 150 KB/s TCP link (test/support/
 * throttle.ts, small buffers), a file is under way, one side cancels, and the row reports how long until the
 * other side's stream ends, and how many bytes still arrived after the cancel. The baseline, in the same run,
 * is the fixed credit window the recipient granted before (2 MiB). A second table checks that the adaptive
 * window does not slow a fast link: the same SDK transfer with no throttle, adaptive against fixed.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { ParleyClient, type WebSocketLike } from '../../client/sdk/client.ts';
import { Streams } from '../../client/sdk/streams.ts';
import { startThrottle } from '../../test/support/throttle.ts';
import { table } from './lib.ts';
import { userName, type Target } from './text.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

async function client(url: string, token: string): Promise<ParleyClient> {
  const c = new ParleyClient({
    url: url.replace(/^http/, 'ws') + '/ws',
    connect: (u) => new WebSocket(u, { headers: { Authorization: `Bearer ${token}` } }) as unknown as WebSocketLike,
  });
  await c.connect();
  return c;
}

interface Run { ms: number; bytesAfter: number; rate: number; window: number }

async function once(t: Target, rate: number, adaptive: boolean, who: 'sender' | 'recipient', slow: 'recipient' | 'both'): Promise<Run> {
  const server = { port: t.port };
  const links = [slow === 'both' ? await startThrottle(server, rate) : undefined, await startThrottle(server, rate)];
  const base = `http://127.0.0.1:${t.port}`;
  const [a, b] = [userName(0), userName(1)];
  const alice = await client(links[0]?.url ?? base, t.tokens!.get(a)!);
  const bob = await client(links[1]?.url ?? base, t.tokens!.get(b)!);
  try {
    const as = new Streams(alice);
    const bs = new Streams(bob);
    const size = 16 * MiB;
    const file = randomBytes(size);
    const offered = bs.once('offer');
    const out = as.sendFile(b, { ranges: [[0, size]], read: async (x, y) => file.subarray(x, y) }, { name: 'f.bin', size, mime: 'application/octet-stream', container: 'other' });
    const inc = await offered;
    inc.accept(2 * MiB, { adaptive });
    void (async () => { for await (const _ of inc) { /* drained */ } })().catch(() => undefined);
    await inc.once('progress', (p) => p.bytes >= 100 * KiB);
    const from = { t: performance.now(), bytes: inc.received };
    await inc.once('progress', (p) => p.bytes >= 400 * KiB);
    const atCancel = inc.received;
    const rate = (atCancel - from.bytes) / ((performance.now() - from.t) / 1000);
    const window = inc.windowBytes;
    // Cancel at a moment unrelated to arrivals (right after one, every granted byte may just have landed).
    await new Promise((r) => setTimeout(r, 37));
    const ended = who === 'sender' ? inc.once('aborted') : out.once('aborted');
    const t0 = performance.now();
    if (who === 'sender') out.cancel();
    else inc.cancel();
    await ended;
    return { ms: performance.now() - t0, bytesAfter: (who === 'sender' ? inc.received : out.sent) - atCancel, rate, window };
  } finally {
    alice.close();
    bob.close();
    for (const l of links) await l?.close();
  }
}

async function fast(t: Target, adaptive: boolean, size: number): Promise<number> {
  const base = `http://127.0.0.1:${t.port}`;
  const [a, b] = [userName(0), userName(1)];
  const alice = await client(base, t.tokens!.get(a)!);
  const bob = await client(base, t.tokens!.get(b)!);
  try {
    const as = new Streams(alice);
    const bs = new Streams(bob);
    const block = randomBytes(MiB);
    const offered = bs.once('offer');
    const out = as.sendFile(b, { ranges: [[0, size]], read: async (x, y) => block.subarray(x % MiB, (x % MiB) + (y - x)) }, { name: 'f.bin', size, mime: 'application/octet-stream', container: 'other' });
    const inc = await offered;
    const t0 = performance.now();
    inc.accept(4 * MiB, { adaptive });
    for await (const _ of inc) { /* drained */ }
    await out.done;
    return size / MiB / ((performance.now() - t0) / 1000);
  } finally {
    alice.close();
    bob.close();
  }
}

/** Prints both tables; `t` is a Parley server with at least two users. */
export async function runCancel(t: Target, rate = 150_000): Promise<void> {
  const rows: Array<Array<string | number>> = [];
  for (const [adaptive, slow] of [[false, 'recipient'], [true, 'recipient'], [true, 'both']] as const) {
    for (const who of ['sender', 'recipient'] as const) {
      const r = await once(t, rate, adaptive, who, slow);
      rows.push([adaptive ? 'adaptive window (now)' : 'fixed 2 MiB window (before)', slow === 'both' ? 'both' : 'the recipient', `${who} cancels`, (r.ms / 1000).toFixed(3), (r.bytesAfter / KiB).toFixed(0), (r.rate / 1000).toFixed(0), (r.window / KiB).toFixed(0)]);
    }
  }
  table(`cancel: a ${rate / 1000} KB/s link (test/support/throttle.ts), a 16 MiB file under way, one side cancels`,
    ['credit window', 'on the slow link', 'who', 'seconds until the other side knows', 'KiB arriving after the cancel', 'KB/s before it', 'window KiB'], rows);
  process.stdout.write('  target: under 0.3 s at 150 KB/s (the recipient on the slow link); with both on one, the window is 1.5x\n' +
    '  the bandwidth-delay product of two store-and-forward hops, so the rate holds and the cancel waits a little longer\n');
  // SDK MiB/s on a fast link, interleaved three times, medians (the relay table above is the raw-frame figure).
  const fastRows: Array<Array<string | number>> = [];
  const runs: Record<string, number[]> = { fixed: [], adaptive: [] };
  for (let i = 0; i < 3; i++) {
    runs.fixed!.push(await fast(t, false, 256 * MiB));
    runs.adaptive!.push(await fast(t, true, 256 * MiB));
  }
  for (const [k, v] of Object.entries(runs)) {
    const sorted = [...v].sort((x, y) => x - y);
    fastRows.push([k === 'fixed' ? 'fixed 4 MiB window' : 'adaptive, up to 4 MiB', sorted[1]!.toFixed(0), v.map((x) => x.toFixed(0)).join('/')]);
  }
  table('cancel, fast link: 256 MiB through the SDK with no throttle, median of 3 interleaved runs', ['credit window', 'MiB/s', 'runs'], fastRows);
  process.stdout.write('  target: adaptive within noise of fixed (the window grows to the configured maximum)\n');
}
