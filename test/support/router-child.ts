/**
 * A NATS router node in its own process, for the contract's "a node that dies": it connects to NATS_URL as
 * node NODE_ID (with a direct node link when LINK is set), claims CLAIM_KEY, prints the claim as one JSON line, and waits to be killed with SIGKILL.
 */
import { NatsRouter } from '../../server/bus/nats-router.ts';
import { createLogger } from '../../server/core/logger.ts';

const router = new NatsRouter({
  url: process.env.NATS_URL!, nodeId: process.env.NODE_ID!, prefix: process.env.BUS_PREFIX,
  heartbeatMs: Number(process.env.HEARTBEAT_MS), logger: createLogger('silent'),
  link: process.env.LINK ? { listen: { host: '127.0.0.1', port: 0 } } : undefined,
});
await router.start({ envelope: () => true, settled: () => undefined, presence: () => undefined, lost: () => undefined, nodeGone: () => undefined, health: () => undefined });
const claim = await router.claim(process.env.CLAIM_KEY!, `${process.env.NODE_ID}-session`, 1);
process.stdout.write(JSON.stringify(claim) + '\n');
setInterval(() => undefined, 60_000);
