/**
 * Builds the browser client: bundles client/ui/main.ts (with the SDK, shared/ and client/media) with esbuild
 * into `<outDir>/app.js`, splitting the video code into a chunk loaded on first use, and copies index.html
 * and styles.css next to it. The server reads this directory once at start-up (CLIENT_DIR).
 *
 *   node scripts/build-client.mjs [outDir]      (default client/dist)
 *
 * Plain JavaScript so that `npm start` can build without a TypeScript loader.
 */
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Directories whose files end up in the bundle: a build is stale when any of them is newer than it. */
export const CLIENT_SOURCES = ['client/ui', 'client/sdk', 'client/media', 'shared', 'scripts/build-client.mjs'].map((p) => join(ROOT, p));

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
    const result = await build({
      absWorkingDir: ROOT,
      entryPoints: { app: 'client/ui/main.ts' },
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome111', 'firefox113', 'safari16.4'],
      outdir: tmp,
      entryNames: '[name]',
      chunkNames: 'chunks/[name]-[hash]',
      minify: options.minify ?? true,
      sourcemap: options.sourcemap ?? true,
      legalComments: 'none',
      metafile: true,
      logLevel: options.quiet ? 'error' : 'warning',
    });
    await copyFile(join(ROOT, 'client/ui/index.html'), join(tmp, 'index.html'));
    await copyFile(join(ROOT, 'client/ui/styles.css'), join(tmp, 'styles.css'));
    await rm(outDir, { recursive: true, force: true });
    await mkdir(dirname(outDir), { recursive: true });
    await rename(tmp, outDir);
    const bytes = Object.values(result.metafile.outputs).reduce((a, o) => a + o.bytes, 0);
    return { outDir, bytes };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  buildClient({ outDir: process.argv[2] }).then(
    ({ outDir, bytes }) => console.log(`built the browser client into ${outDir} (${Math.round(bytes / 1024)} KiB) in ${Date.now() - started} ms`),
    (err) => {
      console.error(`client build failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
