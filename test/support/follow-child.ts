/**
 * Child process for the follow-index memory test: a real server and one real client in a fresh process (so
 * the heap figures are this server's alone, and `gc()` is available). Follows `count` distinct names in
 * frames of 1,000 (each frame replaces the set), closes the socket, and prints the server process's JS heap
 * after a full GC before, and after the close, as one JSON line.
 *
 * Usage: node --expose-gc --import tsx test/support/follow-child.ts <dataDir> <count>
 */
import { join } from 'node:path';
import WebSocket from 'ws';
import { register, signIn } from '../../client/sdk/http.ts';
import { startServer } from '../../server/app.ts';
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/core/logger.ts';
import { decodeServerFrame, encodeFrame } from '../../shared/codec.ts';
import { Op, PROTOCOL_VERSION, type ClientFrame } from '../../shared/protocol.ts';

const [dir, countArg] = process.argv.slice(2);
const count = Number(countArg);
const gc = (globalThis as { gc?: () => void }).gc!;

async function heap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 20));
    gc();
  }
  return process.memoryUsage().heapUsed;
}

const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir!, SCRYPT_COST: '10', LOG_LEVEL: 'silent', FRAME_RATE: '100000', FRAME_BURST: '100000', CLIENT_DIR: join(dir!, 'none') }, []);
const server = await startServer(config, { log: createLogger('silent') });
const http = { baseUrl: server.url };
await register(http, 'follower', 'follow password');
const { token } = await signIn(http, 'follower', 'follow password');
const before = await heap();

const ws = new WebSocket(server.url.replace(/^http/, 'ws') + '/ws', { headers: { Authorization: `Bearer ${token}` } });
ws.binaryType = 'nodebuffer';
let presence = 0;
let welcome: () => void;
const welcomed = new Promise<void>((r) => (welcome = r));
let allSeen: () => void;
const seen = new Promise<void>((r) => (allSeen = r));
ws.on('message', (d: Buffer) => {
  const f = decodeServerFrame(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  if (f.t === Op.Welcome) welcome();
  if (f.t === Op.Presence && ++presence === count) allSeen();
  if (f.t === Op.Error) throw new Error(`server error: ${f.code} ${f.message}`);
});
await new Promise<void>((r) => ws.once('open', () => r()));
const send = (f: ClientFrame): void => ws.send(encodeFrame(f));
send({ t: Op.Hello, v: PROTOCOL_VERSION });
await welcomed;
for (let i = 0; i < count; i += 1000) {
  send({ t: Op.Follow, names: Array.from({ length: Math.min(1000, count - i) }, (_, k) => `fresh${i + k}`) });
  if (i % 50_000 === 0) await new Promise((r) => setImmediate(r));
}
await seen;
const closed = new Promise<void>((r) => ws.once('close', () => r()));
ws.close();
await closed;
while (server.hub.onlineCount > 0) await new Promise((r) => setTimeout(r, 10));
const after = await heap();
await server.stop();
process.stdout.write(JSON.stringify({ before, after, presence }) + '\n');
