/**
 * One side of the relay load (scripts/bench/relay.ts) in its own process: every sender, or every viewer, of the S
 * streams, so that neither side's work is the ceiling of a core the other needs.
 *
 *   coordinator -> RelayJob              connect (Parley: senders offer, viewers accept with no credit yet);
 *                                         reply { ready: true }
 *   coordinator -> { cmd: 'go' }          viewers grant the window; senders send as credit comes; viewers count
 *   viewer      -> { done: true, cpu, elapsed }   once every stream arrived whole and (Parley) ended (then exits)
 *   coordinator -> { cmd: 'stop' }        sender: reply { cpu, elapsed }, close, exit
 *
 * What is timed is the same client protocol against both servers: the first credit, then chunks and credit
 * frames. The offer and its answer, which the bare relay does not know, are setup like connecting: Parley's
 * stream is accepted before `go`, and the bare relay passes the credit frames on blindly.
 *
 * Chunk frames are built once per stream and reused in turn: with the credit loop at most WINDOW / CHUNK chunks
 * are unacknowledged, and a chunk whose credit came back has left this process, so a ring of twice that many is
 * never overwritten while `ws` still holds it. Only the offset is written per chunk. The viewer reads on a bare
 * socket (raw-ws.ts) that counts chunk bytes as they pass.
 */
import { Unpackr } from 'msgpackr';
import type WebSocket from 'ws';
import { CHUNK_HEADER_BYTES, CHUNK_TAG } from '../../shared/chunk.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { selfCpuSeconds } from './lib.ts';
import { openRaw, type RawSocket } from './raw-ws.ts';
import { connect, userName, type Target } from './text.ts';

export const CHUNK = 256 * 1024;
export const WINDOW = 4 * 1024 * 1024;
const RING = (2 * WINDOW) / CHUNK;
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export interface RelayJob {
  role: 'sender' | 'viewer';
  target: Omit<Target, 'tokens'> & { tokens?: Array<[string, string]> };
  streams: number;
  bytesEach: number;
}
export interface RelaySideReport {
  cpu: number;
  elapsed: number;
  /** Viewers only: ms from `go` (the first credit sent) until the first chunk byte of every stream had come. */
  firstMs?: number;
}

function chunkRing(sid: number, fill: number): Buffer[] {
  return Array.from({ length: RING }, () => {
    const f = Buffer.alloc(CHUNK_HEADER_BYTES + CHUNK, fill);
    f[0] = CHUNK_TAG;
    f.writeUInt32BE(sid, 1);
    return f;
  });
}

/** Sender `i`: offers (Parley) and waits for the answer, then pumps chunks as credit comes. */
async function sender(t: Target, i: number, bytes: number, fail: (e: Error) => void): Promise<{ ws: WebSocket }> {
  const ws = await connect(t, userName(2 * i), userName(2 * i + 1));
  let sid = i + 1;
  let ring = chunkRing(sid, i);
  let next = 0;
  let credit = 0;
  let sent = 0;
  let answered: () => void = () => undefined;
  const accepted = new Promise<void>((resolve) => (answered = resolve));
  const pump = (): void => {
    while (credit > 0 && sent < bytes) {
      const n = Math.min(CHUNK, credit, bytes - sent);
      const f = ring[next++ % RING]!;
      f.writeDoubleBE(sent, 5);
      ws.send(n === CHUNK ? f : f.subarray(0, CHUNK_HEADER_BYTES + n));
      sent += n;
      credit -= n;
      if (sent === bytes && t.kind === 'parley') ws.send(encodeFrame({ t: Op.StreamEnd, sid }));
    }
  };
  ws.on('message', (data: Buffer) => {
    const f = unpackr.unpack(data) as { t: number; sid: number; bytes: number; accept?: boolean; code?: string; message?: string };
    if (f.t === Op.StreamOffered) {
      sid = f.sid;
      ring = chunkRing(sid, i);
    } else if (f.t === Op.StreamAnswered) {
      if (f.accept) answered();
      else fail(new Error('stream declined'));
    } else if (f.t === Op.StreamGranted || f.t === Op.StreamCredit) {
      credit += f.bytes;
      pump();
    } else if (f.t === Op.Error) fail(new Error(`${f.code}: ${f.message}`));
  });
  if (t.kind === 'parley') {
    ws.send(encodeFrame({ t: Op.StreamOffer, ref: `bench-${i}`, to: userName(2 * i + 1), name: 'bench.mp4', size: bytes, mime: 'video/mp4', container: 'fmp4' }));
    await accepted;
  }
  return { ws };
}

/**
 * Viewer `i`: accepts the offer (no credit yet); `go` grants the window; counts chunk bytes, grants credit as
 * they pass; resolves `arrived` when whole.
 */
