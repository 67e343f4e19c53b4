/**
 * `npm run cluster` (scripts/cluster.ts) for real: Debian's nats-server, two Parley nodes and Debian's nginx with
 * docs/nginx-parley.conf. Sign-in and WebSocket upgrades go through nginx and land on both nodes; Ctrl-C (SIGINT)
 * stops everything. A message between two users on different nodes is delivered live.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../support/harness.ts';
import { socketsPerNode, startNpmCluster, type NpmCluster } from '../support/npm-cluster.ts';

const h = new Harness();
const clusters: NpmCluster[] = [];
afterEach(async () => {
  await h.cleanup();
  for (const c of clusters.splice(0)) await c.stop();
});

describe('npm run cluster', () => {
  it('serves through nginx over two nodes on one NATS, and stops everything on Ctrl-C', async () => {
    const cluster = await startNpmCluster({ nodes: 2, dataDir: h.tempDir() });
    clusters.push(cluster);
    const { nodeUrls } = cluster;
    const out = cluster.output();
    const port = new URL(cluster.url).port;
    expect(out).toContain(`Parley cluster ready: http://127.0.0.1:${port}`);
    expect(out).not.toContain('not wired');
    expect(nodeUrls).toHaveLength(2);

    const front = { url: `http://127.0.0.1:${port}` };
    const names = ['ann', 'ben', 'cat', 'dan'];
    const clients = [];
    for (const name of names) {
      const c = h.client(front, await h.account(front, name));
      await c.connect(); // the upgrade went through nginx: `welcome` arrived
      clients.push(c);
    }
    const sockets = await socketsPerNode(cluster);
    expect(sockets.reduce((a, b) => a + b)).toBe(4);
    expect(sockets.every((n) => n > 0)).toBe(true);

    // Every pair of the four, wherever nginx put each: all delivered live, none queued.
    for (const [i, from] of clients.entries()) {
      const to = names[(i + 1) % names.length]!;
      const got = clients[(i + 1) % names.length]!.once('message', (m) => m.from === names[i]);
      const id = from.send(to, `hello ${to} through nginx`);
      const receipt = await from.once('receipt', (r) => r.id === id && (r.state === 'delivered' || r.state === 'queued'));
      expect(receipt.state).toBe('delivered');
      expect((await got).text).toBe(`hello ${to} through nginx`);
    }

    for (const c of clients) c.close();
    expect(await cluster.stop()).toBe(0);
    for (const u of [front.url, ...nodeUrls]) await expect(fetch(`${u}/healthz`)).rejects.toThrow();
  });
});
