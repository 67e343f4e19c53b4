/**
 * Cluster rows of `npm run bench`: Parley as several node processes on one real nats-server and one store (an
 * embedded store shared by the processes, as `npm run cluster` runs without MONGODB_URI), beside one node with no
 * bus measured in the same run.
 *
 *   cluster-text  N pairs exchange short messages (receipts and acks as in the text row) on: one node with no
 *                 bus; two nodes with both users of each pair on the same node; two nodes with the users of each
 *                 pair on different nodes. Messages/s, p50/p99, and where the CPU went (each node, nats-server,
 *                 the generators). Target: cross-node >= 0.5x same-node.
 *   cluster-relay one stream (256 KiB chunks, 4 MiB end-to-end credit window) between two users, on the same three
 *                 deployments: MiB/s, peak RSS and CPU of each node, nats-server's CPU. Target: cross-node >= 0.5x.
 *   cluster-idle  50,000 authenticated idle connections spread over three nodes (each process at most 20,000
 *                 descriptors here), against one node with no bus holding a third of them: bytes per connection
 *                 (RSS after a full GC, before and after), JS heap per connection, descriptors per node, and what
 *                 nats-server itself gained (the claims bucket).
 *
 * The load comes from several generator processes (scripts/bench/cluster-gen.ts), each holding at most 15,000
 * sockets; everything shares this machine's two cores, so the text figures say how the work divides, not what
 * separate machines would do.
 */
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { hashToken } from '../../server/core/accounts.ts';
import { hashPassword } from '../../server/core/passwords.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { nameKey } from '../../shared/names.ts';
import { NATS_SERVER_BIN } from '../../test/support/nats-server.ts';
import { SERVER_ENV, SERVER_NODE_FLAGS } from '../server-flags.mjs';
import { topSelfTime } from './profile.ts';
import { cpuSeconds, memoryOf, percentile, rssBytes, sleep, startChild, stopChild, table, type Child } from './lib.ts';
import type { ClusterGenJob, ClusterGenReport, GenClient } from './cluster-gen.ts';

export interface ClusterBenchOptions {
  pairs: number;
  seconds: number;
  window: number;
  generators: number;
  repeat: number;
  /** Idle connections over all nodes. */
  idle: number;
  /** MiB per relay run. */
  relayMib: number;
  /** Under `--profile`: nodes write V8 CPU profiles under this directory, one subdirectory per relay layout. */
  profileDir?: string | null;
}

/** A generator above this share of a core may be what limits the row: the row is marked. */
const GENERATOR_LIMIT = 0.9;
const SOCKETS_PER_GENERATOR = 15_000;
const GEN_ENTRY = new URL('./cluster-gen.ts', import.meta.url).pathname;
const GC_HOOK = `--expose-gc --require ${join(import.meta.dirname, 'gc-hook.cjs')}`;

const name = (i: number) => `node${String(i).padStart(6, '0')}`;
const token = (i: number) => `cluster-bench-token-${i}-${'x'.repeat(20)}`;

interface Deployment {
  nodes: Child[];
  nats: { url: string; pid: number; proc: ReturnType<typeof spawn> } | undefined;
  dirs: string[];
}

/** An embedded store with `users` accounts and one session each, written straight into it. */
async function seed(users: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-cluster-'));
  const store = new EmbeddedStore({ dir });
  await store.open();
  const passwordHash = await hashPassword('bench password', { N: 1 << 10, r: 8, p: 1 });
  const now = Date.now();
  for (let i = 0; i < users; i += 1000) {
    const writes: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(users, i + 1000); j++) {
      writes.push(store.createAccount({ key: nameKey(name(j)), name: name(j), passwordHash, created: now }));
      writes.push(store.putSession({ tokenHash: hashToken(token(j)), key: nameKey(name(j)), name: name(j), created: now, expires: now + 86_400_000 }));
    }
    await Promise.all(writes);
  }
  await store.close();
  return dir;
}

async function startNats(dir: string): Promise<NonNullable<Deployment['nats']>> {
  const proc = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let port = 0;
  await new Promise<void>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`nats-server exited (${code}) before it was ready`)));
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(line);
      if (m) port = Number(m[1]);
      if (/Server is ready/.test(line)) resolve();
    });
  });
  return { url: `nats://127.0.0.1:${port}`, pid: proc.pid!, proc };
}