async function viewer(t: Target, i: number, bytes: number, fail: (e: Error) => void): Promise<{ arrived: Promise<void>; ended: Promise<void>; sock: RawSocket; go(): void; firstAt(): number }> {
  const name = userName(2 * i + 1);
  const peer = userName(2 * i);
  let sid = i + 1;
  let received = 0;
  let firstAt = 0;
  let ungranted = 0;
  let arrive: () => void = () => undefined;
  const arrived = new Promise<void>((resolve) => (arrive = resolve));
  // Parley's `streamEnded` may come after the last byte: a viewer that closed before it would cut the stream
  // before the sender's end reached the server (and the sender would get STREAM_UNKNOWN for its end).
  let end: () => void = () => undefined;
  const ended = t.kind === 'parley' ? new Promise<void>((resolve) => (end = resolve)) : arrived;
  let welcome: (() => void) | undefined;
  let sock: RawSocket | undefined;
  sock = await openRaw(t.port, t.kind === 'parley' ? '/ws' : `/?name=${name}&peer=${peer}`,
    t.kind === 'parley' ? { Authorization: `Bearer ${t.tokens!.get(name)}` } : {}, (b) => b === CHUNK_TAG, {
      // A chunk's payload passes in pieces; its header is taken off once, with the first piece.
      onChunkBytes: (piece, first) => {
        const n = piece - (first ? CHUNK_HEADER_BYTES : 0);
        if (received === 0) firstAt = performance.now();
        received += n;
        ungranted += n;
        if (ungranted >= WINDOW / 4 && received < bytes) {
          sock!.send(encodeFrame({ t: Op.StreamCredit, sid, bytes: ungranted }));
          ungranted = 0;
        }
        if (received === bytes) arrive();
      },
      onFrame: (data) => {
        if (welcome) {
          welcome();
          welcome = undefined;
          return;
        }
        const f = unpackr.unpack(data) as { t: number; sid: number; reason?: string };
        if (f.t === Op.StreamOffered) {
          sid = f.sid;
          sock!.send(encodeFrame({ t: Op.StreamAnswer, sid: f.sid, accept: true }));
        }
        if (f.t === Op.StreamEnded) end();
        if (f.t === Op.StreamAborted) fail(new Error(`stream aborted: ${f.reason}`));
      },
    });
  if (t.kind === 'parley') {
    await new Promise<void>((resolve) => {
      welcome = resolve;
      sock!.send(encodeFrame({ t: Op.Hello, v: PROTOCOL_VERSION }));
    });
  }
  return { arrived, ended, sock, go: () => sock!.send(encodeFrame({ t: Op.StreamCredit, sid, bytes: WINDOW })), firstAt: () => firstAt };
}

async function main(job: RelayJob): Promise<void> {
  const target: Target = { ...job.target, tokens: job.target.tokens && new Map(job.target.tokens) };
  const fail = (e: Error): void => {
    process.stderr.write(`relay ${job.role} failed: ${e.message}\n`);
    process.exit(1);
  };
  const ids = Array.from({ length: job.streams }, (_, i) => i);
  let cpu0 = 0;
  let t0 = 0;
  const report = (): RelaySideReport => ({ cpu: selfCpuSeconds() - cpu0, elapsed: (performance.now() - t0) / 1000 });
  if (job.role === 'viewer') {
    const viewers = await Promise.all(ids.map((i) => viewer(target, i, job.bytesEach, fail)));
    process.once('message', () => {
      cpu0 = selfCpuSeconds();
      t0 = performance.now();
      for (const v of viewers) v.go();
      void Promise.all(viewers.map((v) => v.arrived)).then(async () => {
        const timed = report();
        const firstMs = Math.max(...viewers.map((v) => v.firstAt())) - t0;
        await Promise.all(viewers.map((v) => v.ended));
        for (const v of viewers) v.sock.close();
        process.send!({ done: true, ...timed, firstMs }, () => process.exit(0));
      });
    });
  } else {
    const senders = await Promise.all(ids.map((i) => sender(target, i, job.bytesEach, fail)));
    process.on('message', (m: { cmd: string }) => {
      if (m.cmd === 'go') {
        cpu0 = selfCpuSeconds();
        t0 = performance.now();
      } else if (m.cmd === 'stop') {
        const r = report();
        for (const s of senders) s.ws.terminate();
        process.send!(r, () => process.exit(0));
      }
    });
  }
  process.send!({ ready: true });
}

process.once('message', (job: RelayJob) => {
  main(job).catch((err: unknown) => {
    process.stderr.write(`relay generator failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
});
