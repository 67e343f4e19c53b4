/**
 * `npm run bench`: Parley beside the baselines measured in the same run.
 *
 *   text   N pairs exchange short messages (receipts on for Parley): messages/s, p50/p99, CPU of both sides,
 *          against a bare uWS relay (name in, name out) and the same relay on `ws`.
 *   idle   resident bytes per idle authenticated connection (10,000 by default) vs the bare uWS relay: the
 *          slope of RSS (each reading after a full GC) as connections are added, and the JS heap per connection.
 *   relay  MiB/s for 1 and 8 concurrent streams with end-to-end credit, and the server's peak RSS for two file
 *          sizes (to show it does not depend on the file size), vs the bare uWS relay forwarding the same chunks
 *          and credit frames (each row against the bare row of the same streams and file size); the time from
 *          the first credit to every stream's first chunk byte.
 *   store  enqueue and drain rates of each Store adapter.
 *   router what the Router seam costs per envelope: in-process against a Map lookup, NATS node to node.
 *   requeue  N (4,000) unacked messages put back on the queue after a takeover: batched vs one write each.
 *   cancel cancel latency with both users on a 150 KB/s link (the sender cancels, the recipient cancels), adaptive
 *          credit window against the fixed window in the same run; and SDK MiB/s on a fast link, adaptive vs fixed.
 *   rooms  fan-out to a room of 100 members, all online, from 4 senders: member deliveries/s, accept and delivery
 *          latency, beside one-to-one text in the same run; and store bytes per room message beside per queued
 *          one-to-one message (scripts/bench/rooms.ts).
 *   cluster-text  text between two users on the same node and on different nodes (two nodes + NATS), beside one
 *          node with no bus; cluster-relay  the same for one stream; cluster-idle  50,000 idle connections over three nodes + NATS (scripts/bench/cluster.ts).
 *   recv   a browser receiving and saving a large file (1 GiB; --recv-mib): the recipient's renderer memory
 *          (PSS, peak) and the rate, by running test/e2e/large-file.test.ts, which writes its figures to
 *          test/.tmp/large-file.json.
 *
 * Options: --only text,idle,relay,store,requeue,router,cancel,rooms,cluster-text,cluster-relay,cluster-idle,recv  --cluster-idle 50000  --requeue-n 4000  --recv-mib 1024  --pairs 50  --seconds 5  --window 16  --repeat 3
 *          --idle 10000  --relay-mib 1024  --store-n 10000  --store-recipients 100  --store-long 10000
 *          --generators 2 (text and room load generator processes)
 *          --room-members 100  --room-senders 4  --room-window 4  --room-store-n 2000
 *          --profile (no value): Parley servers run with --cpu-prof; the text, cluster-text and cluster-relay rows print their top self time,
 *          the relay rows that of Parley's servers and of the bare uWS relays (which then run with --cpu-prof too)
 * A row whose generator (the busiest generator process, for text) used more than 90% of a core is marked `!`:
 * there the generator, not the server, may be the ceiling.
 * Every server runs as its own process (children of this one) so CPU and memory are its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type WebSocket from 'ws';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashToken } from '../server/core/accounts.ts';
import { hashPassword } from '../server/core/passwords.ts';
import { EmbeddedStore } from '../server/store/embedded.ts';
import { nameKey } from '../shared/names.ts';
import { memoryOf, startChild, stopChild, table, type Child, sleep } from './bench/lib.ts';
import { runText, userName, connect, GENERATOR_LIMIT, type Target } from './bench/text.ts';
import { runRelay, type RelayResult } from './bench/relay.ts';
import { runCancel } from './bench/cancel.ts';
import { runRouter } from './bench/router.ts';
import { STORE_TABLE, runStore } from './bench/store.ts';
import { runRequeue } from './bench/requeue.ts';
import { topSelfTime } from './bench/profile.ts';
import { runClusterIdle, runClusterRelay, runClusterText } from './bench/cluster.ts';
import { QUEUE_DBS, ROOM_DBS, runFanout, seedRoom, senderUsers, snapshot, sendDurably, type FanoutResult } from './bench/rooms.ts';
import { SERVER_ENV, SERVER_NODE_FLAGS } from './server-flags.mjs';

const profileDir = process.argv.includes('--profile') ? mkdtempSync(join(tmpdir(), 'parley-bench-profile-')) : null;
const argv = process.argv.filter((a) => a !== '--profile');
const args = new Map<string, string>();
for (let i = 2; i < argv.length; i += 2) args.set(argv[i]!.replace(/^--/, ''), argv[i + 1] ?? '');
const only = new Set((args.get('only') ?? 'text,idle,relay,store,requeue,router,cancel,rooms,cluster-text,cluster-relay,cluster-idle,recv').split(','));
const pairs = Number(args.get('pairs') ?? 50);
const seconds = Number(args.get('seconds') ?? 5);
const idleCount = Number(args.get('idle') ?? 10_000);
const relayMib = Number(args.get('relay-mib') ?? 1024);
const window = Number(args.get('window') ?? 16);
const generators = Number(args.get('generators') ?? 2);
/** Text, idle and relay rows run this many times, interleaved, and report the median: single runs vary by +-20% here. */
const repeat = Number(args.get('repeat') ?? 3);

