/**
 * Serves the built browser client from memory (it is small, and read once at start-up), with the build's
 * precompressed brotli and gzip copies (`<file>.br`, `<file>.gz`) chosen by Accept-Encoding. Content-named files (`app-<hash>.js`) are `immutable`; the page
 * is revalidated by ETag every time, so a deploy is picked up at the next load. Every HTML response
 * carries the strict Content-Security-Policy the page is written to satisfy: scripts and styles from this
 * origin only, no inline code, media from blob: URLs (MediaSource and Blob playback), sockets to this origin.
 */
import { createHash } from 'node:crypto';
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
  "worker-src 'self'",
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

/** One file as served: the bytes, precompressed copies when they are smaller, and a validator for each. */
interface File {
  type: string;
  cache: string;
  variants: { identity: Variant; br?: Variant; gzip?: Variant };
}
interface Variant { body: Buffer; etag: string }

/** esbuild's `[name]-[hash]` and the build's `styles-<hash>`: named by content, so never stale. */
const HASHED = /-[A-Za-z0-9_-]{8,}\.(?:js|css)$/;
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** The page itself may change with any deploy: browsers keep it but ask (ETag) every time. */
const REVALIDATE = 'no-cache';
const COMPRESSIBLE = /^(?:text\/|application\/(?:json|manifest\+json)|image\/svg\+xml)/;

function variant(body: Buffer, tag: string): Variant {
  return { body, etag: `"${tag}"` };
}

function makeFile(path: string, body: Buffer, type: string): File {
  return { type, cache: HASHED.test(path) ? IMMUTABLE : REVALIDATE, variants: { identity: variant(body, etagOf(body)) } };
}

function etagOf(body: Buffer): string {
  return createHash('sha256').update(body).digest('base64url').slice(0, 22);
}

/** Which codings the client takes (`br;q=0` is a refusal). */
function accepts(acceptEncoding: string, coding: string): boolean {
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [name, ...params] = part.trim().split(';');
    if (name?.trim() !== coding) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/** True when `If-None-Match` names `etag` (or is `*`). */
function notModified(ifNoneMatch: string, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.trim() === '*' || ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/**
 * Ends a HEAD response with the Content-Length its GET would have. Written as a header because this uWS build
 * aborts the process when `endWithoutBody()` is given its length argument.
 */
export function endHead(res: uWS.HttpResponse, length: number): void {
  res.writeHeader('Content-Length', String(length));
  res.endWithoutBody();
}

export interface StaticRequest {
  method: 'GET' | 'HEAD';
  url: string;
  acceptEncoding: string;
  ifNoneMatch: string;
}

export class StaticFiles {
  private readonly files = new Map<string, File>();

  constructor(dir: string, log: Logger) {
    try {
      this.load(dir);
    } catch {
      log.warn({ dir }, 'browser client not built; serving a placeholder page');
    }
    if (!this.files.has('/index.html')) this.files.set('/index.html', makeFile('/index.html', Buffer.from(NOT_BUILT), TYPES['.html']!));
  }

  private load(root: string): void {
    const precompressed: Array<[path: string, coding: 'br' | 'gzip', body: Buffer]> = [];
    const walk = (d: string): void => {
      for (const name of readdirSync(d)) {
        const full = join(d, name);
        const path = '/' + relative(root, full).split(sep).join('/');
        if (statSync(full).isDirectory()) walk(full);
        else if (name.endsWith('.br')) precompressed.push([path.slice(0, -3), 'br', readFileSync(full)]);
        else if (name.endsWith('.gz')) precompressed.push([path.slice(0, -3), 'gzip', readFileSync(full)]);
        else this.files.set(path, makeFile(path, readFileSync(full), TYPES[extname(name)] ?? 'application/octet-stream'));
      }
    };
    walk(root);
    // The build's `.br` / `.gz` siblings become other codings of their file, each with its own validator.
    for (const [path, coding, body] of precompressed) {
      const file = this.files.get(path);
      if (file && COMPRESSIBLE.test(file.type)) file.variants[coding] = variant(body, `${file.variants.identity.etag.slice(1, -1)}-${coding === 'br' ? 'br' : 'gz'}`);
    }
  }

  /**
   * Answers GET and HEAD: brotli or gzip when the client takes them and they are smaller (`Vary:
   * Accept-Encoding`), 304 when `If-None-Match` names what it would send, HEAD with the headers of GET.
   */
  serve(res: uWS.HttpResponse, req: StaticRequest, headers: (res: uWS.HttpResponse) => void): void {
    const path = req.url === '/' ? '/index.html' : req.url;
    // Unknown paths without an extension are client-side routes: they get the page.
    const file = this.files.get(path) ?? (extname(path) === '' ? this.files.get('/index.html') : undefined);
    res.cork(() => {
      if (!file) {
        res.writeStatus('404 Not Found');
        headers(res);
        res.writeHeader('Cache-Control', 'no-store');
        res.writeHeader('Content-Type', 'text/plain; charset=utf-8');
        if (req.method === 'HEAD') endHead(res, 9);
        else res.end('not found');
        return;
      }
      const { br, gzip, identity } = file.variants;
      const [coding, v] = br && accepts(req.acceptEncoding, 'br') ? ['br', br] as const
        : gzip && accepts(req.acceptEncoding, 'gzip') ? ['gzip', gzip] as const
          : [undefined, identity] as const;
      const fresh = notModified(req.ifNoneMatch, v.etag);
      res.writeStatus(fresh ? '304 Not Modified' : '200 OK');
      headers(res);
      res.writeHeader('Cache-Control', file.cache);
      res.writeHeader('ETag', v.etag);
      if (br || gzip) res.writeHeader('Vary', 'Accept-Encoding');
      if (fresh) {
        res.endWithoutBody();
        return;
      }
      res.writeHeader('Content-Type', file.type);
      if (coding) res.writeHeader('Content-Encoding', coding);
      if (file.type.startsWith('text/html')) {
        res.writeHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
        res.writeHeader('X-Frame-Options', 'DENY');
      }
      if (req.method === 'HEAD') endHead(res, v.body.length);
      else res.end(v.body);
    });
  }
}
