/**
 * A bare WebSocket client on a TCP socket, for the relay benchmark's viewer: it counts the bytes of chunk frames
 * as they pass without copying them out of the socket's reads (`ws` gathers each 256 KiB message into one buffer
 * first, which made the viewer, not the server, the ceiling), and hands every other frame whole to `onFrame`.
 * It sends binary frames with an all-zero mask, which servers unmask like any other. Enough of RFC 6455 for the
 * benchmark's own servers: no extensions, no fragmented messages, pings answered, close ends it.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface RawSocket {
  send(payload: Uint8Array): void;
  close(): void;
}

export interface RawHandlers {
  /** A whole frame other than a chunk: its payload. */
  onFrame(payload: Buffer): void;
  /** Part of a chunk frame's payload went by (called for each piece, with its length; the first piece holds the tag). */
  onChunkBytes(n: number, first: boolean): void;
}

const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Opens `ws://127.0.0.1:<port><path>` with `headers`; `isChunk(firstByte)` says which frames are only counted. */
export function openRaw(port: number, path: string, headers: Record<string, string>, isChunk: (firstByte: number) => boolean, h: RawHandlers): Promise<RawSocket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    const lines = [`GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    sock.write(`${lines.join('\r\n')}\r\n\r\n`);
    const send = (payload: Uint8Array, op = OP_BINARY): void => {
      const n = payload.byteLength;
      const head = Buffer.alloc(n < 126 ? 6 : n < 65536 ? 8 : 14); // mask key: the last 4 bytes, zero
      head[0] = 0x80 | op;
      if (n < 126) head[1] = 0x80 | n;
      else if (n < 65536) { head[1] = 0x80 | 126; head.writeUInt16BE(n, 2); } else { head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(n), 2); }
      sock.cork();
      sock.write(head);
      sock.write(payload);
      sock.uncork();
    };
    let upgraded = false;
    let pending: Buffer = Buffer.alloc(0);
    // The frame being read: its opcode, bytes of payload still to come, and whether it is only counted.
    let op = 0;
    let left = 0;
    let counting = false;
    let firstPiece = false;
    let parts: Buffer[] = [];
    const finish = (payload: Buffer): void => {
      if (op === OP_PING) send(payload, OP_PONG);
      else if (op === OP_CLOSE) sock.end();
      else if (op !== OP_PONG) h.onFrame(payload);
    };
    const read = (data: Buffer): void => {
      let b = pending.byteLength > 0 ? Buffer.concat([pending, data]) : data;
      pending = Buffer.alloc(0);
      let p = 0;
      while (p < b.byteLength) {
        if (left > 0) {
          const n = Math.min(left, b.byteLength - p);
          if (counting) {
            h.onChunkBytes(n, firstPiece);
            firstPiece = false;
          } else parts.push(b.subarray(p, p + n));
          left -= n;
          p += n;
          if (left === 0 && !counting) {
            finish(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
            parts = [];
          }
          continue;
        }
        // A new frame header: 2 bytes, then a 2- or 8-byte length (server frames are not masked).
        if (b.byteLength - p < 2) break;
        const len7 = b[p + 1]! & 0x7f;
        const headLen = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
        if (b.byteLength - p < headLen + 1 && len7 > 0) break; // also wait for the payload's first byte
        op = b[p]! & 0x0f;
        left = len7 < 126 ? len7 : len7 === 126 ? b.readUInt16BE(p + 2) : Number(b.readBigUInt64BE(p + 2));
        p += headLen;
        counting = op === OP_BINARY && left > 0 && isChunk(b[p]!);
        firstPiece = counting;
        if (left === 0) finish(Buffer.alloc(0));
      }
      if (p < b.byteLength) pending = Buffer.from(b.subarray(p));
    };
    sock.on('data', (data: Buffer) => {
      if (upgraded) return read(data);
      pending = Buffer.concat([pending, data]);
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = pending.subarray(0, pending.indexOf('\r\n')).toString('latin1');
      if (!/^HTTP\/1\.1 101/.test(status)) {
        sock.destroy();
        return reject(new Error(`upgrade refused: ${status}`));
      }
      upgraded = true;
      const rest = pending.subarray(end + 4);
      pending = Buffer.alloc(0);
      resolve({ send: (payload) => send(payload), close: () => sock.destroy() });
      if (rest.byteLength > 0) read(Buffer.from(rest));
    });
    sock.on('error', reject);
  });
}
