/**
 * Direct node-to-node links (docs/architecture.md, "Several nodes", "The direct link"). A chunk or a text that went
 * through NATS crossed three TCP connections and nats-server, and was wrapped and parsed by the NATS client on both
 * nodes; over a link it crosses one connection between the two nodes. The bus still carries presence, liveness and
 * the claims, announces each node's link, and carries what a node sends to a peer whose link it cannot use.
 *
 * - Each node listens on one TCP address and announces `{ host, port, secret, machine }` over the bus. A node
 *   opens one connection to each peer it sends to; its first frame is a hello with the peer's secret, so only a
 *   party that can read the bus can talk to a link. The dialler sends on a connection, the accepting end sends
 *   back only the answers to the dialler's requests; either end may send a goodbye.
 * - Frames: a uint32 big-endian length, a type byte, the body. `chunk`: the addressed epoch (float64), the name
 *   key (uint16 length, UTF-8) and the client's chunk frame untouched; `envelope`: msgpack of the same message the
 *   bus would carry, unanswered (a stream's `ended`, which must not overtake its chunks); `request`: a uint32 id
 *   and msgpack of a message, answered by an `answer` frame with the same id and msgpack of the answer.
 * - A request not answered within `requestTimeoutMs` (looked at every quarter of it, at most every 250 ms) is
 *   rejected (`LinkFailure`, sent); so is every request still unanswered when its connection closes, for any
 *   reason. A request on a connection that never opened was not sent (`LinkFailure.sent` false): the caller may
 *   send it another way.
 * - A connection that closes, fails or sends something malformed, without a goodbye first, is a lost link: both
 *   ends report it (`lost`), and the streams with that node are aborted as on a bus failure. A node that leaves
 *   sends a goodbye on each connection first, so its peers learn of its streams' ends from the bus instead.
 * - A link announced on a loopback address is used only by nodes on the same machine (same host name); other
 *   nodes send that node's stream traffic over the bus, as they do to a node with no link at all.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { pack, unpack } from 'msgpackr';
import type { Logger } from '../core/logger.ts';
import type { NodeId } from '../core/router.ts';

/** What a node announces about its link. */
export interface LinkAddress {
  host: string;
  port: number;
  /** Hex; a dialler's hello must carry it. */
  secret: string;
  /** The announcing node's host name: a loopback address is reachable only from the same machine. */
  machine: string;
}

export type LinkMessage =
  | { kind: 'chunk'; to: string; epoch: number; bytes: Uint8Array }
  | { kind: 'envelope'; msg: unknown };

/** Why a request over a link got no answer. `sent` false: its connection never opened, so it did not arrive. */
export class LinkFailure extends Error {
  constructor(message: string, readonly sent: boolean) {
    super(message);
    this.name = 'LinkFailure';
  }
}

export interface LinkHandler {
  /**
   * A frame from `from`'s link, in the order it sent them. A chunk's `bytes` are valid during the call only (as a
   * transport's receive buffer is): the link reuses the memory of a frame that arrived in several reads.
   */
  message(from: NodeId, m: LinkMessage): void;
  /** A request from `from` (msgpack decoded, unchecked): its answer, sent back at once. */
  request(from: NodeId, msg: unknown): unknown;
  /** The link with `node` failed (either direction) without a goodbye. */
  lost(node: NodeId, why: string): void;
}

export interface NodeLinksOptions {
  nodeId: NodeId;
  /** Where to listen (port 0: any free one). */
  listen: { host: string; port: number };
  /** What to announce, if not the listening address (a proxy, NAT, or listening on all interfaces). */
  announce?: { host: string; port: number };
  logger: Logger;
  /** Longest wait for the answer to a request. Default 2000 ms. */
  requestTimeoutMs?: number;
}

