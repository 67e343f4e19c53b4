/**
 * The room rows of `npm run bench` (issue 14):
 *
 *   fan-out  a room of M (100) members, all online, S (4) of them sending, each keeping W messages unfinished (a
 *            message is finished when every other member acknowledged it): member deliveries/s, the senders'
 *            accept latency (send -> first room receipt, the entry durable in the log) and delivery latency
 *            (send -> a member has it), over G generator processes (scripts/bench/rooms-gen.ts).
 *   store    bytes a room message costs the embedded store, beside a one-to-one message queued for an offline
 *            recipient, both written by a real server over real sockets (see `runStoreBytes`).
 *
 * The server processes are made by scripts/bench.ts (accounts, sessions and the room written into the store before
 * the server starts), which also runs the one-to-one text row beside these in the same run.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { open as openLmdb } from 'lmdb';
import { nameKey } from '../../shared/names.ts';
import { decodeServerFrame, encodeFrame } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';
import type { EmbeddedStore } from '../../server/store/embedded.ts';
import { cpuSeconds, forkGenerator, percentile, sleep, stopGenerators } from './lib.ts';
import { connect, userName, type Target } from './text.ts';
import type { RoomGenJob, RoomGenReport } from './rooms-gen.ts';

export const BENCH_ROOM = 'benchroom';

/** Writes room BENCH_ROOM with users 0..members-1 (user 0 owns it) straight into the store, as accounts are. */
export async function seedRoom(store: EmbeddedStore, members: number): Promise<void> {
  const now = Date.now();
  const owner = userName(0);
  await store.rooms.createRoom({ key: nameKey(BENCH_ROOM), name: BENCH_ROOM, ownerKey: nameKey(owner), owner, private: false, created: now }, now);
  const adds: Array<Promise<unknown>> = [];
  for (let i = 1; i < members; i++) {
    const name = userName(i);
    adds.push(store.rooms.addMember(nameKey(BENCH_ROOM), { key: nameKey(name), name }, 0, now, members));
  }
  await Promise.all(adds);
}

/** Users 0..members-1 of which `senders` send: spread evenly, so that every generator gets some. */
export function senderUsers(members: number, senders: number): Set<number> {
  return new Set(Array.from({ length: senders }, (_, k) => Math.floor((k * members) / senders)));
}

export interface FanoutResult {
  /** Room messages handed to members per second (each message once per member, the sender's copy included). */
  deliveriesPerSec: number;
  /** Room messages per second that every member besides the sender acknowledged. */
  messagesPerSec: number;
  acceptP50: number;
  acceptP99: number;
  deliveryP50: number;
  deliveryP99: number;
  serverCpu: number;
  generatorCpus: number[];
  /** Frames the generators could not read plus refusals the senders got: 0 in a clean run. */
  faults: number;
}

const GEN_ENTRY = new URL('./rooms-gen.ts', import.meta.url).pathname;

