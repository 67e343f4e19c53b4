/**
 * The in-process router (the default: one node, no bus) against the Router contract. Its "two nodes" are two
 * routers on one LocalBus; a doomed node is a third one that `crash()`es (leaves without releasing anything).
 */
import { defineRouterContract } from '../contract/router.contract.ts';
import { LocalBus, LocalRouter } from '../../server/core/local-router.ts';

defineRouterContract('in-process', async () => {
  const bus = new LocalBus();
  const routers: LocalRouter[] = [];
  return {
    node(nodeId) {
      const r = new LocalRouter({ nodeId, bus });
      routers.push(r);
      return r;
    },
    async doomed(nodeId, key) {
      const r = new LocalRouter({ nodeId, bus });
      await r.start({ envelope: () => true, settled: () => undefined, presence: () => undefined, lost: () => undefined, nodeGone: () => undefined, health: () => undefined });
      const claim = await r.claim(key, `${nodeId}-session`, 1);
      return { nodeId, claim, kill: async () => r.crash() };
    },
    goneWithin: 'at once (same process)',
    async cleanup() {
      for (const r of routers) await r.close();
    },
  };
});