const FrameType = { Hello: 1, Chunk: 2, Envelope: 3, Bye: 4, Request: 5, Answer: 6 } as const;
/** Largest frame body: a chunk of the largest MAX_CHUNK_KB (16 MiB) with its headers. */
const MAX_FRAME = 16 * 1024 * 1024 + 64 * 1024;
/** Largest frame before the hello: a stranger makes a node buffer no more than this. */
const MAX_HELLO = 1024;
/** Largest frame a dialler reads: an answer (a status per message of a request). */
const MAX_ANSWER = 64 * 1024;
const HEAD = 5;
/** How long a dialled connection may take to open. */
const CONNECT_TIMEOUT_MS = 5000;
/**
 * Chunk frames waiting to be reused once their write is done: a relay at full speed would otherwise allocate (and
 * the GC reclaim) a buffer per chunk. At most this many are kept idle.
 */
const POOL_SIZE = 16;

interface Link {
  node: NodeId;
  socket: Socket;
  /** Set once the far end said goodbye: its close is then no failure. */
  clean: boolean;
  /** Inbound: the hello came. Outbound: always. */
  known: boolean;
  /** Outbound: the connection opened. Inbound: always. */
  connected: boolean;
  /** Outbound: requests waiting for their answer, by id, oldest first. */
  waiting: Map<number, Waiter>;
}

interface Waiter {
  resolve: (answer: unknown) => void;
  reject: (err: LinkFailure) => void;
  /** When it was sent (`Date.now()`), for the timeout. */
  at: number;
}

