/**
 * Router rows of `npm run bench` (`--only router`): what the seam costs per envelope.
 *
 *   in-process  deliver() to a name held on the same bus, against the bare minimum (a Map lookup and a call), so
 *               the default one-node path shows its price;
 *   nats        deliver() from one node to a name held by another on a real nats-server: one at a time (latency)
 *               and 64 in flight, to a known claim and by name (through the node's mirror of the claims), and
 *               the JetStream KV reads behind locate() and check(); then the same deliveries between two nodes
 *               with direct node links (requests over the link instead of the bus), with the CPU both spent.
 *
 * Both NATS nodes and the nats-server share this machine's two cores with each other; the CPU columns are this
 * process (both nodes) and nats-server, per envelope.
 */
import { NatsRouter } from '../../server/bus/nats-router.ts';
import { LocalBus, LocalRouter } from '../../server/core/local-router.ts';
import { createLogger } from '../../server/core/logger.ts';
import type { Claim, Router, RouterReceiver, TextEnvelope } from '../../server/core/router.ts';
import { startNatsServer } from '../../test/support/nats-server.ts';
import { cpuSeconds, selfCpuSeconds, table } from './lib.ts';

const taker: RouterReceiver = { envelope: () => true, settled: () => undefined, presence: () => undefined, lost: () => undefined, nodeGone: () => undefined, health: () => undefined };

function envelope(origin: string): TextEnvelope {
  return { k: 'text', to: 'bob', fromKey: 'alice', from: 'alice', id: 'bench-message-id-0001', text: 'hello', ts: Date.now(), origin };
}

/** Nanoseconds per call of `fn`, over `n` calls after a warm-up. */
async function nsPerOp(n: number, fn: () => unknown | Promise<unknown>): Promise<number> {
  for (let i = 0; i < n / 10; i++) await fn();
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  return Number(process.hrtime.bigint() - t) / n;
}

/** Envelopes per second over `seconds`, `inFlight` at a time. */
async function rate(seconds: number, inFlight: number, fn: () => Promise<unknown>): Promise<{ perSec: number; p50Ms: number; done: number }> {
  const end = Date.now() + seconds * 1000;
  const lat: number[] = [];
  let done = 0;
  const lane = async (): Promise<void> => {
    while (Date.now() < end) {
      const t = process.hrtime.bigint();
      await fn();
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      done++;
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: inFlight }, lane));
  lat.sort((a, b) => a - b);
  return { perSec: done / ((Date.now() - t0) / 1000), p50Ms: lat[Math.floor(lat.length / 2)] ?? 0, done };
}

export async function runRouter(seconds: number): Promise<void> {
  // In-process: the default, one node and no bus.
  const bus = new LocalBus();
  const a = new LocalRouter({ nodeId: 'a', bus });
  const b = new LocalRouter({ nodeId: 'b', bus });
  await a.start(taker);
  await b.start(taker);
  const held = await b.claim('bob', 's1', 1);
  const env = envelope('a');
  const online = new Map([['bob', held]]);
  const n = 2_000_000;
  const baseline = await nsPerOp(n, () => online.get('bob') && taker.envelope(held, env));
  const now = await nsPerOp(n, () => a.deliverNow(env));
  const promised = await nsPerOp(n, () => a.deliver(env));
  table('router, in-process (the default): cost of one delivery to a held name, ns per envelope', ['path', 'ns/envelope', 'vs Map lookup + call'], [
    ['Map lookup + call (what the hub does today)', baseline.toFixed(0), '1.00x'],
    ['LocalRouter.deliverNow', now.toFixed(0), (now / baseline).toFixed(2) + 'x'],
    ['await LocalRouter.deliver', promised.toFixed(0), (promised / baseline).toFixed(2) + 'x'],
  ]);

  // NATS: two nodes in this process, each with its own connection, on a real nats-server.
  const nats = await startNatsServer();
  const log = createLogger('silent');
  const routers: Router[] = [];
  try {
    const na = new NatsRouter({ url: nats.url, nodeId: 'bench-a', logger: log });
    const nb = new NatsRouter({ url: nats.url, nodeId: 'bench-b', logger: log });
    routers.push(na, nb);
    await na.start(taker);
    await nb.start(taker);
    const claim: Claim = await nb.claim('bob', 's1', 1);
    const e = envelope('bench-a');
    // The same two nodes' deliveries with direct links: requests to a node whose link is known go over it.
    const link = { listen: { host: '127.0.0.1', port: 0 } };
    const la = new NatsRouter({ url: nats.url, nodeId: 'bench-la', prefix: 'linked', logger: log, link });
    const lb = new NatsRouter({ url: nats.url, nodeId: 'bench-lb', prefix: 'linked', logger: log, link });
    routers.push(la, lb);
    await la.start(taker);
    await lb.start(taker);
    const linkedClaim: Claim = await lb.claim('bob', 's1', 1);
    const le = envelope('bench-la');
    await la.deliver(le, linkedClaim); // its answer carries lb's link, should no heartbeat have yet
    const rows: Array<Array<string | number>> = [];
    for (const [label, inFlight, fn] of [
      ['deliver to a known claim, 1 in flight', 1, () => na.deliver(e, claim)],
      ['deliver to a known claim, 64 in flight', 64, () => na.deliver(e, claim)],
      ['deliver to a known claim, 1024 in flight', 1024, () => na.deliver(e, claim)],
      ['deliver by name (claims mirror), 1 in flight', 1, () => na.deliver(e)],
      ['deliver by name (claims mirror), 64 in flight', 64, () => na.deliver(e)],
      ['locate (KV read), 64 in flight', 64, () => na.locate('bob')],
      ['fence check (KV read), 64 in flight', 64, () => na.check(claim)],
      ['over the direct link: deliver to a known claim, 1 in flight', 1, () => la.deliver(le, linkedClaim)],
      ['over the direct link: deliver to a known claim, 64 in flight', 64, () => la.deliver(le, linkedClaim)],
      ['over the direct link: deliver to a known claim, 1024 in flight', 1024, () => la.deliver(le, linkedClaim)],
    ] as const) {
      const cpu0 = selfCpuSeconds();
      const nats0 = nats.pid ? cpuSeconds(nats.pid) : 0;
      const r = await rate(seconds, inFlight, fn);
      const n = r.done;
      const nodesUs = ((selfCpuSeconds() - cpu0) * 1e6) / n;
      const natsUs = ((nats.pid ? cpuSeconds(nats.pid) : 0) - nats0) * 1e6 / n;
      rows.push([label, r.perSec.toFixed(0), r.p50Ms.toFixed(2), nodesUs.toFixed(1), natsUs.toFixed(1)]);
    }
    table(`router, NATS: node to node on one nats-server (both nodes and the server on this machine), ${seconds} s each`,
      ['operation', 'per second', 'p50 ms', 'nodes CPU µs/op', 'nats-server CPU µs/op'], rows);
  } finally {
    for (const r of routers) await r.close();
    await nats.close();
    await a.close();
    await b.close();
  }
}


