/**
 * Faults of a Parley cluster (real nats-server, real node processes, one shared store: the MongoDB wire
 * stand-in): `kill -9` of the node holding a recipient while messages are in flight to it, a NATS restart, and
 * a node killed behind nginx while its users' clients reconnect through nginx by themselves. Each test prints
 * its counts of sent, delivered, queued, lost and duplicated messages; lost and duplicated must be 0.
 *
 * Acceptance tests of the hub's wiring to the Router (docs/architecture.md, "Failures" and "What the hub wiring
 * must do"). Each test breaks its own cluster.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { IncomingMessage, ParleyClient } from '../../client/sdk/client.ts';
import { Cluster, within, type ClusterNode } from '../support/cluster.ts';
import { collect, Harness, PASSWORD, until } from '../support/harness.ts';

const h = new Harness('mongodb');
let cluster: Cluster | undefined;
afterEach(async () => {
  for (const c of h.clients.splice(0)) c.close();
  await cluster?.close();
  cluster = undefined;
  await h.cleanup();
});

async function user(node: { url: string; id?: string }, name: string, extra: Parameters<Harness['client']>[2] = {}): Promise<ParleyClient> {
  const c = h.client(node, await h.account(node, name, PASSWORD), extra);
  await within(c.connect(), `${name} connected to ${node.id ?? node.url}`);
  return c;
}

/** The latest receipt state `c` has seen per message id, and every id that went `delivered` too early. */
function receipts(c: ParleyClient, recipientHas: (id: string) => boolean): { last: Map<string, string>; falseDelivered: string[] } {
  const last = new Map<string, string>();
  const falseDelivered: string[] = [];
  c.on('receipt', (r) => {
    if (r.state === 'delivered' && !recipientHas(r.id)) falseDelivered.push(r.id);
    if (last.get(r.id) !== 'delivered') last.set(r.id, r.state);
  });
  return { last, falseDelivered };
}

/** Resolves when `cond()` holds, asking it every 50 ms (for conditions read over HTTP). */
async function eventually(cond: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How many of `ids` are in each last state (`none` for no receipt yet), for failure messages. */
function tally(ids: string[], last: Map<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of ids) out[last.get(id) ?? 'none'] = (out[last.get(id) ?? 'none'] ?? 0) + 1;
  return out;
}

function report(label: string, sent: string[], got: IncomingMessage[], last: Map<string, string>): { lost: number; duplicated: number } {
  const ids = new Set(got.map((m) => m.id));
  const lost = sent.filter((id) => !ids.has(id)).length;
  const duplicated = got.length - ids.size;
  const count = (s: string) => sent.filter((id) => last.get(id) === s).length;
  console.log(`${label}: sent ${sent.length}, delivered ${count('delivered')}, queued ${count('queued')}, ` +
    `received ${ids.size}, lost ${lost}, duplicated ${duplicated}`);
  return { lost, duplicated };
}

