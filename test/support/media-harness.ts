/**
 * Browser-side harness for test/e2e/media.test.ts, bundled with esbuild and loaded into Chromium.
 *
 * It plays both ends of a video stream in one page: `prepare()` (the sender) turns a fixture fetched from the
 * test server into chunks, and the chunks go to `createPlayer()` (the recipient) one small piece at a time,
 * with a delay between pieces, awaiting each `push()` the way the SDK would before granting more credit. It
 * stands in for the relay: it does not model the network or the server, only the order, the size and the
 * pace of the pieces, and the recipient's backpressure.
 */
import { prepare } from '../../client/media/prepare.ts';
import { createPlayer, type PlayerMode, type PlayerStats } from '../../client/media/player.ts';
import { openFileStore } from '../../client/media/file-store.ts';
import { playerBytes, playerContainer } from './player-bytes.ts';

export interface PrepareReport {
  container: string;
  mime: string;
  size: number;
  remuxed: boolean;
  produced: number;
  largestChunk: number;
  sha256: string;
}

export interface PlayCase {
  url: string;
  /** Bytes per push. */
  pieceBytes: number;
  /** Spread the pushes over about this long (0: as fast as the player takes them). */
  deliveryMs: number;
  playbackRate: number;
  memoryCapBytes: number;
  keepBehindSeconds?: number;
  maxAheadSeconds?: number;
  /** Lie about the stream, to provoke a MediaSource failure. */
  mime?: string;
  container?: string;
  /** Give up waiting for the end after this long. */
  timeoutMs: number;
}

export interface Snapshot {
  bytesPushed: number;
  currentTime: number;
  frames: number;
  duration: number;
}

