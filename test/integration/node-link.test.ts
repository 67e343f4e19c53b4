/**
 * The direct node-to-node link (server/bus/node-link.ts) on real TCP sockets: frames arrive byte for byte and in
 * order, a dialler without the secret is refused, one that cannot connect is reported and not tried again, a stranger
 * cannot make a node buffer a large frame, a connection cut in the middle (a TCP proxy between the two
 * nodes, closed) is reported lost by both ends, and a goodbye is not. Requests are answered by id, in order with
 * the frames around them; one that gets no answer in time, or whose connection closes first, fails as sent; one
 * whose connection never opened fails as not sent.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkFailure, NodeLinks, type LinkMessage } from '../../server/bus/node-link.ts';
import { createLogger } from '../../server/core/logger.ts';
import { until } from '../contract/router.contract.ts';
import { freePort, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const log = createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as 'silent');
const open: Array<NodeLinks | TcpProxy> = [];

interface End { links: NodeLinks; got: Array<{ from: string; m: LinkMessage }>; lost: Array<{ node: string; why: string }> }

/**
 * A node whose requests (`{ i, text }`) are recorded in `got` (as envelopes) and answered `{ from, i, length }`:
 * answers are small, as a node's statuses are.
 */
async function node(id: string, requestTimeoutMs?: number): Promise<End> {
  const got: End['got'] = [];
  const lost: End['lost'] = [];
  const links = new NodeLinks({ nodeId: id, listen: { host: '127.0.0.1', port: 0 }, logger: log, requestTimeoutMs }, {
    message: (from, m) => got.push({ from, m: m.kind === 'chunk' ? { ...m, bytes: Buffer.from(m.bytes) } : m }),
    request: (from, msg) => {
      got.push({ from, m: { kind: 'envelope', msg: { request: msg } } });
      const { i, text } = msg as { i: number; text?: string };
      return { from, i, length: text?.length ?? 0 };
    },
    lost: (n, why) => lost.push({ node: n, why }),
  });
  await links.listen();
  open.push(links);
  return { links, got, lost };
}

afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.close();
  }
});