describe('a node killed with kill -9', () => {
  it('while messages are in flight to its user: every one ends queued, none lost; the next sign-in elsewhere gets each once, in order; others notice nothing', async () => {
    cluster = await Cluster.start(h, { nodes: 3 });
    const [n1, n2, n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    const ann = await user(n1, 'ann');
    // ben's first client never acks: whatever reaches it stays in flight on node-2.
    const ben1 = await user(n2, 'ben', { beforeAck: () => new Promise<void>(() => undefined) });
    const carol = await user(n1, 'carol');
    const dan = await user(n3, 'dan');
    const seenBy1 = collect<IncomingMessage>((fn) => ben1.on('message', fn));
    const ben2Got: IncomingMessage[] = [];
    const annReceipts = receipts(ann, (id) => ben2Got.some((m) => m.id === id));

    const before = Array.from({ length: 50 }, (_, i) => ann.send('ben', `in flight ${i}`));
    await until(() => seenBy1.length === 50 && before.every((id) => annReceipts.last.get(id) === 'accepted'), 'all 50 in flight to ben on node-2');

    await cluster.kill(1);
    ben1.close(); // its node is gone; ben signs in again elsewhere below
    const after = Array.from({ length: 50 }, (_, i) => ann.send('ben', `after the kill ${i}`));
    const sent = [...before, ...after];
    // Users of the other nodes notice nothing.
    const danGot = collect<IncomingMessage>((fn) => dan.on('message', fn));
    const bystander = Array.from({ length: 20 }, (_, i) => carol.send('dan', `bystander ${i}`));
    await until(() => danGot.length >= 20, 'carol\'s messages to dan (node-1 to node-3) during the fault');

    await until(() => sent.every((id) => annReceipts.last.get(id) === 'queued'), 'every message to ben queued', 20_000).catch((err: Error) => {
      const seen = n1.child.logs.filter((l) => /gone|bus/.test(String(l.msg))).map((l) => `${String(l.msg)} ${JSON.stringify(l.node ?? l.gone ?? '')}`);
      throw new Error(`${err.message}: last states ${JSON.stringify(tally(sent, annReceipts.last))}; node-1 logged: ${seen.join('; ') || 'nothing about it'}`);
    });

    const ben2 = h.client(n3, await h.account(n3, 'ben', PASSWORD, { register: false }));
    ben2.on('message', (m) => ben2Got.push(m));
    await within(ben2.connect(), 'ben signed in on node-3');
    await until(() => sent.every((id) => ben2Got.some((m) => m.id === id)), 'ben\'s queue on node-3', 20_000);
    const marker = ann.send('ben', 'marker');
    await within(ben2.once('message', (m) => m.id === marker), 'a live message after the queue');
    await until(() => sent.every((id) => annReceipts.last.get(id) === 'delivered'), 'delivered receipts back on node-1');

    const got = ben2Got.filter((m) => m.id !== marker);
    const { lost, duplicated } = report('kill -9 of the recipient\'s node', sent, got, annReceipts.last);
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
    expect(annReceipts.falseDelivered).toEqual([]);
    expect(danGot.map((m) => m.text)).toEqual(bystander.map((_, i) => `bystander ${i}`));
    expect(got.map((m) => m.text)).toEqual([...before.map((_, i) => `in flight ${i}`), ...after.map((_, i) => `after the kill ${i}`)]);
  });
});

describe('NATS restarted', () => {
  it('messages during the outage queue (never a false delivered) and arrive once it is back; sign-ins wait for it; sends keep working after', async () => {
    cluster = await Cluster.start(h, { nodes: 3 });
    const [n1, n2, n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    const ann = await user(n1, 'ann');
    const ben = await user(n2, 'ben');
    const benGot = collect<IncomingMessage>((fn) => ben.on('message', fn));
    const annReceipts = receipts(ann, (id) => benGot.some((m) => m.id === id));
    const first = ann.send('ben', 'before the outage');
    await until(() => annReceipts.last.get(first) === 'delivered', 'a cross-node message before the outage');
    const danToken = await h.account(n3, 'dan');

    await cluster.natsKill();
    await eventually(async () => (await Promise.all(cluster!.nodes.map((n) => n.health()))).every((x) => !x.bus.up), 'every node sees the bus down');
    const during = Array.from({ length: 10 }, (_, i) => ann.send('ben', `during the outage ${i}`));
    await until(() => during.every((id) => ['queued', 'delivered'].includes(annReceipts.last.get(id) ?? '')), 'every message sent during the outage queued');
    // A node that cannot claim a name cannot let its user in: dan's client is refused, and retries by itself.
    const dan = h.client(n3, danToken);
    const danFirstAttempt = dan.once('state', (s) => s.to === 'reconnecting' || s.to === 'open' || s.to === 'closed');
    const danIn = dan.connect();
    const attempt = await within(danFirstAttempt, 'dan\'s first connection attempt');

    await cluster.natsStart();
    await eventually(async () => (await Promise.all(cluster!.nodes.map((n) => n.health()))).every((x) => x.bus.up), 'every node sees the bus up', 20_000);
    await within(danIn, 'dan connected once NATS is back', 20_000);
    await until(() => during.every((id) => benGot.some((m) => m.id === id)), 'ben got the messages of the outage', 30_000);
    const afterIds = [ann.send('ben', 'after the outage'), dan.send('ben', 'from dan on node-3')];
    await until(() => afterIds.every((id) => benGot.some((m) => m.id === id)), 'messages sent after the restart');
    await until(() => during.every((id) => annReceipts.last.get(id) === 'delivered'), 'delivered receipts for the outage\'s messages');

    const { lost, duplicated } = report('NATS restart', [first, ...during], benGot.filter((m) => m.from === 'ann' && !afterIds.includes(m.id)), annReceipts.last);
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
    expect(annReceipts.falseDelivered).toEqual([]);
    expect(benGot.filter((m) => during.includes(m.id)).map((m) => m.text)).toEqual(during.map((_, i) => `during the outage ${i}`));
    // Checked last so that the rest is seen either way: dan's session must not have gone live without a claim.
    expect(attempt.to).toBe('reconnecting');
  });
});

describe('behind nginx', () => {
  it('a node killed behind nginx: its user\'s client reconnects through nginx to the other node by itself and gets everything once', async () => {
    cluster = await Cluster.start(h, { nodes: 2, nginx: true });
    const front = cluster.front!;
    const sockets = async () => Promise.all(cluster!.nodes.map(async (n) => (await n.health()).sockets));
    // least_conn: ben lands on one node, then ann on the other.
    const ben = await user(front, 'ben');
    const benNode = (await sockets()).findIndex((n) => n === 1);
    const ann = await user(front, 'ann');
    expect(await sockets()).toEqual([1, 1]);
    const benGot = collect<IncomingMessage>((fn) => ben.on('message', fn));
    const annReceipts = receipts(ann, (id) => benGot.some((m) => m.id === id));
    const before = Array.from({ length: 10 }, (_, i) => ann.send('ben', `live ${i}`));
    await until(() => before.every((id) => annReceipts.last.get(id) === 'delivered'), 'live cross-node delivery through nginx');

    const back = ben.once('welcome');
    await cluster.kill(benNode);
    const after = Array.from({ length: 20 }, (_, i) => ann.send('ben', `after the kill ${i}`));
    await within(back, 'ben\'s client back through nginx', 20_000);
    await until(() => after.every((id) => benGot.some((m) => m.id === id)), 'ben got the messages sent around the kill', 20_000);
    await until(() => after.every((id) => annReceipts.last.get(id) === 'delivered'), 'delivered receipts');

    const { lost, duplicated } = report('kill -9 behind nginx', [...before, ...after], benGot, annReceipts.last);
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
    expect(annReceipts.falseDelivered).toEqual([]);
    expect(await cluster.nodes[1 - benNode]!.health()).toMatchObject({ sockets: 2 });
  });
});
