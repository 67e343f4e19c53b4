/**
 * The installable page in real Chromium: the manifest and the service worker are served as an installed app
 * needs them (the worker from the root, `no-cache`, allowed by the CSP), the worker keeps the app shell, and
 * with the server out of reach a reload opens the page from that copy to the history kept in IndexedDB, saying
 * that it is offline.
 */
import { describe, expect, it } from 'vitest';
import { browserSuite, CuttableLink, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users, links } = e2e;

describe('installable page', () => {
  it('serves the manifest and the worker, and opens offline to the history', async () => {
    // The page reaches the server through a link the test can cut: every socket reset, new ones refused (the
    // server's own stop leaves keep-alive connections answering). The server is told the link's origin.
    const link = await CuttableLink.open();
    links.push(link);
    const s = await h.server({ CLIENT_DIR: e2e.dist, ALLOWED_ORIGINS: link.url });
    link.target = new URL(s.url);
    const sw = await fetch(`${s.url}/sw.js`);
    expect(sw.status).toBe(200);
    expect(sw.headers.get('cache-control')).toBe('no-cache');
    expect(sw.headers.get('content-type')).toMatch(/^text\/javascript/);
    const manifest = await fetch(`${s.url}/manifest.webmanifest`);
    expect(manifest.headers.get('content-type')).toBe('application/manifest+json');
    expect(await manifest.json()).toMatchObject({ name: 'Parley', start_url: '/', display: 'standalone' });

    const [alice, bob] = await Promise.all([User.open(e2e.browser, link.url, 'alice'), User.open(e2e.browser, s.url, 'bob')]);
    users.push(alice, bob);
    await Promise.all([alice.signUp(), bob.signUp()]);
    await alice.addContact('bob');
    await alice.send('kept for the train');
    await poll(() => alice.outgoing()).toEqual([['kept for the train', 'delivered']]);
    // The worker is installed and controls the page once it is active (clients.claim()).
    await alice.page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await poll(() => alice.page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);

    link.cut();
    await expect(fetch(`${link.url}/`)).rejects.toThrow(); // really gone: the page below comes from the worker
    const res = await alice.page.reload();
    expect(res?.fromServiceWorker()).toBe(true);
    await alice.page.locator('.conn-pill[data-state="offline"]').waitFor();
    expect(await alice.page.textContent('.conn-pill')).toBe('Offline');
    expect(await alice.page.getAttribute('.banner', 'data-reason')).toBe('offline');
    await poll(() => alice.texts()).toEqual(['kept for the train']);
    expect(await alice.page.textContent('.conv-head h2')).toBe('bob');
    // The page's own attempts to reach the cut-off server fail as network errors (a socket reconnecting while the
    // link is cut is closed before its handshake); nothing else may complain.
    const cutOff = /net::ERR_(?:CONNECTION_REFUSED|CONNECTION_RESET|SOCKET_NOT_CONNECTED|EMPTY_RESPONSE)|WebSocket connection to '[^']+\/ws' failed: Connection closed before receiving a handshake response/;
    const problems = (await alice.allProblems()).filter((p) => !cutOff.test(p));
    expect(problems).toEqual([]);
  });
});
