/**
 * The long moments of a file transfer, in real Chromium against a real server: preparing a large file shows
 * its progress on the sender's card and stops at Cancel; a transfer cut in the middle (the recipient's socket
 * dropped, then its page reloaded; or the sender's socket dropped) resumes from what the recipient already has
 * on disk, and either side can give it up meanwhile. The sender's page going away (a reload, connected or cut
 * off; a newer page of the same browser taking over) goes on from the copy of the file it kept, and a copy
 * that is gone is said so, with Give up.
 *
 * Preparation reads only an MP4's head and index, which is quick on a local disk, so Alice's page reads no
 * faster than `?test-prepare-rate=` (client/ui/knobs.ts): a slow disk, so the test can see progress and cancel
 * midway without any timing in its assertions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { browserSuite, CuttableLink, poll, User } from './browser.ts';

const MiB = 1024 * 1024;
const e2e = browserSuite();
const { h, users, links } = e2e;

/** An ISO BMFF box: 32-bit size, type, body. */
function box(type: string, ...body: Uint8Array[]): Buffer {
  const inner = Buffer.concat(body);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + inner.byteLength, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, inner]);
}

/**
 * An MP4 whose index (`moov`) comes first and is `indexBytes` long: preparation must read all of it, in steps,
 * to learn that the file holds no track (it then goes as a plain file).
 */
function bigIndexMp4(path: string, indexBytes: number): number {
  const ftyp = box('ftyp', Buffer.from('isom\0\0\x02\0isommp41', 'latin1'));
  const mvhd = Buffer.alloc(100);
  mvhd.writeUInt32BE(1000, 12);
  mvhd.writeUInt32BE(0x00010000, 20);
  mvhd.writeUInt16BE(0x0100, 24);
  mvhd.writeUInt32BE(1, 96);
  const file = Buffer.concat([ftyp, box('moov', box('mvhd', mvhd), box('free', Buffer.alloc(indexBytes)))]);
  writeFileSync(path, file);
  return file.byteLength;
}

async function pair(aliceQuery = '', bobQuery = ''): Promise<{ alice: User; bob: User }> {
  const s = await h.server({ CLIENT_DIR: e2e.dist });
  const [alice, bob] = await Promise.all([
    User.open(e2e.browser, s.url, 'alice', { query: aliceQuery }), User.open(e2e.browser, s.url, 'bob', { query: bobQuery }),
  ]);
  users.push(alice, bob);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact('bob');
  await alice.page.locator('.presence-line.online').waitFor();
  return { alice, bob };
}

describe('preparing a large file', () => {
  it("shows its progress on the sender's card, and Cancel stops it before the offer", async () => {
    const path = join(h.tempDir(), 'big-index.mp4');
    const size = bigIndexMp4(path, 96 * MiB);
    // 4 MB/s: the index takes about 25 s to read, far longer than the test needs to see it and cancel.
    const { alice, bob } = await pair('?test-prepare-rate=4000000');
    const [chooser] = await Promise.all([alice.page.waitForEvent('filechooser'), alice.page.getByRole('button', { name: 'Send a file' }).click()]);
    await chooser.setFiles(path);
    const card = alice.page.locator('.file-card.outgoing').last();
    await poll(() => card.getAttribute('data-state')).toBe('preparing');
    await poll(async () => Number(await card.getAttribute('data-prepared'))).toBeGreaterThan(MiB);
    const bar = card.locator('progress').first();
    expect(await bar.isVisible()).toBe(true);
    expect(Number(await bar.getAttribute('value'))).toBeGreaterThan(0);
    expect(await card.locator('.progress-line').first().textContent()).toMatch(/ of /);

    await card.getByRole('button', { name: 'Cancel' }).click();
    expect(await card.getAttribute('data-state')).toBe('cancelled');
    await poll(() => card.getAttribute('data-prepare')).toBe('stopped');
    const at = Number(await card.getAttribute('data-prepared'));
    expect(at).toBeLessThan(size);
    // Stopped: no read after the one in progress at the click.
    await alice.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
    expect(Number(await card.getAttribute('data-prepared'))).toBe(at);
    expect(await card.locator('.video-status').textContent()).toBe('You cancelled the file.');
    // Nothing was offered.
    expect(await bob.unread('alice')).not.toBe('1');
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });
});

