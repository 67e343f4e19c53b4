/**
 * A Parley cluster for integration tests: one real `nats-server` (test/support/nats-server.ts), N real node
 * processes (`server/main.ts`, each with its own NODE_ID, all on one NATS_URL and one store), and optionally
 * Debian's nginx in front of them with docs/nginx-parley.conf. The store is the harness's MongoDB store: the
 * wire stand-in (test/support/mongo-standin.ts, reached over TCP by every node; not MongoDB), or a real MongoDB
 * when MONGODB_URI is set.
 *
 * Faults: `kill(i)` is SIGKILL of one node; `natsRestart()` kills nats-server and starts it again on the same port
 * and storage (as an operator's restart would). `close()` stops everything and waits until every process it
 * started has exited, so a test leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { startChild, type ChildServer } from './child.ts';
import { Harness } from './harness.ts';
import { startNatsServer, type NatsServer } from './nats-server.ts';
import { freePort, ROOT } from './processes.ts';

export interface ClusterOptions {
  /** Number of node processes (default 3). */
  nodes?: number;
  /** Put nginx in front of the nodes (`Cluster.front`). */
  nginx?: boolean;
  /** Extra env for every node. */
  env?: Record<string, string>;
}

export interface NodeHealth {
  status: string;
  node: string;
  online: number;
  sockets: number;
  streams: number;
  bus: { kind: string; up: boolean; reason?: string };
}

export class ClusterNode {
  constructor(readonly id: string, readonly child: ChildServer) {}
  get url(): string {
    return this.child.url;
  }
  get alive(): boolean {
    return this.child.proc.exitCode === null && this.child.proc.signalCode === null;
  }
  rss(): number {
    return this.child.rss();
  }
  async health(): Promise<NodeHealth> {
    return (await (await fetch(`${this.url}/healthz`)).json()) as NodeHealth;
  }
  /** Log lines of this node with the given `msg`. */
  logged(msg: string): Array<Record<string, unknown>> {
    return this.child.logs.filter((l) => l.msg === msg);
  }
}

/** Debian puts nginx in /usr/sbin, which a non-root PATH often lacks. */
function findBinary(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} not found (scripts/install-deps.sh installs Debian's ${name})`);
}

export class Cluster {
  readonly nodes: ClusterNode[] = [];
  /** nginx's address when started with `nginx: true`. */
  front: { url: string } | undefined;
  private nginx: { proc: ChildProcess; exited: Promise<unknown> } | undefined;
  private storeEnv: Record<string, string> = {};
  private nodeEnv: Record<string, string> = {};

  private constructor(readonly h: Harness, readonly nats: NatsServer) {}

