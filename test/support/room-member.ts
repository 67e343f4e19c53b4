/**
 * A room member over a raw socket for the room tests: says hello, acknowledges every message it receives
 * (batched per event-loop turn, as the SDK does), and records room messages and room receipts in arrival order.
 */
import type WebSocket from 'ws';
import { decodeServerFrame } from '../../shared/codec.ts';
import { Op, type MessageFrame, type RoomReceiptItem } from '../../shared/protocol.ts';
import { helloWire, type Wire } from './wire.ts';

export interface Member {
  w: Wire;
  /** Room messages in arrival order. */
  got: MessageFrame[];
  /** Room receipt items in arrival order. */
  receipts: RoomReceiptItem[];
  /** Texts (not lines) of `room`, in arrival order. */
  texts(room: string): MessageFrame[];
}

export async function member(ws: WebSocket): Promise<Member> {
  const got: MessageFrame[] = [];
  const receipts: RoomReceiptItem[] = [];
  let tags: number[] = [];
  let w: Wire | undefined;
  ws.on('message', (data: Buffer) => {
    const f = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (f.t === Op.RoomReceipt) receipts.push(...f.items);
    if (f.t !== Op.Message || f.room === undefined) return;
    got.push(f);
    if (tags.length === 0) {
      setImmediate(() => {
        const batch = tags;
        tags = [];
        for (let i = 0; i < batch.length; i += 1000) w?.send({ t: Op.Ack, tags: batch.slice(i, i + 1000) });
      });
    }
    tags.push(f.tag);
  });
  w = await helloWire(ws);
  return { w, got, receipts, texts: (room) => got.filter((m) => m.room === room && m.line === undefined) };
}

/**
 * Resolves once `cond` holds, checked at most every 20 ms while frames arrive (conditions here scan what a member
 * got: checking after each of 50,000 frames made the test, not the server, the slow part). Rejects, saying where
 * the member stood, when it has not held after `patienceMs`: a stuck delivery then names itself rather than
 * running into the test's timeout.
 */
export function whenever(m: Member, cond: () => boolean, patienceMs = 150_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (cond()) return resolve();
    let due: ReturnType<typeof setTimeout> | undefined;
    const done = (): void => {
      clearTimeout(timer);
      clearTimeout(due);
      m.w.ws.off('message', later);
    };
    const check = (): void => {
      due = undefined;
      if (!cond()) return;
      done();
      resolve();
    };
    const later = (): void => {
      due ??= setTimeout(check, 20);
    };
    const timer = setTimeout(() => {
      done();
      const last = m.got[m.got.length - 1];
      reject(new Error(`still waiting after ${patienceMs / 1000} s: the member has ${m.got.length} room messages (last: ${last ? `${last.room} #${last.rseq}` : 'none'}), ${m.receipts.length} room receipts, socket state ${m.w.ws.readyState}`));
    }, patienceMs);
    m.w.ws.on('message', later);
  });
}
