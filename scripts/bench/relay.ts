/**
 * Relay load: S concurrent streams of `bytes` each, 256 KiB chunks, with the same end-to-end credit loop against
 * Parley (offer/accept, server-checked chunks) and the bare relay (which forwards chunks and credit frames
 * blindly). Reports end-to-end MiB/s, the server's RSS before and at its peak, and CPU.
 */
import { Unpackr } from 'msgpackr';
import type WebSocket from 'ws';
import { CHUNK_HEADER_BYTES, CHUNK_TAG } from '../../shared/chunk.ts';
import { encodeFrame } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';
import { cpuSeconds, rssBytes, selfCpuSeconds } from './lib.ts';
import { connect, userName, type Target } from './text.ts';

const CHUNK = 256 * 1024;
const WINDOW = 4 * 1024 * 1024;
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export interface RelayResult { mibPerSec: number; rssBefore: number; peakRss: number; serverCpu: number; generatorCpu: number }

function chunkFrame(sid: number, offset: number, payload: Buffer): Buffer {
  const f = Buffer.allocUnsafe(CHUNK_HEADER_BYTES + payload.byteLength);
  f[0] = CHUNK_TAG;
  f.writeUInt32BE(sid, 1);
  f.writeDoubleBE(offset, 5);
  payload.copy(f, CHUNK_HEADER_BYTES);
  return f;
}

async function oneStream(t: Target, i: number, bytes: number): Promise<void> {
  const sender = await connect(t, userName(2 * i), userName(2 * i + 1));
  const viewer = await connect(t, userName(2 * i + 1), userName(2 * i));
  const payload = Buffer.alloc(CHUNK, i);
  let sid = i + 1;
  let credit = 0;
  let sent = 0;
  let received = 0;
  let ungranted = 0;
  const pump = (): void => {
    while (credit > 0 && sent < bytes) {
      const n = Math.min(CHUNK, credit, bytes - sent);
      sender.send(chunkFrame(sid, sent, n === CHUNK ? payload : payload.subarray(0, n)));
      sent += n;
      credit -= n;
    }
    if (sent === bytes && t.kind === 'parley') sender.send(encodeFrame({ t: Op.StreamEnd, sid }));
  };
  const done = new Promise<void>((resolve, reject) => {
    viewer.on('message', (data: Buffer) => {
      if (data[0] === CHUNK_TAG) {
        const n = data.byteLength - CHUNK_HEADER_BYTES;
        received += n;
        ungranted += n;
        if (ungranted >= WINDOW / 4 && received < bytes) {
          viewer.send(encodeFrame({ t: Op.StreamCredit, sid, bytes: ungranted }));
          ungranted = 0;
        }
        if (received === bytes) resolve();
        return;
      }
      const f = unpackr.unpack(data) as { t: number; sid: number; reason?: string };
      if (f.t === Op.StreamOffered) viewer.send(encodeFrame({ t: Op.StreamAnswer, sid: f.sid, accept: true, credit: WINDOW }));
      if (f.t === Op.StreamAborted) reject(new Error(`stream aborted: ${f.reason}`));
    });
    sender.on('message', (data: Buffer) => {
      const f = unpackr.unpack(data) as { t: number; sid: number; bytes: number; code?: string; message?: string };
      if (f.t === Op.StreamOffered) sid = f.sid;
      else if (f.t === Op.StreamGranted || f.t === Op.StreamCredit) {
        credit += f.bytes;
        pump();
      } else if (f.t === Op.Error) reject(new Error(`${f.code}: ${f.message}`));
    });
  });
  if (t.kind === 'parley') {
    sender.send(encodeFrame({ t: Op.StreamOffer, ref: `bench-${i}`, to: userName(2 * i + 1), name: 'bench.mp4', size: bytes, mime: 'video/mp4', container: 'fmp4' }));
  } else {
    credit = WINDOW;
    pump();
  }
  await done;
  sender.terminate();
  viewer.terminate();
}

export async function runRelay(t: Target, streams: number, bytesEach: number): Promise<RelayResult> {
  const rssBefore = rssBytes(t.pid);
  let peakRss = rssBefore;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(t.pid))), 20);
  const cpu0 = cpuSeconds(t.pid);
  const gen0 = selfCpuSeconds();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, (_, i) => oneStream(t, i, bytesEach)));
  const elapsed = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  peakRss = Math.max(peakRss, rssBytes(t.pid));
  return {
    mibPerSec: (streams * bytesEach) / 1024 / 1024 / elapsed,
    rssBefore, peakRss,
    serverCpu: (cpuSeconds(t.pid) - cpu0) / elapsed,
    generatorCpu: (selfCpuSeconds() - gen0) / elapsed,
  };
}

export type { WebSocket };
