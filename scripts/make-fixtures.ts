/**
 * Makes the small test videos the media tests play, with the system's ffmpeg.
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
  | 'fmp4' | 'mp4Faststart' | 'mp4MoovEnd' | 'webm' | 'mkvVp9' | 'mkv' | 'avi' | 'longFmp4' | 'longMoovEnd';

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
  args: (seconds: number) => string[];
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
];

const MANIFEST = 'manifest.json';
const DEFAULT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../test/.tmp/fixtures');

function recipeHash(r: Recipe): string {
  return createHash('sha256').update(JSON.stringify([r.file, r.args(r.seconds)])).digest('hex').slice(0, 16);
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
        await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...r.args(r.seconds), '-shortest', tmp],
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
