/**
 * Makes the small test files the media and file tests send: videos, audio and photos with the system's
 * ffmpeg, a PDF and a non-media file written here.
 *
 *   npx tsx scripts/make-fixtures.ts [outDir]      (default test/.tmp/fixtures in the repository)
 *
 * Idempotent: a `manifest.json` in the output directory records the recipe of every file; a file whose
 * recipe has not changed and that still exists is not made again. Everything is synthetic (testsrc2 +
 * a sine tone), so nothing is downloaded.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);

/** What each fixture is for; the tests look them up by key. */
export type FixtureKey =
  | 'fmp4' | 'mp4Faststart' | 'mp4MoovEnd' | 'webm' | 'mkvVp9' | 'mkv' | 'avi' | 'longFmp4' | 'longMoovEnd'
  | 'png' | 'jpeg' | 'mp3' | 'm4a' | 'hevc' | 'mov' | 'pdf' | 'binary' | 'fakeMp4';

export interface Fixture {
  key: FixtureKey;
  file: string;
  /** Absolute path of the made file. */
  path: string;
  /** Content-Type a web server would give it. */
  contentType: string;
  /** Length in seconds. */
  seconds: number;
}

interface Recipe {
  key: FixtureKey;
  file: string;
  contentType: string;
  seconds: number;
  /** ffmpeg arguments before the output path. */
  args: (seconds: number) => string[];
  /** Or: writes the file itself (no ffmpeg). */
  write?: (path: string) => Promise<void>;
}