  /** Starts nats-server, the nodes (in parallel) and nginx. `h` must be a `mongodb` harness; it owns the store. */
  static async start(h: Harness, options: ClusterOptions = {}): Promise<Cluster> {
    if (h.storeKind !== 'mongodb') throw new Error('a cluster shares one MongoDB store: use new Harness(\'mongodb\')');
    const c = new Cluster(h, await startNatsServer());
    try {
      c.storeEnv = await h.storeEnv();
      c.nodeEnv = options.env ?? {};
      const n = options.nodes ?? 3;
      await Promise.all(Array.from({ length: n }, (_, i) => c.startNode(`node-${i + 1}`)));
      c.nodes.sort((a, b) => a.id.localeCompare(b.id));
      if (options.nginx) await c.startNginx();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  /** Starts one more node (or a node again under an id it had, after `kill`). */
  async startNode(id: string): Promise<ClusterNode> {
    const child = await startChild({
      ...this.storeEnv, DATA_DIR: this.h.tempDir(), NATS_URL: this.nats.url, NODE_ID: id,
      REGISTRATIONS_PER_MINUTE: '1000000', ...this.nodeEnv,
    });
    const node = new ClusterNode(id, child);
    const at = this.nodes.findIndex((x) => x.id === id);
    if (at >= 0) this.nodes[at] = node;
    else this.nodes.push(node);
    return node;
  }

  node(i: number): ClusterNode {
    return this.nodes[i]!;
  }

  /** `kill -9` of node `i`; resolves once it exited. */
  async kill(i: number): Promise<void> {
    const n = this.nodes[i]!;
    if (!n.alive) return;
    n.child.proc.kill('SIGKILL');
    await n.child.exited;
  }

  /** NATS killed (SIGKILL): call `natsStart()` to bring it back on the same port and storage. */
  async natsKill(): Promise<void> {
    await this.nats.kill();
  }

  async natsStart(): Promise<void> {
    await this.nats.restart();
  }

  /** Total `online` over the nodes still alive (from /healthz). */
  async online(): Promise<number> {
    const hs = await Promise.all(this.nodes.filter((n) => n.alive).map((n) => n.health()));
    return hs.reduce((a, x) => a + x.online, 0);
  }

  /** Stops nginx, the nodes (SIGKILL: nothing of theirs needs keeping) and NATS, and waits for each to exit. Idempotent. */
  async close(): Promise<void> {
    if (this.nginx) {
      // nginx runs in a process group of its own: its master can exit before its worker does (seen here, the
      // worker left running under init), so the whole group is stopped, then killed if anything is left.
      const group = -this.nginx.proc.pid!;
      const signal = (sig: NodeJS.Signals): void => {
        try {
          process.kill(group, sig);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      };
      signal('SIGTERM');
      await this.nginx.exited;
      signal('SIGKILL');
      this.nginx = undefined;
    }
    await Promise.all(this.nodes.map(async (n) => {
      if (n.alive) n.child.proc.kill('SIGKILL');
      await n.child.exited;
    }));
    this.nodes.length = 0;
    await this.nats.close();
  }

  /** nginx with docs/nginx-parley.conf, its upstream list and listen address filled in with this cluster's. */
  private async startNginx(): Promise<void> {
    const port = await freePort();
    const dir = this.h.tempDir();
    const site = readFileSync(join(ROOT, 'docs/nginx-parley.conf'), 'utf8');
    const servers = /^(\s*)server 127\.0\.0\.1:\d+ ([^;\n]*;)\n(?:\s*server 127\.0\.0\.1:\d+ [^\n]*\n)*/m.exec(site);
    if (!servers || !/listen 127\.0\.0\.1:\d+;/.test(site)) throw new Error('docs/nginx-parley.conf lost its upstream or listen lines');
    const filled = site
      .replace(servers[0], this.nodes.map((n) => `${servers[1]}server 127.0.0.1:${n.child.port} ${servers[2]}\n`).join(''))
      .replace(/listen 127\.0\.0\.1:\d+;/, `listen 127.0.0.1:${port};`);
    for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, t), { recursive: true });
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, [
      // nginx run by root would hand its workers to `nobody`, who cannot write our temp directories.
      ...(process.getuid?.() === 0 ? [`user ${userInfo().username};`] : []),
      'worker_processes 1;', 'daemon off;', `pid ${join(dir, 'nginx.pid')};`, 'error_log stderr warn;',
      'events { worker_connections 4096; }',
      'http {', '    access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${join(dir, t)};`),
      filled, '}', '',
    ].join('\n'));
    const proc = spawn(findBinary('nginx'), ['-p', dir, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise((resolve) => proc.on('exit', resolve));
    this.nginx = { proc, exited };
    const url = `http://127.0.0.1:${port}`;
    // nginx prints nothing when it starts well: it is ready when it answers.
    for (;;) {
      const res = await fetch(`${url}/healthz`).catch(() => undefined);
      if (res?.ok) break;
      if (proc.exitCode !== null) throw new Error(`nginx did not start: ${stderr.trim()}`);
      await Promise.race([new Promise((r) => setTimeout(r, 50)), exited]);
    }
    this.front = { url };
  }
}

/**
 * `p`, or a failure naming `what` after `ms`: cross-node events that never come fail the test with a sentence
 * instead of the runner's timeout. Not a timing assertion: the bound is generous. `detail`, when given, is asked
 * at the timeout for what the test saw (sockets' states, frames, close codes), appended to the message.
 */
export function within<T>(p: Promise<T>, what: string, ms = 15_000, detail?: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}${detail ? `: ${detail()}` : ''}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
