/**
 * One text-load generator process (forked by scripts/bench/text.ts; several run side by side so that no single
 * generator core is the ceiling). It drives the pairs it is given and answers the coordinator over IPC:
 *
 *   coordinator -> { cmd: 'measure' }   reset counters and CPU, start counting
 *   coordinator -> { cmd: 'stop' }      reply with a GenReport, close the sockets and exit
 *
 * Per message it does as little as it can: the `send` frame is Parley's own encoding of a template, copied and
 * patched in place (id and timestamp are fixed-width ASCII); receipts are skipped by peeking at the opcode; a
 * `message` frame is read by hand for its tag (and every 8th for its timestamp) without building an object;
 * client frames are sent with an all-zero mask, which `ws` then skips applying.
 */
import { encodeFrame } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';
import { connect, userName, type Target } from './text.ts';
import { peekOp, readMessage, writeDigits } from './frames.ts';
import { selfCpuSeconds } from './lib.ts';

/** As sent over IPC: the target's tokens as entries (a Map does not survive the JSON channel). */
export interface GenJob { target: Omit<Target, 'tokens'> & { tokens?: Array<[string, string]> }; first: number; pairs: number; window: number }
export interface GenReport { delivered: number; latencies: number[]; cpu: number; elapsed: number }

interface Client {
  peer: Client | undefined;
  ws: Awaited<ReturnType<typeof connect>>;
  outstanding: number;
  seq: number;
  acks: number[];
  template: Buffer;
  idAt: number;
  textAt: number;
}

const SEQ_DIGITS = 7;
const TS_DIGITS = 15;
const SEQ_MOD = 36 ** SEQ_DIGITS;

async function main(job: GenJob): Promise<void> {
  const { first, pairs, window } = job;
  const target: Target = { ...job.target, tokens: job.target.tokens && new Map(job.target.tokens) };
  const clients: Client[] = [];
  for (let i = first; i < first + pairs * 2; i++) {
    const name = userName(i);
    const peer = userName(i ^ 1);
    // The template is Parley's own encoding; only the id's counter and the timestamp are patched per message.
    const idPlaceholder = `${name}_${'Q'.repeat(SEQ_DIGITS)}`;
    const textPlaceholder = 'Z'.repeat(TS_DIGITS);
    const template = Buffer.from(encodeFrame({ t: Op.Send, id: idPlaceholder, to: peer, text: textPlaceholder }));
    const idAt = template.indexOf(idPlaceholder) + idPlaceholder.length;
    const textAt = template.indexOf(textPlaceholder) + TS_DIGITS;
    clients.push({ peer: undefined, ws: await connect(target, name, peer), outstanding: 0, seq: 0, acks: [], template, idAt, textAt });
  }
  for (let i = 0; i < clients.length; i++) clients[i]!.peer = clients[i ^ 1];

  let measuring = false;
  let delivered = 0;
  let unreadable = 0;
  const latencies: number[] = [];
  let running = true;
  const flushAcks = new Set<Client>();
  const t0 = performance.now();
  const msg = { tag: -1, textAt: -1, textLen: 0 };

  const pump = (c: Client): void => {
    while (running && c.outstanding < window) {
      c.outstanding++;
      const f = Buffer.allocUnsafe(c.template.length);
      c.template.copy(f);
      writeDigits(f, c.idAt, SEQ_DIGITS, c.seq++ % SEQ_MOD, 36);
      // Microseconds since this process started: fits 15 decimal digits for centuries.
      writeDigits(f, c.textAt, TS_DIGITS, Math.round((performance.now() - t0) * 1000), 10);
      c.ws.send(f);
    }
  };
  const flush = (): void => {
    for (const x of flushAcks) {
      x.ws.send(encodeFrame({ t: Op.Ack, tags: x.acks }));
      x.acks = [];
    }
    flushAcks.clear();
  };

  for (const c of clients) {
    c.ws.on('message', (data: Buffer) => {
      if (peekOp(data) !== Op.Message) return; // receipts cost no decoding
      if (!readMessage(data, msg)) {
        unreadable++;
        return;
      }
      if (measuring) {
        delivered++;
        if ((delivered & 7) === 0) {
          const sent = Number(data.toString('latin1', msg.textAt, msg.textAt + msg.textLen)) / 1000;
          latencies.push(performance.now() - t0 - sent);
        }
      }
      if (msg.tag >= 0) {
        c.acks.push(msg.tag);
        if (flushAcks.size === 0) setImmediate(flush);
        flushAcks.add(c);
      }
      const sender = c.peer!;
      sender.outstanding--;
      pump(sender);
    });
  }

  let cpu0 = 0;
  let m0 = 0;
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'measure') {
      measuring = true;
      delivered = 0;
      latencies.length = 0;
      cpu0 = selfCpuSeconds();
      m0 = performance.now();
    } else if (m.cmd === 'stop') {
      measuring = false;
      const report: GenReport & { unreadable: number } = {
        delivered, latencies, cpu: selfCpuSeconds() - cpu0, elapsed: (performance.now() - m0) / 1000, unreadable,
      };
      running = false;
      for (const c of clients) c.ws.terminate();
      process.send!(report, () => process.exit(0));
    }
  });
  process.send!({ ready: true });
  for (const c of clients) pump(c);
}

process.once('message', (job: GenJob) => {
  main(job).catch((err: unknown) => {
    process.stderr.write(`text generator failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
});