export async function runFanout(target: Target, o: { members: number; senders: number; window: number; seconds: number; generators: number }): Promise<FanoutResult> {
  const sending = senderUsers(o.members, o.senders);
  const n = Math.max(1, Math.min(o.generators, o.members));
  const gens = Array.from({ length: n }, (_, g) => {
    const from = Math.floor((g * o.members) / n);
    const to = Math.floor(((g + 1) * o.members) / n);
    const job: RoomGenJob = {
      target: { kind: target.kind, port: target.port, pid: target.pid, tokens: [...target.tokens!] },
      room: BENCH_ROOM, window: o.window,
      members: Array.from({ length: to - from }, (_, k) => ({ user: from + k, sender: sending.has(from + k) })),
    };
    return forkGenerator(GEN_ENTRY, job, 'room generator');
  });
  try {
    await Promise.all(gens.map((g) => g.ready));
    for (const g of gens) g.proc.send({ cmd: 'go' });
    await sleep(1000); // warm-up
    for (const g of gens) g.proc.send({ cmd: 'measure' });
    const cpu0 = cpuSeconds(target.pid);
    const t0 = performance.now();
    await sleep(o.seconds * 1000);
    const reports = gens.map((g) => g.next<RoomGenReport>());
    for (const g of gens) g.proc.send({ cmd: 'stop' });
    const serverCpu = (cpuSeconds(target.pid) - cpu0) / ((performance.now() - t0) / 1000);
    const all = await Promise.all(reports);
    const accept = all.flatMap((r) => r.acceptMs).sort((a, b) => a - b);
    const delivery = all.flatMap((r) => r.deliveryMs).sort((a, b) => a - b);
    return {
      deliveriesPerSec: all.reduce((s, r) => s + r.delivered / r.elapsed, 0),
      messagesPerSec: all.reduce((s, r) => s + r.finished / r.elapsed, 0),
      acceptP50: percentile(accept, 50), acceptP99: percentile(accept, 99),
      deliveryP50: percentile(delivery, 50), deliveryP99: percentile(delivery, 99),
      serverCpu, generatorCpus: all.map((r) => r.cpu / r.elapsed),
      faults: all.reduce((s, r) => s + r.unreadable + r.errors, 0),
    };
  } finally {
    stopGenerators(gens);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Store bytes

/** The databases of the main environment that hold room logs and one-to-one queues (server/store/embedded*.ts). */
export const ROOM_DBS = ['rooms', 'roomMembers', 'memberRooms', 'roomInvites', 'memberInvites', 'roomLog', 'roomLogById', 'roomLogByTime', 'roomMeta'];
export const QUEUE_DBS = ['queue', 'queueById', 'queueByTime', 'recipients'];

export interface StoreSnapshot {
  /** Bytes of the pages (branch, leaf, overflow) the databases occupy, and their entries. */
  bytes: number;
  entries: number;
  /** Size of the environment's data.mdb. */
  file: number;
}

/**
 * Reads the page counts of `dbs` in the data directory `dir`, with no server running on it (so every commit is
 * on disk and nothing writes meanwhile): read-only, through lmdb-js's mdb_stat.
 */
export async function snapshot(dir: string, dbs: string[]): Promise<StoreSnapshot> {
  const root = openLmdb({ path: dir, readOnly: true, maxDbs: 64 });
  try {
    let bytes = 0;
    let entries = 0;
    for (const name of dbs) {
      const s = root.openDB({ name }).getStats() as { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; entryCount: number };
      bytes += (s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages) * s.pageSize;
      entries += s.entryCount;
    }
    return { bytes, entries, file: statSync(join(dir, 'data.mdb')).size };
  } finally {
    await root.close();
  }
}

/**
 * Sends `count` messages from the users in `senders` (a window of 64 each): to the bench room, or one-to-one to
 * `recipients` in turn (all offline, so every message is queued). Resolves once every message has its durable
 * receipt (room: the first room receipt; one-to-one: `queued`). Ids and texts have the lengths of the fan-out
 * row's, the same for both kinds.
 */
export async function sendDurably(target: Target, kind: 'room' | 'direct', senders: number[], recipients: number[], count: number): Promise<void> {
  const WINDOW = 64;
  let sent = 0;
  let done = 0;
  let refused = '';
  await new Promise<void>((resolve, reject) => {
    void Promise.all(senders.map((u) => connect(target, userName(u), userName(u)))).then((sockets) => {
      const pump = (ws: (typeof sockets)[number], u: number, inFlight: { n: number }): void => {
        while (inFlight.n < WINDOW && sent < count) {
          const i = sent++;
          const id = `${userName(u)}_${i.toString(36).padStart(7, '0')}`;
          const text = String(Date.now() * 100 + (i % 100)).padStart(15, '0');
          ws.send(encodeFrame(kind === 'room' ? { t: Op.Send, id, room: BENCH_ROOM, text } : { t: Op.Send, id, to: userName(recipients[i % recipients.length]!), text }));
          inFlight.n++;
        }
      };
      sockets.forEach((ws, k) => {
        const u = senders[k]!;
        const inFlight = { n: 0 };
        const seen = new Set<string>();
        ws.on('message', (data: Buffer) => {
          const f = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
          let durable = 0;
          if (f.t === Op.RoomReceipt) for (const [id] of f.items) if (!seen.has(id)) { seen.add(id); durable++; }
          if (f.t === Op.Receipt) for (const [, , state] of f.items) if (state === 'queued') durable++;
          if (f.t === Op.Error) refused ||= `${f.code}: ${f.message}`;
          if (f.t === Op.Message) ws.send(encodeFrame({ t: Op.Ack, tags: [f.tag] }));
          if (refused) {
            for (const s of sockets) s.terminate();
            return reject(new Error(`store bytes: a send was refused (${refused})`));
          }
          done += durable;
          inFlight.n -= durable;
          if (done >= count) {
            for (const s of sockets) s.close();
            return resolve();
          }
          pump(ws, u, inFlight);
        });
        pump(ws, u, inFlight);
      });
    }, reject);
  });
}
