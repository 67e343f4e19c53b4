/**
 * The NATS router against the Router contract, on a real nats-server (Debian's, started per test on a port it
 * picks, JetStream on file storage), with and without direct node links. The two nodes are two routers in this process with their own connections;
 * the doomed node is a child process killed with SIGKILL; the bus outage is the nats-server killed and restarted.
 * Then what only a bus adapter has to do: a node that was away when its claim was taken over finds out.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { NatsRouter } from '../../server/bus/nats-router.ts';
import { Op } from '../../shared/protocol.ts';
import { createLogger } from '../../server/core/logger.ts';
import { RouterError, type AddressedEnvelope, type ChunkEnvelope, type Claim, type DeliveryStatus, type NodeId, type TextEnvelope } from '../../server/core/router.ts';
import { defineRouterContract, RecordingReceiver, until } from '../contract/router.contract.ts';
import { startNatsServer, type NatsServer } from '../support/nats-server.ts';
import { freePort, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const HEARTBEAT_MS = 250;
const ROOT = new URL('../..', import.meta.url).pathname;
let run = 0;

for (const links of [false, true]) defineRouterContract(links ? 'nats with direct node links' : 'nats', async () => {
  const nats = await startNatsServer();
  // With links, requests between the nodes move to them once the nodes know each other's (a heartbeat or an answer).
  const link = links ? { listen: { host: '127.0.0.1', port: 0 } } : undefined;
  const prefix = `t${process.pid}-${++run}`;
  const routers: NatsRouter[] = [];
  const children: Array<() => void> = [];
  const log = createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as 'silent');
  return {
    node(nodeId) {
      const r = new NatsRouter({ url: nats.url, nodeId, prefix, heartbeatMs: HEARTBEAT_MS, requestTimeoutMs: 1000, logger: log, link });
      routers.push(r);
      return r;
    },
    async doomed(nodeId, key) {
      const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/router-child.ts'], {
        cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, NATS_URL: nats.url, NODE_ID: nodeId, BUS_PREFIX: prefix, HEARTBEAT_MS: String(HEARTBEAT_MS), CLAIM_KEY: key, LINK: links ? '1' : '' },
      });
      const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
      children.push(() => proc.kill('SIGKILL'));
      const claim = await new Promise<Claim>((resolve, reject) => {
        createInterface({ input: proc.stdout! }).once('line', (line) => resolve(JSON.parse(line) as Claim));
        void exited.then(() => reject(new Error('router child exited before claiming')));
      });
      return { nodeId, claim, kill: async () => { proc.kill('SIGKILL'); await exited; } };
    },
    goneWithin: `${3 * HEARTBEAT_MS} ms (3 heartbeats) plus one heartbeat of judging`,
    bus: { kill: () => nats.kill(), restart: () => nats.restart() },
    async cleanup() {
      for (const kill of children) kill();
      await Promise.all(routers.map((r) => r.close()));
      await nats.close();
    },
  };
});

describe('NatsRouter: a node that was away', () => {
  let nats: NatsServer | undefined;
  const routers: NatsRouter[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.close();
    await nats?.close();
  });

  it('learns, once the bus is back, that its claim was taken over while it could not hear the takeover', async () => {
    nats = await startNatsServer();
    const log = createLogger('silent');
    // `slow` stays away about 10 s after the bus restarts (its reconnect pause), `fast` comes back at once: what a
    // node on the wrong side of a partition sees.
    const slow = new NatsRouter({ url: nats.url, nodeId: 'slow', prefix: 'away', heartbeatMs: HEARTBEAT_MS, logger: log, reconnectWaitMs: 10_000 });
    const fast = new NatsRouter({ url: nats.url, nodeId: 'fast', prefix: 'away', heartbeatMs: HEARTBEAT_MS, logger: log });
    routers.push(slow, fast);
    const rs = new RecordingReceiver();
    await slow.start(rs);
    await fast.start(new RecordingReceiver());
    const old = await slow.claim('bob', 's1', 1);

    await nats.kill();
    await until(() => !slow.health().up && !fast.health().up, 'both see the bus down');
    await nats.restart();
    await until(() => fast.health().up, 'fast back');
    let taken: Claim | undefined;
    while (!taken) {
      // JetStream answers a moment after the restart; until then the claim rejects with a coded error.
      taken = await fast.claim('bob', 's2', 2).catch((err: unknown) => {
        expect(err).toBeInstanceOf(RouterError);
        return new Promise<undefined>((r) => setTimeout(r, 20));
      });
    }
    expect(slow.health().up).toBe(false); // the takeover could not reach it
    expect(rs.lostClaims).toEqual([]);

    await until(() => slow.health().up, 'slow back', 30_000);
    await until(() => rs.lostClaims.length > 0, 'slow told its claim is stale');
    // Told by the claims watch catching up (`by` the newer claim) or by the recheck of held claims (`by` null).
    expect(rs.lostClaims).toHaveLength(1);
    expect(rs.lostClaims[0]!.claim).toEqual(old);
    expect([null, taken]).toContainEqual(rs.lostClaims[0]!.by);
    expect(await slow.locate('bob')).toEqual(taken);
    await expect(slow.check(old)).rejects.toMatchObject({ code: 'STALE_EPOCH' });
  });
});

describe('NatsRouter: a node never heard from', () => {
  let nats: NatsServer | undefined;
  const routers: NatsRouter[] = [];
  let killChild: (() => void) | undefined;
  afterEach(async () => {
    killChild?.();
    for (const r of routers.splice(0)) await r.close();
    await nats?.close();
  });

  it('that took an envelope and then died before its first heartbeat here is still seen gone', async () => {
    nats = await startNatsServer();
    // The doomed node sends its first heartbeat at its start, before `a` listens, and its next one only in 10
    // minutes: `a` hears of it only through its answer, as a node started just before another dies would.
    const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/router-child.ts'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NATS_URL: nats.url, NODE_ID: 'quiet', BUS_PREFIX: 'quiet', HEARTBEAT_MS: '600000', CLAIM_KEY: 'carol' },
    });
    const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
    killChild = () => proc.kill('SIGKILL');
    const claim = await new Promise<Claim>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once('line', (line) => resolve(JSON.parse(line) as Claim));
      void exited.then(() => reject(new Error('router child exited before claiming')));
    });
    const a = new NatsRouter({ url: nats.url, nodeId: 'a', prefix: 'quiet', heartbeatMs: HEARTBEAT_MS, logger: createLogger('silent') });
    routers.push(a);
    const ra = new RecordingReceiver();
    await a.start(ra);
    const text = { k: 'text', to: 'carol', fromKey: 'ann', from: 'ann', id: 'm-quiet-1', text: 'hi', ts: 1, origin: 'a' } as const;
    expect(await a.deliver(text, claim)).toBe('taken');

    proc.kill('SIGKILL');
    await exited;
    // `a` holds a copy with it now (in the hub): it must be told the node is gone to queue it.
    await until(() => ra.gone.includes('quiet'), 'a sees the quiet node gone', 15_000);
    expect(await a.locate('carol')).toBeNull();
  });
});

class LinkReceiver extends RecordingReceiver {
  readonly linksLost: NodeId[] = [];
  /** A chunk's bytes are valid during the call only (as a transport's receive buffer): kept as a copy. */
  override envelope(claim: Claim, env: AddressedEnvelope): boolean {
    return super.envelope(claim, env.k === 'chunk' ? { ...env, bytes: Uint8Array.from(env.bytes) } : env);
  }
  linkLost(node: NodeId): void {
    this.linksLost.push(node);
  }
}

