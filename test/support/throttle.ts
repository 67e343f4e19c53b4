/**
 * A throttled link for tests and benchmarks: a TCP proxy on port 0 that forwards to `target` at `bytesPerSec`
 * in each direction, with small buffers. It holds at most `bufferBytes` per direction and stops reading from a
 * side while that much waits (so the sender's kernel buffers and then its own socket fill up, as on a real slow
 * link); it does not model latency, loss or reordering. Real sockets throughout: a WebSocket through it is a
 * WebSocket on a 150 KB/s line. `target.port` is read at each new connection, so a test may point it at another
 * server (one restarted on a new port) while clients keep the proxy's address, as behind a load balancer.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface Throttle {
  /** `http://127.0.0.1:<port>`: hand this to a client instead of the server's URL. */
  url: string;
  /** Bytes forwarded so far, per direction. */
  forwarded: { up: number; down: number };
  close(): Promise<void>;
}

const TICK_MS = 5;

export async function startThrottle(target: { port: number }, bytesPerSec: number, bufferBytes = 16 * 1024): Promise<Throttle> {
  const sockets = new Set<Socket>();
  const forwarded = { up: 0, down: 0 };
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, '127.0.0.1');
    // Nagle on the proxy's small paced writes would add delayed-ACK stalls no real line has.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    sockets.add(client).add(upstream);
    const stopUp = pipeThrottled(client, upstream, bytesPerSec, bufferBytes, (n) => (forwarded.up += n));
    const stopDown = pipeThrottled(upstream, client, bytesPerSec, bufferBytes, (n) => (forwarded.down += n));
    const end = () => {
      stopUp();
      stopDown();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Forwards `from` to `to` at `rate` bytes/s, reading from `from` only while less than `cap` bytes wait. */
function pipeThrottled(from: Socket, to: Socket, rate: number, cap: number, count: (n: number) => void): () => void {
  const queue: Buffer[] = [];
  let queued = 0;
  let budget = 0;
  let last = performance.now();
  from.on('data', (b: Buffer) => {
    queue.push(b);
    queued += b.byteLength;
    if (queued >= cap) from.pause();
  });
  const timer = setInterval(() => {
    const now = performance.now();
    // A burst of at most one tick's worth after a stall (a loaded machine's late timer), never more.
    budget = Math.min(budget + ((now - last) * rate) / 1000, (rate * TICK_MS * 2) / 1000 + 1);
    last = now;
    while (queue.length > 0 && budget >= 1 && to.writable && to.writableLength < cap) {
      const head = queue[0]!;
      const n = Math.min(head.byteLength, Math.floor(budget));
      to.write(head.subarray(0, n));
      count(n);
      budget -= n;
      queued -= n;
      if (n === head.byteLength) queue.shift();
      else queue[0] = head.subarray(n);
    }
    if (queued < cap && from.isPaused()) from.resume();
  }, TICK_MS);
  return () => clearInterval(timer);
}
