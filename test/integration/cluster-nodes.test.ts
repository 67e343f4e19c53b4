/**
 * Three Parley nodes on one real nats-server and one shared store (the MongoDB wire stand-in over TCP): text
 * with its receipts across nodes, a queue filled through some nodes and drained through another, 100 sign-ins
 * of one name racing over the three nodes, presence, read receipts and typing across nodes, and a 200 MiB file
 * streamed from one node to another (CLUSTER_STREAM_MIB to change the size).
 *
 * These are the acceptance tests of the hub's wiring to the Router (docs/architecture.md, "What the hub wiring
 * must do"; server/core/router.ts): they state what a user sees, through the SDK or on the wire, never a private
 * field. One cluster serves the whole file (each test uses its own names); the fault tests, which break their
 * cluster, are in cluster-faults.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ParleyClient } from '../../client/sdk/client.ts';
import { sessionValid, signIn } from '../../client/sdk/http.ts';
import { Streams } from '../../client/sdk/streams.ts';
import { CloseCode } from '../../shared/codes.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { Cluster, within, type ClusterNode } from '../support/cluster.ts';
import { collect, Harness, PASSWORD, until, wsUrl } from '../support/harness.ts';
import { helloWire, wire, type Wire } from '../support/wire.ts';

const h = new Harness('mongodb');
let cluster: Cluster;
beforeAll(async () => {
  cluster = await Cluster.start(h, { nodes: 3 });
});
afterAll(async () => {
  await cluster?.close();
  await h.cleanup();
});
afterEach(() => {
  for (const c of h.clients.splice(0)) c.close();
  for (const ws of h.sockets.splice(0)) ws.terminate();
});

/** A signed-in, connected SDK client of `name` on `node`. */
async function user(node: ClusterNode, name: string, extra: Parameters<Harness['client']>[2] = {}): Promise<ParleyClient> {
  const c = h.client(node, await h.account(node, name), extra);
  await within(c.connect(), `${name} connected to ${node.id}`);
  return c;
}

/** Every receipt state `c` sees, per message id, in order. */
function states(c: ParleyClient): Map<string, string[]> {
  const out = new Map<string, string[]>();
  c.on('receipt', (r) => out.set(r.id, [...(out.get(r.id) ?? []), r.state]));
  return out;
}