function median<T>(runs: T[], by: (r: T) => number): T {
  return [...runs].sort((a, b) => by(a) - by(b))[Math.floor(runs.length / 2)]!;
}

const dirs: string[] = [];
const children: Child[] = [];

/**
 * A data directory with `users` accounts and one session each, written straight into its store; `seed` may
 * write more (the bench room) before the store is closed.
 */
async function seedDir(users: number, seed?: (store: EmbeddedStore) => Promise<void>): Promise<{ dir: string; tokens: Map<string, string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-'));
  dirs.push(dir);
  const store = new EmbeddedStore({ dir });
  await store.open();
  const passwordHash = await hashPassword('bench password', { N: 1 << 10, r: 8, p: 1 });
  const tokens = new Map<string, string>();
  const now = Date.now();
  const writes: Array<Promise<unknown>> = [];
  for (let i = 0; i < users; i++) {
    const name = userName(i);
    const token = `bench-token-${i}-${'x'.repeat(24)}`;
    tokens.set(name, token);
    writes.push(store.createAccount({ key: nameKey(name), name, passwordHash, created: now }));
    writes.push(store.putSession({ tokenHash: hashToken(token), key: nameKey(name), name, created: now, expires: now + 86_400_000 }));
  }
  await Promise.all(writes);
  await seed?.(store);
  await store.close();
  return { dir, tokens };
}

/** A Parley server process on a data directory made by `seedDir`. */
async function startParley(seeded: { dir: string; tokens: Map<string, string> }, env: Record<string, string> = {}, nodeArgs = serverNodeArgs): Promise<Target & { child: Child }> {
  const child = await startChild('server/main.ts', {
    ...serverProcessEnv(),
    PORT: '0', DATA_DIR: seeded.dir, LOG_LEVEL: 'info', IDLE_TIMEOUT_SEC: '3600',
    // The benchmark's clients send far faster than a person; the per-connection flood limit would stop them.
    FRAME_RATE: '10000000', FRAME_BURST: '1000000', ...env,
  }, nodeArgs);
  children.push(child);
  return { kind: 'parley', port: child.port, pid: child.pid, tokens: seeded.tokens, child };
}

/** A Parley server process with `users` accounts and one session each, written straight into its store. */
async function parley(users: number, env: Record<string, string> = {}, seed?: (store: EmbeddedStore) => Promise<void>, nodeArgs = serverNodeArgs): Promise<Target & { child: Child }> {
  return startParley(await seedDir(users, seed), env, nodeArgs);
}

