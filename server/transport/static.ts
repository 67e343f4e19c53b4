/**
 * Serves the built browser client from memory (it is small, and read once at start-up). Every HTML response
 * carries the strict Content-Security-Policy the page is written to satisfy: scripts and styles from this
 * origin only, no inline code, media from blob: URLs (MediaSource and Blob playback), sockets to this origin.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import type uWS from 'uWebSockets.js';
import type { Logger } from '../core/logger.ts';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
};

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Parley</title>
<p>The browser client has not been built. Run <code>npm start</code> (which builds it) or <code>npm run build</code>.</p>`;

interface File { body: Buffer; type: string }

export class StaticFiles {
  private readonly files = new Map<string, File>();

  constructor(dir: string, log: Logger) {
    try {
      this.load(dir, dir);
    } catch {
      log.warn({ dir }, 'browser client not built; serving a placeholder page');
    }
    if (!this.files.has('/index.html')) this.files.set('/index.html', { body: Buffer.from(NOT_BUILT), type: TYPES['.html']! });
  }

  private load(root: string, dir: string): void {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) this.load(root, full);
      else this.files.set('/' + relative(root, full).split(sep).join('/'), { body: readFileSync(full), type: TYPES[extname(name)] ?? 'application/octet-stream' });
    }
  }

  serve(res: uWS.HttpResponse, url: string, _acceptEncoding: string, headers: (res: uWS.HttpResponse) => void): void {
    const path = url === '/' ? '/index.html' : url;
    // Unknown paths without an extension are client-side routes: they get the page.
    const file = this.files.get(path) ?? (extname(path) === '' ? this.files.get('/index.html') : undefined);
    res.cork(() => {
      if (!file) {
        res.writeStatus('404 Not Found');
        headers(res);
        res.writeHeader('Content-Type', 'text/plain; charset=utf-8');
        res.end('not found');
        return;
      }
      res.writeStatus('200 OK');
      headers(res);
      res.writeHeader('Content-Type', file.type);
      if (file.type.startsWith('text/html')) {
        res.writeHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
        res.writeHeader('X-Frame-Options', 'DENY');
      }
      res.end(file.body);
    });
  }
}
