/**
 * Page weight as a browser sees it: bytes on the wire (headers and bodies, after compression) for a first
 * visit to the sign-in page with an empty cache, and for a repeat visit (reload with the cache kept), measured
 * by Debian's Chromium through the DevTools protocol against a real server on a free port.
 *
 *   npx tsx scripts/page-weight.ts
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../server/app.ts';
import { loadConfig } from '../server/config.ts';
import { buildClient } from './build-client.mjs';

const work = await mkdtemp(join(tmpdir(), 'parley-weight-'));
const { outDir } = await buildClient({ outDir: join(work, 'dist'), quiet: true });
const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: join(work, 'data'), LOG_LEVEL: 'warn', CLIENT_DIR: outDir }, []));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
try {
  const page = await (await browser.newContext()).newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  let requests = 0;
  const fromCache = new Set<string>();
  cdp.on('Network.requestServedFromCache', (e: { requestId: string }) => fromCache.add(e.requestId));
  cdp.on('Network.loadingFinished', (e: { requestId: string; encodedDataLength: number }) => {
    requests++;
    if (!fromCache.has(e.requestId)) bytes += e.encodedDataLength;
  });
  const visit = async (label: string, go: () => Promise<unknown>): Promise<void> => {
    bytes = 0;
    requests = 0;
    fromCache.clear();
    await go();
    await page.locator('.auth-form').waitFor();
    await page.waitForLoadState('load');
    console.log(`${label}: ${bytes} bytes over the network (${(bytes / 1024).toFixed(1)} KiB), ${requests} requests, ${fromCache.size} from cache`);
  };
  await visit('first visit ', () => page.goto(server.url + '/'));
  await visit('repeat visit', () => page.goto(server.url + '/'));
  // The service worker then keeps the whole app shell (every chunk, for opening offline): fetched in the
  // background by the worker, so not in the page's counts above. Its bodies, brotli-compressed, as served:
  const sw = await readFile(join(outDir, 'sw.js'), 'utf8');
  const shell = JSON.parse(/const SHELL = (\[.*?\]);/.exec(sw)?.[1] ?? '[]') as string[];
  let shellBytes = 0;
  for (const path of ['/', '/sw.js', ...shell]) {
    const res = await fetch(server.url + path, { headers: { 'accept-encoding': 'br' } });
    shellBytes += Number(res.headers.get('content-length'));
    await res.arrayBuffer();
  }
  console.log(`service worker: ${shellBytes} bytes of bodies (${(shellBytes / 1024).toFixed(1)} KiB) for the worker and ${shell.length + 1} shell files, once per build`);
} finally {
  await browser.close();
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