export interface PlayReport {
  mime: string;
  container: string;
  size: number;
  pushes: number;
  mode: PlayerMode;
  modeReason?: string;
  finalMode: PlayerMode;
  fallbacks: { mode: string; reason: string }[];
  /** State just before the last piece was pushed. */
  beforeLastPush?: Snapshot;
  /** State when the first video frame was presented. */
  firstFrame?: Snapshot;
  ended: boolean;
  endTime: number;
  duration: number;
  /** Largest span of media held in the buffer (end of last range minus start of first), seconds. */
  maxBufferedSpan: number;
  /** Latest start of the buffered media seen (moves forward when media is evicted), seconds. */
  maxBufferedStart: number;
  complete?: { bytes: number; saveable: boolean; reason?: string };
  blobSize?: number;
  waiting: string[];
  errors: string[];
  stats: PlayerStats;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function sha256(parts: Uint8Array[]): Promise<string> {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function fetchBlob(url: string): Promise<Blob> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.blob();
}

async function prepareReport(url: string): Promise<PrepareReport> {
  const blob = await fetchBlob(url);
  const p = await prepare(blob);
  const parts: Uint8Array[] = [];
  let largestChunk = 0;
  for await (const c of playerBytes(blob, p, 256 * 1024)) {
    parts.push(c.slice());
    largestChunk = Math.max(largestChunk, c.length);
  }
  return {
    container: p.container, mime: p.mime, size: p.size, remuxed: p.container === 'mp4',
    produced: parts.reduce((n, c) => n + c.length, 0), largestChunk, sha256: await sha256(parts),
  };
}

async function play(c: PlayCase): Promise<PlayReport> {
  const blob = await fetchBlob(c.url);
  const prepared = await prepare(blob);
  let playedSize = 0;
  for await (const b of playerBytes(blob, prepared, c.pieceBytes)) playedSize += b.length;
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.defaultPlaybackRate = c.playbackRate;
  video.playbackRate = c.playbackRate;
  document.body.append(video);

  const mime = c.mime ?? prepared.mime;
  const container = c.container ?? playerContainer(prepared);
  const player = createPlayer({
    video, mime, container, size: playedSize, memoryCapBytes: c.memoryCapBytes,
    ...(c.keepBehindSeconds !== undefined ? { keepBehindSeconds: c.keepBehindSeconds } : {}),
    ...(c.maxAheadSeconds !== undefined ? { maxAheadSeconds: c.maxAheadSeconds } : {}),
  });
  const report: PlayReport = {
    mime, container, size: playedSize, pushes: 0, mode: player.mode, finalMode: player.mode,
    fallbacks: [], ended: false, endTime: 0, duration: NaN, maxBufferedSpan: 0, maxBufferedStart: 0,
    waiting: [], errors: [], stats: player.stats(),
  };
  let bytesPushed = 0;
  const snapshot = (): Snapshot => ({
    bytesPushed, currentTime: video.currentTime,
    frames: video.getVideoPlaybackQuality().totalVideoFrames, duration: video.duration,
  });

  player.on('mode', (e) => { if (e.reason) report.modeReason = e.reason; });
  player.on('fallback', (e) => report.fallbacks.push(e));
  player.on('waiting', (e) => report.waiting.push(e.why));
  player.on('error', (e) => report.errors.push(e.message));
  player.on('complete', (e) => { report.complete = e; });
  const ended = new Promise<void>((resolve) => {
    player.on('ended', () => resolve());
    player.on('complete', (e) => { if (player.mode === 'download' && e) resolve(); });
    player.on('fallback', (e) => { if (e.mode === 'download') resolve(); });
  });
  video.requestVideoFrameCallback(() => { report.firstFrame ??= snapshot(); });
  const sampler = setInterval(() => {
    const b = video.buffered;
    if (b.length === 0) return;
    report.maxBufferedSpan = Math.max(report.maxBufferedSpan, b.end(b.length - 1) - b.start(0));
    report.maxBufferedStart = Math.max(report.maxBufferedStart, b.start(0));
  }, 50);

  const pieces = Math.max(1, Math.ceil(playedSize / c.pieceBytes));
  const delay = c.deliveryMs / pieces;
  // Look one piece ahead, so we know which piece is the last before pushing it.
  const it = playerBytes(blob, prepared, c.pieceBytes)[Symbol.asyncIterator]();
  let next = await it.next();
  while (!next.done) {
    const piece = next.value;
    next = await it.next();
    if (delay > 0) await sleep(delay);
    if (next.done) report.beforeLastPush = snapshot();
    await player.push(piece);
    bytesPushed += piece.length;
    report.pushes++;
  }
  await player.end();

  await Promise.race([ended.then(() => { report.ended = true; }), sleep(c.timeoutMs)]);
  clearInterval(sampler);
  report.ended = report.ended && (player.mode !== 'download' ? video.ended : true);
  report.endTime = video.currentTime;
  report.duration = video.duration;
  report.finalMode = player.mode;
  report.stats = player.stats();
  report.blobSize = player.blob()?.size;
  player.destroy();
  video.remove();
  return report;
}

export interface DiskRaceReport {
  where: string;
  /** Each read made around complete(): 'ok', 'wrong bytes', 'failed: …' or 'no answer' (after 5 s). */
  reads: string[];
  wholeOk: boolean;
}

/**
 * The recipient's race at the end of a transfer: the file store completes (its disk worker closes the file and
 * stops) while the re-mux is still reading. Reads made just before, at the same moment as, and after
 * complete() must all be answered with the right bytes.
 */
async function diskRace(size: number): Promise<DiskRaceReport> {
  const file = new Uint8Array(size).map((_, i) => (i * 31) % 253);
  const store = await openFileStore(size, { memoryCapBytes: 0 });
  for (let at = 0; at < size; at += 65536) await store.write(at, file.subarray(at, Math.min(size, at + 65536)));
  const check = (p: Promise<Uint8Array>, start: number, end: number): Promise<string> => Promise.race([
    p.then((b) => (b.length === end - start && b.every((v, i) => v === file[start + i]) ? 'ok' : 'wrong bytes'), (e: unknown) => `failed: ${String(e)}`),
    new Promise<string>((r) => setTimeout(() => r('no answer'), 5000)),
  ]);
  const before = check(store.read(0, 1000), 0, 1000);
  const whole = store.complete('application/octet-stream');
  const same = check(store.read(1000, 70000), 1000, 70000);
  await new Promise((r) => setTimeout(r, 0));
  const soon = check(store.read(5, 9), 5, 9);
  const blob = await whole;
  const after = check(store.read(size - 100, size), size - 100, size);
  const reads = await Promise.all([before, same, soon, after]);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const wholeOk = bytes.length === size && bytes.every((v, i) => v === file[i]);
  store.discard('done');
  return { where: store.where, reads, wholeOk };
}

declare global {
  interface Window {
    mediaHarness: { prepareReport: typeof prepareReport; play: typeof play; diskRace: typeof diskRace };
  }
}

window.mediaHarness = { prepareReport, play, diskRace };
