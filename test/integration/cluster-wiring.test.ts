/**
 * The hub wired to the router, across two real node processes (server/main.ts) on one real nats-server and one
 * shared store (the MongoDB-wire stand-in of test/support/mongo-standin.ts, reached by both over TCP): text and
 * receipts between nodes, a sign-in on one node closing the name's socket on the other, and a queue filled
 * through one node drained through the other. The larger several-node suite lives in cluster tests of its own.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CHUNK_HEADER_BYTES, encodeChunk } from '../../shared/chunk.ts';
import { CloseCode } from '../../shared/codes.ts';
import type { ChunkFrame } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';
import { startChild, type ChildServer } from '../support/child.ts';
import { deleteAccount, signOut } from '../../client/sdk/http.ts';
import { Harness, PASSWORD, insecureFetch, wsUrl } from '../support/harness.ts';
import { startNatsServer, type NatsServer } from '../support/nats-server.ts';
import { helloWire, type FlatReceipt } from '../support/wire.ts';
import { until } from '../contract/router.contract.ts';
import { freePort, startTcpProxy } from '../support/tcp-proxy.ts';

const h = new Harness('mongodb');
let nats: NatsServer | undefined;
/** Node processes by start order; each is kept as soon as it listens, so afterEach stops it whatever failed. */
let nodes: ChildServer[] = [];

async function twoNodes(): Promise<void> {
  nats = await startNatsServer();
  const url = nats.url;
  const storeEnv = await h.storeEnv();
  const started: Array<ChildServer | undefined> = [];
  await Promise.all(['w1', 'w2'].map(async (id, i) => {
    const child = await startChild({ ...storeEnv, NATS_URL: url, NODE_ID: id, DATA_DIR: h.tempDir() });
    started[i] = child;
    nodes.push(child);
  }));
  nodes = started as ChildServer[];
}

afterEach(async () => {
  for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
  nodes = [];
  await h.cleanup();
  await nats?.close();
  nats = undefined;
});

