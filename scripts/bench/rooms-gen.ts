/**
 * One load-generator process of the room fan-out row (forked by scripts/bench/rooms.ts; several run side by side
 * so that no generator core is the ceiling). It holds some of the room's members, a few of them senders:
 *
 *   coordinator -> job                  connect every member (hello, welcome), then `{ ready: true }`
 *   coordinator -> { cmd: 'go' }        senders start, each keeping `window` messages unfinished
 *   coordinator -> { cmd: 'measure' }   reset counters and CPU, start counting
 *   coordinator -> { cmd: 'stop' }      reply with a RoomGenReport, close the sockets and exit
 *
 * A sender's message is finished once its room receipt says every other member has it (`delivered == of`, which
 * the server reports as members acknowledge); only then does the sender send another, so the room's log never
 * runs ahead of the slowest member. Accept latency: from the send to the message's first room receipt (durable
 * in the log). Delivery latency, for every 8th message a member receives: from the send to its arrival; the
 * text carries the send time on the machine's monotonic clock, which every process shares.
 *
 * Per frame it does as little as the text generator (scripts/bench/frames.ts): a pre-encoded `send` template
 * patched in place, opcodes peeked, message frames read by hand for their tag, acks batched per event-loop
 * turn, client frames sent with an all-zero mask. Only room receipts, a few per turn, are decoded in full.
 */
import { decodeServerFrame, encodeFrame } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';
import { connect, userName, type Target } from './text.ts';
import { peekOp, readMessage, writeDigits } from './frames.ts';
import { selfCpuSeconds } from './lib.ts';

/** As sent over IPC (a Map does not survive the JSON channel). */
export interface RoomGenJob {
  target: Omit<Target, 'tokens'> & { tokens: Array<[string, string]> };
  room: string;
  /** User numbers of the members this generator holds, and which of them send. */
  members: Array<{ user: number; sender: boolean }>;
  window: number;
}

export interface RoomGenReport {
  /** Room messages received by this generator's members (the senders' own copies included). */
  delivered: number;
  /** Room messages of this generator's senders that every other member acknowledged. */
  finished: number;
  acceptMs: number[];
  deliveryMs: number[];
  /** Frames a member could not read (should be 0), and refusals a sender got (should be 0). */
  unreadable: number;
  errors: number;
  cpu: number;
  elapsed: number;
}

const SEQ_DIGITS = 7;
const TS_DIGITS = 15;
const SEQ_MOD = 36 ** SEQ_DIGITS;

/** Microseconds on CLOCK_MONOTONIC: the same clock in every process of the machine (performance.now() is not). */
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface Sender {
  template: Buffer;
  idAt: number;
  textAt: number;
  seq: number;
  /** Unfinished messages: seq -> send time (µs); `accepted` holds those whose first receipt came. */
  unfinished: Map<number, number>;
  accepted: Set<number>;
}

interface Client {
  ws: Awaited<ReturnType<typeof connect>>;
  acks: number[];
  sender: Sender | undefined;
}

async function main(job: RoomGenJob): Promise<void> {
  const target: Target = { ...job.target, tokens: new Map(job.target.tokens) };
  const clients: Client[] = [];
  for (const { user, sender } of job.members) {
    const name = userName(user);
    let s: Sender | undefined;
    if (sender) {
      const idPlaceholder = `${name}_${'Q'.repeat(SEQ_DIGITS)}`;
      const textPlaceholder = 'Z'.repeat(TS_DIGITS);
      const template = Buffer.from(encodeFrame({ t: Op.Send, id: idPlaceholder, room: job.room, text: textPlaceholder }));
      s = {
        template, idAt: template.indexOf(idPlaceholder) + idPlaceholder.length, textAt: template.indexOf(textPlaceholder) + TS_DIGITS,
        seq: 0, unfinished: new Map(), accepted: new Set(),
      };
    }
    clients.push({ ws: await connect(target, name, name), acks: [], sender: s });
  }

  let running = false;
  let measuring = false;
  let delivered = 0;
  let finished = 0;
  let unreadable = 0;
  let errors = 0;
  const acceptMs: number[] = [];
  const deliveryMs: number[] = [];
  const flushAcks = new Set<Client>();
  const msg = { tag: -1, textAt: -1, textLen: 0 };

  const pump = (c: Client): void => {
    const s = c.sender!;
    while (running && s.unfinished.size < job.window) {
      const f = Buffer.allocUnsafe(s.template.length);
      s.template.copy(f);
      const seq = s.seq++ % SEQ_MOD;
      writeDigits(f, s.idAt, SEQ_DIGITS, seq, 36);
      const at = nowUs();
      writeDigits(f, s.textAt, TS_DIGITS, at, 10);
      s.unfinished.set(seq, at);
      c.ws.send(f);
    }
  };
  const flush = (): void => {
    for (const x of flushAcks) {
      for (let i = 0; i < x.acks.length; i += 1000) x.ws.send(encodeFrame({ t: Op.Ack, tags: x.acks.slice(i, i + 1000) }));
      x.acks = [];
    }
    flushAcks.clear();
  };
  const onReceipt = (c: Client, data: Buffer): void => {
    const f = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (f.t !== Op.RoomReceipt) return;
    const s = c.sender!;
    for (const [id, , got, of] of f.items) {
      const seq = parseInt(id.slice(-SEQ_DIGITS), 36);
      const sentAt = s.unfinished.get(seq);
      if (sentAt === undefined) continue;
      if (!s.accepted.has(seq)) {
        s.accepted.add(seq);
        if (measuring) acceptMs.push((nowUs() - sentAt) / 1000);
      }
      if (got >= of) {
        s.unfinished.delete(seq);
        s.accepted.delete(seq);
        if (measuring) finished++;
      }
    }
    pump(c);
  };

  for (const c of clients) {
    c.ws.on('message', (data: Buffer) => {
      const op = peekOp(data);
      if (op === Op.RoomReceipt && c.sender) return onReceipt(c, data);
      if (op === Op.Error) errors++;
      if (op !== Op.Message) return; // room info and presence cost no decoding
      if (!readMessage(data, msg)) {
        unreadable++;
        return;
      }
      if (measuring) {
        delivered++;
        if ((delivered & 7) === 0) deliveryMs.push((nowUs() - Number(data.toString('latin1', msg.textAt, msg.textAt + msg.textLen))) / 1000);
      }
      c.acks.push(msg.tag);
      if (flushAcks.size === 0) setImmediate(flush);
      flushAcks.add(c);
    });
  }

  let cpu0 = 0;
  let m0 = 0;
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'go') {
      running = true;
      for (const c of clients) if (c.sender) pump(c);
    } else if (m.cmd === 'measure') {
      measuring = true;
      delivered = finished = 0;
      acceptMs.length = deliveryMs.length = 0;
      cpu0 = selfCpuSeconds();
      m0 = performance.now();
    } else if (m.cmd === 'stop') {
      measuring = false;
      running = false;
      const report: RoomGenReport = {
        delivered, finished, acceptMs, deliveryMs, unreadable, errors, cpu: selfCpuSeconds() - cpu0, elapsed: (performance.now() - m0) / 1000,
      };
      for (const c of clients) c.ws.terminate();
      process.send!(report, () => process.exit(0));
    }
  });
  process.send!({ ready: true });
}

process.once('message', (job: RoomGenJob) => {
  main(job).catch((err: unknown) => {
    process.stderr.write(`room generator failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
});