async function bare(kind: 'uws' | 'ws', env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Target & { child: Child }> {
  const child = await startChild(`scripts/bench/bare-${kind}.ts`, env, nodeArgs);
  children.push(child);
  return { kind: 'bare', port: child.port, pid: child.pid, child };
}

/**
 * The flags and environment `npm start` runs the server with (scripts/server-flags.mjs); BENCH_NODE_OPTIONS
 * overrides the flags.
 */
function serverProcessEnv(): Record<string, string> {
  return { ...SERVER_ENV, NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS ?? SERVER_NODE_FLAGS.join(' ') };
}

/** Node flags of Parley server processes: a CPU profile each under `--profile`. */
const serverNodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
/** Under `--profile`, flags that write a CPU profile into `sub` of the profile directory (a section's own). */
const profileInto = (sub: string): string[] => (profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, sub)}`] : []);

const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
const fixed = (n: number, d = 0) => n.toFixed(d);

async function textSection(): Promise<void> {
  const rows: Array<Array<string | number>> = [];
  const results: Record<string, number> = {};
  const targets = [
    ['bare uWS relay', () => bare('uws')],
    ['bare ws relay', () => bare('ws')],
    ['Parley', () => parley(pairs * 2)],
  ] as const;
  const runs = new Map<string, Array<Awaited<ReturnType<typeof runText>>>>();
  for (let i = 0; i < repeat; i++) {
    for (const [label, make] of targets) {
      const t = await make();
      const r = await runText(t, pairs, seconds, window, generators);
      await stopChild(t.child);
      runs.set(label, [...(runs.get(label) ?? []), r]);
    }
  }
  let marked = false;
  for (const [label] of targets) {
    const all = runs.get(label)!;
    const r = median(all, (x) => x.msgsPerSec);
    results[label] = r.msgsPerSec;
    const hot = all.some((x) => x.generatorCpu > GENERATOR_LIMIT);
    marked ||= hot;
    rows.push([label, `${fixed(r.msgsPerSec)} (${all.map((x) => fixed(x.msgsPerSec / 1000)).join('/')}k)`, fixed(r.p50Ms, 2), fixed(r.p99Ms, 2),
      `${fixed(r.serverCpu * 100)}%`, fixed((r.serverCpu / r.msgsPerSec) * 1e6, 1),
      `${r.generatorCpus.map((c) => fixed(c * 100)).join('+')}%${hot ? ' !' : ''}`]);
  }
  const base = results['bare uWS relay']!;
  for (const row of rows) row.push((results[row[0] as string]! / base).toFixed(2) + 'x');
  table(`text: ${pairs} pairs, ${pairs * 2} connections, ${window} messages in flight per sender, ${seconds} s, ${generators} generator processes, median of ${repeat} interleaved runs (Parley with receipts and acks)`,
    ['server', 'delivered msg/s (runs)', 'p50 ms', 'p99 ms', 'server CPU', 'server CPU us/msg', 'generator CPU (each)', 'vs bare uWS'], rows);
  if (marked) process.stdout.write(`  ! a generator process used more than ${GENERATOR_LIMIT * 100}% of a core in a run of this row: it may be the ceiling\n`);
  process.stdout.write('  target: Parley >= 0.90x the bare uWS relay\n');
  if (profileDir) {
    table(`text: Parley servers' top self time over all runs (profiles in ${profileDir})`, ['function', 'busy %', 'ms'], topSelfTime(profileDir));
  }
}

interface IdleRun {
  /** Resident bytes one more idle connection costs: see `idleRun`. */
  marginal: number;
  /** RSS gained from no connections to all of them, per connection: start-up slack and one-time costs included. */
  overall: number;
  /** Mapped file pages gained from no connections to all of them, per connection. */
  file: number;
  /** JS heap one more connection keeps: the same slope, of the heap in use after each GC. */
  heap: number;
  before: number;
  after: number;
}

/** NODE_OPTIONS additions for the idle section's servers: the GC hook (scripts/bench/gc-hook.cjs). */
const GC_HOOK = `--expose-gc --require ${join(import.meta.dirname, 'bench/gc-hook.cjs')}`;

/**
 * Runs a full GC in a server started with GC_HOOK and waits until its RSS held still for 2 s (at most 15 s):
 * V8 sweeps and gives pages back after the collection itself, and glibc trims later.
 */
async function collect(c: Child): Promise<ReturnType<typeof memoryOf> & { heap: number }> {
  c.gcHeapUsed = undefined;
  process.kill(c.pid, 'SIGUSR2');
  const samples = [memoryOf(c.pid)];
  for (let i = 0; i < 60; i++) {
    await sleep(250);
    samples.push(memoryOf(c.pid));
    const window = samples.slice(-9).map((m) => m.rss);
    if (window.length === 9 && Math.max(...window) - Math.min(...window) < 64 * 1024) break;
  }
  for (let i = 0; c.gcHeapUsed === undefined; i++) {
    if (i > 100) throw new Error('the server did not report its heap: was it started with GC_HOOK?');
    await sleep(50);
  }
  return { ...samples[samples.length - 1]!, heap: c.gcHeapUsed };
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const mean = (f: (p: [number, number]) => number) => points.reduce((a, p) => a + f(p), 0) / points.length;
  const mx = mean(([x]) => x);
  const my = mean(([, y]) => y);
  return mean(([x, y]) => (x - mx) * (y - my)) / mean(([x]) => (x - mx) ** 2);
}

