/**
 * Video that plays while it arrives, in real Chromium (Debian's, headless).
 *
 * The fixtures are made by scripts/make-fixtures.ts with ffmpeg. A node:http server on port 0 serves them
 * and a page bundling client/media (test/support/media-harness.ts). In the page, prepare() turns a fixture
 * into the bytes a sender would send, and they reach createPlayer() in small pieces spread over a few
 * seconds, so we can check that the video was playing before the last piece was pushed.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { ISOFile } from 'mp4box';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepare, rangedSource } from '../../client/media/prepare.ts';
import { makeFixtures, type Fixture, type FixtureKey } from '../../scripts/make-fixtures.ts';
import type { PlayCase, PlayReport, PrepareReport } from '../support/media-harness.ts';
import { playerBytes } from '../support/player-bytes.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const BASE_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];
const MiB = 1024 * 1024;
const run = promisify(execFile);

let fixtures: Record<FixtureKey, Fixture>;
let server: Server;
let origin: string;

async function startServer(bundle: string, diskWorker: string): Promise<void> {
  const byFile = new Map(Object.values(fixtures).map((f) => [f.file, f]));
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const send = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/') {
      send(200, 'text/html; charset=utf-8',
        '<!doctype html><meta charset="utf-8"><title>media</title><body><script type="module" src="/harness.js"></script>');
    } else if (path === '/harness.js') {
      send(200, 'text/javascript; charset=utf-8', bundle);
    } else if (path === '/disk-worker.js') {
      send(200, 'text/javascript; charset=utf-8', diskWorker);
    } else if (path.startsWith('/fixtures/') && byFile.has(basename(path))) {
      const f = byFile.get(basename(path))!;
      readFile(f.path).then((body) => send(200, f.contentType, body), (err: unknown) => send(500, 'text/plain', String(err)));
    } else {
      send(404, 'text/plain', 'not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function openPage(browser: Browser): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => typeof window.mediaHarness === 'object');
  return page;
}

function url(key: FixtureKey): string {
  return `/fixtures/${fixtures[key].file}`;
}

async function playIn(page: Page, c: PlayCase): Promise<PlayReport> {
  return page.evaluate((arg) => window.mediaHarness.play(arg), c);
}

beforeAll(async () => {
  fixtures = await makeFixtures(join(ROOT, 'test/.tmp/fixtures'));
  const opts = { bundle: true, write: false, format: 'esm', platform: 'browser', target: 'chrome120', logLevel: 'silent' } as const;
  const [harness, worker] = await Promise.all([
    build({ ...opts, entryPoints: [join(ROOT, 'test/support/media-harness.ts')] }),
    build({ ...opts, entryPoints: [join(ROOT, 'client/media/disk-worker.ts')] }),
  ]);
  await startServer(harness.outputFiles[0]!.text, worker.outputFiles[0]!.text);
});

afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

/** Packets per stream, as ffprobe counts them: what a re-mux must keep. */
async function packets(path: string): Promise<string> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-count_packets', '-show_entries',
    'stream=codec_name,nb_read_packets', '-of', 'csv=p=0', path]);
  return stdout.trim();
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c.slice());
  return Buffer.concat(parts);
}

