/**
 * The relay under a slow viewer, against the real server process (a child), so its memory is measured apart
 * from the test's own clients: resident memory stays within the credit window plus a small constant, and text
 * between two other users keeps its latency.
 *
 * The latency check is relative (against the same server, same run, no stream) and generous: it exists to
 * catch head-of-line blocking (text stuck behind megabytes of video, which costs seconds), not to time the
 * server. Absolute speed is the benchmark's job (`npm run bench`).
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { ParleyClient } from '../../client/sdk/client.ts';
import { Streams } from '../../client/sdk/streams.ts';
import { startChild, type ChildServer } from '../support/child.ts';
import { Harness } from '../support/harness.ts';

const h = new Harness();
const children: ChildServer[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
  await h.cleanup();
});

const MiB = 1024 * 1024;

async function roundTrips(a: ParleyClient, b: ParleyClient, n: number, gapMs = 0): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
    const t0 = performance.now();
    const got = b.once('message');
    a.send(b.welcome!.name, `ping ${i}`);
    await got;
    times.push(performance.now() - t0);
  }
  return times.sort((x, y) => x - y);
}

describe('relay with a slow viewer', () => {
  it('server memory stays within the credit window plus a constant; other users\' text keeps its latency', async () => {
    const windowBytes = 4 * MiB;
    const server = await startChild({ DATA_DIR: h.tempDir(), STREAM_WINDOW_KB: String(windowBytes / 1024) });
    children.push(server);
    const [alice, bob, carol, dave] = await Promise.all(['alice', 'bob', 'carol', 'dave'].map(async (n) => {
      const c = h.client(server, await h.account(server, n));
      await c.connect();
      return c;
    })) as [ParleyClient, ParleyClient, ParleyClient, ParleyClient];
    const baseline = await roundTrips(carol, dave, 100);
    global.gc?.();
    const rssBefore = server.rss();

    const as = new Streams(alice);
    const bs = new Streams(bob);
    const size = 2048 * MiB; // far more than will be read: the sender could go much faster than the viewer
    const block = randomBytes(MiB);
    let produced = 0;
    const source = (async function* () {
      while (produced < size) {
        produced += block.byteLength;
        yield block;
      }
    })();
    const incoming = bs.once('offer');
    const out = as.sendFile('bob', source, { name: 'big.mp4', size, mime: 'video/mp4', container: 'fmp4' });
    const inc = (await incoming).accept(windowBytes);
    // The viewer reads about 1 MiB/s for 6 s, sampling the server's memory as it goes.
    let read = 0;
    let peak = rssBefore;
    const started = performance.now();
    const reader = (async () => {
      for await (const chunk of inc) {
        read += chunk.byteLength;
        peak = Math.max(peak, server.rss());
        const due = (read / MiB) * 1000 - (performance.now() - started);
        if (due > 0) await new Promise((r) => setTimeout(r, due));
        if (performance.now() - started > 6000) break;
      }
    })();
    const during = await roundTrips(carol, dave, 100, 50); // spread over the stream's first ~5 s
    await reader;
    peak = Math.max(peak, server.rss());
    out.cancel();
    await out.done.catch(() => undefined);

    const growth = peak - rssBefore;
    const median = (a: number[]) => a[Math.floor(a.length / 2)]!;
    // For the record (vitest prints console output of the test).
    console.log(`slow viewer: read ${(read / MiB).toFixed(1)} MiB in ~6 s; sender offered ${(out.sent / MiB).toFixed(1)} MiB; ` +
      `server RSS ${(rssBefore / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB (growth ${(growth / MiB).toFixed(1)} MiB, window ${windowBytes / MiB} MiB); ` +
      `text round trip median ${median(baseline).toFixed(2)} ms idle, ${median(during).toFixed(2)} ms during the stream`);
    expect(read).toBeGreaterThan(3 * MiB);
    // The sender got no further ahead than the window allows.
    expect(out.sent - read).toBeLessThanOrEqual(windowBytes);
    expect(growth).toBeLessThan(windowBytes + 16 * MiB);
    expect(median(during)).toBeLessThan(Math.max(5 * median(baseline), median(baseline) + 50));
  });
});
