/**
 * Wire-level helpers for tests that speak the protocol directly over a `ws` socket (no SDK), to assert what is
 * actually on the wire: frames received, close codes, HTTP statuses of refused upgrades.
 */
import type WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, type ChunkFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION, type ClientFrame, type ServerFrame } from '../../shared/protocol.ts';

/** One message's receipt as tests see it (the wire batches them, see ReceiptFrame). */
export interface FlatReceipt { t: typeof Op.Receipt; id: string; to: string; state: string }
type Frame<T> = T extends typeof Op.Receipt ? FlatReceipt : Extract<ServerFrame, { t: T }>;

export interface Wire {
  ws: WebSocket;
  frames: Array<ServerFrame | ChunkFrame>;
  /** Resolves with the close code (and reason, and any socket errors seen) once the socket closes. */
  closed: Promise<{ code: number; reason: string; errors: string[] }>;
  /** Resolves when the socket opened; rejects with the HTTP status if the upgrade was refused. */
  opened: Promise<void>;
  send(frame: ClientFrame | Record<string, unknown>): void;
  /** Next frame (already received or future) matching `pred`. */
  next<T extends ServerFrame['t']>(t: T, pred?: (f: Frame<T>) => boolean): Promise<Frame<T>>;
}

export function wire(ws: WebSocket): Wire {
  const frames: Array<ServerFrame | ChunkFrame> = [];
  const waiters: Array<{ t: number; pred: (f: never) => boolean; resolve: (f: never) => void }> = [];
  ws.binaryType = 'nodebuffer';
  ws.on('message', (data: Buffer) => {
    const decoded = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (decoded.t === 'chunk') decoded.bytes = decoded.bytes.slice();
    // Batched receipts are recorded one per message, so tests can wait for a message's state directly.
    const list: Array<ServerFrame | ChunkFrame | FlatReceipt> = decoded.t === Op.Receipt
      ? decoded.items.map(([id, to, state]) => ({ t: Op.Receipt, id, to, state }))
      : [decoded];
    for (const f of list) {
      frames.push(f as ServerFrame);
      for (const w of [...waiters]) {
        if (f.t === w.t && w.pred(f as never)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(f as never);
        }
      }
    }
  });
  const errors: string[] = [];
  ws.on('error', (err: Error) => errors.push(err.message));
  const closed = new Promise<{ code: number; reason: string; errors: string[] }>((resolve) => {
    ws.on('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString(), errors }));
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve());
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', (err) => reject(err));
  });
  opened.catch(() => undefined);
  return {
    ws, frames, closed, opened,
    send: (frame) => ws.send(encodeFrame(frame as ClientFrame)),
    next: (t, pred = () => true) => new Promise((resolve) => {
      const found = frames.find((f) => f.t === t && pred(f as never));
      if (found) resolve(found as never);
      else waiters.push({ t, pred: pred as (f: never) => boolean, resolve: resolve as (f: never) => void });
    }),
  };
}

/** Opens, says hello, and waits for welcome; a socket closed before its welcome rejects, with the close code. */
export async function helloWire(ws: WebSocket, follow?: string[]): Promise<Wire> {
  const w = wire(ws);
  await w.opened;
  w.send(follow ? { t: Op.Hello, v: PROTOCOL_VERSION, follow } : { t: Op.Hello, v: PROTOCOL_VERSION });
  const shut = w.closed.then(({ code, reason, errors }) => {
    const why = errors.length > 0 ? `; socket errors: ${errors.join('; ')}` : '';
    throw new Error(`closed with ${code} (${reason || 'no reason'}) before its welcome; frames: ${JSON.stringify(w.frames.map((f) => f.t))}${why}`);
  });
  shut.catch(() => undefined);
  await Promise.race([w.next(Op.Welcome), shut]);
  return w;
}