describe('node links', () => {
  it('carry chunks and envelopes byte for byte, in order, whole or split across reads', async () => {
    const a = await node('a');
    const b = await node('b');
    a.links.learn('b', b.links.address!);
    expect(a.links.usable('b')).toBe(true);
    const sizes = [1, 13, 65_536, 256 * 1024 + 13, 7, 1024 * 1024, 300_001];
    const sent: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      const bytes = randomBytes(sizes[i % sizes.length]!);
      sent.push(bytes);
      a.links.chunk('b', i % 2 ? 'bob' : '小明', 1_700_000_000_000 + i, bytes);
    }
    a.links.envelope('b', { e: { k: 'stream', to: 'bob', frame: { t: 'ended', n: 60 } }, ep: 5 });
    await until(() => b.got.length === 61, 'every frame at b');
    for (let i = 0; i < 60; i++) {
      const { from, m } = b.got[i]!;
      expect(from).toBe('a');
      expect(m.kind).toBe('chunk');
      if (m.kind !== 'chunk') continue;
      expect(m.to).toBe(i % 2 ? 'bob' : '小明');
      expect(m.epoch).toBe(1_700_000_000_000 + i);
      expect(Buffer.compare(Buffer.from(m.bytes), sent[i]!)).toBe(0);
    }
    expect(b.got[60]!.m).toEqual({ kind: 'envelope', msg: { e: { k: 'stream', to: 'bob', frame: { t: 'ended', n: 60 } }, ep: 5 } });
    expect(a.lost).toEqual([]);
    expect(b.lost).toEqual([]);
  });

  it('refuses a dialler without the secret: nothing is taken, and the dialler sees its link lost', async () => {
    const a = await node('a');
    const b = await node('b');
    a.links.learn('b', { ...b.links.address!, secret: 'not-the-secret' });
    a.links.chunk('b', 'bob', 1, randomBytes(100));
    await until(() => a.lost.length === 1, 'the refused link reported at a');
    expect(a.lost[0]!.node).toBe('b');
    expect(b.got).toEqual([]);
    expect(b.lost).toEqual([]); // an unknown dialler is no node of ours
  });

  it('a link that cannot be dialled is reported lost, and that peer is no longer used until it announces another', async () => {
    const a = await node('a');
    const b = await node('b');
    const closed = await freePort();
    a.links.learn('b', { ...b.links.address!, port: closed });
    a.links.chunk('b', 'bob', 1, randomBytes(100));
    await until(() => a.lost.length === 1, 'the failed dial reported');
    expect(a.links.usable('b')).toBe(false); // the bus from now on: never back and forth within a stream
    a.links.learn('b', b.links.address!);
    expect(a.links.usable('b')).toBe(true);
    a.links.chunk('b', 'bob', 1, Buffer.from('now'));
    await until(() => b.got.length === 1, 'the chunk over the announced link');
  });

  it('a connection cut between the nodes is reported lost at both ends; the next send dials again', async () => {
    const a = await node('a');
    const b = await node('b');
    const p = await startTcpProxy(b.links.address!.port);
    open.push(p);
    a.links.learn('b', { ...b.links.address!, port: p.port });
    a.links.chunk('b', 'bob', 1, randomBytes(1000));
    await until(() => b.got.length === 1, 'the first chunk at b');
    p.cut();
    await until(() => a.lost.length === 1 && b.lost.length === 1, 'the cut reported at both ends');
    expect(a.lost[0]!.node).toBe('b');
    expect(b.lost[0]!.node).toBe('a');
    a.links.chunk('b', 'bob', 1, Buffer.from('again'));
    await until(() => b.got.length === 2, 'the chunk after the cut at b');
    expect(b.got[1]!.m).toMatchObject({ kind: 'chunk', bytes: Buffer.from('again') });
    expect(p.passed()).toBeGreaterThan(1000);
  });

  it('answers requests by id, each in order with the frames sent around it, whole or split across reads', async () => {
    const a = await node('a');
    const b = await node('b');
    a.links.learn('b', b.links.address!);
    const answers: Array<Promise<unknown>> = [];
    for (let i = 0; i < 200; i++) {
      if (i % 10 === 0) a.links.chunk('b', 'bob', i, randomBytes(100_000));
      // Some requests far larger than one read, so that their frames span several.
      answers.push(a.links.request('b', { i, text: i % 7 ? 'hi' : 'x'.repeat(300_000) }));
    }
    const got = await Promise.all(answers);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => ({ from: 'a', i, length: i % 7 ? 2 : 300_000 })));
    // At b: chunk 0, requests 0-9, chunk 10, requests 10-19, ...
    const order = b.got.map(({ m }) => (m.kind === 'chunk' ? `c${m.epoch}` : `r${(m.msg as { request: { i: number } }).request.i}`));
    expect(order).toEqual(Array.from({ length: 200 }, (_, i) => (i % 10 === 0 ? [`c${i}`, `r${i}`] : [`r${i}`])).flat());
    expect(a.lost).toEqual([]);
    expect(b.lost).toEqual([]);
  });

  it('a request whose link cannot be dialled fails as not sent (the caller may take the bus)', async () => {
    const a = await node('a');
    const b = await node('b');
    a.links.learn('b', { ...b.links.address!, port: await freePort() });
    const failure = await a.links.request('b', { i: 1 }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LinkFailure);
    expect((failure as LinkFailure).sent).toBe(false);
    expect(a.links.usable('b')).toBe(false);
    expect(b.got).toEqual([]);
  });

  it('a request with no answer in time, or whose connection closes first, fails as sent', async () => {
    // A peer that accepts connections and never answers.
    const silent = new Set<Socket>();
    const server = createServer((s) => {
      silent.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const a = await node('a', 300);
      a.links.learn('b', { host: '127.0.0.1', port: (server.address() as AddressInfo).port, secret: 'ab', machine: a.links.address!.machine });
      const started = Date.now();
      const timedOut = await a.links.request('b', { i: 1 }).catch((e: unknown) => e);
      expect(timedOut).toBeInstanceOf(LinkFailure);
      expect((timedOut as LinkFailure).sent).toBe(true);
      expect((timedOut as LinkFailure).message).toMatch(/no answer/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);

      const waiting = a.links.request('b', { i: 2 }).catch((e: unknown) => e);
      await until(() => silent.size === 1, 'the connection at the silent peer');
      for (const s of silent) s.destroy();
      const closed = await waiting;
      expect(closed).toBeInstanceOf(LinkFailure);
      expect((closed as LinkFailure).sent).toBe(true);
      expect((closed as LinkFailure).message).toMatch(/closed before it answered/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('a stranger announcing a frame larger than a hello is closed before it sends it', async () => {
    const b = await node('b');
    const raw = connect(b.links.address!.port, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(2048, 0); // a chunk's size, but no hello yet: not buffered
    raw.write(head);
    await new Promise((r) => raw.once('close', r));
    expect(b.got).toEqual([]);
    expect(b.lost).toEqual([]);
  });

  it('a goodbye is no failure: closing one end reports nothing lost at either', async () => {
    const a = await node('a');
    const b = await node('b');
    a.links.learn('b', b.links.address!);
    b.links.learn('a', a.links.address!);
    a.links.chunk('b', 'bob', 1, randomBytes(10));
    b.links.chunk('a', 'alice', 1, randomBytes(10));
    await until(() => a.got.length === 1 && b.got.length === 1, 'a chunk each way');
    await a.links.close();
    open.splice(open.indexOf(a.links), 1);
    await until(() => b.links.connections === 0, 'b\'s connections with a closed');
    expect(a.lost).toEqual([]);
    expect(b.lost).toEqual([]);
  });
});