function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const hash = createHash('sha256');
    createReadStream(path).on('data', (d) => hash.update(d)).on('end', () => res(hash.digest('hex'))).on('error', rej);
  });
}

/**
 * Alice sends Bob a random file, which Bob takes slowly (about an eighth of it per second); `via`'s page reaches
 * the server through a link the test can cut (every socket reset, new ones refused; the page can reload from
 * its service worker meanwhile, as a page on a train would). Returns once Bob has a quarter of it.
 */
async function startTransfer(via: 'bob' | 'alice' | 'none') {
  const link = await CuttableLink.open();
  links.push(link);
  const s = await h.server({ CLIENT_DIR: e2e.dist, ALLOWED_ORIGINS: link.url });
  link.target = new URL(s.url);
  const size = 6 * MiB + 1234;
  const path = join(h.tempDir(), 'cut.bin');
  writeFileSync(path, randomBytes(size));
  const window = 64 * 1024;
  // Bob takes about an eighth of the file per second, so a cut after a quarter lands in the middle.
  const bobQuery = `?test-recv-rate=${Math.round(size / 8)}&test-recv-window=${window}`;
  const [alice, bob] = await Promise.all([
    User.open(e2e.browser, via === 'alice' ? link.url : s.url, 'alice'),
    User.open(e2e.browser, via === 'bob' ? link.url : s.url, 'bob', { query: bobQuery }),
  ]);
  users.push(alice, bob);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact('bob');
  await alice.page.locator('.presence-line.online').waitFor();
  for (const u of via === 'none' ? [] : [via === 'bob' ? bob : alice]) {
    await u.page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await poll(() => u.page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
  }

  const [chooser] = await Promise.all([alice.page.waitForEvent('filechooser'), alice.page.getByRole('button', { name: 'Send a file' }).click()]);
  await chooser.setFiles(path);
  await poll(() => bob.unread('alice')).toBe('1');
  await bob.openConversation('alice');
  const card = bob.page.locator('.file-card.incoming').last();
  await card.getByRole('button', { name: 'Receive' }).click();
  await poll(async () => Number(await card.getAttribute('data-received')), 60_000).toBeGreaterThan(size / 4);
  const sent = alice.page.locator('.file-card.outgoing').last();
  // The sender's copy of the file (for a reload to go on with) is made once the file is accepted.
  await poll(() => sent.getAttribute('data-kept')).toBe('yes');
  return { s, link, alice, bob, card, sent, size, path, window };
}

/** `startTransfer`, then `cut`'s link is cut mid-way. Returns once both cards are paused. */
async function cutTransfer(cut: 'bob' | 'alice' = 'bob') {
  const t = await startTransfer(cut);
  const { link, card, sent } = t;
  link.cut();
  await poll(() => card.getAttribute('data-state')).toBe('paused');
  await poll(() => sent.getAttribute('data-state')).toBe('paused');
  const offline = 'Paused, waiting for the connection to come back…';
  expect(await sent.locator('.video-status').textContent()).toBe(cut === 'bob' ? 'Paused, waiting for bob to come back…' : offline);
  expect(await sent.locator('.video-note').textContent()).toBe(KEPT_NOTE);
  expect(await card.locator('.video-status').textContent()).toBe(cut === 'bob' ? offline : 'Paused, waiting for alice to come back…');
  expect(await card.getByRole('button', { name: 'Give up' }).isVisible()).toBe(true);
  expect(await sent.getByRole('button', { name: 'Give up' }).isVisible()).toBe(true);
  return t;
}

const KEPT_NOTE = 'A copy of the file is kept in this browser until it has arrived, so a reload does not stop it.';

/** What the sender's page keeps for resuming: its records in localStorage and its copies in IndexedDB. */
function sendersKept(u: User): Promise<{ records: string[]; copies: string[] }> {
  return u.page.evaluate(async () => {
    const records = Object.keys(localStorage).filter((k) => k.startsWith('parley.kept-sends.'));
    const db = await new Promise<IDBDatabase>((res, rej) => {
      const o = indexedDB.open('parley-sending', 1);
      o.onupgradeneeded = () => o.result.createObjectStore('files');
      o.onsuccess = () => res(o.result);
      o.onerror = () => rej(o.error);
    });
    const copies = await new Promise<string[]>((res, rej) => {
      const g = db.transaction('files').objectStore('files').getAllKeys();
      g.onsuccess = () => res(g.result.map(String));
      g.onerror = () => rej(g.error);
    });
    db.close();
    return { records, copies };
  });
}

/** Reaching the cut-off server fails as network errors (a request the cut caught midway gets an empty response); nothing else may complain. */
const CUT_OFF = /net::ERR_(?:CONNECTION_REFUSED|CONNECTION_RESET|SOCKET_NOT_CONNECTED|CONNECTION_CLOSED|EMPTY_RESPONSE)|WebSocket connection to '[^']+\/ws' failed/;