/**
 * One idle measurement. Connections open in tenths of `idleCount`; after each tenth the server runs a full GC
 * and its RSS is read once it holds still. What one more idle connection costs is the slope of those readings
 * from 40% to 100% of the connections: a fresh process first fills memory it already holds (freed start-up
 * garbage, allocator slack; the bare relay's RSS barely moves for its first few thousand connections), and
 * Parley's first connections make the store's session file resident once, whatever their number. The overall
 * gain from none to all is shown too, slack and one-time costs included.
 */
async function idleRun(t: Target & { child: Child }): Promise<IdleRun> {
  await sleep(1000);
  const before = await collect(t.child);
  const readings: Array<[number, number]> = [];
  const heapReadings: Array<[number, number]> = [];
  const tenth = Math.ceil(idleCount / 10);
  const sockets: WebSocket[] = [];
  let after = before;
  while (sockets.length < idleCount) {
    const target = Math.min(idleCount, sockets.length + tenth);
    // A few hundred at a time: fast, without a SYN flood the kernel would start dropping.
    while (sockets.length < target) {
      const from: number = sockets.length;
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(250, target - from) }, (_, k) => connect(t, userName(from + k), userName((from + k) ^ 1))))));
    }
    after = await collect(t.child);
    readings.push([sockets.length, after.rss]);
    heapReadings.push([sockets.length, after.heap]);
  }
  for (const s of sockets) s.terminate();
  await stopChild(t.child);
  const last60 = ([n]: [number, number]) => n >= 0.4 * idleCount;
  return {
    marginal: slope(readings.filter(last60)),
    overall: (after.rss - before.rss) / idleCount,
    file: (after.file - before.file) / idleCount,
    heap: slope(heapReadings.filter(last60)),
    before: before.rss,
    after: after.rss,
  };
}

