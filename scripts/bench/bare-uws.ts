/**
 * The benchmark's baseline: the least a uWebSockets.js relay can do for the same traffic. No accounts, no
 * store, no receipts, no validation. Text: decode the frame, look the recipient up by name, send
 * `{ from, id, text }` (name in, name out). Chunks (first byte 0xC1): forward as they are to the peer named at
 * connect time. Runs as its own process: `tsx scripts/bench/bare-uws.ts`; prints `{"port":N}` when listening.
 */
import uWS from 'uWebSockets.js';
import { Packr, Unpackr } from 'msgpackr';
import { CHUNK_TAG } from '../../shared/chunk.ts';
import { Op } from '../../shared/protocol.ts';

interface Data { name: string; peer: string }
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const sockets = new Map<string, uWS.WebSocket<Data>>();
// Exit on the bench's SIGTERM rather than die of it, so that a `--cpu-prof` profile gets written.
process.once('SIGTERM', () => process.exit(0));

uWS.App()
  .ws<Data>('/*', {
    maxPayloadLength: 1024 * 1024,
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, ctx) => {
      const name = req.getQuery('name') ?? '';
      const peer = req.getQuery('peer') ?? '';
      res.upgrade<Data>({ name, peer }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), ctx);
    },
    open: (ws) => void sockets.set(ws.getUserData().name, ws),
    message: (ws, message) => {
      const bytes = new Uint8Array(message);
      const me = ws.getUserData();
      if (bytes[0] === CHUNK_TAG) {
        sockets.get(me.peer)?.send(message, true);
        return;
      }
      const f = unpackr.unpack(bytes) as { to?: string; id?: string; text?: string };
      if (typeof f.to !== 'string') {
        sockets.get(me.peer)?.send(message, true); // credit and control frames of the relay bench: pass through
        return;
      }
      sockets.get(f.to)?.send(packr.pack({ t: Op.Message, from: me.name, id: f.id, text: f.text }), true);
    },
    close: (ws) => {
      const { name } = ws.getUserData();
      if (sockets.get(name) === ws) sockets.delete(name);
    },
  })
  .listen('127.0.0.1', 0, (ls) => {
    if (!ls) throw new Error('bare relay cannot listen');
    process.stdout.write(JSON.stringify({ port: uWS.us_socket_local_port(ls as unknown as uWS.us_socket) }) + '\n');
  });
