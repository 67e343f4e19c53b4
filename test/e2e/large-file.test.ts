/**
 * A large file (1 GiB by default; LARGE_FILE_MIB to change) from one browser to another, made during the run:
 * Save at the recipient gives the same SHA-256, and the recipient's renderer stays small while it receives
 * and saves, because the bytes go to the Origin Private File System as they arrive.
 *
 * Alice and Bob use two browsers, so Bob's renderer processes (found in /proc under his browser, tagged by a
 * switch of its own) hold only his page and its disk worker. Their memory (PSS) is sampled every 100 ms;
 * the peak and the transfer rate are printed and written to test/.tmp/large-file.json, which
 * `npm run bench -- --only recv` runs this file to report (the target is under 300 MiB; a figure, not an
 * assertion, since the machine is shared).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Harness } from '../support/harness.ts';
import { buildInto, launchBrowser, poll, User } from './browser.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MiB = 1024 * 1024;
const SIZE = Number(process.env.LARGE_FILE_MIB ?? 1024) * MiB + 12_345;
const TAG = `--parley-recipient-${process.pid}`;
const h = new Harness();
const users: User[] = [];
let browsers: Browser[] = [];
let buildDir: string;
let dist: string;
let bigPath: string;
let bigHash: string;

/** Writes SIZE bytes fast: a random MiB repeated, each copy stamped with its index so no two MiB are equal. */
async function makeBigFile(path: string): Promise<string> {
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let at = 0, i = 0; at < SIZE; at += MiB, i++) {
    block.writeUInt32BE(i, 0);
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, SIZE - at)));
    hash.update(piece);
    if (!out.write(piece)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r())));
  return hash.digest('hex');
}

function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const hash = createHash('sha256');
    createReadStream(path).on('data', (d) => hash.update(d)).on('end', () => res(hash.digest('hex'))).on('error', rej);
  });
}

/** Proportional resident bytes (PSS) of the renderer processes under the browser started with TAG. */
function recipientRendererRss(): number {
  const procs = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  const parent = new Map<string, string>();
  const cmd = new Map<string, string>();
  for (const pid of procs) {
    try {
      cmd.set(pid, readFileSync(`/proc/${pid}/cmdline`, 'latin1'));
      parent.set(pid, /PPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))![1]!);
    } catch {
      // The process ended while we looked.
    }
  }
  const root = [...cmd].find(([, c]) => c.includes(TAG) && !c.includes('--type='))?.[0];
  if (!root) return 0;
  const under = (pid: string): boolean => {
    for (let p: string | undefined = pid, i = 0; p && i < 10; p = parent.get(p), i++) if (p === root) return true;
    return false;
  };
  let total = 0;
  for (const [pid, c] of cmd) {
    if (!c.includes('--type=renderer') || !under(pid)) continue;
    try {
      // Proportional set size: pages shared with the browser's other processes count by their share only.
      total += Number(/Pss:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))?.[1] ?? 0) * 1024;
    } catch {
      // Ended.
    }
  }
  return total;
}

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), 'parley-e2e-large-'));
  mkdirSync(join(ROOT, 'test/.tmp'), { recursive: true });
  bigPath = join(buildDir, 'large.bin');
  const [d, a, b, hash] = await Promise.all([buildInto(buildDir), launchBrowser(), launchBrowser([TAG]), makeBigFile(bigPath)]);
  dist = d;
  browsers = [a, b];
  bigHash = hash;
}, 180_000);

afterEach(async () => {
  await Promise.all(users.splice(0).map((u) => u.close().catch(() => undefined)));
  await h.cleanup();
});

afterAll(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

it(`a ${Math.round(SIZE / MiB)} MiB file arrives whole: Save gives the same SHA-256; the recipient's memory is reported`, async () => {
  const s = await h.server({ CLIENT_DIR: dist, MAX_FILE_MB: String(Math.ceil(SIZE / MiB) + 1) });
  const [alice, bob] = await Promise.all([User.open(browsers[0]!, s.url, 'alice'), User.open(browsers[1]!, s.url, 'bob')]);
  users.push(alice, bob);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact('bob');
  await alice.page.locator('.presence-line.online').waitFor();
  const [chooser] = await Promise.all([alice.page.waitForEvent('filechooser'), alice.page.getByRole('button', { name: 'Send a file' }).click()]);
  await chooser.setFiles(bigPath);
  await poll(() => bob.unread('alice'), 60_000).toBe('1');
  await bob.openConversation('alice');
  const card = bob.page.locator('.file-card.incoming').last();
  await card.waitFor();
  expect(await card.getAttribute('data-kind')).toBe('file');

  const baseline = recipientRendererRss();
  expect(baseline).toBeGreaterThan(0);
  let peak = baseline;
  const sampler = setInterval(() => { peak = Math.max(peak, recipientRendererRss()); }, 100);
  try {
    const started = performance.now();
    await card.getByRole('button', { name: 'Receive' }).click();
    await poll(() => card.getAttribute('data-state'), 600_000).toBe('done');
    const seconds = (performance.now() - started) / 1000;
    expect(await card.getAttribute('data-store')).toBe('disk');
    const [download] = await Promise.all([bob.page.waitForEvent('download'), card.getByRole('button', { name: 'Save' }).click()]);
    const saved = await download.path();
    clearInterval(sampler);
    peak = Math.max(peak, recipientRendererRss());
    expect(statSync(saved).size).toBe(SIZE);
    expect(await sha256File(saved)).toBe(bigHash);
    const report = {
      fileMiB: +(SIZE / MiB).toFixed(1), seconds: +seconds.toFixed(1), mibPerSec: +((SIZE / MiB) / seconds).toFixed(1),
      rendererBaselineMiB: +(baseline / MiB).toFixed(0), rendererPeakMiB: +(peak / MiB).toFixed(0),
    };
    console.log('recipient while receiving and saving', JSON.stringify(report));
    writeFileSync(join(ROOT, 'test/.tmp/large-file.json'), JSON.stringify(report, null, 2));
    await download.delete();
  } finally {
    clearInterval(sampler);
  }
  expect(await bob.allProblems()).toEqual([]);
}, 900_000);