async function idleSection(): Promise<void> {
  // The bare relay runs as a plain `node` process. Under Parley's process settings (scripts/server-flags.mjs)
  // it has more slack to fill first: at 10,000 connections its RSS has not started to grow yet, so that row
  // would say nothing (at 18,000 it grew by about 700-800 bytes per more connection, like the plain one).
  const withHook = (env: Record<string, string>) => ({ ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} ${GC_HOOK}`.trim() });
  const targets = [
    ['bare uWS relay', () => bare('uws', withHook({}))],
    ['Parley', () => parley(idleCount, withHook(serverProcessEnv()))],
  ] as const;
  const runs = new Map<string, IdleRun[]>();
  for (let i = 0; i < repeat; i++) {
    for (const [label, make] of targets) runs.set(label, [...(runs.get(label) ?? []), await idleRun(await make())]);
  }
  const marginal: Record<string, number> = {};
  const heap: Record<string, number> = {};
  const rows: Array<Array<string | number>> = [];
  for (const [label] of targets) {
    const all = runs.get(label)!;
    const r = median(all, (x) => x.marginal);
    marginal[label] = r.marginal;
    heap[label] = median(all, (x) => x.heap).heap;
    rows.push([label, `${mib(r.before)} -> ${mib(r.after)}`, `${fixed(r.marginal)} (${all.map((x) => fixed(x.marginal)).join('/')})`,
      `${fixed(r.overall)} (${all.map((x) => fixed(x.overall)).join('/')})`, fixed(r.file), fixed(heap[label]!)]);
  }
  for (const row of rows) {
    const label = row[0] as string;
    const vs = (m: Record<string, number>) => (m[label]! / m['bare uWS relay']!).toFixed(2) + 'x';
    row.push(vs(marginal), vs(heap));
  }
  table(`idle: ${idleCount} authenticated idle connections (Parley: signed in and past hello), median of ${repeat} interleaved runs`,
    ['server', 'RSS MiB', 'bytes per more conn (runs)', 'overall bytes/conn (runs)', 'of which file', 'JS heap/conn', 'vs bare uWS', 'JS heap vs bare'], rows);
  process.stdout.write('  bytes per more conn: slope of RSS over the last 60% of the connections, each reading after a full GC;\n' +
    '  overall: RSS gained from none to all (allocator slack and one-time costs included, so small or even negative\n' +
    '  for a fresh process); JS heap/conn: the same slope of the heap in use after each GC, from inside the process.\n');
  process.stdout.write('  target: Parley <= 2x the bare uWS relay (bytes per more connection)\n');
}

async function relaySection(): Promise<void> {
  const rows: Array<Array<string | number>> = [];
  const rate: Record<string, number> = {};
  const runs: Array<[string, () => Promise<Target & { child: Child }>, number, number]> = [
    ['bare uWS relay, 1 stream', () => bare('uws', {}, profileInto('relay-bare')), 1, relayMib],
    ['Parley, 1 stream', () => parley(16, {}, undefined, profileInto('relay-parley')), 1, relayMib],
    ['bare uWS relay, 8 streams', () => bare('uws', {}, profileInto('relay-bare')), 8, relayMib / 8],
    ['Parley, 8 streams', () => parley(16, {}, undefined, profileInto('relay-parley')), 8, relayMib / 8],
    ['bare uWS relay, 1 stream, 4x the file', () => bare('uws', {}, profileInto('relay-bare')), 1, relayMib * 4],
    ['Parley, 1 stream, 4x the file', () => parley(16, {}, undefined, profileInto('relay-parley')), 1, relayMib * 4],
  ];
  const results = new Map<string, RelayResult[]>();
  for (let i = 0; i < repeat; i++) {
    for (const [label, make, streams, mibEach] of runs) {
      const t = await make();
      const r = await runRelay(t, streams, mibEach * 1024 * 1024);
      await stopChild(t.child);
      results.set(label, [...(results.get(label) ?? []), r]);
    }
  }
  let relayMarked = false;
  for (const [label, , streams, mibEach] of runs) {
    const all = results.get(label)!;
    const r = median(all, (x) => x.mibPerSec);
    r.peakRss = Math.max(...all.map((x) => x.peakRss));
    rate[label] = r.mibPerSec;
    const base = label.includes('8 streams') ? 'bare uWS relay, 8 streams' : label.includes('4x') ? 'bare uWS relay, 1 stream, 4x the file' : 'bare uWS relay, 1 stream';
    const hot = all.some((x) => x.generatorCpu > GENERATOR_LIMIT);
    relayMarked ||= hot;
    rows.push([label, fixed(mibEach * streams), `${fixed(r.mibPerSec)} (${all.map((x) => fixed(x.mibPerSec)).join('/')})`, mib(r.rssBefore), mib(r.peakRss),
      all.map((x) => fixed(x.firstMs)).join('/'), `${fixed(r.serverCpu * 100)}%`, fixed((all.reduce((a, x) => a + x.serverCpu / x.mibPerSec, 0) / all.length) * 1000, 2),
      `${fixed(r.generatorCpu * 100)}%${hot ? ' !' : ''}`,
      ((rate[label] ?? 0) / (rate[base] ?? 1)).toFixed(2) + 'x']);
  }
  table(`relay: 256 KiB chunks, end-to-end credit (4 MiB window), senders and viewers as fast as they go in two generator processes, median of ${repeat} interleaved runs (peak RSS: highest; generator CPU: the busier process)`,
    ['run', 'MiB total', 'MiB/s (runs)', 'RSS before MiB', 'peak RSS MiB', 'first chunk ms (runs)', 'server CPU', 'server CPU ms/MiB (mean of runs)', 'generator CPU', 'vs bare uWS'], rows);
  if (relayMarked) process.stdout.write(`  ! the generator used more than ${GENERATOR_LIMIT * 100}% of a core in a run of this row: it may be the ceiling\n`);
  process.stdout.write('  target: Parley >= 0.95x the bare uWS relay; peak RSS independent of the file size\n');
  if (profileDir) {
    for (const [who, sub] of [['Parley servers', 'relay-parley'], ['bare uWS relays', 'relay-bare']] as const) {
      table(`relay: ${who}' top self time over all runs (profiles in ${join(profileDir, sub)})`, ['function', 'busy %', 'ms'], topSelfTime(join(profileDir, sub)));
    }
  }
}

async function storeSection(): Promise<void> {
  const rows = await runStore({
    n: Number(args.get('store-n') ?? 10_000),
    recipients: Number(args.get('store-recipients') ?? 100),
    long: Number(args.get('store-long') ?? 10_000),
  });
  table(STORE_TABLE.title, STORE_TABLE.columns, rows);
}