/** `nodes` Parley processes on one store (and one nats-server when `bus`), with `users` signed-in accounts. */
async function deploy(users: number, nodes: number, bus: boolean, extraNodeOptions = '', nodeArgs: string[] = []): Promise<Deployment> {
  const d: Deployment = { nodes: [], nats: undefined, dirs: [] };
  const dir = await seed(users);
  d.dirs.push(dir);
  if (bus) {
    const natsDir = mkdtempSync(join(tmpdir(), 'parley-bench-nats-'));
    d.dirs.push(natsDir);
    d.nats = await startNats(natsDir);
  }
  for (let i = 0; i < nodes; i++) {
    d.nodes.push(await startChild('server/main.ts', {
      ...SERVER_ENV, NODE_OPTIONS: `${process.env.BENCH_NODE_OPTIONS ?? SERVER_NODE_FLAGS.join(' ')} ${extraNodeOptions}`.trim(),
      PORT: '0', DATA_DIR: dir, LOG_LEVEL: 'info', IDLE_TIMEOUT_SEC: '3600', NODE_ID: `bench-${i + 1}`,
      // The benchmark's clients send far faster than a person; the per-connection flood limit would stop them.
      FRAME_RATE: '10000000', FRAME_BURST: '1000000',
      ...(d.nats ? { NATS_URL: d.nats.url } : {}),
    }, nodeArgs));
  }
  return d;
}

async function teardown(d: Deployment): Promise<void> {
  for (const n of d.nodes) await stopChild(n);
  if (d.nats && d.nats.proc.exitCode === null) {
    const gone = new Promise((r) => d.nats!.proc.once('exit', r));
    d.nats.proc.kill('SIGKILL');
    await gone;
  }
  for (const dir of d.dirs) rmSync(dir, { recursive: true, force: true });
}

interface Gen {
  proc: ReturnType<typeof fork>;
  next<T>(): Promise<T>;
  ready: Promise<{ ready: true; connected: number; retries: number }>;
}

function generator(job: ClusterGenJob): Gen {
  const proc = fork(GEN_ENTRY, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const failed = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`cluster generator exited with ${code}`))));
  failed.catch(() => undefined);
  const next = <T>(): Promise<T> => Promise.race([new Promise<T>((r) => proc.once('message', (m) => r(m as T))), failed]);
  const ready = next<{ ready: true; connected: number; retries: number }>();
  proc.send(job);
  return { proc, next, ready };
}

function killGens(gens: Gen[]): void {
  for (const g of gens) if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL');
}

async function stopGens(gens: Gen[]): Promise<ClusterGenReport[]> {
  const reports = gens.map((g) => g.next<ClusterGenReport>());
  for (const g of gens) g.proc.send({ cmd: 'stop' });
  return Promise.all(reports);
}

type Layout = 'single' | 'same' | 'cross';

interface TextRun { msgsPerSec: number; p50Ms: number; p99Ms: number; nodeCpus: number[]; natsCpu: number; generatorCpus: number[] }

