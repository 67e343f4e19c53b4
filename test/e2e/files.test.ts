/**
 * Any file to a contact, in real Chromium against a real server (two users, two browser contexts): for each
 * kind of file the recipient sees the right card, Save gives back the sender's very file (same name, same
 * size, same SHA-256), media the browser can decode starts playing before the last byte has arrived, an HEVC
 * video says its picture cannot be shown here, and no raw browser error text reaches the page.
 *
 * "Before the last byte": Bob's page takes the stream at about a quarter of the file's size per second with a
 * 32 KiB window (`?test-recv-rate=`, client/ui/knobs.ts), and the card records how many bytes had arrived
 * when the player first played (`data-first-play-received`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures, type Fixture, type FixtureKey } from '../../scripts/make-fixtures.ts';
import { Harness } from '../support/harness.ts';
import { buildInto, poll, launchBrowser, User } from './browser.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const h = new Harness();
const users: User[] = [];
let browser: Browser;
let buildDir: string;
let dist: string;
let fixtures: Record<FixtureKey, Fixture>;

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), 'parley-e2e-files-'));
  [dist, browser, fixtures] = await Promise.all([buildInto(buildDir), launchBrowser(), makeFixtures(join(ROOT, 'test/.tmp/fixtures'))]);
}, 120_000);

afterEach(async () => {
  await Promise.all(users.splice(0).map((u) => u.close().catch(() => undefined)));
  await h.cleanup();
});

afterAll(async () => {
  await browser?.close();
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

export function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const hash = createHash('sha256');
    createReadStream(path).on('data', (d) => hash.update(d)).on('end', () => res(hash.digest('hex'))).on('error', rej);
  });
}

interface Setup { alice: User; bob: User }

async function setup(rate?: number): Promise<Setup> {
  const s = await h.server({ CLIENT_DIR: dist });
  const query = rate ? `?test-recv-rate=${Math.round(rate)}&test-recv-window=32768` : '';
  const [alice, bob] = await Promise.all([User.open(browser, s.url, 'alice'), User.open(browser, s.url, 'bob', { query })]);
  users.push(alice, bob);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact('bob');
  await alice.page.locator('.presence-line.online').waitFor();
  return { alice, bob };
}

/** Alice picks `path` with the "Send a file" button; Bob opens the conversation and sees the offer. */
async function offer({ alice, bob }: Setup, path: string, name: string): Promise<void> {
  const [chooser] = await Promise.all([alice.page.waitForEvent('filechooser'), alice.page.getByRole('button', { name: 'Send a file' }).click()]);
  await chooser.setFiles(path);
  await alice.page.locator('.file-card.outgoing[data-state="offered"]').last().waitFor();
  await poll(() => bob.unread('alice')).toBe('1');
  await bob.openConversation('alice');
  const card = bob.page.locator('.file-card.incoming').last();
  await card.waitFor();
  expect(await card.locator('.file-name').textContent()).toBe(name);
}

const ACCEPT = { photo: 'Receive', video: 'Watch', audio: 'Listen', file: 'Receive' } as const;
const NOUN = { photo: 'photo', video: 'video', audio: 'audio file', file: 'file' } as const;
type Kind = keyof typeof ACCEPT;

interface Case { key: FixtureKey; kind: Kind; plays?: boolean; pictureFails?: boolean }

const CASES: Case[] = [
  { key: 'png', kind: 'photo' },
  { key: 'jpeg', kind: 'photo' },
  { key: 'mp3', kind: 'audio', plays: true },
  { key: 'm4a', kind: 'audio', plays: true },
  { key: 'pdf', kind: 'file' },
  { key: 'binary', kind: 'file' },
  { key: 'fakeMp4', kind: 'file' },
  { key: 'hevc', kind: 'video', pictureFails: true },
  { key: 'mkv', kind: 'video' },
  { key: 'mov', kind: 'video', plays: true },
  { key: 'mp4Faststart', kind: 'video', plays: true },
  { key: 'mp4MoovEnd', kind: 'video', plays: true },
  { key: 'fmp4', kind: 'video', plays: true },
  { key: 'webm', kind: 'video', plays: true },
];

/** Text of the page that would only be there if a browser error string leaked. */
const RAW_ERROR = /PIPELINE_|FFmpegDemuxer|DEMUXER_|CHUNK_DEMUXER|MEDIA_ERR|DOMException|NotSupportedError|QuotaExceeded|\bError:/;

