/**
 * `npm run cluster`: Parley as several nodes on localhost, to try in a browser. Starts Debian's nats-server
 * (JetStream on), three Parley nodes (`npm start`'s server, each with its own NODE_ID, all on one NATS_URL and one
 * store), and Debian's nginx in front of them with docs/nginx-parley.conf, then prints where to point a browser.
 * Ctrl-C stops everything. Kill a node (its pid is printed) to watch the others carry on.
 *
 * The store: MONGODB_URI from the environment when set, else one embedded store under the data directory, which
 * LMDB lets several processes on one machine share.
 *
 * Options: --port 8080 (nginx's)  --nodes 3  --data-dir ./data-cluster
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i++) {
  const [flag, inline] = process.argv[i]!.split('=', 2);
  args.set(flag!.replace(/^--/, ''), inline ?? process.argv[++i] ?? '');
}
for (const k of args.keys()) if (!['port', 'nodes', 'data-dir'].includes(k)) fail(`unknown option --${k}; known: --port, --nodes, --data-dir`);
const port = Number(args.get('port') ?? 8080);
const nodeCount = Number(args.get('nodes') ?? 3);
const dataDir = resolve(args.get('data-dir') ?? 'data-cluster');
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('--port must be 1 to 65535');
if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 16) fail('--nodes must be 1 to 16');

function fail(message: string): never {
  process.stderr.write(`cluster: ${message}\n`);
  process.exit(2);
}

/** Debian puts both daemons in /usr/sbin, which a non-root PATH often lacks. */
function binary(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return fail(`${name} not found; install it with \`bash scripts/install-deps.sh\` (Debian's ${name} package)`);
}

interface Running { name: string; proc: ChildProcess; exited: Promise<number | null> }
const running: Running[] = [];
let stopping = false;

/**
 * Children run in their own process groups (`detached`) so that Ctrl-C reaches this script alone and it can stop
 * them in order; if this script dies anyway, whatever is left is killed on the way out.
 */
process.on('exit', () => {
  for (const r of running) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
});

function track(name: string, proc: ChildProcess): Running {
  const r: Running = { name, proc, exited: new Promise((res) => proc.on('exit', (code, signal) => res(code ?? (signal ? 128 : 1)))) };
  running.push(r);
  void r.exited.then((code) => {
    if (!stopping) process.stdout.write(`cluster: ${name} (pid ${proc.pid}) exited (${code}); the rest keeps running\n`);
  });
  return r;
}

/** Resolves with the first non-undefined `pick(line)` of a child's output lines; rejects if it exits first. */
function waitFor<T>(r: Running, stream: NodeJS.ReadableStream, pick: (line: string) => T | undefined): Promise<T> {
  return new Promise((res, rej) => {
    let done = false;
    createInterface({ input: stream }).on('line', (line) => {
      const v = pick(line);
      if (!done && v !== undefined) {
        done = true;
        res(v);
      }
    });
    void r.exited.then((code) => done || rej(new Error(`${r.name} exited (${code}) before it was ready`)));
  });
}