async function textRun(layout: Layout, o: ClusterBenchOptions): Promise<TextRun> {
  const users = o.pairs * 2;
  const profile = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(o.profileDir, `text-${layout}`)}`] : [];
  const d = await deploy(users, layout === 'single' ? 1 : 2, layout !== 'single', '', profile);
  const gens: Gen[] = [];
  try {
    // Pair k is users 2k and 2k+1: on node k % 2 together, or on nodes 0 and 1.
    const nodeOf = (i: number) => (layout === 'single' ? 0 : layout === 'same' ? (i >> 1) % 2 : i % 2);
    const clients: GenClient[] = Array.from({ length: users }, (_, i) => ({ name: name(i), peer: name(i ^ 1), port: d.nodes[nodeOf(i)]!.port, token: token(i) }));
    const g = Math.max(1, Math.min(o.generators, o.pairs));
    for (let k = 0; k < g; k++) {
      const from = 2 * Math.floor((k * o.pairs) / g);
      const to = 2 * Math.floor(((k + 1) * o.pairs) / g);
      gens.push(generator({ mode: 'text', clients: clients.slice(from, to), window: o.window }));
    }
    await Promise.all(gens.map((x) => x.ready));
    await sleep(1000); // warm-up
    for (const x of gens) x.proc.send({ cmd: 'measure' });
    const pids = [...d.nodes.map((n) => n.pid), ...(d.nats ? [d.nats.pid] : [])];
    const cpu0 = pids.map(cpuSeconds);
    const t0 = performance.now();
    await sleep(o.seconds * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const cpus = pids.map((p, i) => (cpuSeconds(p) - cpu0[i]!) / elapsed);
    const reports = await stopGens(gens);
    const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
    return {
      msgsPerSec: reports.reduce((s, r) => s + r.delivered / r.elapsed, 0),
      p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99),
      nodeCpus: cpus.slice(0, d.nodes.length), natsCpu: d.nats ? cpus.at(-1)! : 0,
      generatorCpus: reports.map((r) => r.cpu / r.elapsed),
    };
  } finally {
    killGens(gens);
    await teardown(d);
  }
}

const pct = (c: number) => `${(c * 100).toFixed(0)}%`;

const LAYOUTS: Array<[Layout, string]> = [
  ['single', 'one node, no bus'],
  ['same', 'two nodes + NATS, both users on one node'],
  ['cross', 'two nodes + NATS, users on different nodes'],
];

export async function runClusterText(o: ClusterBenchOptions): Promise<void> {
  const layouts = LAYOUTS;
  const runs = new Map<Layout, TextRun[]>();
  for (let i = 0; i < o.repeat; i++) {
    for (const [layout] of layouts) runs.set(layout, [...(runs.get(layout) ?? []), await textRun(layout, o)]);
  }
  const median = (all: TextRun[]) => [...all].sort((a, b) => a.msgsPerSec - b.msgsPerSec)[Math.floor(all.length / 2)]!;
  const same = median(runs.get('same')!).msgsPerSec;
  let hot = false;
  const rows = layouts.map(([layout, label]) => {
    const all = runs.get(layout)!;
    const r = median(all);
    const marked = all.some((x) => Math.max(...x.generatorCpus) > GENERATOR_LIMIT);
    hot ||= marked;
    return [label, `${r.msgsPerSec.toFixed(0)} (${all.map((x) => (x.msgsPerSec / 1000).toFixed(1)).join('/')}k)`, r.p50Ms.toFixed(2), r.p99Ms.toFixed(2),
      r.nodeCpus.map(pct).join('+'), layout === 'single' ? '-' : pct(r.natsCpu),
      `${r.generatorCpus.map(pct).join('+')}${marked ? ' !' : ''}`, (r.msgsPerSec / same).toFixed(2) + 'x'];
  });
  table(`cluster text: ${o.pairs} pairs, ${o.window} messages in flight per sender, ${o.seconds} s, ${o.generators} generator processes, median of ${o.repeat} interleaved runs (receipts and acks)`,
    ['deployment', 'delivered msg/s (runs)', 'p50 ms', 'p99 ms', 'node CPU (each)', 'nats-server CPU', 'generator CPU (each)', 'vs same node'], rows);
  if (hot) process.stdout.write(`  ! a generator process used more than ${GENERATOR_LIMIT * 100}% of a core in a run of this row: it may be the ceiling\n`);
  process.stdout.write('  target: cross-node >= 0.50x same-node (all processes share this machine\'s cores)\n');
  if (o.profileDir) {
    for (const [layout, label] of LAYOUTS) {
      if (layout === 'single') continue;
      const dir = join(o.profileDir, `text-${layout}`);
      table(`cluster text, ${label}: the nodes' top self time over all runs (profiles in ${dir})`, ['function', 'busy %', 'ms'], topSelfTime(dir));
    }
  }
}

interface RelayRun { mibPerSec: number; nodeCpus: number[]; natsCpu: number; peakRss: number[]; generatorCpu: number; error?: string }

