/**
 * A TCP proxy on loopback for tests that need to cut a connection between two parties (a node link) the way a
 * network failure would: everything passes through until `cut()` destroys every connection through it.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Bytes passed from the dialling side so far. */
  passed(): number;
  /** Destroys every connection through the proxy (new ones are still accepted). */
  cut(): void;
  close(): Promise<void>;
}

/** `delayMs`: every byte waits this long in each direction (order kept), as over a slow network. */
export async function startTcpProxy(toPort: number, toHost = '127.0.0.1', delayMs = 0): Promise<TcpProxy> {
  const later = (write: () => void): void => {
    if (delayMs > 0) setTimeout(write, delayMs);
    else write();
  };
  const sockets = new Set<Socket>();
  let passed = 0;
  const server = createServer((a) => {
    const b = connect(toPort, toHost);
    for (const s of [a, b]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    a.on('data', (d) => {
      passed += d.length;
      later(() => b.write(d));
    });
    b.on('data', (d) => later(() => a.write(d)));
    for (const [x, y] of [[a, b], [b, a]] as const) {
      x.on('error', () => y.destroy());
      x.on('close', () => y.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cut = (): void => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as AddressInfo).port,
    passed: () => passed,
    cut,
    close: async () => {
      cut();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A TCP port free on loopback just now (for a listener whose announced address must be known before it starts). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