describe('text across nodes', () => {
  it('is delivered live both ways, with accepted then delivered, never queued', async () => {
    const ann = await user(cluster.node(0), 'ann');
    const ben = await user(cluster.node(1), 'ben');
    const annStates = states(ann);
    const benStates = states(ben);
    const toBen = collect<IncomingMessage>((fn) => ben.on('message', fn));
    const toAnn = collect<IncomingMessage>((fn) => ann.on('message', fn));

    const ids = Array.from({ length: 10 }, (_, i) => ann.send('ben', `hello ${i} from node-1`));
    const back = Array.from({ length: 10 }, (_, i) => ben.send('ann', `hello ${i} from node-2`));
    await until(() => ids.every((id) => annStates.get(id)?.includes('delivered')) && back.every((id) => benStates.get(id)?.includes('delivered')),
      'delivered receipts both ways', 20_000).catch((err: Error) => {
      const last = (m: Map<string, string[]>, list: string[]) => list.map((id) => (m.get(id) ?? ['none']).join('>')).join(' ');
      throw new Error(`${err.message}: ann saw ${last(annStates, ids)}; ben saw ${last(benStates, back)}; ben got ${toBen.length}, ann got ${toAnn.length}`);
    });

    expect(toBen.map((m) => [m.from, m.text, m.queued])).toEqual(ids.map((_, i) => ['ann', `hello ${i} from node-1`, false]));
    expect(toAnn.map((m) => [m.from, m.text, m.queued])).toEqual(back.map((_, i) => ['ben', `hello ${i} from node-2`, false]));
    for (const id of ids) expect(annStates.get(id)!.filter((s) => s !== 'accepted')).toEqual(['delivered']);
    for (const id of back) expect(benStates.get(id)!.filter((s) => s !== 'accepted')).toEqual(['delivered']);
  });

  it('a resend of a delivered id is answered delivered and not sent to the recipient again', async () => {
    const cal = await user(cluster.node(2), 'cal');
    await h.account(cluster.node(0), 'dee');
    // dee on the wire: every message frame that reaches it counts, and it acks by hand.
    const dee = await helloWire(h.rawSocket(wsUrl(cluster.node(0).url), await h.account(cluster.node(0), 'dee', PASSWORD, { register: false })));
    const calStates = states(cal);
    const id = cal.send('dee', 'only once');
    const m = await within(dee.next(Op.Message, (f) => f.id === id), 'the message on node-1');
    dee.send({ t: Op.Ack, tags: [m.tag] });
    await until(() => calStates.get(id)?.includes('delivered') === true, 'delivered').catch((err: Error) => {
      throw new Error(`${err.message}: cal saw ${JSON.stringify(calStates.get(id))}; the message came ${m.queued ? 'from the queue' : 'live'}; dee's frames ${dee.frames.map((f) => f.t).join(',')}`);
    });
    cal.send('dee', 'only once', id); // the same id again, as after a reconnect
    await until(() => (calStates.get(id) ?? []).filter((s) => s === 'delivered').length === 2, 'the resend answered delivered');
    const marker = cal.send('dee', 'after');
    await within(dee.next(Op.Message, (f) => f.id === marker), 'the marker');
    expect(dee.frames.filter((f) => f.t === Op.Message && f.id === id)).toHaveLength(1);
  });

  it('read receipts and typing reach the other node', async () => {
    const eve = await user(cluster.node(0), 'eve');
    const fay = await user(cluster.node(2), 'fay');
    const id = eve.send('fay', 'read me');
    await within(fay.once('message', (m) => m.id === id), 'the message on node-3');
    const readBy = new Promise<[string, string[]]>((resolve) => eve.onRead((by, ids) => resolve([by, ids])));
    fay.read('eve', [id]);
    expect(await within(readBy, 'readBy on node-1')).toEqual(['fay', [id]]);
    const typing = new Promise<[string, boolean]>((resolve) => eve.onTyping((from, on) => resolve([from, on])));
    fay.typing('eve', true);
    expect(await within(typing, 'typingFrom on node-1')).toEqual(['fay', true]);
  });
});

describe('the queue across nodes', () => {
  it('fills through two nodes while the recipient is away and drains through the third: in order, exactly once, then delivered', async () => {
    const gus = await user(cluster.node(0), 'gus');
    const hal = await user(cluster.node(1), 'hal');
    const ivyToken = await h.account(cluster.node(2), 'ivy');
    const gusStates = states(gus);
    const halStates = states(hal);
    const fromGus = Array.from({ length: 30 }, (_, i) => gus.send('ivy', `gus ${i}`));
    const fromHal = Array.from({ length: 30 }, (_, i) => hal.send('ivy', `hal ${i}`));
    await until(() => fromGus.every((id) => gusStates.get(id)?.includes('queued')) && fromHal.every((id) => halStates.get(id)?.includes('queued')), 'queued');

    const ivy = h.client(cluster.node(2), ivyToken);
    const got = collect<IncomingMessage>((fn) => ivy.on('message', fn));
    await within(ivy.connect(), 'ivy connected');
    await until(() => got.length >= 60, 'the queue drained', 20_000);
    await until(() => fromGus.every((id) => gusStates.get(id)?.includes('delivered')) && fromHal.every((id) => halStates.get(id)?.includes('delivered')),
      'delivered receipts on the senders\' nodes', 20_000);

    // A marker sent last, live, arrives after the whole queue: nothing more is on its way.
    const marker = gus.send('ivy', 'marker');
    await within(ivy.once('message', (m) => m.id === marker), 'the live marker');
    const queued = got.filter((m) => m.id !== marker);
    expect(queued).toHaveLength(60);
    expect(new Set(queued.map((m) => `${m.from}/${m.id}`)).size).toBe(60);
    expect(queued.every((m) => m.queued)).toBe(true);
    expect(queued.filter((m) => m.from === 'gus').map((m) => m.text)).toEqual(fromGus.map((_, i) => `gus ${i}`));
    expect(queued.filter((m) => m.from === 'hal').map((m) => m.text)).toEqual(fromHal.map((_, i) => `hal ${i}`));
  });

  it('a delivered reached while the sender is away reaches the sender on another node when they are back', async () => {
    const jay = await user(cluster.node(0), 'jay');
    const kayToken = await h.account(cluster.node(1), 'kay');
    const jayStates = states(jay);
    const id = jay.send('kay', 'for later');
    await until(() => jayStates.get(id)?.includes('queued') === true, 'queued');
    jay.close();
    const kay = h.client(cluster.node(1), kayToken);
    await within(kay.connect(), 'kay connected');
    await within(kay.once('message', (m) => m.id === id), 'the queued message');
    // jay comes back on the third node with a new sign-in.
    const jay2 = h.client(cluster.node(2), await h.account(cluster.node(2), 'jay', PASSWORD, { register: false }));
    const delivered = jay2.once('receipt', (r) => r.id === id && r.state === 'delivered');
    await within(jay2.connect(), 'jay connected to node-3');
    await within(delivered, 'the delivered receipt on node-3');
  });
});

