/**
 * One load-generator process of the cluster rows (forked by scripts/bench/cluster.ts; several run side by side so
 * that no single generator core is the ceiling). Unlike text-gen.ts, each client is given the port of the node
 * it connects to, so that the two users of a pair can sit on the same node or on different ones.
 *
 *   job: { mode: 'text', clients, window }  pairs (2k, 2k+1) send short messages to each other, `window` in flight
 *   job: { mode: 'idle', clients }          connect, say hello, wait for welcome, then hold the sockets
 *   job: { mode: 'relay', clients, bytes }  clients[0] streams `bytes` to clients[1] with end-to-end credit (256 KiB
 *                                          chunks, 4 MiB window), then reports at once; with `side` ('send' or
 *                                          'view') the process runs only that half, for clients[0] alone
 *   coordinator -> { cmd: 'measure' }      (text) reset counters and CPU
 *   coordinator -> { cmd: 'stop' }         reply with a report, close the sockets and exit
 *
 * Per message it does little: receipts are skipped by peeking at the opcode; a message frame is unpacked for its
 * tag and timestamp; acks are batched per event-loop turn.
 */
import { Unpackr } from 'msgpackr';
import WebSocket from 'ws';
import { CHUNK_HEADER_BYTES, CHUNK_TAG } from '../../shared/chunk.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { peekOp } from './frames.ts';
import { selfCpuSeconds } from './lib.ts';

export interface GenClient { name: string; peer: string; port: number; token: string }
export type ClusterGenJob = { mode: 'text'; clients: GenClient[]; window: number } | { mode: 'idle'; clients: GenClient[] }
  | { mode: 'relay'; clients: GenClient[]; bytes: number; side?: 'send' | 'view' };
export interface ClusterGenReport { error?: string; delivered: number; latencies: number[]; cpu: number; elapsed: number; connected: number }

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
/** Client frames are sent with an all-zero mask: `ws` then skips masking. */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

