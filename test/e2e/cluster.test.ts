/**
 * The page through nginx in front of two Parley nodes (`npm run cluster`: Debian's nats-server and nginx, the
 * nodes sharing one embedded store on this machine), in real Chromium. nginx spreads sockets by least
 * connections, so Alice's and Bob's sockets land on different nodes (checked from each node's /healthz). The
 * two then see each other online and chat both ways with delivered and read states, as on one node; a sign-in
 * of Bob in a second browser takes over his first page wherever that page's socket was held.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { socketsPerNode, startNpmCluster, type NpmCluster } from '../support/npm-cluster.ts';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;
const clusters: NpmCluster[] = [];

afterEach(async () => {
  await Promise.all(users.splice(0).map((u) => u.close().catch(() => undefined)));
  for (const c of clusters.splice(0)) await c.stop();
});

describe('the page through nginx over two nodes', () => {
  it('two users on different nodes see each other online, chat with receipts, and a second sign-in takes over', async () => {
    const cluster = await startNpmCluster({ nodes: 2, dataDir: h.tempDir(), env: { CLIENT_DIR: e2e.dist } });
    clusters.push(cluster);

    const alice = await User.open(e2e.browser, cluster.url, 'alice');
    users.push(alice);
    await alice.signUp();
    await poll(() => socketsPerNode(cluster).then((n) => n.reduce((a, b) => a + b))).toBe(1);
    const bob = await User.open(e2e.browser, cluster.url, 'bob');
    users.push(bob);
    await bob.signUp();
    await poll(() => socketsPerNode(cluster)).toEqual([1, 1]);

    await alice.addContact('bob');
    await alice.page.locator('.presence-line.online').waitFor();
    await alice.send('hello across nodes');
    await poll(() => alice.outgoing()).toEqual([['hello across nodes', 'delivered']]);
    await poll(() => bob.unread('alice')).toBe('1');
    await bob.openConversation('alice');
    expect(await bob.texts()).toEqual(['hello across nodes']);
    await poll(() => alice.outgoing()).toEqual([['hello across nodes', 'read']]);
    await bob.page.locator('.presence-line.online').waitFor();
    await bob.send('and back again');
    await poll(() => alice.texts()).toEqual(['hello across nodes', 'and back again']);
    await poll(() => bob.outgoing()).toEqual([['and back again', 'read']]);

    // Bob signs in again in another browser context: his first page is told, wherever its socket was.
    const bob2 = await User.open(e2e.browser, cluster.url, 'bob');
    users.push(bob2);
    await bob2.signIn();
    const banner = bob.page.locator('.banner[data-reason="takeover"]');
    await banner.waitFor();
    expect(await banner.textContent()).toContain('somewhere else');
    await poll(() => socketsPerNode(cluster).then((n) => n.reduce((a, b) => a + b))).toBe(2);
    for (const u of [alice, bob, bob2]) expect(await u.allProblems(), `${u.name}'s page`).toEqual([]);
  });
});
