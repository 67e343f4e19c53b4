/**
 * Text load: N pairs of clients send short messages to each other as fast as a window of W outstanding
 * messages per sender allows. Against Parley the recipients ack (batched per event-loop turn) and senders get
 * accepted + delivered receipts; against the bare relays there is nothing but the message. The generator speaks
 * the protocol directly through shared/ (not the SDK) to stay lean: on 2 cores it is easily the bottleneck.
 */
import WebSocket from 'ws';
import { encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { Unpackr } from 'msgpackr';
import { percentile, selfCpuSeconds, sleep, cpuSeconds } from './lib.ts';

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
  generatorCpu: number;
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

interface Client {
  name: string;
  peer: Client | undefined;
  ws: WebSocket;
  outstanding: number;
  seq: number;
  acks: number[];
}

/** The opcode of a `{t: op, ...}` frame without decoding it: after a fixmap or map16 header and the key `t`. */
function peekOp(b: Buffer): number {
  const at = b[0]! >= 0x80 && b[0]! <= 0x8f ? 1 : b[0] === 0xde ? 3 : -1;
  return at > 0 && b[at] === 0xa1 && b[at + 1] === 0x74 ? b[at + 2]! : -1;
}

export function userName(i: number): string {
  return `bench${String(i).padStart(5, '0')}`;
}

export function connect(target: Target, name: string, peer: string): Promise<WebSocket> {
  const url = target.kind === 'parley'
    ? `ws://127.0.0.1:${target.port}/ws`
    : `ws://127.0.0.1:${target.port}/?name=${name}&peer=${peer}`;
  const headers: Record<string, string> = target.kind === 'parley' ? { Authorization: `Bearer ${target.tokens!.get(name)}` } : {};
  const ws = new WebSocket(url, { headers, perMessageDeflate: false });
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

export async function runText(target: Target, pairs: number, seconds: number, window = 64): Promise<TextResult> {
  const clients: Client[] = [];
  for (let i = 0; i < pairs * 2; i++) {
    const name = userName(i);
    const peer = userName(i ^ 1);
    clients.push({ name, peer: undefined, ws: await connect(target, name, peer), outstanding: 0, seq: 0, acks: [] });
  }
  for (let i = 0; i < clients.length; i++) clients[i]!.peer = clients[i ^ 1];

  let measuring = false;
  let delivered = 0;
  const latencies: number[] = [];
  let running = true;
  const flushAcks = new Set<Client>();

  const pump = (c: Client): void => {
    while (running && c.outstanding < window) {
      c.outstanding++;
      const id = `${c.name}_${(c.seq++).toString(36).padStart(6, '0')}`;
      c.ws.send(encodeFrame({ t: Op.Send, id, to: c.peer!.name, text: String(performance.now()) }));
    }
  };

  for (const c of clients) {
    c.ws.on('message', (data: Buffer) => {
      // Peek at the opcode so receipts cost no decoding.
      if (peekOp(data) !== Op.Message) return;
      const m = unpackr.unpack(data) as { tag?: number; text: string };
      if (measuring) {
        delivered++;
        if ((delivered & 7) === 0) latencies.push(performance.now() - Number(m.text));
      }
      if (m.tag !== undefined) {
        c.acks.push(m.tag);
        if (flushAcks.size === 0) setImmediate(() => {
          for (const x of flushAcks) {
            x.ws.send(encodeFrame({ t: Op.Ack, tags: x.acks }));
            x.acks = [];
          }
          flushAcks.clear();
        });
        flushAcks.add(c);
      }
      const sender = c.peer!;
      sender.outstanding--;
      pump(sender);
    });
  }
  for (const c of clients) pump(c);
  await sleep(1000); // warm-up
  measuring = true;
  const cpu0 = cpuSeconds(target.pid);
  const gen0 = selfCpuSeconds();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const serverCpu = (cpuSeconds(target.pid) - cpu0) / elapsed;
  const generatorCpu = (selfCpuSeconds() - gen0) / elapsed;
  running = false;
  for (const c of clients) c.ws.terminate();
  latencies.sort((a, b) => a - b);
  return { msgsPerSec: delivered / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), serverCpu, generatorCpu };
}