describe('a transfer cut in the middle', () => {
  it("the recipient's socket drops, then its page reloads: the transfer resumes from the bytes on disk; same SHA-256; relayed at most size + one window", async () => {
    const { s, link, alice, bob, sent, size, path, window } = await cutTransfer();
    const want = await sha256File(path);
    let card = bob.page.locator('.file-card.incoming').last();
    // Everything that arrived is written to disk, and written down for the reload.
    await poll(async () => Number(await card.getAttribute('data-kept'))).toBe(Number(await card.getAttribute('data-received')));
    const kept = Number(await card.getAttribute('data-kept'));
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(size);

    const res = await bob.page.reload();
    expect(res?.fromServiceWorker()).toBe(true);
    await bob.openConversation('alice');
    card = bob.page.locator('.file-card.incoming').last();
    await poll(() => card.getAttribute('data-state')).toBe('paused');
    expect(Number(await card.getAttribute('data-kept'))).toBe(kept);
    expect(Number(await card.getAttribute('data-received'))).toBe(kept);
    expect(await card.locator('.file-name').textContent()).toBe('cut.bin');
    expect(await card.locator('.video-status').textContent()).toBe('Paused, waiting for the connection to come back…');

    link.restore();
    await poll(() => card.getAttribute('data-state'), 120_000).toBe('done');
    await poll(() => sent.getAttribute('data-state')).toBe('done');
    expect(await sent.getAttribute('data-resumed')).toBe('1');
    const relayed = s.hub.streams.relayedBytes;
    expect(relayed).toBeGreaterThanOrEqual(size);
    expect(relayed, 'bytes relayed in total').toBeLessThanOrEqual(size + window);
    expect(Number(await sent.getAttribute('data-written'))).toBeLessThanOrEqual(size + window);

    const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
    const saved = await download.path();
    expect(statSync(saved).size).toBe(size);
    expect(await sha256File(saved)).toBe(want);
    expect((await bob.allProblems()).filter((p) => !CUT_OFF.test(p))).toEqual([]);
    expect(await alice.allProblems()).toEqual([]);
  }, 240_000);

  it("the sender's socket drops: the transfer resumes once the sender is back; same SHA-256; relayed at most size + one window", async () => {
    const { s, link, alice, bob, card, sent, size, path, window } = await cutTransfer('alice');
    link.restore();
    await poll(() => card.getAttribute('data-state'), 120_000).toBe('done');
    await poll(() => sent.getAttribute('data-state')).toBe('done');
    expect(await sent.getAttribute('data-resumed')).toBe('1');
    expect(await card.getAttribute('data-resumed')).toBe('1');
    expect(s.hub.streams.relayedBytes).toBeLessThanOrEqual(size + window);
    const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
    expect(await sha256File(await download.path())).toBe(await sha256File(path));
    expect((await alice.allProblems()).filter((p) => !CUT_OFF.test(p))).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  }, 240_000);

  it('the recipient gives up while cut off: the sender hears of it once the recipient is back, and nothing is kept', async () => {
    const { s, link, alice, bob, card, sent } = await cutTransfer();
    await card.getByRole('button', { name: 'Give up' }).click();
    await poll(() => card.getAttribute('data-state')).toBe('cancelled');
    expect(await card.locator('.video-status').textContent()).toBe('You stopped the file.');
    expect(await bob.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('parley.kept-transfers.')))).toEqual([]);
    await poll(() => bob.page.evaluate(async () => {
      const names: string[] = [];
      for await (const n of (await navigator.storage.getDirectory() as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(n);
      return names.filter((n) => n.startsWith('parley-recv-'));
    })).toEqual([]);
    expect(await sent.getAttribute('data-state')).toBe('paused'); // Bob's word has not reached anyone yet
    link.restore();
    await poll(() => sent.getAttribute('data-state'), 60_000).toBe('cancelled');
    expect(await sent.locator('.video-status').textContent()).toBe('bob stopped the file.');
    await poll(() => sendersKept(alice)).toEqual({ records: [], copies: [] });
    expect(s.hub.streams.pausedCount).toBe(0);
    expect((await bob.allProblems()).filter((p) => !CUT_OFF.test(p))).toEqual([]);
    expect(await alice.allProblems()).toEqual([]);
  }, 240_000);
});