describe('two nodes on one bus', () => {
  beforeEach(twoNodes);
  it('text crosses nodes both ways, with accepted then delivered receipts', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));

    alice.send({ t: Op.Send, id: 'a-to-b-000001', to: 'bob', text: 'hello from node 1' });
    const m = await bob.next(Op.Message, (f) => f.id === 'a-to-b-000001');
    expect(m).toMatchObject({ from: 'alice', text: 'hello from node 1' });
    expect(m.queued).toBeUndefined(); // live, not through the queue
    await alice.next(Op.Receipt, (r) => r.id === 'a-to-b-000001' && r.state === 'accepted');
    bob.send({ t: Op.Ack, tags: [m.tag] });
    expect(await alice.next(Op.Receipt, (r) => r.id === 'a-to-b-000001' && r.state === 'delivered')).toMatchObject({ to: 'bob' });

    bob.send({ t: Op.Send, id: 'b-to-a-000001', to: 'alice', text: 'and back from node 2' });
    const back = await alice.next(Op.Message, (f) => f.id === 'b-to-a-000001');
    expect(back).toMatchObject({ from: 'bob', text: 'and back from node 2' });
    alice.send({ t: Op.Ack, tags: [back.tag] });
    await bob.next(Op.Receipt, (r) => r.id === 'b-to-a-000001' && r.state === 'delivered');
    // Each saw the other's message exactly once.
    expect(bob.frames.filter((f) => f.t === Op.Message)).toHaveLength(1);
    expect(alice.frames.filter((f) => f.t === Op.Message)).toHaveLength(1);
  });

  it('a file streams from node 1 to node 2 byte for byte, within the credit window', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));
    const size = 6 * 1024 * 1024 + 12_345; // more than one window (STREAM_WINDOW_KB, 4 MiB by default)
    const data = randomBytes(size);
    alice.send({ t: Op.StreamOffer, ref: 'file-1', to: 'bob', name: 'data.bin', size, mime: 'application/octet-stream', container: 'other' });
    const offered = await bob.next(Op.StreamOffered);
    expect(offered).toMatchObject({ from: 'alice', to: 'bob', size });
    const { sid } = offered;
    bob.send({ t: Op.StreamAnswer, sid, accept: true, credit: size }); // the servers pass it on a window at a time
    await alice.next(Op.StreamAnswered, (f) => f.sid === sid && f.accept);

    const granted = (): number => alice.frames.reduce((n, f) => n + (f.t === Op.StreamGranted && f.sid === sid ? f.bytes : 0), 0);
    // Before any byte was relayed, the recipient's node passed on one window of the credit, not all of it.
    await alice.next(Op.StreamGranted, (f) => f.sid === sid);
    expect(granted()).toBe(4096 * 1024);
    let sent = 0;
    while (sent < size) {
      if (sent < granted()) {
        const n = Math.min(65_536, granted() - sent, size - sent);
        alice.ws.send(encodeChunk(sid, sent, data.subarray(sent, sent + n)));
        sent += n;
      } else await new Promise((r) => setTimeout(r, 1));
    }
    alice.send({ t: Op.StreamEnd, sid });
    await bob.next(Op.StreamEnded, (f) => f.sid === sid);
    const chunks = bob.frames.filter((f): f is ChunkFrame => f.t === 'chunk' && f.header.sid === sid);
    const got = Buffer.concat(chunks.map((c) => c.bytes.subarray(CHUNK_HEADER_BYTES)));
    expect(got.length).toBe(size);
    expect(got.equals(data)).toBe(true);
    await alice.next(Op.StreamEnded, (f) => f.sid === sid);
  });

  it('a stream across nodes is aborted with a reason on the side still there when the other node dies', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));
    alice.send({ t: Op.StreamOffer, ref: 'file-2', to: 'bob', name: 'x.bin', size: 1000, mime: 'application/octet-stream', container: 'other' });
    const { sid } = await bob.next(Op.StreamOffered);
    bob.send({ t: Op.StreamAnswer, sid, accept: true, credit: 1000 });
    await alice.next(Op.StreamGranted, (f) => f.sid === sid);
    n2.proc.kill('SIGKILL');
    const aborted = await alice.next(Op.StreamAborted, (f) => f.sid === sid);
    expect(aborted.reason).toBe('RECIPIENT_DISCONNECTED');
    expect(aborted.message).toMatch(/server/);
  });

  it("a sign-in on node 2 closes the name's socket on node 1 with takeover and 4001", async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const old = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'bob')));
    const token = await h.account(n2, 'bob', undefined, { register: false });
    await old.next(Op.Takeover);
    expect((await old.closed).code).toBe(CloseCode.TAKEOVER);
    // The new session works on node 2.
    const fresh = await helloWire(h.rawSocket(wsUrl(n2.url), token));
    fresh.send({ t: Op.Ping, n: 7 });
    expect(await fresh.next(Op.Pong)).toMatchObject({ n: 7 });
  });

  it('a sign-in on node 2 whose socket opens on node 1, where the name last signed in, is not turned away', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const old = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'bob')));
    const token = await h.account(n2, 'bob', undefined, { register: false });
    await old.next(Op.Takeover);
    // Through a balancer the new socket may land on the node that signed the older session in: it is the newer one.
    const fresh = await helloWire(h.rawSocket(wsUrl(n1.url), token));
    fresh.send({ t: Op.Ping, n: 8 });
    expect(await fresh.next(Op.Pong)).toMatchObject({ n: 8 });
    expect(fresh.frames.filter((f) => f.t === Op.Takeover)).toEqual([]);
  });

  it('a sign-out or an account deletion that reaches node 2 closes the session\'s socket on node 1 with 4002', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const viaNode2 = { baseUrl: n2.url, fetch: insecureFetch(n2.url) };
    // Behind a balancer the page's HTTP request may land on another node than its socket.
    const token = await h.account(n1, 'dora');
    const live = await helloWire(h.rawSocket(wsUrl(n1.url), token));
    await signOut(viaNode2, token);
    expect((await live.closed).code).toBe(CloseCode.SESSION_ENDED);
    const again = await h.account(n1, 'dora', undefined, { register: false });
    const next = await helloWire(h.rawSocket(wsUrl(n1.url), again));
    await deleteAccount(viaNode2, PASSWORD, again);
    expect((await next.closed).code).toBe(CloseCode.SESSION_ENDED);
    // And the ended token opens nothing on either node: the upgrade is refused with 401.
    for (const n of [n1, n2]) {
      const retry = h.rawSocket(wsUrl(n.url), again);
      expect(await new Promise<number>((resolve) => retry.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)))).toBe(401);
    }
  });

  it('serves a room across nodes: created on node 1, joined and read on node 2, counted back on node 1', async () => {
    // The full cross-node room suite is rooms-nodes.test.ts (three nodes, removal, presence, kill -9 of the owner).
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const erin = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'erin')));
    const fay = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'fay')));
    erin.send({ t: Op.RoomCreate, room: 'Lobby' });
    expect(await erin.next(Op.RoomInfo)).toMatchObject({ room: 'Lobby', owner: 'erin' });
    fay.send({ t: Op.RoomJoin, room: 'lobby' });
    expect(await fay.next(Op.RoomInfo)).toMatchObject({ room: 'Lobby', members: [['erin', true], ['fay', true]] });
    erin.send({ t: Op.Send, id: 'room-text-01', room: 'Lobby', text: 'hello' });
    // Fay acknowledges what she is handed (the room's lines, then the text): her cursor moves over all of it.
    const tags: number[] = [];
    const m = await fay.next(Op.Message, (f) => {
      tags.push(f.tag);
      return f.id === 'room-text-01';
    });
    expect(m).toMatchObject({ room: 'Lobby', from: 'erin', text: 'hello' });
    fay.send({ t: Op.Ack, tags });
    expect(await erin.next(Op.RoomReceipt, (f) => f.items.some(([id, , d]) => id === 'room-text-01' && d === 1))).toMatchObject({ items: [['room-text-01', 'Lobby', 1, 1]] });
  });

  it('a message queued through node 1 for an offline user is delivered on node 2, and its receipt crosses back', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const carolToken = await h.account(n1, 'carol');
    for (const [i, text] of ['first', 'second', 'third'].entries()) {
      alice.send({ t: Op.Send, id: `queued-00000${i}`, to: 'carol', text });
    }
    for (let i = 0; i < 3; i++) await alice.next(Op.Receipt, (r) => r.id === `queued-00000${i}` && r.state === 'queued');

    const carol = await helloWire(h.rawSocket(wsUrl(n2.url), carolToken));
    const got = await Promise.all([0, 1, 2].map((i) => carol.next(Op.Message, (f) => f.id === `queued-00000${i}`)));
    expect(carol.frames.filter((f) => f.t === Op.Message).map((f) => (f as { text: string }).text)).toEqual(['first', 'second', 'third']);
    expect(got.every((m) => m.queued === true)).toBe(true);
    carol.send({ t: Op.Ack, tags: got.map((m) => m.tag) });
    for (let i = 0; i < 3; i++) await alice.next(Op.Receipt, (r) => r.id === `queued-00000${i}` && r.state === 'delivered');
  });
});