async function relayRun(layout: Layout, o: ClusterBenchOptions): Promise<RelayRun> {
  const profile = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(o.profileDir, `relay-${layout}`)}`] : [];
  const d = await deploy(2, layout === 'single' ? 1 : 2, layout !== 'single', '', profile);
  const gens: Gen[] = [];
  try {
    const ports = [d.nodes[0]!.port, d.nodes[layout === 'cross' ? 1 : 0]!.port];
    const clients = [0, 1].map((i) => ({ name: name(i), peer: name(i ^ 1), port: ports[i]!, token: token(i) }));
    // The viewer and the sender each in its own process (as the single-node relay rows do): one generator
    // process for both was the ceiling of the same-node rows.
    const bytes = o.relayMib * 1024 * 1024;
    const viewer = generator({ mode: 'relay', side: 'view', clients: [clients[1]!], bytes });
    gens.push(viewer);
    await viewer.ready;
    const sender = generator({ mode: 'relay', side: 'send', clients: [clients[0]!], bytes });
    gens.push(sender);
    await sender.ready;
    const pids = [...d.nodes.map((n) => n.pid), ...(d.nats ? [d.nats.pid] : [])];
    const peakRss = d.nodes.map((n) => rssBytes(n.pid));
    const sampler = setInterval(() => d.nodes.forEach((n, i) => (peakRss[i] = Math.max(peakRss[i]!, rssBytes(n.pid)))), 20);
    const cpu0 = pids.map(cpuSeconds);
    const t0 = performance.now();
    const reports = Promise.all(gens.map((g) => g.next<ClusterGenReport>()));
    for (const g of gens) g.proc.send({ cmd: 'go' });
    const [r, s] = await reports.finally(() => clearInterval(sampler));
    const error = r!.error ?? s!.error;
    if (error) return { mibPerSec: 0, nodeCpus: [], natsCpu: 0, peakRss, generatorCpu: 0, error };
    const elapsed = (performance.now() - t0) / 1000;
    const cpus = pids.map((p, i) => (cpuSeconds(p) - cpu0[i]!) / elapsed);
    return {
      mibPerSec: r!.delivered / 1024 / 1024 / r!.elapsed, nodeCpus: cpus.slice(0, d.nodes.length),
      natsCpu: d.nats ? cpus.at(-1)! : 0, peakRss, generatorCpu: Math.max(r!.cpu / r!.elapsed, s!.cpu / s!.elapsed),
    };
  } finally {
    killGens(gens);
    await teardown(d);
  }
}

export async function runClusterRelay(o: ClusterBenchOptions): Promise<void> {
  const runs = new Map<Layout, RelayRun[]>();
  for (let i = 0; i < o.repeat; i++) {
    for (const [layout] of LAYOUTS) runs.set(layout, [...(runs.get(layout) ?? []), await relayRun(layout, o)]);
  }
  const median = (all: RelayRun[]) => [...all].sort((a, b) => a.mibPerSec - b.mibPerSec)[Math.floor(all.length / 2)]!;
  const same = median(runs.get('same')!).mibPerSec;
  let hot = false;
  const rows = LAYOUTS.map(([layout, label]) => {
    const all = runs.get(layout)!;
    const r = median(all);
    const marked = all.some((x) => x.generatorCpu > GENERATOR_LIMIT);
    hot ||= marked;
    const peaks = all[0]!.peakRss.map((_, i) => Math.max(...all.map((x) => x.peakRss[i]!)));
    const failed = all.find((x) => x.error)?.error;
    if (failed) return [label, `failed: ${failed}`, '', '', '', '', ''];
    return [label, `${r.mibPerSec.toFixed(0)} (${all.map((x) => x.mibPerSec.toFixed(0)).join('/')})`, peaks.map((p) => (p / 1024 / 1024).toFixed(0)).join('+'),
      r.nodeCpus.map(pct).join('+'), layout === 'single' ? '-' : pct(r.natsCpu), `${pct(r.generatorCpu)}${marked ? ' !' : ''}`, (r.mibPerSec / same).toFixed(2) + 'x'];
  });
  table(`cluster relay: one ${o.relayMib} MiB stream, 256 KiB chunks, 4 MiB credit window, median of ${o.repeat} interleaved runs (peak RSS: highest)`,
    ['deployment', 'MiB/s (runs)', 'peak RSS MiB (each node)', 'node CPU (each)', 'nats-server CPU', 'generator CPU', 'vs same node'], rows);
  if (hot) process.stdout.write(`  ! the generator used more than ${GENERATOR_LIMIT * 100}% of a core in a run of this row: it may be the ceiling\n`);
  process.stdout.write('  target: cross-node >= 0.50x same-node\n');
  if (o.profileDir) {
    for (const [layout, label] of LAYOUTS) {
      if (layout === 'single') continue;
      const dir = join(o.profileDir, `relay-${layout}`);
      table(`cluster relay, ${label}: the nodes' top self time over all runs (profiles in ${dir})`, ['function', 'busy %', 'ms'], topSelfTime(dir));
    }
  }
}

/** Runs a full GC in a node started with GC_HOOK and reads its memory once its RSS held still (at most 10 s). */
async function settled(c: Child): Promise<{ rss: number; heap: number }> {
  c.gcHeapUsed = undefined;
  process.kill(c.pid, 'SIGUSR2');
  for (let i = 0; c.gcHeapUsed === undefined; i++) {
    if (i > 200) throw new Error('the node did not report its heap');
    await sleep(50);
  }
  const samples = [memoryOf(c.pid).rss];
  for (let i = 0; i < 40; i++) {
    await sleep(250);
    samples.push(memoryOf(c.pid).rss);
    const last = samples.slice(-8);
    if (last.length === 8 && Math.max(...last) - Math.min(...last) < 64 * 1024) break;
  }
  return { rss: samples.at(-1)!, heap: c.gcHeapUsed };
}

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

