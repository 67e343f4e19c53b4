/**
 * Builds the browser client: bundles client/ui/main.ts (with the SDK, shared/ and client/media) with esbuild
 * into `<outDir>/app-<hash>.js` (and the OPFS disk worker into `disk-worker-<hash>.js`, whose name the page gets
 * compiled in), splitting the video code into a chunk loaded on first use, copies styles.css
 * as `styles-<hash>.css`, and writes index.html pointing at both. Every file but index.html is named by its
 * content, so the server can let browsers keep it for good (`Cache-Control: immutable`); a new build makes new
 * names. No source maps unless asked for (`--sourcemap`): they would publish the client's source. The server
 * reads this directory once at start-up (CLIENT_DIR). Text files get precompressed siblings, `<file>.br`
 * (brotli, quality 11) and `<file>.gz` (gzip -9), when smaller: the server picks one by Accept-Encoding.
 *
 *   node scripts/build-client.mjs [outDir] [--sourcemap]      (default client/dist)
 *
 * Plain JavaScript so that `npm start` can build without a TypeScript loader.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Directories whose files end up in the bundle: a build is stale when any of them is newer than it. */
export const CLIENT_SOURCES = ['client/ui', 'client/sdk', 'client/media', 'shared', 'scripts/build-client.mjs'].map((p) => join(ROOT, p));

const brotli = promisify(zlib.brotliCompress);
const gzip = promisify(zlib.gzip);

/** Writes `.br` and `.gz` next to every text file of `dir` worth compressing (smaller, over 256 bytes). */
async function precompress(dir) {
  const files = (await readdir(dir, { recursive: true })).filter((f) => /\.(?:js|css|html|svg|json|webmanifest)$/.test(f));
  await Promise.all(files.map(async (f) => {
    const body = await readFile(join(dir, f));
    if (body.length <= 256) return;
    const [br, gz] = await Promise.all([
      brotli(body, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } }),
      gzip(body, { level: 9 }),
    ]);
    if (br.length < body.length) await writeFile(join(dir, `${f}.br`), br);
    if (gz.length < body.length) await writeFile(join(dir, `${f}.gz`), gz);
  }));
}

/** The web app manifest: what an installed Parley is called and how it opens. */
const MANIFEST = {
  name: 'Parley',
  short_name: 'Parley',
  description: 'Self-hosted messenger',
  start_url: '/',
  scope: '/',
  display: 'standalone',
  background_color: '#f5f6f8',
  theme_color: '#2f5bea',
  icons: [{ src: '/icon.svg', sizes: 'any', type: 'image/svg+xml', purpose: 'any maskable' }],
};

const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512"><rect width="512" height="512" fill="#2f5bea"/><path d="M144 160h224v144H224l-80 64z" fill="#fff"/></svg>\n`;

/**
 * Writes the manifest, its icon and the service worker (client/ui/sw.js, given the list of this build's
 * content-named files and a version naming its cache) into the build directory `dir`.
 */
async function writeInstallable(dir) {
  await writeFile(join(dir, 'manifest.webmanifest'), JSON.stringify(MANIFEST, null, 2) + '\n');
  await writeFile(join(dir, 'icon.svg'), ICON);
  const shell = (await readdir(dir, { recursive: true }))
    .map((f) => '/' + f.split(sep).join('/'))
    .filter((f) => /\.(?:js|css|svg|webmanifest)$/.test(f))
    .sort();
  const index = await readFile(join(dir, 'index.html'));
  const version = createHash('sha256').update(shell.join('\n')).update(index).digest('base64url').slice(0, 12);
  const worker = await readFile(join(ROOT, 'client/ui/sw.js'), 'utf8');
  await writeFile(join(dir, 'sw.js'), `const SHELL = ${JSON.stringify(shell)};\nconst VERSION = '${version}';\n${worker}`);
}

/**
 * Builds into `outDir` (replaced as a whole, so a half-built directory is never served).
 * @param {{ outDir?: string, minify?: boolean, sourcemap?: boolean, quiet?: boolean }} [options]
 * @returns {Promise<{ outDir: string, bytes: number }>}
 */
export async function buildClient(options = {}) {
  const outDir = resolve(options.outDir ?? join(ROOT, 'client/dist'));
  const tmp = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const common = {
      absWorkingDir: ROOT,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome111', 'firefox113', 'safari16.4'],
      outdir: tmp,
      entryNames: '[name]-[hash]',
      minify: options.minify ?? true,
      sourcemap: options.sourcemap ?? false,
      legalComments: 'none',
      metafile: true,
      logLevel: options.quiet ? 'error' : 'warning',
    };
    // The disk worker first: its content-hashed name is compiled into the page as DISK_WORKER_URL.
    const worker = await build({ ...common, entryPoints: { 'disk-worker': 'client/media/disk-worker.ts' } });
    const workerFile = Object.entries(worker.metafile.outputs).find(([, o]) => o.entryPoint === 'client/media/disk-worker.ts')?.[0];
    if (!workerFile) throw new Error('esbuild reported no output for client/media/disk-worker.ts');
    const workerUrl = `/${relative(tmp, resolve(ROOT, workerFile)).split(sep).join('/')}`;
    const result = await build({
      ...common,
      entryPoints: { app: 'client/ui/main.ts' },
      splitting: true,
      chunkNames: 'chunks/[name]-[hash]',
      define: { DISK_WORKER_URL: JSON.stringify(workerUrl) },
    });
    const app = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint === 'client/ui/main.ts')?.[0];
    if (!app) throw new Error('esbuild reported no output for client/ui/main.ts');
    const css = await readFile(join(ROOT, 'client/ui/styles.css'));
    const cssName = `styles-${createHash('sha256').update(css).digest('base64url').slice(0, 10)}.css`;
    await writeFile(join(tmp, cssName), css);
    const html = (await readFile(join(ROOT, 'client/ui/index.html'), 'utf8'))
      .replace('href="/styles.css"', `href="/${cssName}"`)
      .replace('src="/app.js"', `src="/${relative(tmp, resolve(ROOT, app)).split(sep).join('/')}"`);
    if (!html.includes(cssName) || html.includes('"/app.js"')) throw new Error('index.html no longer names /app.js and /styles.css');
    await writeFile(join(tmp, 'index.html'), html);
    await writeInstallable(tmp);
    await precompress(tmp);
    await rm(outDir, { recursive: true, force: true });
    await mkdir(dirname(outDir), { recursive: true });
    await rename(tmp, outDir);
    const bytes = [result, worker].flatMap((r) => Object.values(r.metafile.outputs)).reduce((a, o) => a + o.bytes, 0);
    return { outDir, bytes };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const args = process.argv.slice(2);
  buildClient({ outDir: args.find((a) => !a.startsWith('--')), sourcemap: args.includes('--sourcemap') }).then(
    ({ outDir, bytes }) => console.log(`built the browser client into ${outDir} (${Math.round(bytes / 1024)} KiB) in ${Date.now() - started} ms`),
    (err) => {
      console.error(`client build failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
