/**
 * The same bare relay as bare-uws.ts on the `ws` package and node:http, to show what uWebSockets.js buys.
 * Prints `{"port":N}` when listening.
 */
import { createServer } from 'node:http';
import { Packr, Unpackr } from 'msgpackr';
import { WebSocketServer, type WebSocket } from 'ws';
import { CHUNK_TAG } from '../../shared/chunk.ts';
import { Op } from '../../shared/protocol.ts';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const sockets = new Map<string, WebSocket>();
const http = createServer();
const wss = new WebSocketServer({ server: http, maxPayload: 1024 * 1024, perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const name = url.searchParams.get('name') ?? '';
  const peer = url.searchParams.get('peer') ?? '';
  sockets.set(name, ws);
  ws.on('message', (data: Buffer) => {
    if (data[0] === CHUNK_TAG) {
      sockets.get(peer)?.send(data);
      return;
    }
    const f = unpackr.unpack(data) as { to?: string; id?: string; text?: string };
    if (typeof f.to !== 'string') {
      sockets.get(peer)?.send(data);
      return;
    }
    sockets.get(f.to)?.send(packr.pack({ t: Op.Message, from: name, id: f.id, text: f.text }));
  });
  ws.on('close', () => {
    if (sockets.get(name) === ws) sockets.delete(name);
  });
});
http.listen(0, '127.0.0.1', () => {
  const addr = http.address();
  process.stdout.write(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }) + '\n');
});
