/**
 * Serving the page over real HTTP: content-named assets are `immutable`, the page is revalidated with an ETag
 * and answered 304 when unchanged, brotli or gzip is chosen by Accept-Encoding (and decodes to the very
 * bytes), no source maps are built or served by default, and HEAD is answered wherever GET is.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildClient } from '../../scripts/build-client.mjs';
import { Harness } from '../support/harness.ts';

interface Raw { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** One request with exactly these headers (fetch would add Accept-Encoding and decode for us). */
function raw(base: string, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Raw> {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const h = new Harness();
let dir: string;
let dist: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-static-'));
  ({ outDir: dist } = await buildClient({ outDir: join(dir, 'dist'), quiet: true }));
});
afterEach(() => h.cleanup());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('serving the page', () => {
  it('content-named assets are immutable; the page revalidates by ETag and gets 304 when unchanged', async () => {
    const s = await h.server({ CLIENT_DIR: dist });
    const page = await raw(s.url, '/');
    expect(page.status).toBe(200);
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const html = page.body.toString('utf8');
    const script = /src="(\/app-[^"]+\.js)"/.exec(html)?.[1];
    const style = /href="(\/styles-[^"]+\.css)"/.exec(html)?.[1];
    expect(script && style).toBeTruthy();

    for (const asset of [script!, style!]) {
      const a = await raw(s.url, asset);
      expect(a.status).toBe(200);
      expect(a.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      const again = await raw(s.url, asset, { headers: { 'If-None-Match': String(a.headers.etag) } });
      expect(again.status).toBe(304);
      expect(again.body.length).toBe(0);
    }
    const etag = String(page.headers.etag);
    const revalidated = await raw(s.url, '/', { headers: { 'If-None-Match': etag } });
    expect(revalidated.status).toBe(304);
    expect(revalidated.headers.etag).toBe(etag);
    expect((await raw(s.url, '/', { headers: { 'If-None-Match': '"something-else"' } })).status).toBe(200);
  });

  it('brotli or gzip by Accept-Encoding, decoding to the same bytes; identity when neither is taken', async () => {
    const s = await h.server({ CLIENT_DIR: dist });
    const html = (await raw(s.url, '/')).body.toString('utf8');
    const script = /src="(\/app-[^"]+\.js)"/.exec(html)![1]!;
    const plain = await raw(s.url, script);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.equals(readFileSync(join(dist, script)))).toBe(true);

    const br = await raw(s.url, script, { headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toBe('Accept-Encoding');
    expect(br.body.length).toBeLessThan(plain.body.length / 2);
    expect(brotliDecompressSync(br.body).equals(plain.body)).toBe(true);

    const gz = await raw(s.url, script, { headers: { 'Accept-Encoding': 'gzip, br;q=0' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);
    // Each coding has its own validator, so a cache never mixes them up.
    expect(new Set([plain.headers.etag, br.headers.etag, gz.headers.etag]).size).toBe(3);
  });

  it('no source maps unless the build is asked for them', async () => {
    const files = readdirSync(dist, { recursive: true }) as string[];
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    const s = await h.server({ CLIENT_DIR: dist });
    const html = (await raw(s.url, '/')).body.toString('utf8');
    const script = /src="(\/app-[^"]+\.js)"/.exec(html)![1]!;
    expect((await raw(s.url, `${script}.map`)).status).toBe(404);
    expect(readFileSync(join(dist, script), 'utf8')).not.toContain('sourceMappingURL');
  });

  it('answers HEAD wherever GET is: the page, an asset, /healthz; 404 for what is not there', async () => {
    const s = await h.server({ CLIENT_DIR: dist });
    for (const path of ['/', '/healthz']) {
      const r = await raw(s.url, path, { method: 'HEAD' });
      expect(r.status, path).toBe(200);
      expect(r.body.length, path).toBe(0);
    }
    const html = (await raw(s.url, '/')).body.toString('utf8');
    const script = /src="(\/app-[^"]+\.js)"/.exec(html)![1]!;
    const head = await raw(s.url, script, { method: 'HEAD', headers: { 'Accept-Encoding': 'br' } });
    const get = await raw(s.url, script, { headers: { 'Accept-Encoding': 'br' } });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(get.body.length));
    expect(head.headers.etag).toBe(get.headers.etag);
    expect((await raw(s.url, '/nothing-here.js', { method: 'HEAD' })).status).toBe(404);
  });
});