async function startNats(): Promise<string> {
  const dir = join(dataDir, 'nats');
  mkdirSync(dir, { recursive: true });
  const proc = spawn(binary('nats-server'), ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', dir, '-n', 'parley-cluster'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const r = track('nats-server', proc);
  let natsPort = 0;
  await waitFor(r, proc.stderr!, (line) => {
    const m = /Listening for client connections on [^\s]+:(\d+)/.exec(line);
    if (m) natsPort = Number(m[1]);
    return /Server is ready/.test(line) ? true : undefined;
  });
  return `nats://127.0.0.1:${natsPort}`;
}

async function startNode(i: number, natsUrl: string): Promise<number> {
  const nodeId = `node-${i}`;
  const env: Record<string, string> = {
    ...process.env as Record<string, string>, PORT: '0', HOST: '127.0.0.1', NATS_URL: natsUrl, NODE_ID: nodeId,
    PUBLIC_ORIGIN: `http://127.0.0.1:${port}`, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    // nginx runs here on 127.0.0.1: the nodes believe its X-Forwarded-For, so per-address limits see browsers.
    TRUSTED_PROXY: process.env.TRUSTED_PROXY ?? '127.0.0.1',
  };
  if (!process.env.MONGODB_URI) env.DATA_DIR = join(dataDir, 'store');
  // start.mjs builds the browser client when it is missing or stale (the first node does it, the others find it).
  const proc = spawn(process.execPath, [join(ROOT, 'scripts/start.mjs')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const r = track(nodeId, proc);
  return waitFor(r, proc.stdout!, (line) => {
    let entry: { level?: string; msg?: string; url?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      entry = { level: 'info', msg: line };
    }
    if (entry.level === 'warn' || entry.level === 'error' || entry.msg === 'node gone' || entry.msg === 'bus health') {
      process.stdout.write(`[${nodeId}] ${line}\n`);
    }
    return entry.msg === 'parley listening' && entry.url ? Number(new URL(entry.url).port) : undefined;
  });
}

/** docs/nginx-parley.conf with this run's upstream servers and listen port, inside a complete nginx.conf. */
function nginxConf(nodePorts: number[], dir: string): string {
  const site = readFileSync(join(ROOT, 'docs/nginx-parley.conf'), 'utf8')
    .replace(/^(\s*)server 127\.0\.0\.1:\d+ (max_fails.*;)\n(\s*server 127\.0\.0\.1:\d+ .*\n)*/m, (_all, indent: string, opts: string) =>
      nodePorts.map((p) => `${indent}server 127.0.0.1:${p} ${opts}\n`).join(''))
    .replace(/listen 127\.0\.0\.1:\d+;/, `listen 127.0.0.1:${port};`);
  if (!site.includes(`listen 127.0.0.1:${port};`) || nodePorts.some((p) => !site.includes(`server 127.0.0.1:${p} `))) {
    fail('docs/nginx-parley.conf no longer has the upstream and listen lines this script fills in');
  }
  return [
    // nginx run by root would hand its workers to `nobody`, who cannot write our temp directories.
    ...(process.getuid?.() === 0 ? [`user ${userInfo().username};`] : []),
    'worker_processes 1;',
    'daemon off;',
    `pid ${join(dir, 'nginx.pid')};`,
    'error_log stderr warn;',
    'events { worker_connections 4096; }',
    'http {',
    '    access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${join(dir, t)};`),
    site.replace(/^/gm, '    '),
    '}',
    '',
  ].join('\n');
}

async function startNginx(nodePorts: number[]): Promise<void> {
  const dir = join(dataDir, 'nginx');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConf(nodePorts, dir));
  const proc = spawn(binary('nginx'), ['-p', dir, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'inherit', 'pipe'], detached: true });
  const r = track('nginx', proc);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    process.stderr.write(`[nginx] ${d.toString()}`);
  });
  // nginx prints nothing when it starts well: ready is when it answers.
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (res?.ok) return;
    if (proc.exitCode !== null) throw new Error(`nginx did not start: ${stderr.trim()}`);
    await Promise.race([new Promise((r) => setTimeout(r, 100)), r.exited]);
  }
}

async function stopAll(): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write('cluster: stopping\n');
  // nginx first (no new connections), then the nodes (graceful: sockets told, in-flight requeued), then NATS.
  const stop = async (which: Running[], signal: NodeJS.Signals): Promise<void> => {
    for (const r of which) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill(signal);
    await Promise.all(which.map((r) => r.exited));
  };
  await stop(running.filter((r) => r.name === 'nginx'), 'SIGQUIT');
  await stop(running.filter((r) => r.name.startsWith('node-')), 'SIGTERM');
  await stop(running.filter((r) => r.name === 'nats-server'), 'SIGTERM');
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  mkdirSync(dataDir, { recursive: true });
  const natsUrl = await startNats();
  const nodePorts: number[] = [];
  for (let i = 1; i <= nodeCount; i++) nodePorts.push(await startNode(i, natsUrl));
  await startNginx(nodePorts);
  const lines = [
    '',
    `Parley cluster ready: http://127.0.0.1:${port}   (nginx, least connections, WebSocket upgrades)`,
    `  NATS        ${natsUrl}   (pid ${running[0]!.proc.pid}, JetStream in ${join(dataDir, 'nats')})`,
    ...nodePorts.map((p, i) => `  node-${i + 1}      http://127.0.0.1:${p}   (pid ${running[i + 1]!.proc.pid})`),
    `  store       ${process.env.MONGODB_URI ? 'MongoDB (MONGODB_URI)' : `embedded, shared: ${join(dataDir, 'store')}`}`,
    '',
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

main().catch(async (err: unknown) => {
  process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