describe('one live session per name across nodes', () => {
  it('100 sign-ins of one name racing over three nodes leave exactly one socket, the newest sign-in\'s, which receives; every other is told and closed with 4001', async () => {
    await h.account(cluster.node(0), 'kim');
    const tokens: string[] = [];
    const attempts: Wire[] = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
      // Signed in on one node, the socket on another: every takeover crosses the bus.
      const { token } = await signIn({ baseUrl: cluster.node(i % 3).url }, 'kim', PASSWORD);
      tokens[i] = token;
      const w = wire(h.rawSocket(wsUrl(cluster.node((i + 1) % 3).url), token));
      await w.opened;
      w.send({ t: Op.Hello, v: PROTOCOL_VERSION });
      return w;
    }));
    let closed = 0;
    const closeOf = new Map<Wire, number>();
    const reasonOf = new Map<Wire, string>();
    const errorOf = new Map<Wire, string>();
    for (const w of attempts) {
      w.ws.on('error', (err) => errorOf.set(w, err.message));
      void w.closed.then((c) => {
        closed++;
        closeOf.set(w, c.code);
        reasonOf.set(w, c.reason);
      });
    }
    // What the test saw of one socket and of the rest, for a timeout's message.
    const opName = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));
    const seen = (w: Wire): string => {
      const i = attempts.indexOf(w);
      const frames = w.frames.map((f) => (f.t === Op.Error ? `Error(${f.code})` : String(opName[f.t] ?? f.t))).join(',');
      return `socket #${i} (signed in on node-${(i % 3) + 1}, socket on node-${((i + 1) % 3) + 1}), readyState ${w.ws.readyState}, ` +
        `close ${closeOf.get(w) ?? 'none'} ${JSON.stringify(reasonOf.get(w) ?? '')}${errorOf.has(w) ? ` after error ${JSON.stringify(errorOf.get(w))}` : ''}, frames [${frames}]`;
    };
    const overall = (): string => {
      const codes = [...closeOf.values()];
      const byCode = Object.fromEntries([...new Set(codes)].map((c) => [c, codes.filter((x) => x === c).length]));
      const welcomed = attempts.filter((w) => w.frames.some((f) => f.t === Op.Welcome)).map((w) => attempts.indexOf(w));
      const open = attempts.filter((w) => !closeOf.has(w)).map(seen);
      // The nodes' warnings and errors, counted by message.
      const logged = cluster.nodes.map((n) => {
        const msgs = n.child.logs.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => `${String(l.msg)}${l.err ? ` (${JSON.stringify(l.err).slice(0, 200)})` : ''}`);
        return `${n.id}: ${JSON.stringify(Object.fromEntries([...new Set(msgs)].map((m) => [m, msgs.filter((x) => x === m).length])))}`;
      });
      return `${closed} closed ${JSON.stringify(byCode)}; welcomed: [${welcomed.join(',')}]; not closed: ${open.join('; ') || 'none'}; node warnings: ${logged.join(', ')}`;
    };
    await until(() => closed >= 99, '99 of the 100 sockets closed', 30_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${overall()}`);
    });

    const open = attempts.filter((w) => w.ws.readyState === w.ws.OPEN);
    const codes0 = await Promise.all(attempts.filter((w) => !open.includes(w)).map((w) => w.closed.then((c) => c.code)));
    console.log(`100 racing sign-ins: ${open.length} open; close codes ${JSON.stringify(Object.fromEntries([...new Set(codes0)].map((c) => [c, codes0.filter((x) => x === c).length])))}`);
    expect(open).toHaveLength(1);
    const survivor = open[0]!;
    // The survivor is the newest sign-in: the one session the store left live (every other is marked replaced
    // and no longer signs anything in), whatever order the sockets' claims reached the fence in.
    const valid = await Promise.all(tokens.map((t, i) => sessionValid({ baseUrl: cluster.node(i % 3).url }, t)));
    expect(valid.filter((v) => v !== false)).toEqual([true]);
    expect(attempts.indexOf(survivor), overall()).toBe(valid.indexOf(true));
    // The survivor's welcome can come after the others closed: its claim of the name may still be on its way
    // (claims of one name are made one at a time per node), and until welcome any frame gets NOT_READY.
    await within(survivor.next(Op.Welcome), 'the survivor\'s welcome', 30_000, () => `${seen(survivor)}; ${overall()}`);
    survivor.send({ t: Op.Ping, n: 7 });
    await within(survivor.next(Op.Pong, (f) => f.n === 7), 'the survivor\'s pong', 15_000, () => `${seen(survivor)}; ${overall()}`);
    const others = attempts.filter((w) => w !== survivor);
    await Promise.all(others.map((w) => w.closed));
    // Every other socket, closed with 4001 after a takeover frame; any that was not is named with what it saw.
    expect(others.filter((w) => closeOf.get(w) !== CloseCode.TAKEOVER || !w.frames.some((f) => f.t === Op.Takeover)).map(seen), overall()).toEqual([]);

    // Whatever node a sender is on, the one survivor gets the message, and nobody else.
    const senders = await Promise.all(cluster.nodes.map((n, i) => user(n, `kimfan${i}`)));
    const ids = senders.map((s, i) => s.send('kim', `to kim from node ${i + 1}`));
    for (const id of ids) await within(survivor.next(Op.Message, (f) => f.id === id), 'a message on the survivor', 15_000, () => `${seen(survivor)}; ${overall()}`);
    expect(await cluster.online()).toBe(1 + senders.length);
  });
});

describe('presence across nodes', () => {
  it('a follower on one node sees a contact on another go online and offline, and no offline when the contact moves node', async () => {
    const lee = h.client(cluster.node(0), await h.account(cluster.node(0), 'lee'), { follow: ['max'] });
    const maxToken = await h.account(cluster.node(1), 'max');
    const seen = collect<{ name: string; online: boolean }>((fn) => lee.on('presence', fn));
    const first = lee.once('presence');
    await within(lee.connect(), 'lee connected');
    expect(await within(first, 'the first presence')).toEqual({ name: 'max', online: false });

    const online = lee.once('presence', (p) => p.online);
    const max1 = h.client(cluster.node(1), maxToken);
    await within(max1.connect(), 'max connected to node-2');
    expect(await within(online, 'online from node-2')).toEqual({ name: 'max', online: true });

    // max signs in again on node 3: node 2's socket is taken over; lee must not see max go offline.
    const taken = max1.once('state', (s) => s.to === 'closed');
    const max2 = h.client(cluster.node(2), await h.account(cluster.node(2), 'max', PASSWORD, { register: false }));
    await within(max2.connect(), 'max connected to node-3');
    expect((await within(taken, 'max on node-2 taken over')).reason).toBe('takeover');
    // A message from max's new node to lee and back proves both nodes have acted on the move.
    const ping = max2.send('lee', 'moved');
    await within(lee.once('message', (m) => m.id === ping), 'a message from max\'s new node');

    const offline = lee.once('presence', (p) => !p.online);
    max2.close();
    expect(await within(offline, 'offline after max closed')).toEqual({ name: 'max', online: false });
    const after = seen.slice(seen.findIndex((p) => p.online));
    expect(after.slice(0, -1).every((p) => p.online)).toBe(true);
    expect(after.at(-1)).toEqual({ name: 'max', online: false });
  });
});

describe('a file stream across nodes', () => {
  const MiB = 1024 * 1024;
  const WINDOW = 4 * MiB; // STREAM_WINDOW_KB's default, which the nodes run with

  it('arrives byte-exact; the sender never runs more than the window ahead; no node grows by more than a window and a constant', async () => {
    const size = Number(process.env.CLUSTER_STREAM_MIB ?? 200) * MiB;
    const ada = await user(cluster.node(0), 'ada');
    const bob = await user(cluster.node(1), 'bob');
    const as = new Streams(ada);
    const bs = new Streams(bob);
    const block = randomBytes(MiB + 13);
    const sent = createHash('sha256');
    const source = (async function* () {
      for (let at = 0, i = 0; at < size; i++) {
        const n = Math.min(size - at, 200 * 1024 + ((i * 7919) % (600 * 1024)));
        const piece = block.subarray(i % 13, (i % 13) + n);
        sent.update(piece);
        at += n;
        yield piece;
      }
    })();
    const got = createHash('sha256');
    let received = 0;
    let ahead = 0;
    const rssBefore = cluster.nodes.map((n) => n.rss());
    const peak = [...rssBefore];
    const sample = setInterval(() => cluster.nodes.forEach((n, i) => (peak[i] = Math.max(peak[i]!, n.rss()))), 50);
    // A node that dies mid-stream fails the test at once, with what it printed, instead of leaving the transfer
    // paused (waiting to resume) until the test's timeout.
    const died = Promise.race(cluster.nodes.map((n) => n.child.exited.then(({ code, signal }) => {
      throw new Error(`node ${n.id} exited (${code ?? signal}) during the stream; its stderr ends: ${n.child.stderr().slice(-3000)}`);
    })));
    died.catch(() => undefined);
    try {
      const offer = bs.once('offer');
      const out = as.sendFile('bob', source, { name: 'film.webm', size, mime: 'video/webm; codecs="vp9,opus"', container: 'webm' });
      const inc = (await within(Promise.race([offer, died]), 'the offer on node-2')).accept(WINDOW);
      // A transfer cut on the way pauses to resume (which does not cross nodes yet) instead of failing: say why.
      const paused = new Promise<never>((_, reject) => {
        const cut = (side: string) => (p: { why: { reason: string; message: string } }) =>
          reject(new Error(`the ${side} paused at ${received} of ${size} bytes: ${p.why.reason} ${p.why.message}`));
        out.on('paused', cut('sender'));
        inc.on('paused', cut('recipient'));
      });
      paused.catch(() => undefined);
      await Promise.race([died, paused, (async () => {
        for await (const chunk of inc) {
          got.update(chunk);
          received += chunk.byteLength;
          ahead = Math.max(ahead, out.sent - received);
        }
      })()]);
      expect(await within(out.done, 'the sender told the stream ended')).toEqual({ bytes: size });
    } finally {
      clearInterval(sample);
    }
    const growth = peak.map((p, i) => p - rssBefore[i]!);
    console.log(`cross-node stream: ${size / MiB} MiB; sender at most ${(ahead / MiB).toFixed(2)} MiB ahead of the recipient; ` +
      `RSS growth per node ${growth.map((g, i) => `${cluster.node(i).id} ${(g / MiB).toFixed(1)} MiB`).join(', ')}`);
    expect(received).toBe(size);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(ahead).toBeLessThanOrEqual(WINDOW);
    for (const g of growth) expect(g).toBeLessThan(WINDOW + 48 * MiB);
    for (const n of cluster.nodes) expect((await n.health()).streams).toBe(0);
  }, 120_000);
});