export class NodeLinks {
  private server: Server | undefined;
  private mine: LinkAddress | undefined;
  private readonly machine = hostname();
  private readonly peers = new Map<NodeId, LinkAddress>();
  /** Connections this node dialled, by peer. */
  private readonly out = new Map<NodeId, Link>();
  private readonly in = new Set<Link>();
  private closing = false;
  private readonly log: Logger;
  private readonly pool: Buffer[] = [];
  /**
   * Peers whose announced link could not be dialled: their traffic goes over the bus until they announce another
   * (a restart), never back and forth, which could put a stream's chunks out of order.
   */
  private readonly unreachable = new Set<NodeId>();
  private readonly timeout: number;
  /** The last request id used (ids wrap at 2^32; a connection never has that many waiting). */
  private lastId = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly opts: NodeLinksOptions, private readonly handler: LinkHandler) {
    this.log = opts.logger;
    this.timeout = opts.requestTimeoutMs ?? 2000;
  }

  /** Open connections, dialled and accepted. */
  get connections(): number {
    return this.out.size + this.in.size;
  }

  /** This node's announcement, once listening. */
  get address(): LinkAddress | undefined {
    return this.mine;
  }

  async listen(): Promise<LinkAddress> {
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'node link listener failed'));
    this.server = server;
    this.sweeper = setInterval(() => this.expire(), Math.max(20, Math.min(250, this.timeout / 4)));
    this.sweeper.unref();
    const bound = server.address();
    const port = typeof bound === 'object' && bound ? bound.port : this.opts.listen.port;
    const shown = this.opts.announce ?? { host: this.opts.listen.host, port };
    this.mine = { host: shown.host, port: shown.port || port, secret: randomBytes(16).toString('hex'), machine: this.machine };
    // No `port` field: scripts and tests read the first logged `port` as the HTTP one.
    this.log.info({ link: `${this.mine.host}:${this.mine.port}`, listen: `${this.opts.listen.host}:${port}` }, 'node link listening');
    return this.mine;
  }

  /** A peer's announcement (a heartbeat, an answer). A changed one replaces the old: its node restarted. */
  learn(node: NodeId, a: LinkAddress): void {
    if (node === this.opts.nodeId || !validAddress(a)) return;
    const known = this.peers.get(node);
    if (known && known.host === a.host && known.port === a.port && known.secret === a.secret) return;
    this.peers.set(node, a);
    this.unreachable.delete(node);
    if (known) this.drop(node);
  }

  /** `node` is gone or left: its links close without a report (the bus said so already). */
  forget(node: NodeId): void {
    this.peers.delete(node);
    this.unreachable.delete(node);
    this.drop(node);
  }

  /** Whether stream traffic to `node` goes over a link (else over the bus). */
  usable(node: NodeId): boolean {
    if (this.closing || !this.mine) return false;
    const a = this.peers.get(node);
    if (a === undefined || (isLoopback(a.host) && a.machine !== this.machine)) return false;
    return !this.unreachable.has(node);
  }

  /** Sends a chunk frame (copied: `bytes` may be a transport's receive buffer) to `node`'s claim `to`@`epoch`. */
  chunk(node: NodeId, to: string, epoch: number, bytes: Uint8Array): void {
    const key = Buffer.from(to, 'utf8');
    const body = 8 + 2 + key.length + bytes.byteLength;
    const { socket } = this.link(node);
    const buffer = this.frameBuffer(HEAD + body);
    const frame = buffer.subarray(0, HEAD + body);
    frame.writeUInt32BE(body + 1, 0);
    frame[4] = FrameType.Chunk;
    frame.writeDoubleBE(epoch, HEAD);
    frame.writeUInt16BE(key.length, HEAD + 8);
    key.copy(frame, HEAD + 10);
    frame.set(bytes, HEAD + 10 + key.length);
    socket.write(frame, () => {
      if (this.pool.length < POOL_SIZE && buffer.length >= this.poolBytes) this.pool.push(buffer);
    });
  }

  /** Capacity of pooled frame buffers: grows to the largest chunk frame sent (older, smaller ones are dropped). */
  private poolBytes = 0;

  private frameBuffer(n: number): Buffer {
    if (n > this.poolBytes) {
      this.poolBytes = Math.ceil(n / 65_536) * 65_536;
      this.pool.length = 0;
    }
    return this.pool.pop() ?? Buffer.allocUnsafeSlow(this.poolBytes);
  }

  /** Sends a message the bus would carry (msgpack), in order with the chunks before it. */
  envelope(node: NodeId, msg: unknown): void {
    this.link(node).socket.write(frameOf(FrameType.Envelope, pack(msg)));
  }

  /**
   * Sends a request (msgpack) to `node`, in order with the frames before it; resolves with its answer, or rejects
   * with a `LinkFailure` (no answer in time, the connection closed first, or it never opened).
   */
  request(node: NodeId, msg: unknown): Promise<unknown> {
    let l: Link;
    try {
      l = this.link(node);
    } catch (err) {
      return Promise.reject(new LinkFailure((err as Error).message, false));
    }
    const id = (this.lastId = (this.lastId + 1) >>> 0);
    return new Promise((resolve, reject) => {
      l.waiting.set(id, { resolve, reject, at: Date.now() });
      l.socket.write(frameOf(FrameType.Request, pack(msg), id));
    });
  }

  /** Goodbye on every connection, then closed. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    const all = [...this.out.values(), ...this.in];
    this.out.clear();
    this.in.clear();
    await Promise.all(all.map((l) => new Promise<void>((resolve) => {
      if (l.socket.destroyed) return resolve();
      l.socket.once('close', () => resolve());
      l.socket.end(frameOf(FrameType.Bye, new Uint8Array(0)));
      setTimeout(() => l.socket.destroy(), 1000).unref();
    })));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  // ------------------------------------------------------------------------------------------------------

  private link(node: NodeId): Link {
    const open = this.out.get(node);
    if (open) return open;
    const a = this.peers.get(node);
    if (!a || this.closing) throw new Error(`no link to ${node}`);
    const socket = connect({ host: a.host, port: a.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 5000 });
    const l: Link = { node, socket, clean: false, known: true, connected: false, waiting: new Map() };
    this.out.set(node, l);
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error('connecting timed out')));
    socket.once('connect', () => {
      l.connected = true;
      socket.setTimeout(0);
    });
    socket.once('close', () => {
      if (l.connected || this.closing || l.clean) return;
      // Misconfigured or firewalled: what was sent is lost (reported below), the next streams take the bus.
      this.unreachable.add(node);
      this.log.warn({ node, link: `${a.host}:${a.port}` }, 'cannot dial the node\'s link; streams with it go over the bus until it announces another');
    });
    socket.write(frameOf(FrameType.Hello, pack({ n: this.opts.nodeId, s: a.secret })));
    this.watch(l, new FrameReader(MAX_ANSWER), (type, body) => {
      if (type !== FrameType.Answer || body.byteLength < 4) throw new Error(`unexpected frame ${type} from the dialled end`);
      const id = readId(body);
      const w = l.waiting.get(id);
      if (!w) return; // timed out already
      l.waiting.delete(id);
      w.resolve(unpack(body.subarray(4)));
    });
    return l;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const l: Link = { node: '', socket, clean: false, known: false, connected: true, waiting: new Map() };
    this.in.add(l);
    const reader = new FrameReader(MAX_HELLO);
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error('no hello in time')));
    this.watch(l, reader, (type, body) => {
      if (!l.known) {
        if (type !== FrameType.Hello) throw new Error('the first frame was not a hello');
        const hello = unpack(body) as { n?: unknown; s?: unknown };
        if (typeof hello?.n !== 'string' || typeof hello.s !== 'string' || !this.mine || !sameSecret(hello.s, this.mine.secret)) {
          throw new Error('a hello without this node\'s secret');
        }
        l.node = hello.n;
        l.known = true;
        reader.limit = MAX_FRAME;
        socket.setTimeout(0);
        return;
      }
      if (type === FrameType.Chunk) {
        const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
        if (body.byteLength < 10) throw new Error('short chunk frame');
        const epoch = view.getFloat64(0);
        const keyLength = view.getUint16(8);
        if (body.byteLength < 10 + keyLength) throw new Error('short chunk frame');
        const to = Buffer.from(body.buffer, body.byteOffset + 10, keyLength).toString('utf8');
        this.handler.message(l.node, { kind: 'chunk', to, epoch, bytes: body.subarray(10 + keyLength) });
      } else if (type === FrameType.Envelope) {
        this.handler.message(l.node, { kind: 'envelope', msg: unpack(body) });
      } else if (type === FrameType.Request) {
        if (body.byteLength < 4) throw new Error('short request frame');
        const answer = this.handler.request(l.node, unpack(body.subarray(4)));
        if (!socket.writableEnded) socket.write(frameOf(FrameType.Answer, pack(answer), readId(body)));
      } else {
        throw new Error(`unexpected frame ${type}`);
      }
    });
  }

  /** Reads `l`'s frames into `each` (Bye handled here); a failure or an unannounced close is a lost link. */
  private watch(l: Link, reader: FrameReader, each: (type: number, body: Uint8Array) => void): void {
    let why = 'the link closed';
    l.socket.on('data', (data: Buffer) => {
      // One write for the answers to every request in this read.
      l.socket.cork();
      try {
        reader.push(data, (type, body) => {
          if (type === FrameType.Bye) l.clean = true;
          else if (!l.clean) each(type, body);
        });
      } catch (err) {
        why = (err as Error).message;
        l.socket.destroy();
      } finally {
        l.socket.uncork();
      }
    });
    l.socket.on('error', (err) => (why = err.message));
    l.socket.once('close', () => {
      if (this.out.get(l.node) === l) this.out.delete(l.node);
      this.fail(l, l.connected ? `the link to ${l.node} closed before it answered (${why})` : `cannot dial the link to ${l.node} (${why})`);
      this.in.delete(l);
      if (this.closing || l.clean || !l.known) {
        if (!l.known && !this.closing) this.log.warn({ reason: why }, 'node link connection refused');
        return;
      }
      this.log.warn({ node: l.node, reason: why }, 'node link lost');
      this.handler.lost(l.node, why);
    });
  }

  /** Every request still waiting on `l` fails. */
  private fail(l: Link, why: string): void {
    if (l.waiting.size === 0) return;
    const waiting = [...l.waiting.values()];
    l.waiting.clear();
    for (const w of waiting) w.reject(new LinkFailure(why, l.connected));
  }

  /** Requests unanswered for longer than the timeout fail (each connection's are in the order they were sent). */
  private expire(): void {
    const due = Date.now() - this.timeout;
    for (const l of this.out.values()) {
      for (const [id, w] of l.waiting) {
        if (w.at > due) break;
        l.waiting.delete(id);
        w.reject(new LinkFailure(`no answer from ${l.node} over its link in ${this.timeout} ms`, true));
      }
    }
  }

  /** Closes the links with `node` quietly: a goodbye first, so that node does not report them lost either. */
  private drop(node: NodeId): void {
    const l = this.out.get(node);
    if (l) this.out.delete(node);
    for (const x of [...(l ? [l] : []), ...[...this.in].filter((i) => i.node === node)]) {
      x.clean = true;
      this.in.delete(x);
      x.socket.end(frameOf(FrameType.Bye, new Uint8Array(0)));
      setTimeout(() => x.socket.destroy(), 1000).unref();
    }
  }
}