describe('NatsRouter with direct node links', () => {
  let nats: NatsServer | undefined;
  let proxy: TcpProxy | undefined;
  const routers: NatsRouter[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.close();
    await proxy?.close();
    await nats?.close();
  });

  it('forwards chunks and an ended over the link once it knows it, in order and epoch-checked; a cut link is told to both', async () => {
    nats = await startNatsServer();
    const log = createLogger('silent');
    const linkPort = await freePort();
    proxy = await startTcpProxy(linkPort);
    const a = new NatsRouter({ url: nats.url, nodeId: 'a', prefix: 'links', heartbeatMs: HEARTBEAT_MS, logger: log, link: { listen: { host: '127.0.0.1', port: 0 } } });
    const b = new NatsRouter({
      url: nats.url, nodeId: 'b', prefix: 'links', heartbeatMs: HEARTBEAT_MS, logger: log,
      link: { listen: { host: '127.0.0.1', port: linkPort }, announce: { host: '127.0.0.1', port: proxy.port } },
    });
    routers.push(a, b);
    const ra = new LinkReceiver();
    const rb = new LinkReceiver();
    await a.start(ra);
    await b.start(rb);
    const old = await b.claim('bob', 's0', 1);
    const c = await b.claim('bob', 's1', 2);
    // Any answered envelope's answer carries b's link (as the answer to a stream's offer does).
    expect(await a.deliver({ k: 'wake', to: 'bob' }, c)).toBe('taken');
    a.forward(old, { k: 'chunk', to: 'bob', bytes: new Uint8Array([9, 9, 9]) }); // a stale epoch: not handed over
    for (let i = 0; i < 100; i++) a.forward(c, { k: 'chunk', to: 'bob', bytes: new Uint8Array(70_000).fill(i) });
    a.forward(c, { k: 'stream', to: 'bob', fromKey: 'alice', origin: 'a', frame: { t: Op.StreamEnded, sid: 7, bytes: 7_000_000 } });
    await until(() => rb.envelopes.length === 102, 'the wake, 100 chunks and the ended');
    const envs = rb.envelopes.map((e) => e.env);
    expect(envs[0]!.k).toBe('wake');
    expect(envs.slice(1, 101).map((e) => { const bytes = (e as ChunkEnvelope).bytes; return [bytes.length, bytes[0], bytes[69_999]]; }))
      .toEqual(Array.from({ length: 100 }, (_, i) => [70_000, i, i]));
    expect(envs[101]).toMatchObject({ k: 'stream', frame: { t: Op.StreamEnded, sid: 7 } });
    expect(rb.envelopes.every((e) => e.claim.epoch === c.epoch)).toBe(true);
    expect(proxy.passed()).toBeGreaterThan(100 * 70_000); // over the link, not the bus

    proxy.cut();
    await until(() => ra.linksLost.length === 1 && rb.linksLost.length === 1, 'the cut link told to both nodes');
    expect(ra.linksLost).toEqual(['b']);
    expect(rb.linksLost).toEqual(['a']);
    expect(ra.gone).toEqual([]); // the nodes themselves are still there
  });
});