async function status(url: string): Promise<string> {
  return ((await (await fetch(`${url}/healthz`)).json()) as { status: string }).status;
}

/** Polls /healthz of every node until each says `want`. */
async function allStatus(want: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const got = await Promise.all(nodes.map((n) => status(n.url)));
    if (got.every((s) => s === want)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for /healthz ${want}; got ${got.join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('two nodes, NATS killed and restarted', () => {
  beforeEach(twoNodes);
  it('health says degraded, a socket opening is told to try again, text falls back to the queue and arrives once the bus is back', async () => {
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));
    const carolToken = await h.account(n1, 'carol');

    await nats!.kill();
    await allStatus('degraded');
    const carol = h.rawSocket(wsUrl(n1.url), carolToken);
    const carolClosed = new Promise<number>((resolve) => carol.on('close', (code) => resolve(code)));
    expect(await carolClosed).toBe(CloseCode.TRY_AGAIN);

    alice.send({ t: Op.Send, id: 'bus-down-0001', to: 'bob', text: 'while the bus is down' });
    await alice.next(Op.Receipt, (r) => r.id === 'bus-down-0001' && r.state === 'queued');
    expect(bob.frames.some((f) => f.t === Op.Message)).toBe(false);

    await nats!.restart();
    await allStatus('ok');
    const m = await bob.next(Op.Message, (f) => f.id === 'bus-down-0001');
    expect(m.queued).toBe(true);
    bob.send({ t: Op.Ack, tags: [m.tag] });
    await alice.next(Op.Receipt, (r) => r.id === 'bus-down-0001' && r.state === 'delivered');
    // Never a false delivered, never twice.
    const states = (alice.frames as unknown as FlatReceipt[]).filter((f) => f.t === Op.Receipt && f.id === 'bus-down-0001').map((f) => f.state);
    expect(states).toEqual(['queued', 'delivered']);
    expect(bob.frames.filter((f) => f.t === Op.Message)).toHaveLength(1);
  });
});

describe('behind a balancer', () => {
  /** Failed sign-ins from `address` (as nginx would forward it), each at a name of its own (the per-name limit stays out of it). */
  async function failures(url: string, address: string, n: number): Promise<string[]> {
    const codes: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${url}/api/signin`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Origin: url, 'X-Forwarded-For': address },
        body: JSON.stringify({ name: `nobody${address.replace(/\W/g, '')}x${i}`, password: 'wrong password' }),
      });
      codes.push(((await res.json()) as { error: { code: string } }).error.code);
    }
    return codes;
  }

  // 40 failures per address in a burst (4 x the per-name limit, refilled at 40 a minute), then RATE_LIMITED.
  it('sign-in limits count X-Forwarded-For addresses only from a TRUSTED_PROXY', async () => {
    const behind = await h.server({ TRUSTED_PROXY: '127.0.0.1' });
    expect((await failures(behind.url, '198.51.100.1', 50)).at(-1)).toBe('RATE_LIMITED');
    expect(await failures(behind.url, '198.51.100.2', 1)).toEqual(['BAD_CREDENTIALS']); // another client behind nginx

    const direct = await h.server(); // no trusted proxy: the header is anyone's to write, so it is ignored
    expect((await failures(direct.url, '198.51.100.3', 50)).at(-1)).toBe('RATE_LIMITED');
    expect(await failures(direct.url, '198.51.100.4', 1)).toEqual(['RATE_LIMITED']);
  });
});

describe('two nodes whose direct link runs through a TCP proxy', () => {
  it('carries the stream\'s chunks over the link; a cut link aborts the stream on both sides with a reason', async () => {
    nats = await startNatsServer();
    const storeEnv = await h.storeEnv();
    const linkPort = await freePort();
    // Node 2 listens on linkPort and announces the proxy, so node 1's chunks for node 2 pass through it.
    const proxy = await startTcpProxy(linkPort);
    try {
      nodes.push(await startChild({ ...storeEnv, NATS_URL: nats.url, NODE_ID: 'l1', DATA_DIR: h.tempDir() }));
      nodes.push(await startChild({
        ...storeEnv, NATS_URL: nats.url, NODE_ID: 'l2', DATA_DIR: h.tempDir(),
        NODE_LINK: `127.0.0.1:${linkPort}`, NODE_LINK_ANNOUNCE: `127.0.0.1:${proxy.port}`,
      }));
      const [n1, n2] = nodes as [ChildServer, ChildServer];
      const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
      const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));
      const size = 10 * 1024 * 1024;
      alice.send({ t: Op.StreamOffer, ref: 'file-link', to: 'bob', name: 'x.bin', size, mime: 'application/octet-stream', container: 'other' });
      const { sid } = await bob.next(Op.StreamOffered);
      bob.send({ t: Op.StreamAnswer, sid, accept: true, credit: 1024 * 1024 });
      await alice.next(Op.StreamGranted, (f) => f.sid === sid);
      const data = randomBytes(1024 * 1024);
      for (let at = 0; at < data.length; at += 65_536) alice.ws.send(encodeChunk(sid, at, data.subarray(at, at + 65_536)));
      const arrived = (): number => bob.frames.reduce((n, f) => n + (f.t === 'chunk' && f.header.sid === sid ? f.header.length : 0), 0);
      await until(() => arrived() === data.length, 'the first MiB at bob');
      const chunks = bob.frames.filter((f): f is ChunkFrame => f.t === 'chunk' && f.header.sid === sid);
      expect(Buffer.concat(chunks.map((c) => c.bytes.subarray(CHUNK_HEADER_BYTES))).equals(data)).toBe(true);
      expect(proxy.passed()).toBeGreaterThan(data.length); // the chunks went over the link, not the bus

      proxy.cut();
      const [fromAlice, fromBob] = await Promise.all([
        alice.next(Op.StreamAborted, (f) => f.sid === sid),
        bob.next(Op.StreamAborted, (f) => f.sid === sid),
      ]);
      expect(fromAlice).toMatchObject({ reason: 'RECIPIENT_DISCONNECTED', message: 'the connection between the servers was lost' });
      expect(fromBob).toMatchObject({ reason: 'SENDER_DISCONNECTED', message: 'the connection between the servers was lost' });
    } finally {
      await proxy.close();
    }
  });

  it('with NODE_LINK=off the stream crosses over the bus, byte for byte, its end after its last chunk', async () => {
    nats = await startNatsServer();
    const storeEnv = await h.storeEnv();
    for (const id of ['b1', 'b2']) {
      nodes.push(await startChild({ ...storeEnv, NATS_URL: nats.url, NODE_ID: id, DATA_DIR: h.tempDir(), NODE_LINK: 'off' }));
    }
    const [n1, n2] = nodes as [ChildServer, ChildServer];
    const alice = await helloWire(h.rawSocket(wsUrl(n1.url), await h.account(n1, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(n2.url), await h.account(n2, 'bob')));
    const data = randomBytes(3 * 1024 * 1024 + 777);
    alice.send({ t: Op.StreamOffer, ref: 'file-bus', to: 'bob', name: 'x.bin', size: data.length, mime: 'application/octet-stream', container: 'other' });
    const { sid } = await bob.next(Op.StreamOffered);
    bob.send({ t: Op.StreamAnswer, sid, accept: true, credit: data.length });
    await alice.next(Op.StreamGranted, (f) => f.sid === sid);
    for (let at = 0; at < data.length; at += 65_536) alice.ws.send(encodeChunk(sid, at, data.subarray(at, at + 65_536)));
    alice.send({ t: Op.StreamEnd, sid });
    await bob.next(Op.StreamEnded, (f) => f.sid === sid);
    const chunks = bob.frames.filter((f): f is ChunkFrame => f.t === 'chunk' && f.header.sid === sid);
    expect(Buffer.concat(chunks.map((c) => c.bytes.subarray(CHUNK_HEADER_BYTES))).equals(data)).toBe(true);
    await alice.next(Op.StreamEnded, (f) => f.sid === sid);
  });
});