/**
 * Splits a byte stream into frames; a frame inside one read is a view of it, one across reads is copied once, into
 * memory reused for the next such frame (a frame is valid until `each` returns).
 */
class FrameReader {
  private bufs: Buffer[] = [];
  private size = 0;
  private scratch = Buffer.alloc(0);

  /** `limit`: the largest frame body accepted (a larger one is an error). */
  constructor(public limit: number) {}

  push(data: Buffer, each: (type: number, body: Uint8Array) => void): void {
    this.bufs.push(data);
    this.size += data.length;
    for (;;) {
      if (this.size < HEAD) return;
      if (this.bufs[0]!.length < HEAD) this.bufs = [Buffer.concat(this.bufs, this.size)];
      const head = this.bufs[0]!;
      const length = head.readUInt32BE(0);
      if (length < 1 || length > this.limit) throw new Error(`a frame of ${length} bytes`);
      const total = 4 + length;
      if (this.size < total) return;
      const frame = this.take(total);
      each(frame[4]!, frame.subarray(HEAD));
    }
  }

  private take(n: number): Buffer {
    const first = this.bufs[0]!;
    this.size -= n;
    if (first.length >= n) {
      if (first.length === n) this.bufs.shift();
      else this.bufs[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(Math.ceil(n / 65_536) * 65_536);
    const out = this.scratch.subarray(0, n);
    let at = 0;
    while (at < n) {
      const b = this.bufs[0]!;
      const k = Math.min(b.length, n - at);
      b.copy(out, at, 0, k);
      at += k;
      if (k === b.length) this.bufs.shift();
      else this.bufs[0] = b.subarray(k);
    }
    return out;
  }
}

/** A frame of `type` with `body`, after a uint32 `id` when one is given (requests and answers). */
function frameOf(type: number, body: Uint8Array, id?: number): Buffer {
  const at = id === undefined ? HEAD : HEAD + 4;
  const frame = Buffer.allocUnsafe(at + body.byteLength);
  frame.writeUInt32BE(at - 4 + body.byteLength, 0);
  frame[4] = type;
  if (id !== undefined) frame.writeUInt32BE(id, HEAD);
  frame.set(body, at);
  return frame;
}

function readId(body: Uint8Array): number {
  return ((body[0]! << 24) | (body[1]! << 16) | (body[2]! << 8) | body[3]!) >>> 0;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127\./.test(host) || host === '::1' || host === '[::1]';
}

function validAddress(a: LinkAddress): boolean {
  return typeof a?.host === 'string' && a.host.length > 0 && Number.isInteger(a.port) && a.port > 0 && a.port < 65536
    && typeof a.secret === 'string' && typeof a.machine === 'string';
}