async function cancelSection(): Promise<void> {
  const t = await parley(2);
  try {
    await runCancel(t);
  } finally {
    await stopChild(t.child);
  }
}

async function recvSection(): Promise<void> {
  const { execFile } = await import('node:child_process');
  const { readFile } = await import('node:fs/promises');
  const root = join(import.meta.dirname, '..');
  const fileMib = args.get('recv-mib') ?? '1024';
  await new Promise<void>((resolve, reject) => {
    execFile('npx', ['vitest', 'run', 'test/e2e/large-file.test.ts'], { cwd: root, env: { ...process.env, LARGE_FILE_MIB: fileMib }, maxBuffer: 64 * 1024 * 1024 },
      (err, _out, stderr) => (err ? reject(new Error(`large-file test failed: ${stderr.slice(-2000)}`)) : resolve()));
  });
  const r = JSON.parse(await readFile(join(root, 'test/.tmp/large-file.json'), 'utf8')) as
    { fileMiB: number; seconds: number; mibPerSec: number; rendererBaselineMiB: number; rendererPeakMiB: number };
  table('recv: one browser sends a file to another through Parley; the recipient writes it to OPFS as it arrives, then Save',
    ['file MiB', 'seconds', 'MiB/s', 'renderer PSS before MiB', 'renderer PSS peak MiB'],
    [[r.fileMiB, r.seconds, r.mibPerSec, r.rendererBaselineMiB, r.rendererPeakMiB]]);
  process.stdout.write('  target: recipient renderer peak < 300 MiB, independent of the file size\n');
}

async function requeueSection(): Promise<void> {
  const rows = await runRequeue(Number(args.get('requeue-n') ?? 4000));
  table('requeue: N unacked messages back on the queue after a takeover (target: under 0.5 s)',
    ['how', 'N', 'ms to last queued', 'ms another sender waited', 'target', 'note'], rows);
}