describe('NatsRouter with direct node links: requests', () => {
  let nats: NatsServer | undefined;
  let proxy: TcpProxy | undefined;
  let slow: TcpProxy | undefined;
  const routers: NatsRouter[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.close();
    await proxy?.close();
    await slow?.close();
    await nats?.close();
  });

  const text = (i: number, to = 'bob'): TextEnvelope => ({
    k: 'text', to, fromKey: 'ann', from: 'Ann', id: `m${i}`, text: `hello ${i} ${'x'.repeat(1000)}`, ts: i, origin: 'a',
  });
  const textIds = (r: RecordingReceiver): string[] => r.envelopes.filter((e) => e.env.k === 'text').map((e) => (e.env as TextEnvelope).id);

  it('move from the bus to the link once it is known, answered as on the bus and arriving in the order they were made', async () => {
    nats = await startNatsServer();
    const log = createLogger('silent');
    const linkPort = await freePort();
    proxy = await startTcpProxy(linkPort);
    // b reaches the bus through a slow network (15 ms each way) and its link directly: a request over the link
    // would overtake the ones before it on the bus. b's only heartbeat goes out before a listens, so a learns b's
    // link from the answer to its first request, while the requests of the next turns are already on the bus.
    const slowBus = await startTcpProxy(Number(new URL(nats.url).port), '127.0.0.1', 15);
    slow = slowBus;
    const b = new NatsRouter({
      url: `nats://127.0.0.1:${slowBus.port}`, nodeId: 'b', prefix: 'lreq', heartbeatMs: 600_000, logger: log,
      link: { listen: { host: '127.0.0.1', port: linkPort }, announce: { host: '127.0.0.1', port: proxy.port } },
    });
    const a = new NatsRouter({ url: nats.url, nodeId: 'a', prefix: 'lreq', heartbeatMs: HEARTBEAT_MS, logger: log, link: { listen: { host: '127.0.0.1', port: 0 } } });
    routers.push(a, b);
    const ra = new LinkReceiver();
    const rb = new LinkReceiver();
    await b.start(rb);
    await new Promise((r) => setTimeout(r, 200)); // b's heartbeat is through the slow network before a subscribes
    await a.start(ra);
    const bob = await b.claim('bob', 's1', 1);
    const statuses: Array<Promise<DeliveryStatus>> = [];
    for (let turn = 0; turn < 40; turn++) {
      for (let i = turn * 10; i < turn * 10 + 10; i++) statuses.push(a.deliver(text(i), bob));
      await new Promise((r) => setTimeout(r, 3));
    }
    expect(new Set(await Promise.all(statuses))).toEqual(new Set(['taken']));
    expect(textIds(rb)).toEqual(Array.from({ length: 400 }, (_, i) => `m${i}`));
    expect(proxy.passed()).toBeGreaterThan(100 * 1000); // most of them over the link
    // The settle back to a (a request of b's) takes b's own link to a, learnt from a's heartbeats.
    expect(await b.settle({ k: 'settled', node: 'a', fromKey: 'ann', id: 'm0', peer: 'Bob', state: 'delivered' })).toBe('taken');
    expect(ra.settledTexts.map((s) => s.id)).toEqual(['m0']);

    // A cut: the next request dials again, through the proxy.
    proxy.cut();
    await until(() => ra.linksLost.length === 1, 'the cut told to a');
    const before = proxy.passed();
    expect(await a.deliver(text(400), bob)).toBe('taken');
    expect(textIds(rb).at(-1)).toBe('m400');
    expect(proxy.passed()).toBeGreaterThan(before);

    // b cut off from the bus (its links still up) may hold claims taken over meanwhile: it answers `gone`, as the
    // bus does for a node that lost its connection, and takes nothing.
    await slowBus.close();
    await until(() => rb.healths.some((h) => !h.up), 'b sees the bus down');
    expect(await a.deliver(text(401), bob)).toBe('gone');
    expect(textIds(rb).at(-1)).toBe('m400');
  });

  it('to a node whose link cannot be dialled go over the bus, in order, and nothing is lost', async () => {
    nats = await startNatsServer();
    const log = createLogger('silent');
    const closedPort = await freePort();
    const a = new NatsRouter({ url: nats.url, nodeId: 'a', prefix: 'lbad', heartbeatMs: HEARTBEAT_MS, logger: log, link: { listen: { host: '127.0.0.1', port: 0 } } });
    // c announces a port nobody listens on (a wrong NODE_LINK_ANNOUNCE).
    const c = new NatsRouter({
      url: nats.url, nodeId: 'c', prefix: 'lbad', heartbeatMs: HEARTBEAT_MS, logger: log,
      link: { listen: { host: '127.0.0.1', port: 0 }, announce: { host: '127.0.0.1', port: closedPort } },
    });
    routers.push(a, c);
    const ra = new LinkReceiver();
    const rc = new LinkReceiver();
    await a.start(ra);
    await c.start(rc);
    const carol = await c.claim('carol', 's1', 1);
    const statuses: Array<Promise<DeliveryStatus>> = [];
    for (let turn = 0; turn < 20; turn++) {
      for (let i = turn * 10; i < turn * 10 + 10; i++) statuses.push(a.deliver(text(i, 'carol'), carol));
      await new Promise((r) => setImmediate(r));
    }
    expect(new Set(await Promise.all(statuses))).toEqual(new Set(['taken']));
    expect(textIds(rc)).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
    expect(ra.linksLost).toEqual(['c']); // the failed dial, as for stream traffic
    expect(await a.deliver(text(200, 'carol'), carol)).toBe('taken'); // and the bus from then on
  });
});
