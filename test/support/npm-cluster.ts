/**
 * `npm run cluster` (scripts/cluster.ts) as a test starts it: Debian's nats-server, N Parley nodes and Debian's
 * nginx in front, on free ports, with its data under a temp directory. `stop()` sends Ctrl-C (SIGINT): the
 * script's children run in their own process groups and only it stops them, in order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { freePort, ROOT } from './processes.ts';

export interface NpmCluster {
  /** nginx's address: what a browser or client is pointed at. */
  url: string;
  /** Each node's own address, in order (for /healthz). */
  nodeUrls: string[];
  /** Everything the script printed so far (stdout and stderr). */
  output(): string;
  /** Ctrl-C; resolves with the script's exit code once it and all it started are gone. */
  stop(): Promise<number | null>;
  proc: ChildProcess;
}

export async function startNpmCluster(opts: { nodes: number; dataDir: string; env?: Record<string, string> }): Promise<NpmCluster> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/cluster.ts', '--port', String(port), '--nodes', String(opts.nodes), '--data-dir', opts.dataDir], {
    cwd: ROOT, env: { ...process.env, SCRYPT_COST: '10', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const nodeUrls: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        out += line + '\n';
        const node = /^\s+node-\d+\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (node) nodeUrls.push(node[1]!);
        if (line.startsWith('Ctrl-C')) resolve();
      });
      void exited.then((code) => reject(new Error(`cluster exited (${code}):\n${out}`)));
    });
  } catch (err) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    nodeUrls,
    output: () => out,
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
      return exited;
    },
  };
}

/** Live sockets each node holds, from its /healthz, in node order. */
export async function socketsPerNode(c: NpmCluster): Promise<number[]> {
  return Promise.all(c.nodeUrls.map(async (u) => ((await (await fetch(`${u}/healthz`)).json()) as { sockets: number }).sockets));
}
