/**
 * Text load: N pairs of clients send short messages to each other as fast as a window of W outstanding
 * messages per sender allows. Against Parley the recipients ack (batched per event-loop turn) and senders get
 * accepted + delivered receipts; against the bare relays there is nothing but the message. The pairs are split
 * over G generator processes (scripts/bench/text-gen.ts) that speak the protocol directly through shared/ (not
 * the SDK) with pre-encoded frames, so the generator is not the ceiling; each one's CPU is reported.
 */
import WebSocket from 'ws';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { percentile, sleep, cpuSeconds, forkGenerator, stopGenerators } from './lib.ts';
import type { GenJob, GenReport } from './text-gen.ts';
export interface Target {
  kind: 'parley' | 'bare';
  port: number;
  pid: number;
  /** Parley: bearer tokens by user name. */
  tokens?: Map<string, string>;
}

export interface TextResult {
  msgsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpu: number;
  /** CPU of the busiest generator process, in cores. */
  generatorCpu: number;
  /** CPU of each generator process, in cores. */
  generatorCpus: number[];
}

/** A generator above this share of a core may be what limits the row: the row is marked. */
export const GENERATOR_LIMIT = 0.9;

/** Client frames are sent with an all-zero mask: `ws` then skips masking (servers unmask whatever the key). */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

export function userName(i: number): string {
  return `bench${String(i).padStart(5, '0')}`;
}

export function connect(target: Target, name: string, peer: string): Promise<WebSocket> {
  const url = target.kind === 'parley'
    ? `ws://127.0.0.1:${target.port}/ws`
    : `ws://127.0.0.1:${target.port}/?name=${name}&peer=${peer}`;
  const headers: Record<string, string> = target.kind === 'parley' ? { Authorization: `Bearer ${target.tokens!.get(name)}` } : {};
  const ws = new WebSocket(url, { headers, perMessageDeflate: false, generateMask: zeroMask });
  ws.binaryType = 'nodebuffer';
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => {
      if (target.kind === 'bare') return resolve(ws);
      ws.send(encodeFrame({ t: Op.Hello, v: PROTOCOL_VERSION }));
      ws.once('message', () => resolve(ws)); // welcome
    });
  });
}

const GEN_ENTRY = new URL('./text-gen.ts', import.meta.url).pathname;

export async function runText(target: Target, pairs: number, seconds: number, window = 64, generators = 2): Promise<TextResult> {
  const n = Math.max(1, Math.min(generators, pairs));
  const gens = Array.from({ length: n }, (_, g) => {
    const first = Math.floor((g * pairs) / n);
    const count = Math.floor(((g + 1) * pairs) / n) - first;
    const job: GenJob = { target: { kind: target.kind, port: target.port, pid: target.pid, tokens: target.tokens && [...target.tokens] }, first: 2 * first, pairs: count, window };
    return forkGenerator(GEN_ENTRY, job, 'text generator');
  });
  try {
    await Promise.all(gens.map((g) => g.ready));
    await sleep(1000); // warm-up
    for (const g of gens) g.proc.send({ cmd: 'measure' });
    const cpu0 = cpuSeconds(target.pid);
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const reports = gens.map((g) => g.next<GenReport>());
    for (const g of gens) g.proc.send({ cmd: 'stop' });
    const serverCpu = (cpuSeconds(target.pid) - cpu0) / ((performance.now() - t0) / 1000);
    const all = await Promise.all(reports);
    const latencies = all.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const generatorCpus = all.map((r) => r.cpu / r.elapsed);
    return {
      msgsPerSec: all.reduce((s, r) => s + r.delivered / r.elapsed, 0),
      p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99),
      serverCpu, generatorCpu: Math.max(...generatorCpus), generatorCpus,
    };
  } finally {
    stopGenerators(gens);
  }
}
