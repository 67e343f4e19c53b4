/**
 * A real `nats-server` (Debian's package) for tests: JetStream on, file storage in a temp directory, a port the
 * server picks itself (`-p -1`, read back from its log), loopback only. `kill()` is SIGKILL; `restart()` starts
 * it again on the same port with the same storage, as an operator's restart would, so clients reconnect by
 * themselves and the JetStream KV bucket is still there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Whether the process is running now. */
  readonly running: boolean;
  /** The running process's id (for its CPU time), if it runs. */
  readonly pid: number | undefined;
  /** SIGKILL, resolves once it exited. */
  kill(): Promise<void>;
  /** Starts it again (same port, same storage); resolves once it is ready for clients. */
  restart(): Promise<void>;
  /** Stops it and removes its storage. Idempotent. */
  close(): Promise<void>;
}

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

interface Proc { proc: ChildProcess; exited: Promise<void> }

function launch(port: number, storeDir: string): Promise<{ p: Proc; port: number }> {
  const proc = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  let log = '';
  return new Promise((resolve, reject) => {
    proc.on('error', (err) => reject(new Error(`cannot run ${NATS_SERVER_BIN} (scripts/install-deps.sh installs it): ${err.message}`)));
    let listening = 0;
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      log += line + '\n';
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(line);
      if (m) listening = Number(m[1]);
      if (/Server is ready/.test(line)) resolve({ p: { proc, exited }, port: listening });
    });
    void exited.then(() => reject(new Error(`nats-server exited before it was ready:\n${log}`)));
  });
}

export async function startNatsServer(): Promise<NatsServer> {
  const storeDir = mkdtempSync(join(tmpdir(), 'parley-nats-'));
  const first = await launch(-1, storeDir);
  const port = first.port;
  let current: Proc | undefined = first.p;
  let closed = false;
  const kill = async (): Promise<void> => {
    const p = current;
    current = undefined;
    if (!p) return;
    p.proc.kill('SIGKILL');
    await p.exited;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get running() {
      return current !== undefined;
    },
    get pid() {
      return current?.proc.pid;
    },
    kill,
    async restart() {
      if (closed) throw new Error('nats-server closed');
      await kill();
      current = (await launch(port, storeDir)).p;
    },
    async close() {
      if (closed) return;
      closed = true;
      await kill();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