// prepare() needs only Blob, so its byte-level promises are checked under Node, where ffprobe can judge them.
describe('prepare() under Node', () => {
  let dir: string;

  beforeAll(async () => {
    await mkdir(join(ROOT, 'test/.tmp'), { recursive: true });
    dir = await mkdtemp(join(ROOT, 'test/.tmp/prepare-'));
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('re-muxes regular MP4 into fragmented MP4 that keeps every packet', async () => {
    for (const key of ['mp4Faststart', 'mp4MoovEnd', 'longMoovEnd'] as const) {
      const blob = new Blob([await readFile(fixtures[key].path)]);
      const p = await prepare(blob);
      expect(p.container).toBe('mp4');
      const out = await collect(playerBytes(blob, p, 256 * 1024));
      // Deterministic: a second run gives the same bytes.
      expect(createHash('sha256').update(await collect(playerBytes(blob, p, 256 * 1024))).digest('hex'))
        .toBe(createHash('sha256').update(out).digest('hex'));
      // Fragmented: the init segment (ftyp, moov with mvex), then moof/mdat pairs.
      expect(out.subarray(4, 8).toString('latin1')).toBe('ftyp');
      expect(out.includes('mvex')).toBe(true);
      const path = join(dir, `${key}.mp4`);
      await writeFile(path, out);
      expect(await packets(path)).toBe(await packets(fixtures[key].path));
    }
  });

  it('re-muxes holding a few slices of the file, not the file', async () => {
    // Measures what mp4box.js holds (its input slices) after every append, by wrapping its appendBuffer:
    // the only way to see inside the library; restored at once.
    const original = ISOFile.prototype.appendBuffer;
    let held = 0;
    ISOFile.prototype.appendBuffer = function (this: ISOFile, ...args: Parameters<typeof original>) {
      const next = original.apply(this, args);
      held = Math.max(held, this.stream.buffers.reduce((n, b) => n + b.byteLength, 0));
      return next;
    };
    try {
      const file = await readFile(fixtures.longMoovEnd.path);
      const readBytes = 256 * 1024;
      const blob = new Blob([file]);
      const p = await prepare(blob, { readBytes });
      expect((await collect(playerBytes(blob, p, 256 * 1024, readBytes))).length).toBeGreaterThan(0);
      expect(file.length).toBeGreaterThan(20 * readBytes);
      expect(held).toBeLessThanOrEqual(2 * readBytes);
    } finally {
      ISOFile.prototype.appendBuffer = original;
    }
  });

  it('names containers and codecs, and sends what it cannot name as it is', async () => {
    const look = async (key: FixtureKey, type = '') =>
      prepare(new Blob([await readFile(fixtures[key].path)], { type }));
    const mkvVp9 = await look('mkvVp9');
    expect([mkvVp9.container, mkvVp9.mime]).toEqual(['webm', 'video/webm; codecs="vp9,opus"']);
    const mkv = await look('mkv');
    expect(mkv.container).toBe('other');
    expect(mkv.mime).toMatch(/^video\/x-matroska; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/);
    // The browser's type wins; sniffing fills in when there is none.
    expect((await look('avi', 'video/avi')).mime).toBe('video/avi');
    const avi = await look('avi');
    expect([avi.container, avi.mime, avi.ranges]).toEqual(['other', 'video/x-msvideo', [[0, avi.size]]]);
    const aviBlob = new Blob([await readFile(fixtures.avi.path)]);
    const src = rangedSource(aviBlob, avi);
    expect(Buffer.from(await src.read(0, avi.size)).equals(await readFile(fixtures.avi.path))).toBe(true);
    const junk = await prepare(new Blob([new Uint8Array(1000).fill(7)]));
    expect([junk.container, junk.mime, junk.size]).toEqual(['other', 'application/octet-stream', 1000]);
  });
});

describe('media in Chromium', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: BASE_ARGS });
    page = await openPage(browser);
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('answers every read made while the file store completes, with the right bytes (the re-mux reads until the end)', async () => {
    const r = await page.evaluate(() => window.mediaHarness.diskRace(300_000));
    expect(r).toEqual({ where: 'disk', reads: ['ok', 'ok', 'ok', 'ok'], wholeOk: true });
  });

  it('passes fragmented MP4 and WebM through unchanged and names their codecs', async () => {
    for (const key of ['fmp4', 'webm', 'longFmp4'] as const) {
      const r: PrepareReport = await page.evaluate((u) => window.mediaHarness.prepareReport(u), url(key));
      const file = await readFile(fixtures[key].path);
      expect(r.remuxed).toBe(false);
      expect(r.size).toBe(file.length);
      expect(r.produced).toBe(file.length);
      expect(r.sha256).toBe(createHash('sha256').update(file).digest('hex'));
      expect(r.largestChunk).toBeLessThanOrEqual(256 * 1024);
    }
    const fmp4 = await page.evaluate((u) => window.mediaHarness.prepareReport(u), url('fmp4'));
    expect(fmp4.container).toBe('fmp4');
    expect(fmp4.mime).toMatch(/^video\/mp4; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/);
    const webm = await page.evaluate((u) => window.mediaHarness.prepareReport(u), url('webm'));
    expect(webm.container).toBe('webm');
    expect(webm.mime).toMatch(/^video\/webm; codecs="(vp9|vp09\.[\d.]+),opus"$/);
  });

  it('offers regular MP4 (index at the start or the end) as it is, the index first, for the recipient to re-mux', async () => {
    for (const key of ['mp4Faststart', 'mp4MoovEnd', 'longMoovEnd'] as const) {
      const r = await page.evaluate((u) => window.mediaHarness.prepareReport(u), url(key));
      const file = await readFile(fixtures[key].path);
      expect(r.container).toBe('mp4');
      expect(r.size).toBe(file.length);
      expect(r.mime).toMatch(/^video\/mp4; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/);
      expect(r.produced).toBeGreaterThan(0);
      expect(r.largestChunk).toBeLessThanOrEqual(256 * 1024);
    }
    // Index at the end: it goes first, then the rest in file order.
    const moovEnd = await prepare(new Blob([await readFile(fixtures.mp4MoovEnd.path)]));
    expect(moovEnd.ranges).toHaveLength(2);
    expect(moovEnd.ranges[0]![1]).toBe(moovEnd.size);
    expect(moovEnd.ranges[1]).toEqual([0, moovEnd.ranges[0]![0]]);
    const faststart = await prepare(new Blob([await readFile(fixtures.mp4Faststart.path)]));
    expect(faststart.ranges).toEqual([[0, faststart.size]]);
  });

  // A clip of a few seconds whose bytes arrive in 16 KiB pieces over about 60% of its length.
  for (const key of ['fmp4', 'mp4Faststart', 'mp4MoovEnd', 'webm', 'mkvVp9'] as const) {
    it(`plays ${key} while it arrives, then to the end`, async () => {
      const seconds = fixtures[key].seconds;
      const r = await playIn(page, {
        url: url(key), pieceBytes: 16 * 1024, deliveryMs: seconds * 600, playbackRate: 1, memoryCapBytes: 64 * MiB,
        timeoutMs: (seconds + 10) * 1000,
      });
      if (process.env.MEDIA_DEBUG) console.log(key, JSON.stringify({ first: r.firstFrame, last: r.beforeLastPush, size: r.size }));
      expect(r.mode, JSON.stringify(r)).toBe('mse');
      expect(r.fallbacks).toEqual([]);
      expect(r.errors).toEqual([]);
      expect(r.pushes).toBeGreaterThan(5);
      // Playing before the last piece was pushed: time moved and frames were decoded.
      expect(r.beforeLastPush!.currentTime).toBeGreaterThan(0.3);
      expect(r.beforeLastPush!.frames).toBeGreaterThan(0);
      // ...from the start of the video, with well under the whole file there.
      expect(r.firstFrame!.currentTime).toBeLessThan(0.3);
      expect(r.firstFrame!.bytesPushed / r.size).toBeLessThan(0.6);
      // The length was known while it arrived: the re-mux keeps the movie's duration in its init segment.
      // (ffmpeg's empty_moov fragmented MP4 does not declare one, and is passed through unchanged.)
      if (key !== 'fmp4') {
        expect(r.firstFrame!.duration).toBeGreaterThan(seconds - 0.5);
        expect(r.firstFrame!.duration).toBeLessThan(seconds + 0.5);
      }
      // ...and to the end.
      expect(r.ended).toBe(true);
      expect(r.endTime).toBeGreaterThan(seconds - 0.3);
      expect(r.complete).toEqual({ bytes: r.size, saveable: true });
      expect(r.blobSize).toBe(r.size);
    });
  }

  it('keeps a long video\'s buffer small by evicting what was played', async () => {
    const r = await playIn(page, {
      url: url('longFmp4'), pieceBytes: 64 * 1024, deliveryMs: 0, playbackRate: 4, memoryCapBytes: 64 * MiB,
      keepBehindSeconds: 3, maxAheadSeconds: 4, timeoutMs: 30_000,
    });
    expect(r.mode).toBe('mse');
    expect(r.fallbacks).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.ended).toBe(true);
    expect(r.endTime).toBeGreaterThan(29.5);
    // The sender was held back (backpressure) and played media was removed, a keyframe at a time.
    expect(r.waiting).toContain('ahead');
    expect(r.stats.evictions).toBeGreaterThan(2);
    expect(r.maxBufferedStart).toBeGreaterThan(15);
    // Held at most: 3 s behind, plus up to a keyframe interval (1 s), the 0.5 s cut margin and the 1 s
    // least worth removing, plus 4 s ahead and the last piece appended (64 KiB, under 0.5 s here), plus
    // what plays between two samples of the buffer (50 ms at 4x): about 10 s of a 30 s video.
    expect(r.maxBufferedSpan).toBeLessThan(3 + 1 + 0.5 + 1 + 4 + 0.5 + 0.2);
    expect(r.stats.quotaErrors).toBe(0);
  });

  it('plays a Matroska file MediaSource refuses as a Blob once complete, and says why', async () => {
    const r = await playIn(page, {
      url: url('mkv'), pieceBytes: 32 * 1024, deliveryMs: 300, playbackRate: 2, memoryCapBytes: 64 * MiB,
      timeoutMs: 15_000,
    });
    expect(r.container).toBe('other');
    expect(r.mode).toBe('blob');
    expect(r.modeReason).toMatch(/can't play this kind of video \(video\/x-matroska\) while it is still arriving/);
    expect(r.beforeLastPush!.frames).toBe(0);
    expect(r.ended).toBe(true);
    expect(r.complete).toEqual({ bytes: r.size, saveable: true });
  });

  it('offers an AVI the browser cannot play as a download, with a plain explanation', async () => {
    const r = await playIn(page, {
      url: url('avi'), pieceBytes: 64 * 1024, deliveryMs: 0, playbackRate: 1, memoryCapBytes: 64 * MiB,
      timeoutMs: 10_000,
    });
    expect(r.container).toBe('other');
    expect(r.mime).toBe('video/x-msvideo');
    expect(r.mode).toBe('download');
    expect(r.modeReason).toMatch(/can't play this kind of file \(video\/x-msvideo\)\. You can save it/);
    expect(r.complete).toEqual({ bytes: r.size, saveable: true });
    expect(r.blobSize).toBe(r.size);
  });

  it('says a file over the memory cap can be neither played whole nor kept', async () => {
    const r = await playIn(page, {
      url: url('mkv'), pieceBytes: 64 * 1024, deliveryMs: 0, playbackRate: 1, memoryCapBytes: 50 * 1024,
      timeoutMs: 10_000,
    });
    expect(r.mode).toBe('download');
    expect(r.modeReason).toMatch(/larger than the 0\.0 MB this page may keep in memory/);
    expect(r.complete?.saveable).toBe(false);
    expect(r.blobSize).toBeUndefined();
  });

  it('falls back to a Blob, with a reason, when MediaSource cannot parse what arrives', async () => {
    // Matroska/H.264 bytes offered as WebM/VP9: MediaSource accepts the type, then fails on the data.
    const r = await playIn(page, {
      url: url('mkv'), pieceBytes: 16 * 1024, deliveryMs: 300, playbackRate: 2, memoryCapBytes: 64 * MiB,
      mime: 'video/webm; codecs="vp9,opus"', container: 'webm', timeoutMs: 15_000,
    });
    expect(r.mode).toBe('mse');
    expect(r.fallbacks).toHaveLength(1);
    expect(r.fallbacks[0]!.mode).toBe('blob');
    expect(r.fallbacks[0]!.reason).toMatch(/Playing while the file arrives stopped working/);
    expect(r.finalMode).toBe('blob');
    expect(r.ended).toBe(true);
    expect(r.complete).toEqual({ bytes: r.size, saveable: true });
  });
});

describe('media in Chromium with a 1 MB MediaSource buffer', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    // Chromium's own switches for the SourceBuffer memory limit, so a 6 MB video overflows it for real.
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: [...BASE_ARGS, '--mse-video-buffer-size-limit-mb=1', '--mse-audio-buffer-size-limit-mb=1'],
    });
    page = await openPage(browser);
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('waits out QuotaExceededError and plays a re-muxed long MP4 to the end', async () => {
    const r = await playIn(page, {
      url: url('longMoovEnd'), pieceBytes: 128 * 1024, deliveryMs: 0, playbackRate: 4, memoryCapBytes: 64 * MiB,
      // Our own limits off: only the browser's quota bounds the buffer here.
      keepBehindSeconds: 1000, maxAheadSeconds: 1000, timeoutMs: 30_000,
    });
    expect(r.mode).toBe('mse');
    expect(r.stats.quotaErrors).toBeGreaterThan(0);
    expect(r.waiting).toContain('quota');
    expect(r.fallbacks).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.ended).toBe(true);
    expect(r.endTime).toBeGreaterThan(29.5);
    expect(r.complete).toEqual({ bytes: r.size, saveable: true });
  });
});