function open(c: GenClient): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${c.port}/ws`, {
    headers: { Authorization: `Bearer ${c.token}` }, perMessageDeflate: false, generateMask: zeroMask,
  });
  ws.binaryType = 'nodebuffer';
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('close', (code) => reject(new Error(`${c.name}: closed with ${code} before welcome`)));
    ws.once('open', () => ws.send(encodeFrame({ t: Op.Hello, v: PROTOCOL_VERSION })));
    const onWelcome = (data: Buffer): void => {
      if (peekOp(data) !== Op.Welcome) return;
      ws.off('message', onWelcome);
      ws.removeAllListeners('close');
      resolve(ws);
    };
    ws.on('message', onWelcome);
  });
}

/** Connection attempts that failed and were made again (a reset under load, a TRY_AGAIN close). */
let retries = 0;

async function openRetrying(c: GenClient): Promise<WebSocket> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await open(c);
    } catch (err) {
      if (attempt >= 10) throw err;
      retries++;
      await new Promise((r) => setTimeout(r, 100 * attempt * Math.random()));
    }
  }
}

/** Opens every client's socket, a couple of hundred at a time (faster than one by one, no SYN flood). */
async function openAll(clients: GenClient[]): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < clients.length; i += 200) out.push(...(await Promise.all(clients.slice(i, i + 200).map(openRetrying))));
  return out;
}

const CHUNK = 256 * 1024;
const WINDOW = 4 * 1024 * 1024;

/**
 * One stream from `sender` to `viewer`, as fast as the credit loop goes. The chunk frames are a ring reused in
 * turn: at most WINDOW / CHUNK are unpaid, and a paid one has left this process, so twice that is never overwritten
 * while `ws` still holds it.
 */
/** The sending half: offers `bytes` to `to` and sends chunks as credit comes; resolves once the last is sent. */
function sendStream(sender: WebSocket, to: string, bytes: number): Promise<void> {
  const ring = Array.from({ length: (2 * WINDOW) / CHUNK }, () => {
    const f = Buffer.alloc(CHUNK_HEADER_BYTES + CHUNK, 7);
    f[0] = CHUNK_TAG;
    return f;
  });
  let sid = 0;
  let next = 0;
  let credit = 0;
  let sent = 0;
  return new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (credit > 0 && sent < bytes) {
        const n = Math.min(CHUNK, credit, bytes - sent);
        const f = ring[next++ % ring.length]!;
        f.writeUInt32BE(sid, 1);
        f.writeDoubleBE(sent, 5);
        sender.send(n === CHUNK ? f : f.subarray(0, CHUNK_HEADER_BYTES + n));
        sent += n;
        credit -= n;
        if (sent === bytes) {
          sender.send(encodeFrame({ t: Op.StreamEnd, sid }));
          resolve();
        }
      }
    };
    sender.on('message', (data: Buffer) => {
      const f = unpackr.unpack(data) as { t: number; sid: number; bytes: number; code?: string; message?: string; reason?: string };
      if (f.t === Op.StreamOffered) sid = f.sid;
      else if (f.t === Op.StreamGranted) {
        credit += f.bytes;
        pump();
      } else if (f.t === Op.StreamAborted) reject(new Error(`stream aborted: ${f.reason}`));
      else if (f.t === Op.Error && f.code === 'RECIPIENT_OFFLINE' && offers < 50) {
        setTimeout(offer, 100); // the viewer's welcome came, but its (empty) queue drain may not have settled yet
      } else if (f.t === Op.Error) reject(new Error(`${f.code}: ${f.message} (after ${offers} offers)`));
    });
    let offers = 0;
    const offer = (): void => {
      offers++;
      sender.send(encodeFrame({ t: Op.StreamOffer, ref: 'bench-relay', to, name: 'bench.webm', size: bytes, mime: 'video/webm', container: 'webm' }));
    };
    offer();
  });
}

/** When the viewing half had the last byte (0 until then): the relay's time ends there, not at `streamEnded`. */
let lastByteAt = 0;

/**
 * The viewing half: accepts the offer with the window, grants as chunks arrive; resolves at `streamEnded`, which
 * may come after the last byte. A viewer that closed at its last byte could cut the stream before the sender's
 * end reached the server, and the sender would get STREAM_UNKNOWN for its end.
 */
function viewStream(viewer: WebSocket, bytes: number): Promise<void> {
  let sid = 0;
  let received = 0;
  let ungranted = 0;
  return new Promise<void>((resolve, reject) => {
    viewer.on('message', (data: Buffer) => {
      if (data[0] === CHUNK_TAG) {
        const n = data.byteLength - CHUNK_HEADER_BYTES;
        received += n;
        ungranted += n;
        if (ungranted >= WINDOW / 4 && received < bytes) {
          viewer.send(encodeFrame({ t: Op.StreamCredit, sid, bytes: ungranted }));
          ungranted = 0;
        }
        if (received === bytes) lastByteAt = performance.now();
        return;
      }
      const f = unpackr.unpack(data) as { t: number; sid: number; reason?: string };
      if (f.t === Op.StreamEnded && received === bytes) resolve();
      if (f.t === Op.StreamOffered) {
        sid = f.sid;
        viewer.send(encodeFrame({ t: Op.StreamAnswer, sid: f.sid, accept: true, credit: WINDOW }));
      }
      if (f.t === Op.StreamAborted) reject(new Error(`stream aborted: ${f.reason}`));
    });
  });
}

/** What a relay job's process runs: both halves, or one of them (`side`) when each half has its own process. */
function relayJob(job: Extract<ClusterGenJob, { mode: 'relay' }>, sockets: WebSocket[]): Promise<void> {
  if (job.side === 'send') return sendStream(sockets[0]!, job.clients[0]!.peer, job.bytes);
  if (job.side === 'view') return viewStream(sockets[0]!, job.bytes);
  const viewed = viewStream(sockets[1]!, job.bytes);
  return Promise.all([sendStream(sockets[0]!, job.clients[1]!.name, job.bytes), viewed]).then(() => undefined);
}

async function main(job: ClusterGenJob): Promise<void> {
  const sockets = await openAll(job.clients);
  if (job.mode === 'relay') {
    process.once('message', () => {
      const cpu0 = selfCpuSeconds();
      const t0 = performance.now();
      relayJob(job, sockets).then(() => {
        const report: ClusterGenReport = { delivered: job.bytes, latencies: [], cpu: selfCpuSeconds() - cpu0, elapsed: ((lastByteAt || performance.now()) - t0) / 1000, connected: 2 };
        for (const ws of sockets) ws.terminate();
        process.send!(report, () => process.exit(0));
      }, (err: unknown) => {
        process.send!({ error: (err as Error).message }, () => process.exit(1));
      });
    });
    process.send!({ ready: true, connected: sockets.length, retries });
    return;
  }
  let measuring = false;
  let delivered = 0;
  const latencies: number[] = [];
  let running = true;
  let cpu0 = selfCpuSeconds();
  let m0 = performance.now();

  if (job.mode === 'text') {
    const { window } = job;
    const outstanding = new Array<number>(sockets.length).fill(0);
    const seq = new Array<number>(sockets.length).fill(0);
    const acks: number[][] = sockets.map(() => []);
    const flushing = new Set<number>();
    const pump = (i: number): void => {
      const c = job.clients[i]!;
      while (running && outstanding[i]! < window) {
        outstanding[i]!++;
        sockets[i]!.send(encodeFrame({ t: Op.Send, id: `${c.name}_${(seq[i]!++).toString(36).padStart(8, '0')}`, to: c.peer, text: String(performance.now()) }));
      }
    };
    const flush = (): void => {
      for (const i of flushing) {
        sockets[i]!.send(encodeFrame({ t: Op.Ack, tags: acks[i]! }));
        acks[i] = [];
      }
      flushing.clear();
    };
    sockets.forEach((ws, i) => {
      ws.on('message', (data: Buffer) => {
        if (peekOp(data) !== Op.Message) return; // receipts cost no decoding
        const f = unpackr.unpack(data) as { tag: number; text: string };
        if (measuring) {
          delivered++;
          if ((delivered & 7) === 0) latencies.push(performance.now() - Number(f.text));
        }
        if (acks[i]!.push(f.tag) === 1) {
          if (flushing.size === 0) setImmediate(flush);
          flushing.add(i);
        }
        const sender = i ^ 1; // pairs are (2k, 2k+1) within this process
        outstanding[sender]!--;
        pump(sender);
      });
    });
    for (let i = 0; i < sockets.length; i++) pump(i);
  }

  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'measure') {
      measuring = true;
      delivered = 0;
      latencies.length = 0;
      cpu0 = selfCpuSeconds();
      m0 = performance.now();
    } else if (m.cmd === 'stop') {
      measuring = false;
      running = false;
      const report: ClusterGenReport = { delivered, latencies, cpu: selfCpuSeconds() - cpu0, elapsed: (performance.now() - m0) / 1000, connected: sockets.length };
      for (const ws of sockets) ws.terminate();
      process.send!(report, () => process.exit(0));
    }
  });
  process.send!({ ready: true, connected: sockets.length, retries });
}

process.once('message', (job: ClusterGenJob) => {
  main(job).catch((err: unknown) => {
    process.stderr.write(`cluster generator failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
});