async function sendAndSave(c: Case): Promise<void> {
  const f = fixtures[c.key];
  const size = statSync(f.path).size;
  const s = await setup(c.plays ? size / 4 : undefined);
  await offer(s, f.path, f.file);
  const { alice, bob } = s;
  const card = bob.page.locator('.file-card.incoming').last();
  expect(await card.getAttribute('data-kind')).toBe(c.kind);
  expect(await card.textContent()).toContain(`alice wants to send you a ${NOUN[c.kind]}.`);
  await card.getByRole('button', { name: ACCEPT[c.kind] }).click();
  await poll(() => card.getAttribute('data-state'), 60_000).toBe('done');
  expect(await card.getAttribute('data-store')).toBe('disk');
  await poll(() => alice.page.locator('.file-card.outgoing').last().getAttribute('data-state')).toBe('done');
  expect(await alice.page.locator('.file-card.outgoing .video-status').last().textContent()).toBe(`Sent. bob has the whole ${NOUN[c.kind]}.`);

  if (c.kind === 'photo') {
    const img = card.locator('img.photo-thumb');
    await poll(() => img.evaluate((i: HTMLImageElement) => i.naturalWidth)).toBeGreaterThan(0);
    await img.click();
    expect(await img.getAttribute('class')).toContain('full');
    await img.click();
  }
  if (c.plays) {
    const first = Number(await card.getAttribute('data-first-play-received'));
    expect(first, 'bytes arrived when playback started').toBeGreaterThan(0);
    expect(first).toBeLessThan(size);
    const media = card.locator(c.kind === 'audio' ? 'audio' : 'video');
    await poll(() => media.evaluate((m: HTMLMediaElement) => m.currentTime), 30_000).toBeGreaterThan(0.5);
    if (c.kind === 'video') {
      expect(await media.evaluate((v: HTMLVideoElement) => v.getVideoPlaybackQuality().totalVideoFrames)).toBeGreaterThan(0);
    }
  }
  if (c.pictureFails) {
    expect(await card.getAttribute('data-playable')).toBe('picture');
    expect(await card.locator('.video-note').textContent()).toBe(
      "The picture of this video can't be shown in this browser (it is H.265 (HEVC)). Save it and open it in another player.");
    expect(await card.locator('video').count()).toBe(0);
  }

  const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
  expect(download.suggestedFilename()).toBe(f.file);
  const saved = await download.path();
  expect(statSync(saved).size).toBe(size);
  expect(await sha256File(saved)).toBe(await sha256File(f.path));
  expect(await bob.page.locator('body').innerText()).not.toMatch(RAW_ERROR);
  expect(await bob.allProblems(), "bob's page").toEqual([]);
  expect(await alice.allProblems(), "alice's page").toEqual([]);
}

describe('any file in the browser', () => {
  for (const c of CASES) {
    it(`${c.key}: a ${c.kind} card; Save gives the same SHA-256${c.plays ? '; plays before the last byte' : ''}${c.pictureFails ? '; says the picture cannot be shown' : ''}`,
      () => sendAndSave(c), 90_000);
  }
});

describe('picking a file without the button', () => {
  it('a file dropped on the conversation, and one pasted into it, are sent; Save gives the same bytes', async () => {
    const s = await setup();
    const { alice, bob } = s;
    const png = fixtures.png;
    const bytes = [...readFileSync(png.path)];
    // Drop: a real DataTransfer holding a File, dispatched as the browser does for a drag from the desktop.
    await alice.page.evaluate(({ data, name }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(data)], name, { type: 'image/png' }));
      const target = document.querySelector('.conversation')!;
      target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, { data: bytes, name: 'dropped.png' });
    await poll(() => bob.unread('alice')).toBe('1');
    await bob.openConversation('alice');
    // Paste: a clipboard carrying a file, into the message box.
    await alice.page.evaluate(({ data, name }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(data)], name, { type: 'image/png' }));
      document.querySelector('.composer textarea')!.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }, { data: bytes, name: 'pasted.png' });
    const want = await sha256File(png.path);
    for (const name of ['dropped.png', 'pasted.png']) {
      const card = bob.page.locator('.file-card.incoming').filter({ has: bob.page.locator(`.file-name:text-is("${name}")`) });
      await card.waitFor();
      expect(await card.getAttribute('data-kind')).toBe('photo');
      await card.getByRole('button', { name: 'Receive' }).click();
      await poll(() => card.getAttribute('data-state')).toBe('done');
      const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
      expect(download.suggestedFilename()).toBe(name);
      expect(await sha256File(await download.path())).toBe(want);
    }
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });
});