/** A one-page PDF with a line of text, byte offsets in its xref table computed, as a viewer expects. */
function tinyPdf(): Buffer {
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    '<< /Length 43 >>\nstream\nBT /F1 18 Tf 40 70 Td (Hello, Parley) Tj ET\nendstream',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** Deterministic bytes that are no known format (a seeded hash chain). */
function noise(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  let block = createHash('sha256').update(seed).digest();
  for (let at = 0; at < bytes; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

function sources(seconds: number, size: string, rate = 25): string[] {
  return [
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
  ];
}

const H264 = ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p'];
const AAC = ['-c:a', 'aac', '-b:a', '64k'];

const RECIPES: Recipe[] = [
  {
    // One fragment per second (keyframe every 25 frames), as a streaming encoder would write it.
    key: 'fmp4', file: 'fragmented.mp4', contentType: 'video/mp4', seconds: 4,
    args: (s) => [...sources(s, '320x240'), ...H264, '-g', '25', ...AAC,
      '-movflags', 'frag_keyframe+empty_moov+default_base_moof'],
  },
  {
    // x264 defaults (one keyframe for the whole clip, B-frames): the sender must cut between keyframes.
    key: 'mp4Faststart', file: 'faststart.mp4', contentType: 'video/mp4', seconds: 4,
    args: (s) => [...sources(s, '320x240'), ...H264, ...AAC, '-movflags', '+faststart'],
  },
  {
    // ffmpeg's default layout: mdat first, moov (the index) at the end of the file.
    key: 'mp4MoovEnd', file: 'moov-at-end.mp4', contentType: 'video/mp4', seconds: 4,
    args: (s) => [...sources(s, '320x240'), ...H264, ...AAC],
  },
  {
    key: 'webm', file: 'clip.webm', contentType: 'video/webm', seconds: 4,
    args: (s) => [...sources(s, '320x240'), '-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8',
      '-b:v', '400k', '-g', '25', '-c:a', 'libopus', '-b:a', '64k'],
  },
  {
    // Matroska (not WebM) DocType carrying WebM codecs, as many .mkv files do.
    key: 'mkvVp9', file: 'vp9-opus.mkv', contentType: 'video/x-matroska', seconds: 2,
    args: (s) => [...sources(s, '320x240'), '-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8',
      '-b:v', '400k', '-g', '25', '-c:a', 'libopus', '-b:a', '64k'],
  },
  {
    // Matroska with H.264/AAC: MediaSource refuses the container, a plain <video> may still play it.
    key: 'mkv', file: 'clip.mkv', contentType: 'video/x-matroska', seconds: 3,
    args: (s) => [...sources(s, '320x240'), ...H264, '-g', '25', ...AAC],
  },
  {
    // AVI with MPEG-4 Part 2 and MP3: neither MediaSource nor <video> plays it; a file to save.
    key: 'avi', file: 'clip.avi', contentType: 'video/x-msvideo', seconds: 3,
    args: (s) => [...sources(s, '320x240'), '-c:v', 'mpeg4', '-q:v', '5', '-c:a', 'libmp3lame', '-b:a', '64k'],
  },
  {
    // Long enough, at a high enough bit rate, to overflow a SourceBuffer limited to 1 MiB several times.
    key: 'longFmp4', file: 'long-fragmented.mp4', contentType: 'video/mp4', seconds: 30,
    args: (s) => [...sources(s, '480x270'), ...H264, '-b:v', '1500k', '-g', '25', ...AAC,
      '-movflags', 'frag_keyframe+empty_moov+default_base_moof'],
  },
  {
    key: 'longMoovEnd', file: 'long-moov-at-end.mp4', contentType: 'video/mp4', seconds: 30,
    args: (s) => [...sources(s, '480x270'), ...H264, '-b:v', '1500k', '-g', '50', ...AAC],
  },
  {
    key: 'png', file: 'photo.png', contentType: 'image/png', seconds: 0,
    args: () => ['-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=1:duration=1', '-frames:v', '1'],
  },
  {
    key: 'jpeg', file: 'photo.jpg', contentType: 'image/jpeg', seconds: 0,
    args: () => ['-f', 'lavfi', '-i', 'testsrc2=size=800x600:rate=1:duration=1', '-frames:v', '1', '-q:v', '4'],
  },
  {
    key: 'mp3', file: 'tone.mp3', contentType: 'audio/mpeg', seconds: 20,
    args: (s) => ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=44100:duration=${s}`, '-c:a', 'libmp3lame', '-b:a', '128k'],
  },
  {
    // ffmpeg's ipod muxer puts the index at the end, as many phones' recorders do.
    key: 'm4a', file: 'tone.m4a', contentType: 'audio/mp4', seconds: 20,
    args: (s) => ['-f', 'lavfi', '-i', `sine=frequency=660:sample_rate=48000:duration=${s}`, '-c:a', 'aac', '-b:a', '128k'],
  },
  {
    // H.265 as iPhones record it (hvc1 tag). Debian's Chromium decodes the AAC but not the picture.
    key: 'hevc', file: 'hevc.mp4', contentType: 'video/mp4', seconds: 3,
    args: (s) => [...sources(s, '320x240'), '-c:v', 'libx265', '-preset', 'ultrafast', '-tag:v', 'hvc1',
      '-x265-params', 'log-level=error', '-pix_fmt', 'yuv420p', ...AAC],
  },
  {
    key: 'mov', file: 'clip.mov', contentType: 'video/quicktime', seconds: 4,
    args: (s) => [...sources(s, '320x240'), ...H264, '-g', '25', ...AAC],
  },
  {
    key: 'pdf', file: 'letter.pdf', contentType: 'application/pdf', seconds: 0, args: () => [],
    write: (path) => writeFile(path, tinyPdf()),
  },
  {
    key: 'binary', file: 'data.bin', contentType: 'application/octet-stream', seconds: 0, args: () => [],
    write: (path) => writeFile(path, noise(3 * 1024 * 1024 + 17, 'parley binary fixture')),
  },
  {
    // Not a video, though its name says so.
    key: 'fakeMp4', file: 'notes.mp4', contentType: 'video/mp4', seconds: 0, args: () => [],
    write: (path) => writeFile(path, Buffer.from('These are notes, not a video.\n'.repeat(2000))),
  },
];

const MANIFEST = 'manifest.json';
const DEFAULT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../test/.tmp/fixtures');

function recipeHash(r: Recipe): string {
  return createHash('sha256').update(JSON.stringify([r.file, r.args(r.seconds), r.write?.toString() ?? ''])).digest('hex').slice(0, 16);
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).size > 0;
  } catch {
    return false;
  }
}

async function readManifest(dir: string): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/**
 * Makes every fixture that is missing or whose recipe changed, and returns them all by key.
 * Throws with ffmpeg's own message when ffmpeg is missing or lacks an encoder.
 */
export async function makeFixtures(outDir = DEFAULT_DIR): Promise<Record<FixtureKey, Fixture>> {
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  const manifest = await readManifest(dir);
  const result = {} as Record<FixtureKey, Fixture>;
  for (const r of RECIPES) {
    const path = join(dir, r.file);
    const hash = recipeHash(r);
    if (manifest[r.file] !== hash || !(await exists(path))) {
      // Write to a temporary name and rename, so an interrupted run never leaves a truncated fixture behind.
      const tmp = join(dir, `.${process.pid}.${r.file}`);
      try {
        if (r.write) await r.write(tmp);
        else await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...r.args(r.seconds), '-shortest', tmp],
          { maxBuffer: 16 * 1024 * 1024 });
      } catch (err) {
        const { stderr = '', code } = err as { stderr?: string; code?: unknown };
        if (code === 'ENOENT') throw new Error('ffmpeg is not installed (Debian: apt-get install -y ffmpeg)');
        throw new Error(`ffmpeg failed to make ${r.file}: ${stderr.trim() || String(err)}`);
      }
      await rename(tmp, path);
      manifest[r.file] = hash;
      await writeFile(join(dir, MANIFEST), JSON.stringify(manifest, null, 2));
    }
    result[r.key] = { key: r.key, file: r.file, path, contentType: r.contentType, seconds: r.seconds };
  }
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  makeFixtures(process.argv[2]).then((all) => {
    for (const f of Object.values(all)) console.log(`${f.key.padEnd(14)} ${f.path}`);
    console.log(`fixtures ready in ${Date.now() - started} ms`);
  }, (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