/** Bob saves the file his card holds; its SHA-256. */
async function savedSha(bob: User, card: ReturnType<User['page']['locator']>, size: number): Promise<string> {
  const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
  const saved = await download.path();
  expect(statSync(saved).size).toBe(size);
  return sha256File(saved);
}

describe("the sender's page goes away in the middle", () => {
  it("the sender's page reloads: the new page goes on from its kept copy; same SHA-256; relayed at most size + one window; nothing kept after", async () => {
    const { s, alice, bob, card, size, path, window } = await startTransfer('none');
    await alice.page.reload();
    await alice.online();
    await alice.openConversation('bob');
    const sent = alice.page.locator('.file-card.outgoing').last();
    await poll(() => card.getAttribute('data-state'), 120_000).toBe('done');
    await poll(() => sent.getAttribute('data-state')).toBe('done');
    expect(await sent.locator('.file-name').textContent()).toBe('cut.bin');
    expect(await sent.getAttribute('data-resumed')).toBe('1');
    expect(await card.getAttribute('data-resumed')).toBe('1');
    expect(await sent.locator('.video-status').textContent()).toBe('Sent. bob has the whole file.');
    const relayed = s.hub.streams.relayedBytes;
    expect(relayed).toBeGreaterThanOrEqual(size);
    expect(relayed, 'bytes relayed in total').toBeLessThanOrEqual(size + window);
    expect(await savedSha(bob, card, size)).toBe(await sha256File(path));
    await poll(() => sendersKept(alice)).toEqual({ records: [], copies: [] });
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  }, 240_000);

  it("the sender's page reloads while cut off: its card comes back paused, and the transfer resumes once it is back", async () => {
    const { s, link, alice, bob, card, size, path, window } = await cutTransfer('alice');
    const res = await alice.page.reload();
    expect(res?.fromServiceWorker()).toBe(true);
    await alice.openConversation('bob');
    const sent = alice.page.locator('.file-card.outgoing').last();
    await poll(() => sent.getAttribute('data-state')).toBe('paused');
    expect(await sent.locator('.file-name').textContent()).toBe('cut.bin');
    expect(await sent.locator('.video-status').textContent()).toBe('Paused, waiting for the connection to come back…');
    expect(await sent.locator('.video-note').textContent()).toBe(KEPT_NOTE);
    expect(await sent.getByRole('button', { name: 'Give up' }).isVisible()).toBe(true);
    expect(await card.locator('.video-status').textContent()).toBe('Paused, waiting for alice to come back…');

    link.restore();
    await poll(() => card.getAttribute('data-state'), 120_000).toBe('done');
    await poll(() => sent.getAttribute('data-state')).toBe('done');
    expect(await sent.getAttribute('data-resumed')).toBe('1');
    expect(s.hub.streams.relayedBytes, 'bytes relayed in total').toBeLessThanOrEqual(size + window);
    expect(await savedSha(bob, card, size)).toBe(await sha256File(path));
    await poll(() => sendersKept(alice)).toEqual({ records: [], copies: [] });
    expect((await alice.allProblems()).filter((p) => !CUT_OFF.test(p))).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  }, 240_000);

  it('a newer page of the sender in the same browser takes over: it goes on from the kept copy, and the older page lets go', async () => {
    const { s, alice, bob, card, sent: older, size, path, window } = await startTransfer('none');
    await alice.newPage();
    await alice.online();
    await poll(() => older.getAttribute('data-state')).toBe('elsewhere');
    expect(await older.locator('.video-status').textContent()).toBe('This file goes on in your other Parley tab.');
    await alice.openConversation('bob');
    const sent = alice.page.locator('.file-card.outgoing').last();
    await poll(() => card.getAttribute('data-state'), 120_000).toBe('done');
    await poll(() => sent.getAttribute('data-state')).toBe('done');
    expect(await sent.getAttribute('data-resumed')).toBe('1');
    expect(await card.getAttribute('data-resumed')).toBe('1');
    expect(s.hub.streams.relayedBytes, 'bytes relayed in total').toBeLessThanOrEqual(size + window);
    expect(await savedSha(bob, card, size)).toBe(await sha256File(path));
    await poll(() => sendersKept(alice)).toEqual({ records: [], copies: [] });
    expect(await older.getAttribute('data-state')).toBe('elsewhere');
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  }, 240_000);

  it('the kept copy is gone: the reloaded card says the file can no longer be read, and Give up tells the recipient', async () => {
    const { s, link, alice, bob, card } = await cutTransfer('alice');
    // The copy goes behind the page's back (as when the person clears the site's storage), then the page reloads.
    await alice.page.evaluate(() => new Promise<void>((res, rej) => {
      const o = indexedDB.open('parley-sending', 1);
      o.onerror = () => rej(o.error);
      o.onsuccess = () => {
        const tx = o.result.transaction('files', 'readwrite');
        tx.objectStore('files').clear();
        tx.oncomplete = () => {
          o.result.close();
          res();
        };
        tx.onerror = () => rej(tx.error);
      };
    }));
    const res = await alice.page.reload();
    expect(res?.fromServiceWorker()).toBe(true);
    await alice.openConversation('bob');
    const sent = alice.page.locator('.file-card.outgoing').last();
    await poll(() => sent.getAttribute('data-unreadable')).toBe('yes');
    expect(await sent.getAttribute('data-state')).toBe('paused');
    expect(await sent.locator('.video-note').textContent()).toBe('This file can no longer be read here, so it cannot go on. Give up, then send it to bob again.');
    await sent.getByRole('button', { name: 'Give up' }).click();
    await poll(() => sent.getAttribute('data-state')).toBe('cancelled');
    expect(await sent.locator('.video-status').textContent()).toBe('You cancelled the file.');
    await poll(() => sendersKept(alice)).toEqual({ records: [], copies: [] });

    link.restore();
    await poll(() => card.getAttribute('data-state'), 60_000).toBe('cancelled');
    expect(await card.locator('.video-status').textContent()).toBe('alice cancelled the file.');
    await poll(() => s.hub.streams.pausedCount).toBe(0);
    expect((await alice.allProblems()).filter((p) => !CUT_OFF.test(p))).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  }, 240_000);
});