interface IdleRun { perConn: number; heapPerConn: number; perNode: Array<{ conns: number; perConn: number; fds: number; rssMiB: number }>; natsPerConn: number; connectPerSec: number; retries: number; online: number }

async function idleRun(nodes: number, conns: number, bus: boolean, o: ClusterBenchOptions): Promise<IdleRun> {
  const d = await deploy(conns, nodes, bus, GC_HOOK);
  const gens: Gen[] = [];
  try {
    await sleep(1000);
    const before = await Promise.all(d.nodes.map(settled));
    const natsBefore = d.nats ? memoryOf(d.nats.pid).rss : 0;
    const clients: GenClient[] = Array.from({ length: conns }, (_, i) => ({ name: name(i), peer: name(i ^ 1), port: d.nodes[i % nodes]!.port, token: token(i) }));
    const g = Math.max(o.generators, Math.ceil(conns / SOCKETS_PER_GENERATOR));
    const t0 = performance.now();
    for (let k = 0; k < g; k++) gens.push(generator({ mode: 'idle', clients: clients.slice(Math.floor((k * conns) / g), Math.floor(((k + 1) * conns) / g)) }));
    const readies = await Promise.all(gens.map((x) => x.ready));
    const connected = readies.reduce((s, r) => s + r.connected, 0);
    const retries = readies.reduce((s, r) => s + r.retries, 0);
    const connectPerSec = connected / ((performance.now() - t0) / 1000);
    if (connected !== conns) throw new Error(`only ${connected} of ${conns} connections opened`);
    await sleep(1000);
    // What the nodes hold, not what the generators opened: a session closed after its welcome counts here.
    const online = (await Promise.all(d.nodes.map(async (n) => ((await (await fetch(`http://127.0.0.1:${n.port}/healthz`)).json()) as { online: number }).online)))
      .reduce((a, b) => a + b, 0);
    const after = await Promise.all(d.nodes.map(settled));
    const natsAfter = d.nats ? memoryOf(d.nats.pid).rss : 0;
    const perNode = d.nodes.map((n, i) => {
      const count = clients.filter((c) => c.port === n.port).length;
      return { conns: count, perConn: (after[i]!.rss - before[i]!.rss) / count, fds: fds(n.pid), rssMiB: after[i]!.rss / 1024 / 1024 };
    });
    await stopGens(gens);
    const sum = (xs: Array<{ rss: number; heap: number }>, k: 'rss' | 'heap') => xs.reduce((s, x) => s + x[k], 0);
    return {
      perConn: (sum(after, 'rss') - sum(before, 'rss')) / conns,
      heapPerConn: (sum(after, 'heap') - sum(before, 'heap')) / conns,
      perNode, natsPerConn: (natsAfter - natsBefore) / conns, connectPerSec, retries, online,
    };
  } finally {
    killGens(gens);
    await teardown(d);
  }
}

export async function runClusterIdle(o: ClusterBenchOptions): Promise<void> {
  const perNode = Math.ceil(o.idle / 3);
  const base = await idleRun(1, perNode, false, o);
  const cluster = await idleRun(3, o.idle, true, o);
  const row = (label: string, conns: number, r: IdleRun) => [label, `${conns} (${r.online} online)`, r.perConn.toFixed(0), r.heapPerConn.toFixed(0),
    r.perNode.map((n) => `${n.conns}/${n.fds}/${n.rssMiB.toFixed(0)}`).join(' '), r.natsPerConn ? r.natsPerConn.toFixed(0) : '-',
    `${r.connectPerSec.toFixed(0)}${r.retries ? ` (${r.retries} retried)` : ''}`, (r.perConn / base.perConn).toFixed(2) + 'x'];
  table(`cluster idle: authenticated idle connections (signed in, past hello), three nodes + NATS against one node with no bus holding a third of them`,
    ['deployment', 'connections', 'node bytes/conn', 'JS heap/conn', 'per node: conns/fds/RSS MiB', 'nats-server bytes/conn', 'connects/s', 'vs one node'],
    [row('one node, no bus', perNode, base), row('three nodes + NATS', o.idle, cluster)]);
  process.stdout.write('  bytes/conn: RSS gained from none to all, each reading after a full GC, summed over the nodes; each node holds at most 20,000 descriptors here\n');
}
