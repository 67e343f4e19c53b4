/**
 * Requeue after a takeover: N messages in flight to a recipient who never acked them are put back on its queue
 * when a newer sign-in takes the session over. Measured on a real server (embedded store, in this process) over
 * real sockets: from the takeover to the sender's last `queued` receipt, and how long a third user's message
 * to the same recipient waited for its `queued` meanwhile. The baseline, in the same run on the same kind of
 * store, is what the hub did before: one awaited `enqueue` per message. Order is checked against the queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { register, signIn } from '../../client/sdk/http.ts';
import { startServer } from '../../server/app.ts';
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/core/logger.ts';
import type { Store } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { MongoStore } from '../../server/store/mongo.ts';
import { startMongoStandin, type MongoStandin } from '../../test/support/mongo-standin.ts';
import { decodeServerFrame, encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION, type ClientFrame, type ServerFrame } from '../../shared/protocol.ts';

const PASSWORD = 'bench password 1';

interface Sock { ws: WebSocket; on(fn: (f: ServerFrame) => void): void; send(f: ClientFrame): void }

async function open(url: string, token: string): Promise<Sock> {
  const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
  ws.binaryType = 'nodebuffer';
  const fns: Array<(f: ServerFrame) => void> = [];
  ws.on('message', (d: Buffer) => {
    const f = decodeServerFrame(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    if (f.t !== 'chunk') for (const fn of fns) fn(f);
  });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  const s: Sock = { ws, on: (fn) => fns.push(fn), send: (f) => ws.send(encodeFrame(f)) };
  const welcome = new Promise<void>((resolve) => s.on((f) => f.t === Op.Welcome && resolve()));
  s.send({ t: Op.Hello, v: PROTOCOL_VERSION });
  await welcome;
  return s;
}

function waitFor(s: Sock, pred: (f: ServerFrame) => boolean): Promise<void> {
  return new Promise((resolve) => s.on((f) => pred(f) && resolve()));
}

type Kind = 'embedded' | 'mongodb';

async function batched(n: number, kind: Kind): Promise<{ ms: number; otherMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-requeue-'));
  const standin = kind === 'mongodb' ? await startMongoStandin() : null;
  const mongo = standin ? { MONGODB_URI: standin.uri } : {};
  const config = loadConfig({ ...mongo, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, SCRYPT_COST: '10', LOG_LEVEL: 'silent', REGISTRATIONS_PER_MINUTE: '1000', FRAME_RATE: '100000', FRAME_BURST: '100000', CLIENT_DIR: join(dir, 'none') }, []);
  const server = await startServer(config, { log: createLogger('silent') });
  try {
    const http = { baseUrl: server.url };
    const ws = server.url.replace(/^http/, 'ws') + '/ws';
    const token = async (name: string): Promise<string> => {
      await register(http, name, PASSWORD).catch(() => undefined);
      return (await signIn(http, name, PASSWORD)).token;
    };
    const alice = await open(ws, await token('alice'));
    const carol = await open(ws, await token('carol'));
    const bob = await open(ws, await token('bob'));
    let got = 0;
    const all = new Promise<void>((resolve) => bob.on((f) => f.t === Op.Message && ++got === n && resolve()));
    for (let i = 0; i < n; i++) alice.send({ t: Op.Send, id: `requeue-bench-${String(i).padStart(6, '0')}`, to: 'bob', text: `message ${i}` });
    await all;
    let queued = 0;
    const lastId = `requeue-bench-${String(n - 1).padStart(6, '0')}`;
    const done = new Promise<void>((resolve) => alice.on((f) => {
      if (f.t === Op.Receipt) for (const [id, , state] of f.items) if (state === 'queued' && ++queued && id === lastId) resolve();
    }));
    const carolQueued = waitFor(carol, (f) => f.t === Op.Receipt && f.items.some(([id, , st]) => id === 'carol-during-requeue' && st === 'queued'));
    const t0 = performance.now();
    await signIn(http, 'bob', PASSWORD); // takes the session over: its n unacked messages are requeued
    carol.send({ t: Op.Send, id: 'carol-during-requeue', to: 'bob', text: 'hello?' });
    await done;
    const ms = performance.now() - t0;
    await carolQueued;
    const otherMs = performance.now() - t0;
    const q = await server.store.fetchQueue('bob', -1, n + 10, 0);
    const ids = q.filter((m) => m.fromKey === 'alice').map((m) => m.id);
    for (let i = 0; i < n; i++) if (ids[i] !== `requeue-bench-${String(i).padStart(6, '0')}`) throw new Error(`queue order broken at ${i}`);
    if (queued !== n) throw new Error(`${queued} of ${n} queued receipts`);
    for (const s of [alice, carol, bob]) s.ws.terminate();
    return { ms, otherMs };
  } finally {
    await server.stop();
    await standin?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The old way, on the same kind of store: one awaited enqueue per message. */
async function oneByOne(n: number, kind: Kind): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-requeue-'));
  let standin: MongoStandin | null = null;
  let store: Store;
  if (kind === 'mongodb') {
    standin = await startMongoStandin();
    store = new MongoStore({ uri: standin.uri });
  } else {
    store = new EmbeddedStore({ dir });
  }
  await store.open();
  try {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await store.enqueue({ to: 'bob', from: 'alice', fromKey: 'alice', id: `one-by-one-${i}`, text: `message ${i}`, ts: Date.now() }, Number.MAX_SAFE_INTEGER);
    }
    return performance.now() - t0;
  } finally {
    await store.close();
    await standin?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runRequeue(n: number): Promise<Array<Array<string | number>>> {
  const rows: Array<Array<string | number>> = [];
  for (const kind of ['embedded', 'mongodb'] as const) {
    const label = kind === 'embedded' ? 'embedded' : 'mongodb STAND-IN';
    const b = await batched(n, kind);
    const old = await oneByOne(n, kind);
    rows.push(
      [`${label}: batched (enqueueBatch), real server`, n, b.ms.toFixed(0), b.otherMs.toFixed(0), b.ms < 500 ? 'under 0.5 s' : 'OVER 0.5 s', 'order checked'],
      [`${label}: one awaited enqueue per message`, n, old.toFixed(0), '-', old < 500 ? 'under 0.5 s' : 'over 0.5 s', 'store only, no sockets'],
    );
  }
  return rows;
}