async function roomsSection(): Promise<void> {
  const members = Number(args.get('room-members') ?? 100);
  const senders = Number(args.get('room-senders') ?? 4);
  const roomWindow = Number(args.get('room-window') ?? 4);
  const storeN = Number(args.get('room-store-n') ?? 2000);
  const fanout: FanoutResult[] = [];
  const direct: Array<Awaited<ReturnType<typeof runText>>> = [];
  for (let i = 0; i < repeat; i++) {
    const t = await parley(members, {}, (store) => seedRoom(store, members));
    fanout.push(await runFanout(t, { members, senders, window: roomWindow, seconds, generators }));
    await stopChild(t.child);
    const d = await parley(pairs * 2);
    direct.push(await runText(d, pairs, seconds, window, generators));
    await stopChild(d.child);
  }
  const f = median(fanout, (x) => x.deliveriesPerSec);
  const o = median(direct, (x) => x.msgsPerSec);
  const fHot = fanout.some((x) => Math.max(...x.generatorCpus) > GENERATOR_LIMIT);
  const oHot = direct.some((x) => x.generatorCpu > GENERATOR_LIMIT);
  const cpus = (c: number[], hot: boolean) => `${c.map((x) => fixed(x * 100)).join('+')}%${hot ? ' !' : ''}`;
  const faults = fanout.reduce((a, x) => a + x.faults, 0);
  table(`rooms: fan-out to a room of ${members} members, all online, ${senders} of them sending (${roomWindow} unfinished messages each), beside one-to-one (${pairs} pairs, ${window} in flight per sender); ${generators} generator processes, ${seconds} s, median of ${repeat} interleaved runs`,
    ['load', 'member deliveries/s (runs)', 'messages/s', 'accept p50/p99 ms', 'delivery p50/p99 ms', 'server CPU', 'server CPU us/delivery', 'generator CPU (each)'], [
      [`room of ${members}`, `${fixed(f.deliveriesPerSec)} (${fanout.map((x) => fixed(x.deliveriesPerSec / 1000)).join('/')}k)`, fixed(f.messagesPerSec),
        `${fixed(f.acceptP50, 2)} / ${fixed(f.acceptP99, 2)}`, `${fixed(f.deliveryP50, 2)} / ${fixed(f.deliveryP99, 2)}`, `${fixed(f.serverCpu * 100)}%`,
        fixed((f.serverCpu / f.deliveriesPerSec) * 1e6, 1), cpus(f.generatorCpus, fHot)],
      ['one-to-one', `${fixed(o.msgsPerSec)} (${direct.map((x) => fixed(x.msgsPerSec / 1000)).join('/')}k)`, fixed(o.msgsPerSec), '-',
        `${fixed(o.p50Ms, 2)} / ${fixed(o.p99Ms, 2)}`, `${fixed(o.serverCpu * 100)}%`, fixed((o.serverCpu / o.msgsPerSec) * 1e6, 1), cpus(o.generatorCpus, oHot)],
    ]);
  process.stdout.write('  member deliveries: room messages handed to members (each message once per member, the sender\'s own copy included);\n' +
    '  messages/s: room messages every other member acknowledged (a sender sends the next one only then). accept: send -> first\n' +
    '  room receipt (in the log, durably); delivery: send -> a member (one-to-one: the recipient) has it. One-to-one has receipts and acks on.\n');
  if (fHot || oHot) process.stdout.write(`  ! a generator process used more than ${GENERATOR_LIMIT * 100}% of a core in a run of this table: it may be the ceiling\n`);
  if (faults > 0) process.stdout.write(`  ! the room generators saw ${faults} unreadable frames or refusals\n`);

  // Store bytes: a fresh seeded directory per kind, so neither kind writes into pages the other freed.
  const rows: Array<Array<string | number>> = [];
  const memberUsers = Array.from({ length: members }, (_, i) => i);
  const sending = [...senderUsers(members, senders)];
  const offline = memberUsers.filter((u) => !sending.includes(u));
  for (const kind of ['room', 'direct'] as const) {
    const dbs = kind === 'room' ? ROOM_DBS : QUEUE_DBS;
    const seeded = await seedDir(members, (store) => seedRoom(store, members));
    const before = await snapshot(seeded.dir, dbs);
    const t = await startParley(seeded);
    await sendDurably(t, kind, sending, offline, storeN);
    await stopChild(t.child);
    const after = await snapshot(seeded.dir, dbs);
    rows.push([kind === 'room' ? `room message (room of ${members}, ${offline.length} offline)` : `one-to-one message queued for an offline recipient`, storeN,
      fixed((after.bytes - before.bytes) / storeN), ((after.entries - before.entries) / storeN).toFixed(2), fixed((after.file - before.file) / storeN),
      kind === 'room' ? ROOM_DBS.join(', ') : QUEUE_DBS.join(', ')]);
  }
  table(`rooms: store bytes per message, embedded store (LMDB), each kind from ${senders} online senders through a real server into a fresh data directory`,
    ['message', 'messages', 'bytes/msg in its databases', 'entries/msg', 'data.mdb growth bytes/msg', 'databases counted'], rows);
  process.stdout.write('  bytes/msg: growth of the pages (branch + leaf + overflow, mdb_stat) of those databases from before the server started\n' +
    '  to after it stopped (SIGTERM: every commit on disk), divided by the messages; every message had its durable receipt first.\n' +
    '  Offline members keep the room\'s log from being trimmed, so every room message is still in it; one-to-one recipients\n' +
    '  are offline, so every message is in the queue. data.mdb growth: the whole file, free pages LMDB keeps for reuse included.\n');
}

async function main(): Promise<void> {
  process.stdout.write(`Parley benchmark, ${new Date().toISOString()}, Node ${process.versions.node}, ${(await import('node:os')).cpus().length} cores\n`);
  try {
    if (only.has('text')) await textSection();
    if (only.has('idle')) await idleSection();
    if (only.has('relay')) await relaySection();
    if (only.has('store')) await storeSection();
    if (only.has('requeue')) await requeueSection();
    if (only.has('router')) await runRouter(Math.min(seconds, 3));
    if (only.has('cancel')) await cancelSection();
    if (only.has('rooms')) await roomsSection();
    const cluster = { pairs, seconds, window, generators, repeat, idle: Number(args.get('cluster-idle') ?? 50_000), relayMib, profileDir };
    if (only.has('cluster-text')) await runClusterText(cluster);
    if (only.has('cluster-relay')) await runClusterRelay(cluster);
    if (only.has('cluster-idle')) await runClusterIdle(cluster);
    if (only.has('recv')) await recvSection();
  } finally {
    for (const c of children) await stopChild(c);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
